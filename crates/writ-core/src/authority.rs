//! Who may act on a change: the one decision, from the actor's relationship to the change and
//! their roles, that every surface (CLI, API, intake, SCIM) reaches through the engine.
//!
//! Roles say what kind of work someone does; the relationship says whose change it is. A role
//! alone never lets anyone act on someone else's change where the relationship matters:
//!
//! | action            | allowed                                                                 |
//! |-------------------|-------------------------------------------------------------------------|
//! | cancel            | the requester or the on-behalf-of principal, or an admin (the reason is |
//! |                   | recorded); never a subject of a change that removes access (a           |
//! |                   | revocation, a leaver, an expiry), whoever they are                      |
//! | roll back         | the change's rollback owner, who asked for it (or for whom), or an admin |
//! | comment           | in any state: anyone the change concerns (requester, principal,         |
//! |                   | subject, approver, executor, closer), or an approver, executor,         |
//! |                   | reviewer, auditor or admin                                              |
//! | attach evidence   | to a step the change has reached, while it is open, within the quota:   |
//! |                   | the requester or principal (any reached step), an approver (approval),  |
//! |                   | an executor (implementation, verification), a reviewer (review), an     |
//! |                   | auditor or admin (any reached step)                                     |
//!
//! Approve, reject, execute and review keep their separation-of-duties floor in
//! [`crate::machine`]; this module adds the relationships those rules do not cover.

use crate::Refusal;
use crate::access::Role;
use crate::change::{BusinessEvent, Change, ChangeState, OpAction};
use crate::event::Phase;
use crate::name::IdentityName;

/// How one identity stands to one change (it may stand in several ways at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Relationship {
    /// Asked for the change.
    Requester,
    /// The change was asked for on their behalf.
    Principal,
    /// An operation of the change is about them (they gain or lose access).
    Subject,
    /// Gave one of its approvals.
    Approver,
    /// Started an execution of it.
    Executor,
    /// Closed it (reviewed, rejected, cancelled).
    Closer,
}

impl Relationship {
    pub fn as_str(self) -> &'static str {
        match self {
            Relationship::Requester => "requester",
            Relationship::Principal => "principal",
            Relationship::Subject => "subject",
            Relationship::Approver => "approver",
            Relationship::Executor => "executor",
            Relationship::Closer => "closer",
        }
    }
}

/// Every relationship `who` has to `change`.
pub fn relationships(change: &Change, who: &IdentityName) -> Vec<Relationship> {
    let is =
        |actor: &crate::identity::Actor| matches!(actor, crate::identity::Actor::Identity(n) if n == who);
    let mut found = Vec::new();
    if &change.requester == who {
        found.push(Relationship::Requester);
    }
    if change.on_behalf_of.as_ref() == Some(who) {
        found.push(Relationship::Principal);
    }
    if change.ops.iter().any(|op| &op.identity == who) {
        found.push(Relationship::Subject);
    }
    if change.approvals.iter().any(|a| &a.approver == who) {
        found.push(Relationship::Approver);
    }
    if change.executions.iter().any(|e| is(&e.executor)) {
        found.push(Relationship::Executor);
    }
    if change.closing.as_ref().is_some_and(|c| is(&c.actor)) {
        found.push(Relationship::Closer);
    }
    found
}

/// Whether the change takes access away (a revocation, a leaver, the end of time-bound access):
/// the people it is about must not be able to call it off.
pub fn removes_access(change: &Change) -> bool {
    change.ops.iter().any(|op| op.action == OpAction::Revoke)
        || matches!(change.event, BusinessEvent::Leaver | BusinessEvent::Expiry)
        || change.origin.is_some()
}

fn refuse(change: &Change, actor: &IdentityName, action: &'static str, reason: String) -> Refusal {
    Refusal::NotYours { change: change.id.clone(), actor: actor.clone(), action, reason }
}

/// May `actor`, holding `roles`, cancel `change`?
pub fn may_cancel(change: &Change, actor: &IdentityName, roles: &[Role]) -> Result<(), Refusal> {
    let standing = relationships(change, actor);
    if removes_access(change) && standing.contains(&Relationship::Subject) {
        return Err(refuse(
            change,
            actor,
            "cancel",
            "it takes access away from them; the people a revocation is about cannot call it off".into(),
        ));
    }
    let own = standing.iter().any(|r| matches!(r, Relationship::Requester | Relationship::Principal));
    if own || roles.contains(&Role::Admin) {
        return Ok(());
    }
    Err(refuse(
        change,
        actor,
        "cancel",
        format!(
            "only {} (who asked), the person it was asked for, or an admin may cancel it",
            change.requester
        ),
    ))
}

/// May `actor`, holding `roles`, comment on `change`? Those the change concerns, and those
/// whose work is on changes (approvers, executors, reviewers, auditors, admins); a requester
/// with no part in it may not.
pub fn may_comment(change: &Change, actor: &IdentityName, roles: &[Role]) -> Result<(), Refusal> {
    let concerned = !relationships(change, actor).is_empty();
    let by_role = roles
        .iter()
        .any(|r| matches!(r, Role::Approver | Role::Executor | Role::Reviewer | Role::Auditor | Role::Admin));
    if concerned || by_role {
        return Ok(());
    }
    Err(refuse(
        change,
        actor,
        "comment on",
        "comments come from the people it concerns (who asked, for whom, who approved, executed or closed it) and from approvers, executors, reviewers, auditors and admins".into(),
    ))
}

/// May `actor`, holding `roles`, ask for `change` to be rolled back? Its rollback owner, who
/// asked for it or for whom it was asked, or an admin.
pub fn may_roll_back(change: &Change, actor: &IdentityName, roles: &[Role]) -> Result<(), Refusal> {
    let standing = relationships(change, actor);
    let own = standing.iter().any(|r| matches!(r, Relationship::Requester | Relationship::Principal));
    if own || change.rollback_owner.as_ref() == Some(actor) || roles.contains(&Role::Admin) {
        return Ok(());
    }
    Err(refuse(
        change,
        actor,
        "roll back",
        format!(
            "a rollback is asked for by the change's rollback owner ({}), who asked for it, or an admin",
            change.rollback_owner.as_ref().map_or("none named", IdentityName::as_str)
        ),
    ))
}

/// The most evidence one change may carry: items, and bytes in all.
pub const MAX_EVIDENCE_ITEMS: usize = 100;
pub const MAX_EVIDENCE_BYTES: u64 = 256 * 1024 * 1024;

/// The furthest step a change in `state` takes evidence for; `None` once it is closed.
pub fn reached(state: ChangeState) -> Option<Phase> {
    match state {
        ChangeState::Requested => Some(Phase::Validation),
        ChangeState::PendingApproval => Some(Phase::Approval),
        ChangeState::Approved | ChangeState::Implementing | ChangeState::Failed => {
            Some(Phase::Implementation)
        }
        ChangeState::Implemented => Some(Phase::Verification),
        ChangeState::Verified | ChangeState::VerificationFailed => Some(Phase::Review),
        ChangeState::Rejected | ChangeState::Expired | ChangeState::Cancelled | ChangeState::Reviewed => None,
    }
}

/// May `actor`, holding `roles`, attach `size` bytes of evidence to `step` of `change`?
pub fn may_attach_evidence(
    change: &Change,
    actor: &IdentityName,
    roles: &[Role],
    step: Phase,
    size: u64,
) -> Result<(), Refusal> {
    let Some(furthest) = reached(change.state) else {
        return Err(Refusal::EvidenceRefused {
            change: change.id.clone(),
            code: "evidence.change_closed",
            reason: format!("it is {}; evidence is captured while a change is open", change.state),
        });
    };
    if step > furthest {
        return Err(Refusal::EvidenceRefused {
            change: change.id.clone(),
            code: "evidence.step_not_reached",
            reason: format!("it is {} and has not reached {}", change.state, step.as_str()),
        });
    }
    let used: u64 = change.evidence.iter().map(|(_, _, e)| e.size).sum();
    if change.evidence.len() >= MAX_EVIDENCE_ITEMS || used.saturating_add(size) > MAX_EVIDENCE_BYTES {
        return Err(Refusal::EvidenceRefused {
            change: change.id.clone(),
            code: "evidence.quota_exceeded",
            reason: format!(
                "a change carries at most {MAX_EVIDENCE_ITEMS} files and {} MiB of evidence; it has {} files, {} bytes",
                MAX_EVIDENCE_BYTES >> 20,
                change.evidence.len(),
                used
            ),
        });
    }
    let standing = relationships(change, actor);
    let own = standing.iter().any(|r| matches!(r, Relationship::Requester | Relationship::Principal));
    let by_role = roles.iter().any(|role| match role {
        Role::Auditor | Role::Admin => true,
        Role::Approver => step == Phase::Approval,
        Role::Executor => matches!(step, Phase::Implementation | Phase::Verification),
        Role::Reviewer => step == Phase::Review,
        Role::Requester | Role::Provisioner => false,
    });
    if own || by_role {
        return Ok(());
    }
    Err(refuse(
        change,
        actor,
        "attach evidence to",
        format!(
            "evidence for the {} step comes from who asked, the step's role ({}), an auditor or an admin",
            step.as_str(),
            match step {
                Phase::Approval => "approver",
                Phase::Implementation | Phase::Verification => "executor",
                Phase::Review => "reviewer",
                _ => "requester",
            }
        ),
    ))
}

#[cfg(test)]
mod tests;
