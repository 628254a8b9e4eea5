//! Rollback owners and rollbacks.
//!
//! Every change names a rollback owner when it is requested: the person asked for, else the
//! first of the policy's `[rollback] owners` that names an active human (the owner of an NHI it
//! is about, the owner of an entitlement it touches, the requester or an NHI requester's owner,
//! a named person). A rollback is a change of its own (`writ change rollback`): the inverse of
//! what the change did (a grant is revoked, a revocation granted back, a rotation rolled
//! forward to a new credential), event `rollback`, through policy and approvals like any other;
//! the requester of the change it undoes may not approve, execute or review it. Its record
//! names the change it undoes; the undone change gets a `change.rollback_noted` event for each
//! step the rollback reaches (requested, approved, executed, verified, failed, closed). The
//! rollback's own events are the facts; each note is written after them, once, whenever the
//! rollback is committed, so a note missed by a crash is written at the rollback's next step.

use writ_core::change::{
    BusinessEvent, Change, ChangeId, ChangeState, Justification, OpAction, RollbackOf, RollbackStep,
};
use writ_core::identity::{Identity, IdentityKind, IdentityState};
use writ_core::machine::Command;
use writ_core::name::IdentityName;
use writ_policy::{Policy, RollbackOwner};

use crate::{ChangeRecord, Engine, EngineError, RequestInput, RequestedOp, Result};

impl Engine {
    /// The rollback owner of a new change: `explicit` (who must be an active human), else the
    /// first source of the policy's `[rollback] owners` naming one.
    pub(crate) fn rollback_owner_for(
        &self,
        policy: &Policy,
        explicit: Option<&IdentityName>,
        requester: &Identity,
        ops: &[writ_core::change::PlannedOp],
        subjects: &[Identity],
    ) -> Result<Identity> {
        if let Some(name) = explicit {
            let owner = self.actor(name)?;
            if owner.kind != IdentityKind::Human {
                return Err(writ_core::Refusal::NotHuman {
                    actor: owner.name,
                    kind: owner.kind,
                    action: "answer for a rollback",
                }
                .into());
            }
            return Ok(owner);
        }
        for source in &policy.rules().rollback_owners {
            let names: Vec<IdentityName> = match source {
                RollbackOwner::SubjectOwner => subjects.iter().filter_map(|s| s.owner.clone()).collect(),
                RollbackOwner::EntitlementOwner => ops
                    .iter()
                    .filter_map(|op| policy.rules().classify(&op.entitlement.to_string()).1)
                    .filter_map(|o| IdentityName::parse(o).ok())
                    .collect(),
                RollbackOwner::Requester if requester.kind == IdentityKind::Human => {
                    vec![requester.name.clone()]
                }
                RollbackOwner::Requester => requester.owner.iter().cloned().collect(),
                RollbackOwner::Person(p) => IdentityName::parse(p).ok().into_iter().collect(),
            };
            for name in names {
                if let Some(person) = self
                    .store
                    .identity(&name)?
                    .filter(|i| i.kind == IdentityKind::Human && i.state == IdentityState::Active)
                {
                    return Ok(person);
                }
            }
        }
        Err(writ_policy::Denial {
            code: "policy.no_rollback_owner",
            rule: None,
            reason: "no active person answers for undoing this change under the policy's [rollback] owners; name one (--rollback-owner)".into(),
        }
        .into())
    }

    /// Opens the rollback of `id` as `actor` (its rollback owner, who asked for it, or an admin):
    /// the inverse of its operations, linked both ways, through policy and approvals.
    pub fn rollback(
        &self,
        id: &ChangeId,
        actor: &IdentityName,
        justification: Justification,
        random: u128,
    ) -> Result<ChangeRecord> {
        let me = self.actor(actor)?;
        let origin = self.load(id)?.change;
        writ_core::authority::may_roll_back(&origin, &me.name, &self.store.roles_of(&me.name)?)?;
        let refused = |code: &'static str, reason: String| {
            EngineError::from(writ_core::Refusal::RollbackRefused { change: origin.id.clone(), code, reason })
        };
        if !matches!(
            origin.state,
            ChangeState::Implemented
                | ChangeState::Verified
                | ChangeState::VerificationFailed
                | ChangeState::Reviewed
        ) {
            return Err(refused(
                "rollback.nothing_to_undo",
                format!("it is {}: only a change that was carried out can be rolled back", origin.state),
            ));
        }
        let mut seen: Vec<&ChangeId> = Vec::new();
        for note in &origin.rollbacks {
            if seen.contains(&&note.rollback) {
                continue;
            }
            seen.push(&note.rollback);
            let state = self.load(&note.rollback)?.change.state;
            if !matches!(state, ChangeState::Rejected | ChangeState::Cancelled | ChangeState::Expired) {
                return Err(refused(
                    "rollback.open",
                    format!(
                        "{} already rolls it back ({state}); a second rollback waits until that one is rejected, cancelled or expired",
                        note.rollback
                    ),
                ));
            }
        }
        let ops = origin
            .ops
            .iter()
            .map(|op| RequestedOp {
                action: match op.action {
                    OpAction::Grant => OpAction::Revoke,
                    OpAction::Revoke => OpAction::Grant,
                    // A retired credential stays retired: a rotation rolls forward.
                    OpAction::Rotate => OpAction::Rotate,
                },
                identity: op.identity.clone(),
                entitlement: op.entitlement.clone(),
                duration: None,
            })
            .collect();
        let input = RequestInput {
            requester: me.name.clone(),
            on_behalf_of: None,
            ops,
            justification,
            refs: origin
                .refs
                .iter()
                .filter(|r| r.kind == writ_core::change::RefKind::Ticket)
                .cloned()
                .collect(),
            event: BusinessEvent::Rollback,
            window: None,
            rollback_owner: origin.rollback_owner.clone(),
        };
        let of = RollbackOf { origin: origin.id.clone(), origin_requester: origin.requester.clone() };
        let record = self.request_as_with(ChangeId::generate(self.clock.now(), random), input, Some(of))?;
        tracing::info!(target: "writ::engine", change = %record.change.id, origin = %origin.id, actor = %me.name, "rollback requested");
        Ok(record)
    }

    /// Notes on the change a rollback undoes each step the rollback has reached and the undone
    /// change does not show yet (idempotent: a note already there is not written again).
    pub(crate) fn sync_rollback(&self, rollback: &Change) -> Result<()> {
        let Some(of) = &rollback.rollback_of else { return Ok(()) };
        let origin = self.load(&of.origin)?.change;
        for step in steps_reached(rollback) {
            if origin.rollbacks.iter().any(|n| n.rollback == rollback.id && n.step == step) {
                continue;
            }
            match self.transition(&of.origin, Command::NoteRollback { rollback: rollback.id.clone(), step }) {
                Ok(_) | Err(EngineError::Refused(writ_core::Refusal::InvalidTransition { .. })) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// The steps a rollback has reached, in order.
fn steps_reached(rollback: &Change) -> Vec<RollbackStep> {
    use ChangeState as S;
    let mut steps = vec![RollbackStep::Requested];
    let approved = matches!(
        rollback.state,
        S::Approved
            | S::Implementing
            | S::Implemented
            | S::Failed
            | S::Verified
            | S::VerificationFailed
            | S::Reviewed
    ) || (rollback.state == S::Expired && !rollback.approvals.is_empty());
    if approved {
        steps.push(RollbackStep::Approved);
    }
    if rollback.executions.iter().any(|e| e.finished_at.is_some() && e.error.is_none()) {
        steps.push(RollbackStep::Executed);
    }
    if rollback.verification.as_ref().is_some_and(|v| v.mismatches.is_empty() && v.residual.is_empty()) {
        steps.push(RollbackStep::Verified);
    }
    if matches!(rollback.state, S::Failed | S::VerificationFailed) {
        steps.push(RollbackStep::Failed);
    }
    if matches!(rollback.state, S::Rejected | S::Cancelled | S::Expired) {
        steps.push(RollbackStep::Closed);
    }
    steps
}
