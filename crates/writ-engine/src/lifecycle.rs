//! The change lifecycle: request, approve, reject, cancel, execute, verify, review, offboarding
//! and the expiry of approvals, each one decision of the core committed with its events, and the
//! commit every state change goes through.
//!
//! Invariants (the crate's, kept here): every state change is one `ChangeStore::commit`;
//! `implementing` is committed before any connector writes and the outcome after; grants change
//! only for what the outcome says happened.

use std::collections::BTreeMap;

use writ_connector::TargetOp;
use writ_core::change::{
    BusinessEvent, Change, ChangeId, ChangeState, ExternalRef, Holding, Justification, Observation, OpAction,
    OpOutcome, PlannedOp,
};
use writ_core::event::{ChangeEvent, ChangeEventBody, Event, Phase};
use writ_core::identity::{Actor, Grant, Identity, SystemActor};
use writ_core::machine::{Command, NewChange, decide, evolve};
use writ_core::name::{EntitlementName, EntitlementRef, IdentityName, TargetName};
use writ_core::time::{Duration, Timestamp};
use writ_store::{ChangeCommit, ChangeSummary, GrantUpdate, NewEvent};

use crate::{
    ChangeRecord, Engine, EngineError, RequestInput, RequestedOp, Result, change_event, evidence, intake,
    policy,
};

/// The read-only plan of each target a change touches, as evidence JSON by target name.
type TargetPlans = serde_json::Map<String, serde_json::Value>;

impl Engine {
    // ---- the control chain ----

    /// Opens a change: resolves every name, checks every entitlement exists on its target (a
    /// read-only plan, kept as evidence), and records `requested` and `pending_approval` in one
    /// commit.
    /// Asking on behalf of someone else needs their delegation in force
    /// ([`Engine::grant_delegation`]); intake's account mapping is checked by intake.
    pub fn request(&self, input: RequestInput, random: u128) -> Result<ChangeRecord> {
        if let Some(principal) = input.on_behalf_of.as_ref().filter(|p| **p != input.requester) {
            self.actor(&input.requester)?;
            self.check_delegation(&input.requester, principal)?;
        }
        self.request_as(ChangeId::generate(self.clock.now(), random), input)
    }

    /// [`Engine::request`] under a given change ID (one reserved for an external object, see
    /// `intake`); `store.conflict` if a change with that ID exists.
    pub(crate) fn request_as(&self, id: ChangeId, input: RequestInput) -> Result<ChangeRecord> {
        self.request_as_with(id, input, None)
    }

    /// [`Engine::request_as`]; `rollback_of` for a rollback (see `rollback.rs`).
    pub(crate) fn request_as_with(
        &self,
        id: ChangeId,
        input: RequestInput,
        rollback_of: Option<writ_core::change::RollbackOf>,
    ) -> Result<ChangeRecord> {
        let now = self.clock.now();
        let (new, facts, plans) = self.requested(id, input, rollback_of)?;
        let policy = self.policy()?;
        let (requirement, controls, stamp) = policy::validated(&policy, &facts, now)?;
        let new = NewChange { requirement, controls: Some(controls), ..new };
        let mut events = decide(None, Command::Request(Box::new(new)), now)?;
        if let Some(validated) = events.get_mut(1) {
            validated.policy = Some(stamp);
        }
        let mut captured = evidence::Captured::default();
        captured.json("connector-plan", &serde_json::json!({ "targets": plans }));
        captured.attach(events.first_mut());
        self.commit(None, events, Vec::new(), captured)
    }

    /// A request as the core sees it before policy: every name resolved, every entitlement
    /// checked on its target (the plans), the core's own rules on the request passed; with the
    /// facts policy will judge it by. Records nothing.
    pub(crate) fn requested(
        &self,
        id: ChangeId,
        input: RequestInput,
        rollback_of: Option<writ_core::change::RollbackOf>,
    ) -> Result<(NewChange, writ_policy::ChangeFacts, TargetPlans)> {
        let now = self.clock.now();
        let requester = self.actor(&input.requester)?;
        let on_behalf_of = input.on_behalf_of.as_ref().map(|n| self.actor(n)).transpose()?;
        let (ops, subjects, plans) = self.resolve_ops(input.ops)?;
        let policy = self.policy()?;
        let rollback_owner =
            self.rollback_owner_for(&policy, input.rollback_owner.as_ref(), &requester, &ops, &subjects)?;
        let facts = writ_policy::ChangeFacts {
            window: input.window.clone(),
            now: Some(now),
            rollback_owner: rollback_of.as_ref().map(|_| rollback_owner.name.to_string()),
            ..policy::requested_facts(
                input.event,
                &requester,
                on_behalf_of.as_ref(),
                &input.refs,
                &ops,
                &subjects,
            )
        };
        let new = NewChange {
            id,
            requester,
            on_behalf_of,
            event: input.event,
            refs: input.refs,
            justification: input.justification,
            ops,
            window: input.window,
            rollback_owner: Some(rollback_owner),
            rollback_of,
            subjects,
            requirement: writ_core::change::ApprovalRequirement::BASELINE,
            controls: None,
        };
        // The floor first (the core's rules on the request itself), then policy.
        decide(None, Command::Request(Box::new(new.clone())), now)?;
        Ok((new, facts, plans))
    }

    /// Resolves the identity of each requested operation and checks every entitlement exists
    /// on its target: (operations, their identities, the read-only plan of each target).
    pub(crate) fn resolve_ops(
        &self,
        requested: Vec<RequestedOp>,
    ) -> Result<(Vec<PlannedOp>, Vec<Identity>, TargetPlans)> {
        let mut subjects = Vec::with_capacity(requested.len());
        let mut ops = Vec::with_capacity(requested.len());
        for op in requested {
            let subject = self.identity(&op.identity)?;
            // Access goes to active identities only; taking it away works whatever the state.
            if op.action.leaves_present() {
                subject.require_active()?;
            }
            subjects.push(subject);
            ops.push(PlannedOp {
                action: op.action,
                identity: op.identity,
                entitlement: op.entitlement,
                duration: op.duration,
            });
        }
        let mut plans = serde_json::Map::new();
        for (target, group) in group_by_target(&ops) {
            let target_ops: Vec<TargetOp> = group.iter().map(|(_, op)| target_op(op)).collect();
            let plan = self.connector_for(&target)?.plan(&target_ops)?;
            plans.insert(target.to_string(), evidence::plan_json(&plan));
        }
        Ok((ops, subjects, plans))
    }

    /// Records one approval, with the approval context as evidence. `validity` can shorten
    /// (never extend) how long it stays valid.
    pub fn approve(
        &self,
        id: &ChangeId,
        approver: &IdentityName,
        on_behalf_of: Option<&IdentityName>,
        validity: Option<Duration>,
    ) -> Result<ChangeRecord> {
        self.approve_via(id, approver, on_behalf_of, validity, None)
    }

    /// Approves as [`Engine::approve`]; `via`: the approval was given in another system's
    /// ticket and counts under the named policy rule (kept in the evidence and the stamp).
    pub(crate) fn approve_via(
        &self,
        id: &ChangeId,
        approver: &IdentityName,
        on_behalf_of: Option<&IdentityName>,
        validity: Option<Duration>,
        via: Option<&intake::Via>,
    ) -> Result<ChangeRecord> {
        let approver = self.actor(approver)?;
        let on_behalf_of = on_behalf_of.map(|n| self.actor(n)).transpose()?;
        let record = self.load(id)?;
        self.receivers_active(&record.change)?;
        let justification = self.seal(record.change.justification.as_str())?;
        let mut context = evidence::approval_context(
            &record.change,
            &approver,
            on_behalf_of.as_ref(),
            self.clock.now(),
            justification,
        );
        if let (Some(via), Some(map)) = (via, context.as_object_mut()) {
            map.insert("via".into(), via.json());
        }
        let command =
            Command::Approve { approver: approver.clone(), on_behalf_of: on_behalf_of.clone(), validity };
        let mut events = self.approval_events(&record, command, &approver, on_behalf_of.as_ref())?;
        // After the rules of the change (separation of duties first): approving in someone
        // else's name needs their delegation.
        if let (Some(principal), None) = (&on_behalf_of, via) {
            self.check_delegation(&approver.name, &principal.name)?;
        }
        if let Some(via) = via
            && let Some(stamp) = events
                .iter_mut()
                .find(|e| matches!(e.body, writ_core::event::ChangeEventBody::Approved { .. }))
                .and_then(|e| e.policy.as_mut())
        {
            stamp.rules.push(via.rule.clone());
        }
        let mut captured = evidence::Captured::default();
        captured.json("approval-context", &context);
        captured.attach(events.last_mut());
        let mut committed = self.commit(Some(&record.change), events, Vec::new(), captured)?;
        let mut history = record.events;
        history.append(&mut committed.events);
        let record = ChangeRecord { change: committed.change, events: history };
        // The approval is recorded; a finding that cannot be resolved now stays open for a
        // person (`writ finding resolve`) rather than failing what was done.
        if let Err(error) = self.settle_breakglass(&record, &approver.name) {
            tracing::warn!(target: "writ::findings", change = %record.change.id, error = %error, "finding not resolved after a late approval");
        }
        Ok(record)
    }

    pub fn reject(&self, id: &ChangeId, actor: &IdentityName, reason: String) -> Result<ChangeRecord> {
        let actor = self.actor(actor)?;
        self.transition(id, Command::Reject { actor, reason })
    }

    /// Cancels a change that has not started, for who asked for it, the person it was asked for,
    /// or an admin (see [`writ_core::authority::may_cancel`]).
    pub fn cancel(&self, id: &ChangeId, actor: &IdentityName, reason: String) -> Result<ChangeRecord> {
        let name = self.actor(actor)?.name;
        let record = self.load(id)?;
        let command = Command::Cancel { actor: Actor::Identity(name.clone()), reason };
        // The floor first (what no one may cancel), then whose change it is.
        decide(Some(&record.change), command.clone(), self.clock.now())?;
        writ_core::authority::may_cancel(&record.change, &name, &self.store.roles_of(&name)?)?;
        self.transition_from(record, command, evidence::Captured::default())
    }

    pub fn review(&self, id: &ChangeId, reviewer: &IdentityName, notes: String) -> Result<ChangeRecord> {
        let reviewer = self.actor(reviewer)?;
        let record = self.load(id)?;
        // The floor first, then policy.
        decide(
            Some(&record.change),
            Command::Review { reviewer: reviewer.clone(), notes: notes.clone() },
            self.clock.now(),
        )?;
        let stamp = self.check_review(&record.change, &reviewer)?;
        self.transition_stamped(
            record,
            Command::Review { reviewer, notes },
            evidence::Captured::default(),
            Some(stamp),
        )
    }

    /// Attaches a file to a step of a change, as evidence covered by the ledger.
    pub fn attach_evidence(
        &self,
        id: &ChangeId,
        actor: &IdentityName,
        step: Phase,
        name: String,
        media_type: String,
        bytes: Vec<u8>,
    ) -> Result<ChangeRecord> {
        if bytes.is_empty() || bytes.len() > evidence::MAX_BYTES {
            return Err(writ_core::Refusal::InvalidValue {
                field: "evidence file",
                input: format!("{} bytes", bytes.len()),
                expected: "1 byte to 16 MiB",
            }
            .into());
        }
        let actor_name = self.actor(actor)?.name;
        let record = self.load(id)?;
        let roles = self.store.roles_of(&actor_name)?;
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        writ_core::authority::may_attach_evidence(&record.change, &actor_name, &roles, step, size)?;
        let actor = Actor::Identity(actor_name);
        let mut captured = evidence::Captured::default();
        captured.bytes(&name, &media_type, bytes);
        self.transition_from(record, Command::AttachEvidence { actor, step, name }, captured)
    }

    /// Every entitlement `identity` holds, observed on every registered target (not in Writ's
    /// records). Fails if a target cannot be observed: a cleanup cannot be proven without it.
    pub fn observed_holdings(&self, identity: &IdentityName) -> Result<Vec<EntitlementRef>> {
        Ok(self.observed_holdings_of(&[identity])?.remove(identity).unwrap_or_default())
    }

    /// [`Engine::observed_holdings`] of several identities, observing each target once.
    pub fn observed_holdings_of(
        &self,
        identities: &[&IdentityName],
    ) -> Result<BTreeMap<IdentityName, Vec<EntitlementRef>>> {
        let mut held: BTreeMap<IdentityName, Vec<EntitlementRef>> =
            identities.iter().map(|i| ((*i).clone(), Vec::new())).collect();
        for target in self.store.targets()? {
            let connector = self.connectors.connect(&target)?;
            let entitlements = connector.entitlements()?;
            let observed = connector.observe(&entitlements)?;
            for entitlement in &entitlements {
                for (_, list) in held.iter_mut().filter(|(i, _)| observed.is_member(entitlement, i)) {
                    list.push(EntitlementRef {
                        target: target.name.clone(),
                        entitlement: entitlement.clone(),
                    });
                }
            }
        }
        Ok(held)
    }

    /// A leaver or decommission change about `identity` that has not yet been verified.
    fn open_cleanup(&self, identity: &IdentityName) -> Result<Option<ChangeRecord>> {
        use writ_core::change::ChangeState as S;
        for state in
            [S::Requested, S::PendingApproval, S::Approved, S::Implementing, S::Failed, S::Implemented]
        {
            for summary in self.store.changes(Some(state))? {
                let record = self.load(&summary.id)?;
                let change = &record.change;
                if matches!(change.event, BusinessEvent::Leaver | BusinessEvent::Decommission)
                    && change.ops.iter().any(|op| &op.identity == identity)
                {
                    return Ok(Some(record));
                }
            }
        }
        Ok(None)
    }

    /// Access goes to active identities only: a grant or rotation whose identity was disabled
    /// or offboarded after the request is neither approved nor executed.
    pub(crate) fn receivers_active(&self, change: &Change) -> Result<()> {
        for op in change.ops.iter().filter(|op| op.action.leaves_present()) {
            self.identity(&op.identity)?.require_active()?;
        }
        Ok(())
    }

    /// Offboards `identity`: first it stops acting in Writ (state `offboarded`: tokens revoked,
    /// approvals withdrawn, owned NHIs flagged, see [`Engine::set_identity_state`]), then the
    /// change is opened that removes everything it holds: what every target shows it holding,
    /// and every grant Writ recorded. A human leaves (`leaver`); a non-human identity is
    /// decommissioned. Verification of such a change looks at every target again. With nothing
    /// held anywhere, no change is opened and the identity is offboarded all the same.
    pub fn offboard(
        &self,
        requester: IdentityName,
        identity: &IdentityName,
        justification: Justification,
        refs: Vec<ExternalRef>,
        random: u128,
    ) -> Result<Offboarding> {
        let subject = self.identity(identity)?;
        self.actor(&requester)?;
        let mut standing = self.move_identity(
            Actor::Identity(requester.clone()),
            identity,
            writ_core::identity::IdentityState::Offboarded,
            justification.as_str().to_owned(),
        )?;
        let mut held = self.observed_holdings(identity)?;
        held.extend(self.store.grants_of(identity)?.into_iter().map(|g| g.entitlement));
        held.sort();
        held.dedup();
        let ops: Vec<RequestedOp> = held
            .into_iter()
            .map(|entitlement| RequestedOp {
                action: OpAction::Revoke,
                identity: identity.clone(),
                entitlement,
                duration: None,
            })
            .collect();
        let event = if subject.kind.is_nhi() { BusinessEvent::Decommission } else { BusinessEvent::Leaver };
        // Offboarding again while its cleanup is still under way answers that cleanup.
        let change = if ops.is_empty() {
            None
        } else if let Some(open) = self.open_cleanup(identity)? {
            Some(open)
        } else {
            let input = RequestInput {
                requester,
                on_behalf_of: None,
                ops,
                justification,
                refs,
                event,
                window: None,
                rollback_owner: None,
            };
            Some(self.request(input, random)?)
        };
        standing.flagged =
            self.flag_owned(&standing.identity, change.as_ref().map(|r| r.change.id.clone()))?;
        Ok(Offboarding { standing, change })
    }

    /// Access the identities of a cleanup change (leaver, decommission) still hold anywhere,
    /// beyond what the change itself leaves in place. Empty for other changes.
    pub(crate) fn residual(&self, change: &Change) -> Result<Vec<Holding>> {
        if !matches!(change.event, BusinessEvent::Leaver | BusinessEvent::Decommission) {
            return Ok(Vec::new());
        }
        let mut identities: Vec<&IdentityName> = change.ops.iter().map(|op| &op.identity).collect();
        identities.sort();
        identities.dedup();
        let mut residual = Vec::new();
        for (identity, held) in self.observed_holdings_of(&identities)? {
            for entitlement in held {
                let kept = change.ops.iter().any(|op| {
                    op.identity == identity && op.entitlement == entitlement && op.action.leaves_present()
                });
                if !kept {
                    residual.push(Holding { identity: identity.clone(), entitlement });
                }
            }
        }
        Ok(residual)
    }

    /// For each rotation of a time-bound grant, the time the grant has left: the new credential
    /// must not outlive the grant it replaces.
    pub(crate) fn grant_ends(&self, change: &Change) -> Result<BTreeMap<usize, Duration>> {
        let now = self.clock.now();
        let mut ends = BTreeMap::new();
        for (index, op) in change.ops.iter().enumerate().filter(|(_, op)| op.action == OpAction::Rotate) {
            let end = self
                .store
                .grants_of(&op.identity)?
                .into_iter()
                .find(|g| g.entitlement == op.entitlement)
                .and_then(|g| g.expires_at);
            if let Some(end) = end {
                // A grant already past its end gets the shortest credential, not an unbounded one.
                let left = Duration::from_millis((end.as_millis() - now.as_millis()).max(1000))?;
                ends.insert(index, left);
            }
        }
        Ok(ends)
    }

    /// Observes every target the change touched and records `verified` only if what is there
    /// equals what was approved; the observed state is kept as evidence.
    pub fn verify(&self, id: &ChangeId) -> Result<ChangeRecord> {
        let record = self.load(id)?;
        let change = &record.change;
        if !matches!(change.state, ChangeState::Implemented | ChangeState::VerificationFailed) {
            // Let the core produce the precise refusal without touching targets.
            decide(
                Some(change),
                Command::RecordVerification {
                    verifier: Actor::System(SystemActor::Engine),
                    observations: Vec::new(),
                    residual: Vec::new(),
                },
                self.clock.now(),
            )?;
        }
        let mut observations = Vec::with_capacity(change.ops.len());
        let mut observed_json = serde_json::Map::new();
        for (target, group) in group_by_target(&change.ops) {
            let entitlements: Vec<EntitlementName> =
                group.iter().map(|(_, op)| op.entitlement.entitlement.clone()).collect();
            let observed = self.connector_for(&target)?.observe(&entitlements)?;
            observed_json.insert(target.to_string(), evidence::observed_json(&observed));
            for (index, op) in group {
                let (entitlement, identity) = (&op.entitlement.entitlement, &op.identity);
                let present = match op.action {
                    OpAction::Rotate => observed.rotated_by(entitlement, identity, &change.id),
                    OpAction::Grant | OpAction::Revoke => observed.is_member(entitlement, identity),
                };
                observations.push(Observation { op: index, present });
            }
        }
        observations.sort_by_key(|o| o.op);
        let residual = self.residual(change)?;
        let held: Vec<String> =
            residual.iter().map(|h| format!("{} {}", h.identity, h.entitlement)).collect();
        let command = Command::RecordVerification {
            verifier: Actor::System(SystemActor::Engine),
            observations,
            residual,
        };
        let mut events = decide(Some(change), command, self.clock.now())?;
        // An expiry change ends the grants it revokes only once their absence is observed, so
        // the scheduler keeps finding them until then.
        let verified = events.iter().any(|e| matches!(e.body, ChangeEventBody::Verified { .. }));
        let grants = if change.origin.is_some() && verified {
            change
                .ops
                .iter()
                .map(|op| GrantUpdate::Remove {
                    identity: op.identity.clone(),
                    entitlement: op.entitlement.clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut captured = evidence::Captured::default();
        captured.json("observed-after", &serde_json::json!({ "targets": observed_json, "residual": held }));
        captured.attach(events.first_mut());
        let mut committed = self.commit(Some(change), events, grants, captured)?;
        if verified && change.refs.iter().any(|r| r.kind == writ_core::change::RefKind::Finding) {
            // The fix is in effect; a failure here leaves the finding open for the next
            // reconciliation, which no longer sees the problem, to resolve.
            if let Err(error) = self.settle_remediations(&change.id) {
                tracing::warn!(target: "writ::findings", change = %change.id, %error, "remediated findings not resolved yet");
            }
        }
        let mut history = record.events;
        history.append(&mut committed.events);
        Ok(ChangeRecord { change: committed.change, events: history })
    }

    /// Expires every approved change whose approval validity has ended. Returns their IDs.
    pub fn expire_due(&self) -> Result<Vec<ChangeId>> {
        let mut expired = Vec::new();
        for summary in self.store.changes(Some(ChangeState::Approved))? {
            match self.transition(&summary.id, Command::Expire) {
                Ok(_) => expired.push(summary.id),
                Err(EngineError::Refused(writ_core::Refusal::NotDue { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(expired)
    }

    /// The evidence blob with this digest.
    pub fn evidence(&self, sha256: &[u8; 32]) -> Result<writ_store::EvidenceBlob> {
        self.store.evidence(sha256)?.ok_or_else(|| EngineError::NotFound {
            what: "evidence",
            name: sha256.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }

    // ---- reading ----

    /// Rebuilds a change from its stored events.
    pub fn load(&self, id: &ChangeId) -> Result<ChangeRecord> {
        let rows = self.store.change_events(id)?;
        if rows.is_empty() {
            return Err(EngineError::NotFound { what: "change", name: id.to_string() });
        }
        // One read for every sealed value of the change (a first decode only collects their
        // HMACs); a store error fails the load instead of showing values as erased.
        let wanted = std::cell::RefCell::new(Vec::new());
        let collect = |hmac: &str| {
            wanted.borrow_mut().push(hmac.to_owned());
            None
        };
        for row in &rows {
            writ_ledger::decode(&row.bytes, &collect)?;
        }
        let clear = self.store.sensitive_many(&wanted.into_inner())?;
        // Kept text is shown only if it is what the ledger sealed.
        let key = self.hmac.as_deref();
        let open = |seal: &str| {
            clear.get(seal).map(|value| match key {
                Some(key) if key.check(seal, value) => value.clone(),
                Some(_) => writ_ledger::sensitive::TAMPERED.to_owned(),
                None => writ_ledger::sensitive::UNCHECKED.to_owned(),
            })
        };
        let mut change = None;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let event = match writ_ledger::decode(&row.bytes, &open)? {
                Event::Change(event) => event,
                Event::Registry(_) => {
                    return Err(writ_ledger::RecordError::Malformed(format!(
                        "event {} is not a change event",
                        row.index
                    ))
                    .into());
                }
            };
            change = Some(evolve(change, &event)?);
            events.push((row.index, event));
        }
        let change = change.ok_or_else(|| EngineError::NotFound { what: "change", name: id.to_string() })?;
        Ok(ChangeRecord { change, events })
    }

    pub fn changes(&self, state: Option<ChangeState>) -> Result<Vec<ChangeSummary>> {
        Ok(self.store.changes(state)?)
    }

    pub fn grants_of(&self, identity: &IdentityName) -> Result<Vec<Grant>> {
        self.identity(identity)?;
        Ok(self.store.grants_of(identity)?)
    }

    // ---- internals ----

    pub(crate) fn transition(&self, id: &ChangeId, command: Command) -> Result<ChangeRecord> {
        let record = self.load(id)?;
        self.transition_from(record, command, evidence::Captured::default())
    }

    /// Decides `command` on an already loaded record and commits the result, attaching
    /// `captured` evidence to the first new event.
    pub(crate) fn transition_from(
        &self,
        record: ChangeRecord,
        command: Command,
        captured: evidence::Captured,
    ) -> Result<ChangeRecord> {
        self.transition_stamped(record, command, captured, None)
    }

    /// As [`Engine::transition_from`], with the policy decision behind the step.
    pub(crate) fn transition_stamped(
        &self,
        record: ChangeRecord,
        command: Command,
        captured: evidence::Captured,
        stamp: Option<writ_core::event::PolicyStamp>,
    ) -> Result<ChangeRecord> {
        let mut events = decide(Some(&record.change), command, self.clock.now())?;
        if let Some(first) = events.first_mut() {
            first.policy = stamp;
        }
        captured.attach(events.first_mut());
        let mut committed = self.commit(Some(&record.change), events, Vec::new(), captured)?;
        let mut history = record.events;
        history.append(&mut committed.events);
        Ok(ChangeRecord { change: committed.change, events: history })
    }

    /// Folds `events` into `before` and commits them with the new summary, grant updates and
    /// evidence blobs. Returns the new state and only the newly appended events.
    pub(crate) fn commit(
        &self,
        before: Option<&Change>,
        events: Vec<ChangeEvent>,
        grants: Vec<GrantUpdate>,
        captured: evidence::Captured,
    ) -> Result<ChangeRecord> {
        self.commit_with(before, events, grants, captured, None)
    }

    /// [`Engine::commit`], with a lease step (an execution claim) in the same transaction.
    pub(crate) fn commit_with(
        &self,
        before: Option<&Change>,
        events: Vec<ChangeEvent>,
        grants: Vec<GrantUpdate>,
        captured: evidence::Captured,
        claim: Option<writ_store::ClaimOp>,
    ) -> Result<ChangeRecord> {
        self.commit_full(before, events, grants, captured, claim, None)
    }

    /// [`Engine::commit_with`], erasing what a `change.erased` event names in the same
    /// transaction (see `retention.rs`).
    pub(crate) fn commit_full(
        &self,
        before: Option<&Change>,
        events: Vec<ChangeEvent>,
        grants: Vec<GrantUpdate>,
        captured: evidence::Captured,
        claim: Option<writ_store::ClaimOp>,
        erase: Option<writ_store::Erasure>,
    ) -> Result<ChangeRecord> {
        let mut change = before.cloned();
        // Each event's notices, from the change as that event leaves it (the outbox).
        let mut notices = Vec::with_capacity(events.len());
        for event in &events {
            let after = evolve(change, event)?;
            notices.push(self.change_notices(&after, event)?);
            change = Some(after);
        }
        let Some(change) = change else {
            return Err(writ_core::Refusal::CorruptHistory {
                change: String::new(),
                seq: 0,
                detail: "nothing to commit",
            }
            .into());
        };
        let key = self.hmac()?;
        let mut sensitive = Vec::new();
        let new_events: Vec<NewEvent> = events
            .iter()
            .zip(notices)
            .map(|(event, notices)| {
                let (new_event, mut sealed) = change_event(event, key);
                sensitive.append(&mut sealed);
                NewEvent { notices, ..new_event }
            })
            .collect();
        let commit = ChangeCommit {
            summary: summary_of(&change, events.last().map_or(change.created_at, |e| e.at)),
            expected_seq: before.map_or(0, |c| c.seq),
            events: new_events,
            grants,
            evidence: captured.into_blobs(),
            sensitive,
            due_at: change.next_deadline(),
            claim,
            erase,
        };
        let indices = self.store.commit(commit)?;
        tracing::info!(target: "writ::engine", change = %change.id, state = %change.state, "committed");
        // A rollback's steps are noted on the change it undoes, after its own events.
        if change.rollback_of.is_some()
            && let Err(error) = self.sync_rollback(&change)
        {
            tracing::warn!(target: "writ::engine", change = %change.id, %error, "rollback not noted on the change it undoes yet");
        }
        Ok(ChangeRecord { change, events: indices.into_iter().zip(events).collect() })
    }
}

/// A change's summary row as of its last event at `updated_at`: what a commit stores, and what
/// the projection check expects to find.
pub(crate) fn summary_of(change: &Change, updated_at: Timestamp) -> ChangeSummary {
    ChangeSummary {
        id: change.id.clone(),
        kind: change.kind,
        state: change.state,
        requester: change.requester.clone(),
        created_at: change.created_at,
        updated_at,
    }
}

/// What offboarding did: the identity's new standing, and the change that removes what it
/// held (`None` if it held nothing anywhere).
#[derive(Clone, Debug)]
pub struct Offboarding {
    pub standing: crate::standing::Standing,
    pub change: Option<ChangeRecord>,
}

pub(crate) fn group_by_target(ops: &[PlannedOp]) -> BTreeMap<TargetName, Vec<(usize, &PlannedOp)>> {
    let mut groups: BTreeMap<TargetName, Vec<(usize, &PlannedOp)>> = BTreeMap::new();
    for (index, op) in ops.iter().enumerate() {
        groups.entry(op.entitlement.target.clone()).or_default().push((index, op));
    }
    groups
}

pub(crate) fn target_op(op: &PlannedOp) -> TargetOp {
    TargetOp {
        action: op.action,
        entitlement: op.entitlement.entitlement.clone(),
        member: op.identity.clone(),
        ttl: op.duration,
    }
}

pub(crate) fn summary_line(change: &Change, ops: &[(usize, &PlannedOp)]) -> String {
    let parts: Vec<String> = ops
        .iter()
        .map(|(_, op)| match op.action {
            OpAction::Grant => format!("grant {} to {}", op.entitlement.entitlement, op.identity),
            OpAction::Revoke => {
                format!("revoke {} from {}", op.entitlement.entitlement, op.identity)
            }
            OpAction::Rotate => format!("rotate {} of {}", op.entitlement.entitlement, op.identity),
        })
        .collect();
    format!("writ {}: {}", change.id, parts.join(", "))
}

/// Grants table updates for what an execution actually did on the targets.
pub(crate) fn grant_updates(change: &Change, outcomes: &[OpOutcome], now: Timestamp) -> Vec<GrantUpdate> {
    outcomes
        .iter()
        .filter_map(|outcome| {
            let op = change.ops.get(outcome.op)?;
            match (op.action, outcome.before, outcome.after) {
                // A rotation records a grant only for a holder who had none (it delivered the
                // first credential); an existing grant keeps its origin and expiry.
                (OpAction::Grant, _, true) | (OpAction::Rotate, false, true) => {
                    Some(GrantUpdate::Upsert(Grant {
                        identity: op.identity.clone(),
                        entitlement: op.entitlement.clone(),
                        change: change.id.clone(),
                        granted_at: now,
                        expires_at: op.duration.map(|d| now.plus(d)),
                    }))
                }
                // An expiry change removes its grants at verification instead.
                (OpAction::Revoke, _, false) if change.origin.is_none() => Some(GrantUpdate::Remove {
                    identity: op.identity.clone(),
                    entitlement: op.entitlement.clone(),
                }),
                _ => None,
            }
        })
        .collect()
}
