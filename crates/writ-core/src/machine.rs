//! The change state machine as two pure functions: [`decide`] turns (change, command, now)
//! into events or a [`Refusal`]; [`evolve`] folds one event into the change. A refusal emits
//! nothing, so it changes nothing.
//!
//! ```text
//! requested → pending_approval → approved → implementing → implemented → verified → reviewed
//!                  │    │            │  ▲        │               │  ▲
//!                  │    └→ rejected  │  └─ failed ┘        verification_failed → reviewed
//!                  └→ cancelled      └→ expired | cancelled
//! ```

use crate::change::{
    Approval, ApprovalRequirement, BusinessEvent, Change, ChangeId, ChangeKind, ChangeState, Controls,
    Decision, Execution, ExternalRef, Justification, Observation, OpAction, OpOutcome, PlannedOp,
    Verification,
};
use crate::error::Refusal;
use crate::event::{ChangeEvent, ChangeEventBody};
use crate::identity::{Actor, Identity, IdentityKind, SystemActor};
use crate::name::{IdentityName, OrgName};
use crate::time::{Duration, Timestamp};
use crate::verify::mismatches;

/// Most operations one change may carry.
pub const MAX_OPS: usize = 100;
/// Longest reason, note or error text kept in a change.
pub const MAX_TEXT: usize = 2000;

/// A new change as asked for, with the identities it names already resolved by the caller.
#[derive(Clone, Debug)]
pub struct NewChange {
    pub id: ChangeId,
    pub requester: Identity,
    pub on_behalf_of: Option<Identity>,
    pub event: BusinessEvent,
    pub refs: Vec<ExternalRef>,
    pub justification: Justification,
    pub ops: Vec<PlannedOp>,
    /// The maintenance window it must be carried out in, if any.
    pub window: Option<crate::change::Window>,
    /// The person who answers for undoing it (a human); required when it grants or rotates.
    pub rollback_owner: Option<Identity>,
    /// For a rollback: the change it undoes.
    pub rollback_of: Option<crate::change::RollbackOf>,
    /// The identity named by each op, in the same order as `ops`.
    pub subjects: Vec<Identity>,
    pub requirement: ApprovalRequirement,
    /// What policy decided beyond the count (tier, slots, escalation, review).
    pub controls: Option<Controls>,
}

/// A change Writ opens itself to end time-bound access that `origin` granted.
#[derive(Clone, Debug)]
pub struct ExpiryChange {
    pub id: ChangeId,
    pub origin: ChangeId,
    /// The origin's requester.
    pub requester: IdentityName,
    pub due_at: Timestamp,
    /// Revocations of what expired; no durations.
    pub ops: Vec<PlannedOp>,
}

/// Something a person or Writ asks of a change.
#[derive(Clone, Debug)]
pub enum Command {
    Request(Box<NewChange>),
    /// Opens a break-glass change: authorised to execute at once (policy allowed the
    /// requester to break glass), approved after the fact by someone else by `approval_due`.
    /// Only short grants qualify: every operation grants with a duration.
    BreakGlass {
        new: Box<NewChange>,
        approval_due: Timestamp,
    },
    /// Opens a change that ends time-bound access; only Writ's scheduler issues it.
    OpenExpiry(Box<ExpiryChange>),
    /// Marks a change as needing a person: Writ stopped trying on its own within its bound.
    RaiseAlert {
        reason: String,
    },
    /// `validity` may shorten, never lengthen, how long the approval stays valid.
    Approve {
        approver: Identity,
        on_behalf_of: Option<Identity>,
        validity: Option<Duration>,
    },
    Reject {
        actor: Identity,
        reason: String,
    },
    Cancel {
        actor: Actor,
        reason: String,
    },
    StartExecution {
        executor: Actor,
    },
    RecordImplementation {
        outcomes: Vec<OpOutcome>,
        error: Option<String>,
    },
    /// Records the outcome of the attempt in progress, which was cut off: what a later attempt
    /// observed (see `ChangeEventBody::AttemptRecovered`). `error` says what is still missing.
    RecoverAttempt {
        recoverer: Actor,
        outcomes: Vec<OpOutcome>,
        error: Option<String>,
    },
    /// `residual`: for a cleanup change, access its identities still hold on any target.
    RecordVerification {
        verifier: Actor,
        observations: Vec<Observation>,
        residual: Vec<crate::change::Holding>,
    },
    Review {
        reviewer: Identity,
        notes: String,
    },
    /// Attach evidence to a step; allowed in every state, it changes no state.
    AttachEvidence {
        actor: Actor,
        step: crate::event::Phase,
        name: String,
    },
    Expire,
    /// Policy, evaluated again, asks for a different requirement: approval starts over with
    /// the approvals in `kept`. Only the engine issues it.
    Revalidate {
        requirement: ApprovalRequirement,
        controls: Controls,
        kept: Vec<IdentityName>,
        reason: String,
    },
    /// A pending approval passed its escalation deadline. Only the scheduler issues it.
    /// Attach a delivery from another system; `late` when it is older than a version of its
    /// object already seen.
    Link {
        delivery: Box<crate::intake::Delivery>,
        late: bool,
    },
    Escalate {
        to: String,
        people: Vec<IdentityName>,
    },
    /// A comment by `author`; `source` for one from another system (its id there is taken once).
    /// Allowed in every state.
    Comment {
        author: Actor,
        text: String,
        source: Option<crate::change::CommentSource>,
    },
    /// Place (`held`) or lift a legal hold, with the reason.
    Hold {
        actor: Identity,
        held: bool,
        reason: String,
    },
    /// Record what retention erases of a closed change (refused under legal hold). Only the
    /// engine issues it, with the erasure in the same commit.
    Erase {
        class: crate::change::RetentionClass,
        rule: String,
        values: u32,
        blobs: Vec<[u8; 32]>,
    },
    /// Note that `rollback`, which undoes this change, reached `step`. Only the engine issues it.
    NoteRollback {
        rollback: ChangeId,
        step: crate::change::RollbackStep,
    },
    /// Warn that access this change granted ends soon. Only the scheduler issues it.
    WarnExpiry {
        identity: IdentityName,
        entitlement: crate::name::EntitlementRef,
        ends_at: Timestamp,
        before: crate::time::Duration,
    },
}

impl Command {
    fn action(&self) -> &'static str {
        match self {
            Command::Request(_) => "request",
            Command::BreakGlass { .. } => "break glass",
            Command::OpenExpiry(_) => "open expiry",
            Command::RaiseAlert { .. } => "raise alert",
            Command::Approve { .. } => "approve",
            Command::Reject { .. } => "reject",
            Command::Cancel { .. } => "cancel",
            Command::StartExecution { .. } => "execute",
            Command::RecordImplementation { .. } => "record implementation",
            Command::RecoverAttempt { .. } => "recover attempt",
            Command::RecordVerification { .. } => "verify",
            Command::Review { .. } => "review",
            Command::AttachEvidence { .. } => "attach evidence",
            Command::Expire => "expire",
            Command::Revalidate { .. } => "revalidate",
            Command::Escalate { .. } => "escalate",
            Command::Link { .. } => "link",
            Command::WarnExpiry { .. } => "warn of expiry",
            Command::Comment { .. } => "comment on",
            Command::NoteRollback { .. } => "note a rollback of",
            Command::Hold { held: true, .. } => "place a legal hold on",
            Command::Hold { held: false, .. } => "lift the legal hold on",
            Command::Erase { .. } => "erase",
        }
    }
}

/// Decides what a command means for a change. `change` is `None` only for `Request`.
pub fn decide(
    change: Option<&Change>,
    command: Command,
    now: Timestamp,
) -> Result<Vec<ChangeEvent>, Refusal> {
    let change = match (change, command) {
        (None, Command::Request(new)) => return decide_request(*new, now),
        (None, Command::BreakGlass { new, approval_due }) => {
            return decide_breakglass(*new, approval_due, now);
        }
        (None, Command::OpenExpiry(expiry)) => return decide_expiry(*expiry, now),
        (Some(change), Command::Request(_) | Command::OpenExpiry(_) | Command::BreakGlass { .. }) => {
            return Err(invalid(change, "request"));
        }
        (None, _) => {
            return Err(Refusal::CorruptHistory {
                change: String::new(),
                seq: 0,
                detail: "command for a change that does not exist",
            });
        }
        (Some(change), command) => (change, command),
    };
    let (change, command) = change;
    let action = command.action();
    let event = |actor: Actor, on_behalf_of: Option<IdentityName>, body| ChangeEvent {
        change: change.id.clone(),
        seq: change.seq,
        at: now,
        actor,
        on_behalf_of,
        body,
        evidence: Vec::new(),
        policy: None,
    };
    if matches!(command, Command::Reject { .. } | Command::Cancel { .. })
        && let Some(origin) = &change.origin
    {
        return Err(Refusal::ExpiryIrrevocable { change: change.id.clone(), origin: origin.clone() });
    }
    match command {
        Command::Request(_) | Command::OpenExpiry(_) | Command::BreakGlass { .. } => {
            Err(invalid(change, action))
        }
        Command::RaiseAlert { reason } => {
            // A verified change needs no one to act, unless it is a break-glass change whose
            // post-hoc approval is missing.
            let settled = change.state == ChangeState::Verified && !change.awaits_post_hoc_approval();
            if change.state.is_terminal() || settled || change.alert.is_some() {
                return Err(invalid(change, action));
            }
            let reason = text(reason, "alert reason")?;
            Ok(vec![event(
                Actor::System(SystemActor::Scheduler),
                None,
                ChangeEventBody::AlertRaised { reason },
            )])
        }
        Command::Approve { approver, on_behalf_of, validity } => {
            if change.emergency.is_some() {
                // Post-hoc: approves what was already done; it changes no state.
                if !change.awaits_post_hoc_approval() || change.state == ChangeState::Requested {
                    return Err(invalid(change, action));
                }
            } else {
                require_state(change, &[ChangeState::PendingApproval], action)?;
            }
            check_approver(change, &approver, on_behalf_of.as_ref())?;
            let validity =
                validity.map_or(change.requirement.validity, |v| v.min(change.requirement.validity));
            // A post-hoc approval approves what is done; it authorises nothing further.
            let expires_at = if change.emergency.is_some() { now } else { now.plus(validity) };
            Ok(vec![event(
                Actor::Identity(approver.name),
                on_behalf_of.map(|o| o.name),
                ChangeEventBody::Approved { expires_at },
            )])
        }
        Command::Reject { actor, reason } => {
            require_state(change, &[ChangeState::PendingApproval, ChangeState::Approved], action)?;
            require_human(&actor, "reject")?;
            if change.interested_parties().contains(&&actor.name) {
                return Err(Refusal::SelfRejection { change: change.id.clone(), actor: actor.name });
            }
            let reason = text(reason, "reason")?;
            Ok(vec![event(Actor::Identity(actor.name), None, ChangeEventBody::Rejected { reason })])
        }
        Command::Cancel { actor, reason } => {
            require_state(
                change,
                &[
                    ChangeState::Requested,
                    ChangeState::PendingApproval,
                    ChangeState::Approved,
                    ChangeState::Failed,
                ],
                action,
            )?;
            let reason = text(reason, "reason")?;
            Ok(vec![event(actor, None, ChangeEventBody::Cancelled { reason })])
        }
        Command::StartExecution { executor } => {
            // One attempt at a time: an attempt in progress (`implementing`) either finishes or,
            // cut off, has its outcome recovered (`RecoverAttempt`) before another starts.
            require_state(
                change,
                &[ChangeState::Approved, ChangeState::Failed, ChangeState::VerificationFailed],
                action,
            )?;
            // A break-glass change is authorised by the break-glass itself, for the person who
            // broke glass to carry out; its approvals come after.
            let breaks_glass = change.emergency.is_some() && executor.identity() == Some(&change.requester);
            if change.emergency.is_none() {
                check_approvals_current(change, now)?;
                // A break-glass change ignores maintenance windows (its record says so).
                if let Some(window) = change.window.as_ref().filter(|w| !w.contains(now)) {
                    return Err(Refusal::OutsideWindow {
                        change: change.id.clone(),
                        window: (window.start, window.end),
                        zone: window.zone.clone(),
                        now,
                    });
                }
            }
            // Independence is from the request and its approval; the executor of an earlier
            // attempt may retry it (policy can ask for someone else after a failure).
            if let Actor::Identity(name) = &executor
                && let Some(role) = role_of(change, name).filter(|role| *role != "executor")
                && !breaks_glass
            {
                return Err(Refusal::ExecutorNotIndependent {
                    change: change.id.clone(),
                    executor: name.clone(),
                    role,
                });
            }
            let attempt = u32::try_from(change.executions.len()).unwrap_or(u32::MAX).saturating_add(1);
            Ok(vec![event(
                executor,
                None,
                ChangeEventBody::ExecutionStarted { attempt, claimed_until: None },
            )])
        }
        Command::RecordImplementation { outcomes, error } => {
            require_state(change, &[ChangeState::Implementing], action)?;
            let executor =
                change.last_execution().map(|e| e.executor.clone()).ok_or_else(|| invalid(change, action))?;
            check_outcomes(change, &outcomes, error.is_none())?;
            let body = match error {
                None => ChangeEventBody::Implemented { outcomes },
                Some(error) => ChangeEventBody::ExecutionFailed { error: truncate(&error), outcomes },
            };
            Ok(vec![event(executor, None, body)])
        }
        Command::RecoverAttempt { recoverer, outcomes, error } => {
            require_state(change, &[ChangeState::Implementing], action)?;
            let attempt = u32::try_from(change.executions.len()).unwrap_or(u32::MAX);
            check_outcomes(change, &outcomes, error.is_none())?;
            let error = error.map(|e| truncate(&e));
            Ok(vec![event(recoverer, None, ChangeEventBody::AttemptRecovered { attempt, outcomes, error })])
        }
        Command::RecordVerification { verifier, observations, residual } => {
            require_state(change, &[ChangeState::Implemented, ChangeState::VerificationFailed], action)?;
            let bad = mismatches(change, &observations)?;
            let body = if bad.is_empty() && residual.is_empty() {
                ChangeEventBody::Verified { observations }
            } else {
                ChangeEventBody::VerificationFailed { observations, mismatches: bad, residual }
            };
            Ok(vec![event(verifier, None, body)])
        }
        Command::Review { reviewer, notes } => {
            require_state(change, &[ChangeState::Verified, ChangeState::VerificationFailed], action)?;
            require_human(&reviewer, "review")?;
            if change.awaits_post_hoc_approval() {
                return Err(Refusal::PostHocApprovalMissing {
                    change: change.id.clone(),
                    have: change.approvals.len(),
                    need: usize::from(change.requirement.approvals),
                });
            }
            if let Some(role) = role_of(change, &reviewer.name) {
                return Err(Refusal::ReviewerNotIndependent {
                    change: change.id.clone(),
                    reviewer: reviewer.name,
                    role,
                });
            }
            let notes = text(notes, "review notes")?;
            Ok(vec![event(Actor::Identity(reviewer.name), None, ChangeEventBody::Reviewed { notes })])
        }
        Command::WarnExpiry { identity, entitlement, ends_at, before } => {
            let granted = change.ops.iter().any(|op| {
                op.action == OpAction::Grant
                    && op.duration.is_some()
                    && op.identity == identity
                    && op.entitlement == entitlement
            });
            let warned = change.warnings.iter().any(|w| {
                w.identity == identity
                    && w.entitlement == entitlement
                    && w.ends_at == ends_at
                    && w.before == before
            });
            if !granted || warned {
                return Err(invalid(change, action));
            }
            Ok(vec![event(
                Actor::System(SystemActor::Scheduler),
                None,
                ChangeEventBody::ExpiryWarned { identity, entitlement, ends_at, before },
            )])
        }
        Command::Link { delivery, late } => {
            if change
                .links
                .iter()
                .any(|l| l.delivery.source == delivery.source && l.delivery.id == delivery.id)
            {
                return Err(Refusal::AlreadyLinked {
                    change: change.id.clone(),
                    sender: delivery.source.to_string(),
                    delivery: delivery.id.clone(),
                });
            }
            Ok(vec![event(
                Actor::System(SystemActor::Intake),
                None,
                ChangeEventBody::Linked { delivery, late },
            )])
        }
        Command::Comment { author, text: body, source } => {
            let body = text(body, "comment")?;
            if let Some(source) = &source
                && change.comments.iter().any(|c| {
                    c.source.as_ref().is_some_and(|s| s.source == source.source && s.id == source.id)
                })
            {
                return Err(Refusal::CommentRefused {
                    change: change.id.clone(),
                    code: "comment.duplicate",
                    reason: format!("comment {} from {} is already attached", source.id, source.source),
                });
            }
            if change.comments.len() >= crate::change::MAX_COMMENTS {
                return Err(Refusal::CommentRefused {
                    change: change.id.clone(),
                    code: "comment.quota_exceeded",
                    reason: format!("a change carries at most {} comments", crate::change::MAX_COMMENTS),
                });
            }
            let late = source.as_ref().is_some_and(|s| {
                change.comments.iter().any(|c| {
                    c.source.as_ref().is_some_and(|o| o.source == s.source && o.written_at > s.written_at)
                })
            });
            let step = crate::authority::reached(change.state).unwrap_or(crate::event::Phase::Review);
            Ok(vec![event(author, None, ChangeEventBody::Commented { step, text: body, source, late })])
        }
        Command::Hold { actor, held, reason } => {
            require_human(&actor, "place or lift a legal hold")?;
            if change.legal_hold.is_some() == held {
                return Err(invalid(change, action));
            }
            let reason = text(reason, "reason")?;
            Ok(vec![event(Actor::Identity(actor.name), None, ChangeEventBody::LegalHold { held, reason })])
        }
        Command::Erase { class, rule, values, blobs } => {
            if change.legal_hold.is_some() {
                return Err(Refusal::RetentionRefused {
                    change: change.id.clone(),
                    code: "retention.legal_hold",
                    reason: "it is under legal hold: nothing of it is erased until the hold is lifted".into(),
                });
            }
            if !change.state.is_terminal() || (values == 0 && blobs.is_empty()) {
                return Err(invalid(change, action));
            }
            let rule = line(rule, "retention rule")?;
            Ok(vec![event(
                Actor::System(SystemActor::Scheduler),
                None,
                ChangeEventBody::Erased { class, rule, values, blobs },
            )])
        }
        Command::NoteRollback { rollback, step } => {
            if change.rollbacks.iter().any(|n| n.rollback == rollback && n.step == step) {
                return Err(invalid(change, action));
            }
            Ok(vec![event(
                Actor::System(SystemActor::Engine),
                None,
                ChangeEventBody::RollbackNoted { rollback, step },
            )])
        }
        Command::AttachEvidence { actor, step, name } => {
            let name = line(name, "evidence name")?;
            let late = crate::authority::reached(change.state).is_some_and(|furthest| step < furthest);
            Ok(vec![event(actor, None, ChangeEventBody::EvidenceAttached { step, name, late })])
        }
        Command::Revalidate { requirement, controls, kept, reason } => {
            require_state(change, &[ChangeState::PendingApproval, ChangeState::Approved], action)?;
            if kept.iter().any(|k| !change.approvals.iter().any(|a| &a.approver == k)) {
                return Err(Refusal::InconsistentReport {
                    change: change.id.clone(),
                    detail: "a kept approval that was never given".to_owned(),
                });
            }
            if kept.len() >= usize::from(requirement.approvals) {
                return Err(Refusal::InconsistentReport {
                    change: change.id.clone(),
                    detail: "revalidation must leave approvals to collect".to_owned(),
                });
            }
            let reason = text(reason, "revalidation reason")?;
            Ok(vec![event(
                Actor::System(SystemActor::Engine),
                None,
                ChangeEventBody::Revalidated { requirement, controls: Box::new(controls), kept, reason },
            )])
        }
        Command::Escalate { to, people } => {
            require_state(change, &[ChangeState::PendingApproval], action)?;
            let due = change.controls.as_ref().and_then(|c| c.escalate_at);
            if change.escalated.is_some() || due.is_none_or(|due| due > now) {
                return Err(Refusal::NotDue { change: change.id.clone(), action });
            }
            let to = line(to, "escalation target")?;
            Ok(vec![event(
                Actor::System(SystemActor::Scheduler),
                None,
                ChangeEventBody::Escalated { to, people },
            )])
        }
        Command::Expire => {
            require_state(change, &[ChangeState::Approved], action)?;
            let window_end = change.window.as_ref().filter(|_| change.emergency.is_none()).map(|w| w.end);
            let reason = match (change.approvals_valid_until(), window_end) {
                (Some(until), _) if until <= now => format!("approval validity ended at {until}"),
                (_, Some(end)) if end <= now => format!("its maintenance window ended at {end}"),
                _ => return Err(Refusal::NotDue { change: change.id.clone(), action }),
            };
            Ok(vec![event(Actor::System(SystemActor::Engine), None, ChangeEventBody::Expired { reason })])
        }
    }
}

/// Folds one event into the change it belongs to. Fails only on a history that no sequence of
/// [`decide`] calls could have produced.
pub fn evolve(change: Option<Change>, event: &ChangeEvent) -> Result<Change, Refusal> {
    let corrupt =
        |detail| Refusal::CorruptHistory { change: event.change.to_string(), seq: event.seq, detail };
    let mut change = match (change, &event.body) {
        (
            None,
            ChangeEventBody::Requested {
                kind,
                event: business,
                refs,
                vendor,
                justification,
                ops,
                window,
                rollback_owner,
                rollback_of,
            },
        ) => {
            if event.seq != 0 {
                return Err(corrupt("first event must have sequence 0"));
            }
            let requester =
                event.actor.identity().cloned().ok_or_else(|| corrupt("requester must be an identity"))?;
            return Ok(Change {
                refs: refs.clone(),
                on_behalf_of: event.on_behalf_of.clone(),
                vendor: vendor.clone(),
                window: window.clone(),
                rollback_owner: rollback_owner.clone(),
                rollback_of: rollback_of.clone(),
                ..first(event, *kind, *business, requester, justification.clone(), ops)
            });
        }
        (None, ChangeEventBody::ExpiryOpened { origin, requester, due_at, ops }) => {
            if event.seq != 0 || event.actor != Actor::System(SystemActor::Scheduler) {
                return Err(corrupt("an expiry change starts at sequence 0, opened by the scheduler"));
            }
            let justification =
                Justification::parse(&format!("time-bound access granted by {origin} ended at {due_at}"))
                    .map_err(|_| corrupt("expiry justification"))?;
            let change = first(
                event,
                ChangeKind::Revoke,
                BusinessEvent::Expiry,
                requester.clone(),
                justification,
                ops,
            );
            return Ok(Change {
                state: ChangeState::Approved,
                requirement: ApprovalRequirement { approvals: 0, validity: Duration::hours(24) },
                origin: Some(origin.clone()),
                ..change
            });
        }
        (None, _) => return Err(corrupt("history must start with change.requested")),
        (Some(_), ChangeEventBody::Requested { .. } | ChangeEventBody::ExpiryOpened { .. }) => {
            return Err(corrupt("change.requested after the start"));
        }
        (Some(change), _) => change,
    };
    if event.seq != change.seq || event.change != change.id {
        return Err(corrupt("event out of sequence"));
    }
    let state = change.state;
    let expect = |allowed: &[ChangeState]| {
        if allowed.contains(&state) { Ok(()) } else { Err(corrupt("event not allowed in this state")) }
    };
    let decision =
        |reason: &String| Decision { actor: event.actor.clone(), at: event.at, reason: reason.clone() };
    match &event.body {
        ChangeEventBody::Requested { .. } | ChangeEventBody::ExpiryOpened { .. } => {
            return Err(corrupt("change.requested after the start"));
        }
        ChangeEventBody::BreakGlass { approval_due, requirement, controls } => {
            expect(&[ChangeState::Requested])?;
            if event.seq != 1 {
                return Err(corrupt("change.breakglass must directly follow change.requested"));
            }
            change.requirement = *requirement;
            change.controls = Some(controls.as_ref().clone());
            change.emergency =
                Some(crate::change::Emergency { declared_at: event.at, approval_due: *approval_due });
            change.state = ChangeState::Approved;
        }
        ChangeEventBody::AlertRaised { reason } => {
            if change.alert.is_some() {
                return Err(corrupt("a second alert on one change"));
            }
            change.alert = Some(reason.clone());
        }
        ChangeEventBody::Validated { requirement, controls } => {
            expect(&[ChangeState::Requested])?;
            change.requirement = *requirement;
            change.controls = controls.as_deref().cloned();
            change.state = ChangeState::PendingApproval;
        }
        ChangeEventBody::Revalidated { requirement, controls, kept, .. } => {
            expect(&[ChangeState::PendingApproval, ChangeState::Approved])?;
            change.requirement = *requirement;
            change.controls = Some(controls.as_ref().clone());
            change.approvals.retain(|a| kept.contains(&a.approver));
            change.escalated = None;
            change.state = ChangeState::PendingApproval;
        }
        ChangeEventBody::Escalated { to, .. } => {
            expect(&[ChangeState::PendingApproval])?;
            change.escalated = Some((event.at, to.clone()));
        }
        ChangeEventBody::Approved { expires_at } => {
            if change.emergency.is_some() {
                if !change.awaits_post_hoc_approval() {
                    return Err(corrupt("a post-hoc approval beyond the ones required"));
                }
            } else {
                expect(&[ChangeState::PendingApproval])?;
            }
            let approver =
                event.actor.identity().cloned().ok_or_else(|| corrupt("approver must be an identity"))?;
            change.approvals.push(Approval {
                approver,
                on_behalf_of: event.on_behalf_of.clone(),
                at: event.at,
                expires_at: *expires_at,
                slot: event.policy.as_ref().and_then(|p| p.slot.clone()),
            });
            if change.approvals.len() >= usize::from(change.requirement.approvals)
                && change.state == ChangeState::PendingApproval
            {
                change.state = ChangeState::Approved;
            }
        }
        ChangeEventBody::Rejected { reason } => {
            expect(&[ChangeState::PendingApproval, ChangeState::Approved])?;
            change.closing = Some(decision(reason));
            change.state = ChangeState::Rejected;
        }
        ChangeEventBody::Cancelled { reason } => {
            expect(&[
                ChangeState::Requested,
                ChangeState::PendingApproval,
                ChangeState::Approved,
                ChangeState::Failed,
            ])?;
            change.closing = Some(decision(reason));
            change.state = ChangeState::Cancelled;
        }
        ChangeEventBody::Expired { reason } => {
            expect(&[ChangeState::Approved])?;
            change.closing = Some(decision(reason));
            change.state = ChangeState::Expired;
        }
        ChangeEventBody::ExecutionStarted { .. } => {
            expect(&[
                ChangeState::Approved,
                ChangeState::Failed,
                ChangeState::Implementing,
                ChangeState::VerificationFailed,
            ])?;
            change.executions.push(Execution {
                executor: event.actor.clone(),
                started_at: event.at,
                finished_at: None,
                outcomes: Vec::new(),
                error: None,
                recovered: false,
            });
            change.state = ChangeState::Implementing;
        }
        ChangeEventBody::Implemented { outcomes } | ChangeEventBody::ExecutionFailed { outcomes, .. } => {
            expect(&[ChangeState::Implementing])?;
            let error = match &event.body {
                ChangeEventBody::ExecutionFailed { error, .. } => Some(error.clone()),
                _ => None,
            };
            change.state = if error.is_some() { ChangeState::Failed } else { ChangeState::Implemented };
            let execution = change.executions.last_mut().ok_or_else(|| corrupt("no execution started"))?;
            execution.finished_at = Some(event.at);
            execution.outcomes = outcomes.clone();
            execution.error = error;
        }
        ChangeEventBody::AttemptRecovered { attempt, outcomes, error } => {
            expect(&[ChangeState::Implementing])?;
            if usize::try_from(*attempt).ok() != Some(change.executions.len()) {
                return Err(corrupt("a recovered attempt that is not the one in progress"));
            }
            change.state = if error.is_some() { ChangeState::Failed } else { ChangeState::Implemented };
            let execution = change.executions.last_mut().ok_or_else(|| corrupt("no execution started"))?;
            execution.finished_at = Some(event.at);
            execution.outcomes = outcomes.clone();
            execution.error = error.clone();
            execution.recovered = true;
        }
        ChangeEventBody::Verified { observations }
        | ChangeEventBody::VerificationFailed { observations, .. } => {
            expect(&[ChangeState::Implemented, ChangeState::VerificationFailed])?;
            let (bad, residual) = match &event.body {
                ChangeEventBody::VerificationFailed { mismatches, residual, .. } => {
                    if mismatches.is_empty() && residual.is_empty() {
                        return Err(corrupt("a failed verification names no mismatch"));
                    }
                    (mismatches.clone(), residual.clone())
                }
                _ => (Vec::new(), Vec::new()),
            };
            change.state = if matches!(event.body, ChangeEventBody::Verified { .. }) {
                ChangeState::Verified
            } else {
                ChangeState::VerificationFailed
            };
            change.verification = Some(Verification {
                at: event.at,
                observations: observations.clone(),
                mismatches: bad,
                residual,
            });
        }
        ChangeEventBody::EvidenceAttached { .. } => {}
        ChangeEventBody::LegalHold { held, reason } => {
            change.legal_hold = held.then(|| crate::change::LegalHold {
                by: event.actor.clone(),
                at: event.at,
                reason: reason.clone(),
            });
        }
        ChangeEventBody::Erased { class, rule, values, blobs } => {
            if change.legal_hold.is_some() {
                return Err(corrupt("an erasure under legal hold"));
            }
            change.erasures.push(crate::change::ErasureNote {
                class: *class,
                rule: rule.clone(),
                at: event.at,
                values: *values,
                blobs: blobs.clone(),
            });
        }
        ChangeEventBody::RollbackNoted { rollback, step } => {
            change.rollbacks.push(crate::change::RollbackNote {
                rollback: rollback.clone(),
                step: *step,
                at: event.at,
            });
        }
        ChangeEventBody::Commented { step, text, source, late } => {
            change.comments.push(crate::change::Comment {
                seq: event.seq,
                at: event.at,
                author: event.actor.clone(),
                step: *step,
                text: text.clone(),
                source: source.clone(),
                late: *late,
            });
        }
        ChangeEventBody::ExpiryWarned { identity, entitlement, ends_at, before } => {
            change.warnings.push(crate::change::ExpiryWarning {
                identity: identity.clone(),
                entitlement: entitlement.clone(),
                ends_at: *ends_at,
                before: *before,
                at: event.at,
            });
        }
        ChangeEventBody::Linked { delivery, late } => {
            for r in &delivery.refs {
                if !change.refs.contains(r) {
                    change.refs.push(r.clone());
                }
            }
            change.links.push(crate::intake::Link {
                seq: event.seq,
                at: event.at,
                delivery: delivery.as_ref().clone(),
                late: *late,
            });
        }
        ChangeEventBody::Reviewed { notes } => {
            expect(&[ChangeState::Verified, ChangeState::VerificationFailed])?;
            change.closing = Some(decision(notes));
            change.state = ChangeState::Reviewed;
        }
    }
    let step = event.body.phase();
    change.evidence.extend(event.evidence.iter().map(|e| (event.seq, step, e.clone())));
    change.seq += 1;
    Ok(change)
}

/// A change as its first event opens it: `requested`, baseline requirement, nothing else yet.
fn first(
    event: &ChangeEvent,
    kind: ChangeKind,
    business: BusinessEvent,
    requester: IdentityName,
    justification: Justification,
    ops: &[PlannedOp],
) -> Change {
    Change {
        id: event.change.clone(),
        kind,
        event: business,
        refs: Vec::new(),
        requester,
        on_behalf_of: None,
        vendor: None,
        justification,
        ops: ops.to_vec(),
        window: None,
        created_at: event.at,
        state: ChangeState::Requested,
        requirement: ApprovalRequirement::BASELINE,
        controls: None,
        escalated: None,
        emergency: None,
        approvals: Vec::new(),
        executions: Vec::new(),
        verification: None,
        closing: None,
        origin: None,
        alert: None,
        evidence: event.evidence.iter().map(|e| (0, crate::event::Phase::Request, e.clone())).collect(),
        links: Vec::new(),
        warnings: Vec::new(),
        comments: Vec::new(),
        rollback_owner: None,
        rollback_of: None,
        rollbacks: Vec::new(),
        legal_hold: None,
        erasures: Vec::new(),
        seq: 1,
    }
}

/// Rebuilds a change from its full history.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a ChangeEvent>) -> Result<Option<Change>, Refusal> {
    let mut change = None;
    for event in events {
        change = Some(evolve(change, event)?);
    }
    Ok(change)
}

/// A break-glass change opens as a request followed by `change.breakglass` instead of
/// `change.validated`.
fn decide_breakglass(
    new: NewChange,
    approval_due: Timestamp,
    now: Timestamp,
) -> Result<Vec<ChangeEvent>, Refusal> {
    let scope = |detail: &str| Refusal::BreakGlassScope { detail: detail.to_owned() };
    if new.ops.iter().any(|op| op.action != OpAction::Grant || op.duration.is_none()) {
        return Err(scope("every operation must grant with a duration"));
    }
    if new.on_behalf_of.is_some() {
        return Err(scope("the person who breaks glass acts for themselves, not on behalf of another"));
    }
    if approval_due <= now {
        return Err(scope("the post-hoc approval deadline must be in the future"));
    }
    if new.requirement.approvals == 0 {
        return Err(scope("someone else must approve a break-glass change afterwards"));
    }
    let requirement = new.requirement;
    let controls = Box::new(new.controls.clone().unwrap_or(Controls {
        tier: String::new(),
        slots: Vec::new(),
        escalate_at: None,
        escalate_to: None,
        review_required: true,
        window_rules: Vec::new(),
    }));
    let mut events = decide_request(new, now)?;
    if let Some(validated) = events.get_mut(1) {
        validated.body = ChangeEventBody::BreakGlass { approval_due, requirement, controls };
    }
    Ok(events)
}

fn decide_request(new: NewChange, now: Timestamp) -> Result<Vec<ChangeEvent>, Refusal> {
    check_ops(&new.ops)?;
    if new.subjects.len() != new.ops.len() {
        return Err(Refusal::InconsistentReport {
            change: new.id.clone(),
            detail: "every operation needs its resolved identity".to_owned(),
        });
    }
    for (op, subject) in new.ops.iter().zip(&new.subjects) {
        if subject.name != op.identity {
            return Err(Refusal::InconsistentReport {
                change: new.id.clone(),
                detail: format!("operation names {} but {} was resolved", op.identity, subject.name),
            });
        }
        if op.action == OpAction::Grant && subject.kind.is_nhi() && subject.owner.is_none() {
            return Err(Refusal::OrphanIdentity { identity: subject.name.clone(), kind: subject.kind });
        }
    }
    if let Some(principal) = &new.on_behalf_of
        && principal.name == new.requester.name
    {
        return Err(Refusal::OnBehalfOfSelf { requester: new.requester.name });
    }
    check_event(new.event, &new.ops)?;
    if let Some(owner) = &new.rollback_owner {
        require_human(owner, "answer for a rollback")?;
    }
    if (new.event == BusinessEvent::Rollback) != new.rollback_of.is_some() {
        return Err(Refusal::EventMismatch {
            event: new.event,
            reason: "is opened by `writ change rollback`, never requested",
        });
    }
    if let Some(window) = new.window.as_ref().filter(|w| w.end <= now) {
        return Err(Refusal::TooEarly {
            field: "maintenance window end",
            input: window.end.to_rfc3339(),
            expected: "a window that has not ended yet",
        });
    }
    let actions: Vec<(OpAction, bool)> =
        new.ops.iter().map(|op| (op.action, op.duration.is_some())).collect();
    let kind = ChangeKind::derive(&actions, new.event);
    let on_behalf_of = new.on_behalf_of.map(|p| p.name);
    let requester = Actor::Identity(new.requester.name);
    let requested = ChangeEvent {
        evidence: Vec::new(),
        policy: None,
        change: new.id.clone(),
        seq: 0,
        at: now,
        actor: requester.clone(),
        on_behalf_of: on_behalf_of.clone(),
        body: ChangeEventBody::Requested {
            kind,
            event: new.event,
            refs: new.refs,
            vendor: new.requester.vendor,
            justification: new.justification,
            ops: new.ops,
            window: new.window,
            rollback_owner: new.rollback_owner.map(|o| o.name),
            rollback_of: new.rollback_of,
        },
    };
    let validated = ChangeEvent {
        evidence: Vec::new(),
        change: new.id,
        seq: 1,
        at: now,
        actor: Actor::System(SystemActor::Engine),
        on_behalf_of: None,
        body: ChangeEventBody::Validated {
            requirement: new.requirement,
            controls: new.controls.map(Box::new),
        },
        policy: None,
    };
    Ok(vec![requested, validated])
}

fn decide_expiry(expiry: ExpiryChange, now: Timestamp) -> Result<Vec<ChangeEvent>, Refusal> {
    if expiry.ops.iter().any(|op| op.action != OpAction::Revoke || op.duration.is_some()) {
        return Err(Refusal::InconsistentReport {
            change: expiry.id.clone(),
            detail: "an expiry change only revokes, without a duration".to_owned(),
        });
    }
    check_ops(&expiry.ops)?;
    if expiry.due_at > now {
        return Err(Refusal::NotDue { change: expiry.id, action: "open expiry" });
    }
    Ok(vec![ChangeEvent {
        change: expiry.id,
        seq: 0,
        at: now,
        actor: Actor::System(SystemActor::Scheduler),
        on_behalf_of: None,
        body: ChangeEventBody::ExpiryOpened {
            origin: expiry.origin,
            requester: expiry.requester,
            due_at: expiry.due_at,
            ops: expiry.ops,
        },
        evidence: Vec::new(),
        policy: None,
    }])
}

/// The rules every change's operations keep: at least one, at most [`MAX_OPS`], no duration on
/// a revoke, and no identity × entitlement twice.
fn check_ops(ops: &[PlannedOp]) -> Result<(), Refusal> {
    if ops.is_empty() {
        return Err(Refusal::NoOperations);
    }
    if ops.len() > MAX_OPS {
        return Err(Refusal::TooManyOperations { count: ops.len(), max: MAX_OPS });
    }
    for (i, op) in ops.iter().enumerate() {
        if op.action != OpAction::Grant && op.duration.is_some() {
            return Err(Refusal::DurationOnRevoke);
        }
        let repeated =
            ops.iter().take(i).any(|o| o.identity == op.identity && o.entitlement == op.entitlement);
        if repeated {
            return Err(Refusal::DuplicateOperation {
                identity: op.identity.clone(),
                entitlement: op.entitlement.to_string(),
            });
        }
    }
    Ok(())
}

/// The business event must fit the operations: a leaver or decommission takes access away (no
/// grant), a joiner gives it (no revocation), and only Writ opens an expiry.
fn check_event(event: BusinessEvent, ops: &[PlannedOp]) -> Result<(), Refusal> {
    let has = |action: OpAction| ops.iter().any(|op| op.action == action);
    let reason = match event {
        BusinessEvent::Leaver | BusinessEvent::Decommission if has(OpAction::Grant) => {
            "takes access away: it cannot grant (request the grant as its own change)"
        }
        BusinessEvent::Joiner if has(OpAction::Revoke) => {
            "gives access: it cannot revoke (a mover can do both)"
        }
        BusinessEvent::Expiry => "is opened by Writ when time-bound access ends, never requested",
        _ => return Ok(()),
    };
    Err(Refusal::EventMismatch { event, reason })
}

/// The role that disqualifies `name` from acting independently on `change`, if any.
fn role_of(change: &Change, name: &IdentityName) -> Option<&'static str> {
    if &change.requester == name {
        return Some("requester");
    }
    if change.on_behalf_of.as_ref() == Some(name) {
        return Some("requesting principal (on-behalf-of)");
    }
    if change.rollback_of.as_ref().is_some_and(|r| &r.origin_requester == name) {
        return Some("requester of the change it rolls back");
    }
    if change.ops.iter().any(|op| &op.identity == name) {
        return Some("beneficiary");
    }
    if change.approvals.iter().any(|a| &a.approver == name || a.on_behalf_of.as_ref() == Some(name)) {
        return Some("approver");
    }
    let executed = change.executions.iter().any(|e| e.executor.identity() == Some(name));
    executed.then_some("executor")
}

fn check_approver(
    change: &Change,
    approver: &Identity,
    on_behalf_of: Option<&Identity>,
) -> Result<(), Refusal> {
    require_human(approver, "approve")?;
    if on_behalf_of.is_some_and(|principal| principal.name == approver.name) {
        return Err(Refusal::OnBehalfOfSelf { requester: approver.name.clone() });
    }
    for person in std::iter::once(approver).chain(on_behalf_of) {
        let role = match role_of(change, &person.name) {
            Some("approver") => {
                return Err(Refusal::DuplicateApproval {
                    change: change.id.clone(),
                    approver: person.name.clone(),
                });
            }
            role => role,
        };
        if let Some(role) = role {
            return Err(Refusal::SelfApproval {
                change: change.id.clone(),
                approver: person.name.clone(),
                role,
            });
        }
        if let (Some(org), Some(vendor)) = (&person.vendor, &change.vendor)
            && org == vendor
        {
            return Err(vendor_refusal(change, &person.name, org));
        }
    }
    Ok(())
}

fn vendor_refusal(change: &Change, approver: &IdentityName, org: &OrgName) -> Refusal {
    Refusal::VendorSelfApproval {
        change: change.id.clone(),
        approver: approver.clone(),
        org: org.to_string(),
    }
}

fn check_approvals_current(change: &Change, now: Timestamp) -> Result<(), Refusal> {
    let need = usize::from(change.requirement.approvals);
    if change.approvals.len() < need {
        return Err(Refusal::NotEnoughApprovals {
            change: change.id.clone(),
            have: change.approvals.len(),
            need,
        });
    }
    if let Some(expired) = change.approvals.iter().find(|a| a.expires_at <= now) {
        return Err(Refusal::ApprovalExpired {
            change: change.id.clone(),
            approver: expired.approver.clone(),
            expired_at: expired.expires_at,
        });
    }
    Ok(())
}

fn check_outcomes(change: &Change, outcomes: &[OpOutcome], complete: bool) -> Result<(), Refusal> {
    let report = |detail: String| Refusal::InconsistentReport { change: change.id.clone(), detail };
    for (i, outcome) in outcomes.iter().enumerate() {
        if outcome.op >= change.ops.len() {
            return Err(report(format!("operation {} does not exist", outcome.op)));
        }
        if outcomes.iter().take(i).any(|o| o.op == outcome.op) {
            return Err(report(format!("operation {} reported twice", outcome.op)));
        }
    }
    if complete && outcomes.len() != change.ops.len() {
        return Err(report(format!("{} of {} operations reported", outcomes.len(), change.ops.len())));
    }
    Ok(())
}

fn require_state(change: &Change, allowed: &[ChangeState], action: &'static str) -> Result<(), Refusal> {
    if allowed.contains(&change.state) { Ok(()) } else { Err(invalid(change, action)) }
}

fn require_human(identity: &Identity, action: &'static str) -> Result<(), Refusal> {
    if identity.kind == IdentityKind::Human {
        Ok(())
    } else {
        Err(Refusal::NotHuman { actor: identity.name.clone(), kind: identity.kind, action })
    }
}

fn invalid(change: &Change, action: &'static str) -> Refusal {
    Refusal::InvalidTransition { change: change.id.clone(), state: change.state, action }
}

/// Whether `c` may be in a multi-line text: line breaks and tabs may, other control characters
/// (NUL, ESC, …) may not.
pub fn allowed_in_text(c: char) -> bool {
    !c.is_control() || matches!(c, '\n' | '\r' | '\t')
}

/// `input` with every control character a text may not hold replaced by a space: for text Writ
/// builds from what other systems sent (a ticket's description, a delivery's notes).
pub fn clean_text(input: &str) -> String {
    input.chars().map(|c| if allowed_in_text(c) { c } else { ' ' }).collect()
}

/// A reason, note or similar text: at most [`MAX_TEXT`] characters as sent, not only blanks,
/// no control characters but line breaks and tabs; kept trimmed.
pub fn text(input: String, field: &'static str) -> Result<String, Refusal> {
    let trimmed = input.trim();
    if trimmed.is_empty() || input.chars().count() > MAX_TEXT {
        return Err(Refusal::InvalidText { field, max: MAX_TEXT });
    }
    if !input.chars().all(allowed_in_text) {
        return Err(Refusal::ControlCharacter { field });
    }
    Ok(trimmed.to_owned())
}

/// As [`text`], on one line: no control character at all.
pub fn line(input: String, field: &'static str) -> Result<String, Refusal> {
    if input.chars().any(char::is_control) {
        return Err(Refusal::ControlCharacter { field });
    }
    text(input, field)
}

fn truncate(input: &str) -> String {
    input.chars().take(MAX_TEXT).collect()
}
