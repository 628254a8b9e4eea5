//! Policy in the engine: the policy in force (the last one loaded into the store, else the
//! default pack), the facts a decision is made on, and the stamp every decision leaves in the
//! ledger (policy hash, deciding rules, approver slot).
//!
//! The change machine's separation-of-duties rules stay a floor no policy can lower: the core
//! decides first, then Cedar and the workflow rules may refuse what the floor allowed.

use std::sync::Arc;

use writ_core::change::{
    ApprovalRequirement, BusinessEvent, Change, Controls, ExternalRef, OpAction, RefKind,
};
use writ_core::event::{ChangeEvent, PolicyStamp, RegistryEvent};
use writ_core::identity::{Actor, Identity};
use writ_core::machine::Command;
use writ_core::name::IdentityName;
use writ_core::time::Timestamp;
use writ_policy::{Act, ChangeFacts, Denial, OpFacts, Person, Policy, PolicyBundle, Validation};

use crate::{ChangeRecord, Engine, EngineError, Result, registry_event};

/// What loading a policy did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loaded {
    /// A new policy is in force; its `policy.loaded` event has this ledger index.
    Changed { hash: String, index: u64 },
    /// The same files were already in force: nothing recorded.
    Unchanged { hash: String },
}

impl Engine {
    /// The policy in force.
    pub fn policy(&self) -> Result<Arc<Policy>> {
        if let Some(policy) = self.policy.read().map_err(|_| poisoned())?.as_ref() {
            return Ok(policy.clone());
        }
        let policy = Arc::new(match self.store.policy(None)? {
            Some((hash, files)) => compile_stored(&hash, &files)?,
            None => Policy::default_pack()?,
        });
        *self.policy.write().map_err(|_| poisoned())? = Some(policy.clone());
        Ok(policy)
    }

    /// Picks up a policy another process or instance put in force: if the store's active policy
    /// is not the one cached here, compiles it and uses it from now on. Returns whether it
    /// changed. `writ serve` calls this every second, so a reload on one instance is in force on
    /// all of them within about a second.
    pub fn refresh_policy(&self) -> Result<bool> {
        let Some((hash, files)) = self.store.policy(None)? else { return Ok(false) };
        let cached = self.policy.read().map_err(|_| poisoned())?.as_ref().map(|p| p.hash().to_owned());
        if cached.as_deref() == Some(hash.as_str()) {
            return Ok(false);
        }
        let policy = Arc::new(compile_stored(&hash, &files)?);
        *self.policy.write().map_err(|_| poisoned())? = Some(policy);
        tracing::info!(target: "writ::admin", hash = %hash, "policy loaded elsewhere is now in force here");
        Ok(true)
    }

    /// The policy with `hash`, as it was loaded (the default pack needs no loading).
    pub fn policy_by_hash(&self, hash: &str) -> Result<Option<Policy>> {
        if let Some((stored, files)) = self.store.policy(Some(hash))? {
            return Ok(Some(compile_stored(&stored, &files)?));
        }
        let default = Policy::default_pack()?;
        Ok((default.hash() == hash).then_some(default))
    }

    /// Checks a policy and puts it in force, recording `policy.loaded` in the ledger. An invalid
    /// policy is refused with its file, line and reason, and the policy in force stays.
    pub fn load_policy(&self, actor: Actor, bundle: PolicyBundle) -> Result<Loaded> {
        let policy = Policy::compile(bundle)?;
        let hash = policy.hash().to_owned();
        let current = self.store.policy(None)?.map(|(h, _)| h);
        let in_force = current.clone().unwrap_or_else(|| self.default_hash());
        if in_force == hash {
            *self.policy.write().map_err(|_| poisoned())? = Some(Arc::new(policy));
            return Ok(Loaded::Unchanged { hash });
        }
        let files = serde_json::to_string(policy.bundle().files()).map_err(|e| {
            EngineError::Policy(writ_policy::PolicyError::Io { path: String::new(), detail: e.to_string() })
        })?;
        let at = self.clock.now();
        let event = RegistryEvent::PolicyLoaded {
            actor,
            hash: hash.clone(),
            files: policy.bundle().files().keys().cloned().collect(),
            at,
        };
        let index = self.store.add_policy(&hash, &files, at, &registry_event(&event, self.hmac()?))?;
        *self.policy.write().map_err(|_| poisoned())? = Some(Arc::new(policy));
        tracing::info!(target: "writ::admin", hash = %hash, "policy loaded");
        Ok(Loaded::Changed { hash, index })
    }

    fn default_hash(&self) -> String {
        PolicyBundle::default_pack().hash()
    }

    /// Policy's view of an identity (or of Writ itself).
    pub(crate) fn person(&self, actor: &Actor) -> Result<Person> {
        Ok(match actor {
            Actor::Identity(name) => person_of(&self.identity(name)?),
            Actor::System(_) => Person {
                name: actor.to_string(),
                kind: "system".to_owned(),
                vendor: None,
                owner: None,
                groups: Vec::new(),
            },
        })
    }

    /// The facts policy decides on for a stored change, as the registry stands now.
    pub(crate) fn facts(&self, change: &Change) -> Result<ChangeFacts> {
        let mut ops = Vec::with_capacity(change.ops.len());
        for op in &change.ops {
            let subject = self.identity(&op.identity)?;
            ops.push(op_facts(op.action, &subject, &op.entitlement.to_string(), op.duration));
        }
        let on_behalf_of = change.on_behalf_of.as_ref().map(|n| self.identity(n)).transpose()?;
        let requester = self.identity(&change.requester)?;
        let kind = change.kind.as_str().to_owned();
        let facts = change_facts(kind, change.event, &requester, on_behalf_of.as_ref(), &change.refs, ops);
        let executors: std::collections::BTreeSet<String> =
            change.executions.iter().map(|e| e.executor.to_string()).collect();
        Ok(ChangeFacts {
            emergency: change.emergency.is_some(),
            window: change.window.clone(),
            now: Some(self.clock.now()),
            rollback_owner: change
                .rollback_of
                .as_ref()
                .and(change.rollback_owner.as_ref())
                .map(ToString::to_string),
            tier: change.controls.as_ref().map(|c| c.tier.clone()).unwrap_or_default(),
            approvers: change.approvals.iter().map(|a| a.approver.to_string()).collect(),
            executors: executors.into_iter().collect(),
            ..facts
        })
    }

    /// Validation of a stored change replayed under `policy`, with the registry as it is now.
    pub fn replay_validation(
        &self,
        change: &Change,
        policy: &Policy,
    ) -> Result<std::result::Result<Validation, Denial>> {
        Ok(policy.validate(&self.facts(change)?))
    }

    /// Approves under the policy in force: the change is first revalidated (recorded if policy
    /// now decides differently), then Cedar must permit the approver and the approver must fill
    /// a slot nobody else can be moved to.
    pub(crate) fn approval_events(
        &self,
        record: &ChangeRecord,
        command: Command,
        approver: &Identity,
        on_behalf_of: Option<&Identity>,
    ) -> Result<Vec<ChangeEvent>> {
        let now = self.clock.now();
        let policy = self.policy()?;
        let mut change = record.change.clone();
        let mut events = Vec::new();
        let Revalidation { event, validation, mut facts, mut people } =
            self.revalidation(&policy, &change, now)?;
        if let Some(revalidated) = event {
            change = writ_core::machine::evolve(Some(change), &revalidated)?;
            events.push(revalidated);
            people.retain(|p| change.approvals.iter().any(|a| a.approver.as_str() == p.name));
            facts.approvers = change.approvals.iter().map(|a| a.approver.to_string()).collect();
        }
        // The floor first: the core's separation-of-duties and state rules.
        let mut approved = writ_core::machine::decide(Some(&change), command, now)?;
        let principal = person_of(approver);
        let delegate = on_behalf_of.map(person_of);
        let permits = policy.authorize(Act::Approve, &principal, &facts, delegate.as_ref())?;
        people.push(principal.clone());
        let assignment = policy.assign(&validation.slots, &people).ok_or_else(|| {
            let open: Vec<&str> = validation.slots.iter().map(|s| s.label.as_str()).collect();
            Denial {
                code: "approval.not_eligible",
                rule: None,
                reason: format!(
                    "{} cannot fill any approval this change still needs (slots: {}; approved by: {})",
                    approver.name,
                    open.join(", "),
                    change.approvals.iter().map(|a| a.approver.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }
        })?;
        let slot = assignment.last().and_then(|i| validation.slots.get(*i)).map(|s| s.label.clone());
        if let Some(event) = approved.first_mut() {
            event.policy = Some(PolicyStamp { hash: policy.hash().to_owned(), rules: permits, slot });
        }
        events.append(&mut approved);
        Ok(events)
    }

    /// Before execution: policy and context are evaluated again. If policy now refuses the
    /// change, it does not execute; if it asks for more (or other) approvals than were given,
    /// the change goes back to approval, recorded, and does not execute. Otherwise Cedar must
    /// permit the executor. Returns the stamp for `change.execution_started`.
    pub(crate) fn check_execution(
        &self,
        record: &ChangeRecord,
        executor: &Actor,
    ) -> Result<Option<PolicyStamp>> {
        let change = &record.change;
        if change.origin.is_some() {
            // An expiry change only revokes what an approved change granted; it is
            // pre-authorised by that approval.
            return Ok(None);
        }
        let policy = self.policy()?;
        let now = self.clock.now();
        // A retry (failed, implementing, verification failed) stands on the approvals it had;
        // only an approved change is evaluated again.
        // A break-glass change was authorised to execute by the break-glass itself.
        let revalidate =
            change.state == writ_core::change::ChangeState::Approved && change.emergency.is_none();
        let (event, facts) = if revalidate {
            let revalidation = self.revalidation(&policy, change, now)?;
            (revalidation.event, revalidation.facts)
        } else {
            (None, self.facts(change)?)
        };
        if let Some(revalidated) = event {
            let reason = match &revalidated.body {
                writ_core::event::ChangeEventBody::Revalidated { reason, .. } => reason.clone(),
                _ => String::new(),
            };
            self.commit(Some(change), vec![revalidated], Vec::new(), crate::evidence::Captured::default())?;
            return Err(Denial {
                code: "policy.revalidation_required",
                rule: None,
                reason: format!("{} was not executed: {reason}; it needs approval again", change.id),
            }
            .into());
        }
        let permits = policy.authorize(Act::Execute, &self.person(executor)?, &facts, None)?;
        Ok(Some(PolicyStamp { hash: policy.hash().to_owned(), rules: permits, slot: None }))
    }

    /// The stamp for a review: Cedar must permit the reviewer.
    pub(crate) fn check_review(&self, change: &Change, reviewer: &Identity) -> Result<PolicyStamp> {
        let policy = self.policy()?;
        let facts = self.facts(change)?;
        let permits = policy.authorize(Act::Review, &person_of(reviewer), &facts, None)?;
        Ok(PolicyStamp { hash: policy.hash().to_owned(), rules: permits, slot: None })
    }

    /// The `change.revalidated` event that sends `change` back to approval under the policy in
    /// force, if it needs one (see [`Engine::revalidation`]).
    pub(crate) fn revalidated(&self, change: &Change) -> Result<Option<ChangeEvent>> {
        let policy = self.policy()?;
        Ok(self.revalidation(&policy, change, self.clock.now())?.event)
    }

    /// Evaluates a pending or approved change again. `None` if the policy in force asks for
    /// what the change was validated for and its approvals still fill every slot they filled;
    /// else the `change.revalidated` event that sends it back to approval. A change policy now
    /// refuses outright is refused here (it cannot be approved or executed any more).
    fn revalidation(&self, policy: &Policy, change: &Change, now: Timestamp) -> Result<Revalidation> {
        let facts = self.facts(change)?;
        let validation = policy.validate(&facts).map_err(|denial| Denial {
            reason: format!("the policy in force now refuses this change: {}", denial.reason),
            code: "policy.revalidation_refused",
            ..denial
        })?;
        let requirement =
            ApprovalRequirement { approvals: validation.approvals, validity: validation.validity };
        let controls = controls(&validation, change.created_at);
        // An approval counts only while its approver is active: a disabled or offboarded
        // approver's approval is dropped here, on every approval and execution.
        let mut people = Vec::new();
        let mut inactive = Vec::new();
        for approval in &change.approvals {
            let approver = self.identity(&approval.approver)?;
            if approver.state == writ_core::identity::IdentityState::Active {
                people.push(person_of(&approver));
            } else {
                inactive.push(format!("{} is {}", approver.name, approver.state));
            }
        }
        let same_requirement = requirement == change.requirement
            && change.controls.as_ref().is_some_and(|c| c.slots == controls.slots && c.tier == controls.tier);
        let still_assigned = policy.assign(&validation.slots, &people).is_some();
        let unchanged = |validation, facts, people| Revalidation { event: None, validation, facts, people };
        // An expiry change is pre-authorised by its origin; a change past approval is not sent
        // back (retries of its execution stand on the approvals it had).
        let open = matches!(
            change.state,
            writ_core::change::ChangeState::PendingApproval | writ_core::change::ChangeState::Approved
        );
        // A break-glass change is approved after the fact: it is never sent back.
        let post_hoc = change.emergency.is_some();
        if (same_requirement && still_assigned && inactive.is_empty())
            || change.origin.is_some()
            || !open
            || post_hoc
        {
            return Ok(unchanged(validation, facts, people));
        }
        // Keep the largest set of approvals that still fits the new slots, in approval order.
        let mut kept: Vec<Person> = Vec::new();
        for person in &people {
            kept.push(person.clone());
            if policy.assign(&validation.slots, &kept).is_none() {
                kept.pop();
            }
        }
        let kept_names: Vec<IdentityName> = change
            .approvals
            .iter()
            .filter(|a| kept.iter().any(|p| p.name == a.approver.as_str()))
            .map(|a| a.approver.clone())
            .collect();
        let mut reasons = Vec::new();
        if !same_requirement {
            let before = change.controls.as_ref().map_or_else(
                || format!("{} approval(s)", change.requirement.approvals),
                |c| format!("tier {}, slots [{}]", c.tier, c.slots.join(", ")),
            );
            reasons.push(format!(
                "policy {} now asks for tier {}, slots [{}] (was {before})",
                short(policy.hash()),
                controls.tier,
                controls.slots.join(", ")
            ));
        }
        let dropped: Vec<&str> = change
            .approvals
            .iter()
            .filter(|a| !kept_names.contains(&a.approver))
            .map(|a| a.approver.as_str())
            .collect();
        if !dropped.is_empty() {
            let why = if inactive.is_empty() { String::new() } else { format!(" ({})", inactive.join(", ")) };
            reasons.push(format!("the approval of {} no longer counts{why}", dropped.join(", ")));
        }
        if kept_names.len() >= usize::from(requirement.approvals) {
            // Only the slots were relabelled and every approval still fits: nothing to redo.
            return Ok(unchanged(validation, facts, people));
        }
        let command =
            Command::Revalidate { requirement, controls, kept: kept_names, reason: reasons.join("; ") };
        let mut events = writ_core::machine::decide(Some(change), command, now)?;
        let mut event = events.pop().ok_or(EngineError::Refused(writ_core::Refusal::CorruptHistory {
            change: change.id.to_string(),
            seq: change.seq,
            detail: "revalidation produced no event",
        }))?;
        event.policy =
            Some(PolicyStamp { hash: policy.hash().to_owned(), rules: validation.rules.clone(), slot: None });
        Ok(Revalidation { event: Some(event), validation, facts, people })
    }
}

/// Policy evaluated again on a stored change: the event that sends it back to approval, if
/// policy now decides differently, and what the evaluation read (reused by the caller).
struct Revalidation {
    event: Option<ChangeEvent>,
    validation: Validation,
    facts: ChangeFacts,
    /// The approvers of the change as it was, as policy sees them.
    people: Vec<Person>,
}

/// The requirement, controls and stamp validation gives a new change.
pub(crate) fn validated(
    policy: &Policy,
    facts: &ChangeFacts,
    now: Timestamp,
) -> Result<(ApprovalRequirement, Controls, PolicyStamp)> {
    let validation = policy.validate(facts)?;
    let requirement = ApprovalRequirement { approvals: validation.approvals, validity: validation.validity };
    let controls = controls(&validation, now);
    let stamp = PolicyStamp { hash: policy.hash().to_owned(), rules: validation.rules, slot: None };
    Ok((requirement, controls, stamp))
}

fn controls(validation: &Validation, created: Timestamp) -> Controls {
    Controls {
        tier: validation.tier.clone(),
        slots: validation.slots.iter().map(|s| s.label.clone()).collect(),
        escalate_at: validation.escalate_after.map(|d| created.plus(d)),
        escalate_to: validation.escalate_to.clone(),
        review_required: validation.review,
        window_rules: validation.window_rules.iter().map(|(rule, _)| rule.clone()).collect(),
    }
}

/// A new change as policy sees it, from its resolved operations and their identities (in the
/// same order); its kind is derived from them as the core will derive it.
pub(crate) fn requested_facts(
    event: BusinessEvent,
    requester: &Identity,
    on_behalf_of: Option<&Identity>,
    refs: &[ExternalRef],
    ops: &[writ_core::change::PlannedOp],
    subjects: &[Identity],
) -> ChangeFacts {
    let op_facts: Vec<OpFacts> = ops
        .iter()
        .zip(subjects)
        .map(|(op, subject)| op_facts(op.action, subject, &op.entitlement.to_string(), op.duration))
        .collect();
    let actions: Vec<_> = ops.iter().map(|op| (op.action, op.duration.is_some())).collect();
    let kind = writ_core::change::ChangeKind::derive(&actions, event).as_str().to_owned();
    change_facts(kind, event, requester, on_behalf_of, refs, op_facts)
}

/// A change as policy sees it before anyone approved or executed it. The vendor is the
/// requester's organisation, as the change machine records it.
pub(crate) fn change_facts(
    kind: String,
    event: BusinessEvent,
    requester: &Identity,
    on_behalf_of: Option<&Identity>,
    refs: &[ExternalRef],
    ops: Vec<OpFacts>,
) -> ChangeFacts {
    ChangeFacts {
        kind,
        event: event.as_str().to_owned(),
        requester: person_of(requester),
        on_behalf_of: on_behalf_of.map(person_of),
        vendor: requester.vendor.as_ref().map(ToString::to_string),
        has_ticket: refs.iter().any(|r| r.kind == RefKind::Ticket),
        emergency: false,
        ops,
        tier: String::new(),
        approvers: Vec::new(),
        executors: Vec::new(),
        window: None,
        now: None,
        rollback_owner: None,
    }
}

pub(crate) fn person_of(identity: &Identity) -> Person {
    Person {
        name: identity.name.to_string(),
        kind: identity.kind.as_str().to_owned(),
        vendor: identity.vendor.as_ref().map(ToString::to_string),
        owner: identity.owner.as_ref().map(ToString::to_string),
        groups: Vec::new(),
    }
}

pub(crate) fn op_facts(
    action: OpAction,
    subject: &Identity,
    entitlement: &str,
    duration: Option<writ_core::time::Duration>,
) -> OpFacts {
    OpFacts {
        action: action.as_str().to_owned(),
        identity: person_of(subject),
        owner: subject.owner.as_ref().map(ToString::to_string),
        entitlement: entitlement.to_owned(),
        duration,
    }
}

/// Compiles a stored policy and checks that its files are the ones `hash` names: files edited
/// in the table (the hash column left alone) are refused, never put in force.
pub(crate) fn compile_stored(hash: &str, files: &str) -> Result<Policy> {
    let files: std::collections::BTreeMap<String, String> = serde_json::from_str(files).map_err(|e| {
        EngineError::Policy(writ_policy::PolicyError::Io {
            path: "stored policy".into(),
            detail: e.to_string(),
        })
    })?;
    let policy = Policy::compile(PolicyBundle::from_files(files)?)?;
    if policy.hash() != hash {
        return Err(EngineError::Store(writ_store::StoreError::Corrupt(format!(
            "the stored files of policy {} hash to {}: they were changed outside Writ; run `writ ledger verify`",
            short(hash),
            short(policy.hash())
        ))));
    }
    Ok(policy)
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn poisoned() -> EngineError {
    EngineError::Store(writ_store::StoreError::Other("policy cache lock poisoned".into()))
}
