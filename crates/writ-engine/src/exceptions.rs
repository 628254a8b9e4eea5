//! Exceptions in the engine: requested with an owner, a justification, a compensating control
//! and an expiry; approved like a change (the core's separation-of-duties floor, then Cedar,
//! then the `[exception]` approver slots); renewed by a new approval round before they expire.
//!
//! Coverage follows the exception's state. While it is active, the findings of its control
//! about its subject are `excepted` (including findings raised later); when it expires or is
//! revoked they open again. Each step that changes coverage is committed with the exception
//! due at once, then the findings are brought in line and the deadline moves on: a crash in
//! between leaves the exception due, and the next pass finishes the work.

use writ_core::event::{PolicyStamp, RegistryEvent};
use writ_core::exception::{Exception, ExceptionEventKind, ExceptionId, ExceptionRequest, ExceptionState};
use writ_core::finding::{Finding, FindingState};
use writ_core::identity::{Actor, Identity, IdentityKind, SystemActor};
use writ_core::name::IdentityName;
use writ_core::time::{Duration, Timestamp};
use writ_policy::{Act, ChangeFacts, Denial, Policy, Validation};

use crate::policy::person_of;
use crate::{Engine, EngineError, PASS_LIMIT, Result, registry_event};

/// A new exception, as a person asks for it.
#[derive(Clone, Debug)]
pub struct ExceptionInput {
    pub actor: IdentityName,
    /// The finding kind of the control not met (`secret.long_lived`, …).
    pub control: String,
    /// What the findings name (an identity, a change ID, `target:entitlement`).
    pub subject: String,
    pub owner: IdentityName,
    pub justification: String,
    pub compensating_control: String,
    pub term: Term,
}

/// How long an exception (or a renewal) lasts: for a duration from now, or until a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Term {
    For(Duration),
    Until(Timestamp),
}

impl Term {
    fn end(self, now: Timestamp) -> Timestamp {
        match self {
            Term::For(duration) => now.plus(duration),
            Term::Until(at) => at,
        }
    }
}

/// What one pass did to exceptions: those that expired, and the findings each reopened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExceptionPass {
    pub expired: Vec<(ExceptionId, Vec<String>)>,
    /// Exceptions the pass could not finish, with the reason; they stay due.
    pub errors: Vec<(ExceptionId, String)>,
}

impl Engine {
    /// Exceptions, optionally only those in `state`.
    pub fn exceptions(&self, state: Option<ExceptionState>) -> Result<Vec<Exception>> {
        Ok(self.store.exceptions(state)?)
    }

    /// The exception with this id.
    pub fn exception(&self, id: &str) -> Result<Exception> {
        let id = ExceptionId::parse(id)?;
        self.store
            .exception(&id)?
            .ok_or_else(|| EngineError::NotFound { what: "exception", name: id.to_string() })
    }

    /// Asks for an exception. Policy must let the requester ask, the owner must be a person,
    /// the term must be within the policy's maximum, and no other pending or active exception
    /// may cover the same control and subject.
    pub fn request_exception(&self, input: ExceptionInput, random: u128) -> Result<Exception> {
        let now = self.now();
        let requester = self.actor(&input.actor)?;
        let owner = self.identity(&input.owner)?;
        if owner.kind != IdentityKind::Human {
            return Err(Denial {
                code: "exception.owner_not_human",
                rule: None,
                reason: format!(
                    "{} is a {}; an exception's owner carries the risk and must be a person",
                    owner.name, owner.kind
                ),
            }
            .into());
        }
        let request = ExceptionRequest {
            control: input.control,
            subject: input.subject,
            owner: owner.name.clone(),
            requester: requester.name.clone(),
            justification: input.justification,
            compensating_control: input.compensating_control,
            expires_at: input.term.end(now),
        };
        let policy = self.policy()?;
        let facts = ChangeFacts::exception(person_of(&requester), person_of(&owner), Vec::new());
        let validation = policy.validate(&facts)?;
        within_term(&policy, now, request.expires_at)?;
        let exception =
            Exception::new(ExceptionId::generate(now, random), request, validation.approvals, now)?;
        let same = |e: &Exception| e.control == exception.control && e.subject == exception.subject;
        for other in self.store.exceptions(None)?.into_iter().filter(|e| same(e) && e.state.is_live()) {
            if !other.is_open_at(now) {
                // Its term is over but no pass has expired it yet: expire it first.
                self.drive_exception(&other.id)?;
                continue;
            }
            return Err(Denial {
                code: "exception.duplicate",
                rule: None,
                reason: format!(
                    "{} ({}) already covers {} for {}; renew or revoke it instead",
                    other.id, other.state, other.control, other.subject
                ),
            }
            .into());
        }
        let stamp = PolicyStamp { hash: policy.hash().to_owned(), rules: validation.rules, slot: None };
        let event = self.exception_event(
            Actor::Identity(requester.name),
            &exception,
            ExceptionEventKind::Requested,
            String::new(),
            Some(stamp),
        )?;
        self.store.open_exception(&exception, exception.next_deadline(), &event)?;
        tracing::info!(target: "writ::exceptions", exception = %exception.id, control = %exception.control, subject = %exception.subject, "exception requested");
        Ok(exception)
    }

    /// Approves the current round of an exception (the request, or a renewal). The core's
    /// floor decides first (not the requester or owner, one approval per person, not after
    /// expiry); then Cedar must permit the approver and the approver must fill a slot.
    pub fn approve_exception(&self, approver: &IdentityName, id: &str) -> Result<Exception> {
        let now = self.now();
        let exception = self.exception(id)?;
        let approver = self.actor(approver)?;
        let policy = self.policy()?;
        let (facts, validation) = self.exception_facts(&policy, &exception)?;
        // The floor first: it names the separation-of-duties rule a person broke.
        let mut next = exception.approve(&approver.name, None, validation.approvals, now)?;
        let mut permits = policy.authorize(Act::Approve, &person_of(&approver), &facts, None)?;
        let mut people = Vec::with_capacity(exception.approvals.len() + 1);
        for approval in &exception.approvals {
            people.push(person_of(&self.identity(&approval.approver)?));
        }
        people.push(person_of(&approver));
        let assignment = policy.assign(&validation.slots, &people).ok_or_else(|| Denial {
            code: "approval.not_eligible",
            rule: validation.rules.last().cloned(),
            reason: format!(
                "{} cannot fill any approval {} still needs (slots: {})",
                approver.name,
                exception.id,
                validation.slots.iter().map(|s| s.label.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })?;
        // The matching may move an earlier approver to another slot: the record keeps the
        // assignment as it stands now; each event keeps the slot its approver took then.
        for (approval, index) in next.approvals.iter_mut().zip(&assignment) {
            approval.slot = validation.slots.get(*index).map(|s| s.label.clone());
        }
        let slot = next.approvals.last().and_then(|a| a.slot.clone());
        permits.extend(validation.rules);
        let stamp = PolicyStamp { hash: policy.hash().to_owned(), rules: permits, slot };
        let took_effect = !next.awaits_approval();
        self.commit_exception(
            Actor::Identity(approver.name),
            &next,
            ExceptionEventKind::Approved,
            String::new(),
            Some(stamp),
            took_effect,
        )?;
        Ok(next)
    }

    /// Refuses the pending request (the exception ends `rejected`) or the pending renewal (it
    /// keeps its current term).
    pub fn reject_exception(&self, actor: &IdentityName, id: &str, reason: String) -> Result<Exception> {
        let now = self.now();
        let exception = self.exception(id)?;
        let actor = self.actor(actor)?;
        let reason = writ_core::machine::text(reason, "reason")?;
        let policy = self.policy()?;
        let (facts, _) = self.exception_facts(&policy, &exception)?;
        let next = exception.reject(&actor.name, now)?;
        let permits = policy.authorize(Act::Reject, &person_of(&actor), &facts, None)?;
        let stamp = PolicyStamp { hash: policy.hash().to_owned(), rules: permits, slot: None };
        self.commit_exception(
            Actor::Identity(actor.name),
            &next,
            ExceptionEventKind::Rejected,
            reason,
            Some(stamp),
            false,
        )?;
        Ok(next)
    }

    /// Asks for an active exception to last until a later time: a new approval round, while
    /// the current term runs. Only its requester or its owner may ask.
    pub fn renew_exception(
        &self,
        actor: &IdentityName,
        id: &str,
        term: Term,
        reason: String,
    ) -> Result<Exception> {
        let now = self.now();
        let exception = self.exception(id)?;
        let actor = self.actor(actor)?;
        let reason = writ_core::machine::text(reason, "reason")?;
        if actor.name != exception.requester && actor.name != exception.owner {
            return Err(Denial {
                code: "exception.not_yours",
                rule: None,
                reason: format!(
                    "only the requester ({}) or the owner ({}) of {} may ask to renew it",
                    exception.requester, exception.owner, exception.id
                ),
            }
            .into());
        }
        let policy = self.policy()?;
        let (_, validation) = self.exception_facts(&policy, &exception)?;
        let until = term.end(now);
        within_term(&policy, now, until)?;
        let next = exception.request_renewal(until, validation.approvals, now)?;
        let stamp = PolicyStamp { hash: policy.hash().to_owned(), rules: validation.rules, slot: None };
        self.commit_exception(
            Actor::Identity(actor.name),
            &next,
            ExceptionEventKind::RenewalRequested,
            reason,
            Some(stamp),
            false,
        )?;
        Ok(next)
    }

    /// Withdraws a pending or active exception at once; the findings it covered open again.
    /// Its requester and owner may always withdraw it; anyone else needs the policy's
    /// permission to reject it.
    pub fn revoke_exception(&self, actor: &IdentityName, id: &str, reason: String) -> Result<Exception> {
        let now = self.now();
        let exception = self.exception(id)?;
        let actor = self.actor(actor)?;
        let reason = writ_core::machine::text(reason, "reason")?;
        let policy = self.policy()?;
        let mut stamp = None;
        if actor.name != exception.requester && actor.name != exception.owner {
            let (facts, _) = self.exception_facts(&policy, &exception)?;
            let permits = policy.authorize(Act::Reject, &person_of(&actor), &facts, None)?;
            stamp = Some(PolicyStamp { hash: policy.hash().to_owned(), rules: permits, slot: None });
        }
        let next = exception.revoke(now)?;
        self.commit_exception(
            Actor::Identity(actor.name),
            &next,
            ExceptionEventKind::Revoked,
            reason,
            stamp,
            true,
        )?;
        Ok(next)
    }

    /// Works every exception whose deadline is due: expires those past their term and brings
    /// the findings of each in line with its state. Errors on one do not stop the others.
    pub fn exceptions_due(&self) -> Result<ExceptionPass> {
        let mut pass = ExceptionPass::default();
        for id in self.store.due_exceptions(self.now(), PASS_LIMIT)? {
            match self.drive_exception(&id) {
                Ok(Some(reopened)) => pass.expired.push((id, reopened)),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(target: "writ::exceptions", exception = %id, error = %error, "exception deadline not handled");
                    pass.errors.push((id, error.to_string()));
                }
            }
        }
        Ok(pass)
    }

    /// Warns the owner and requester of each active exception whose term ends within a day, then
    /// within an hour: an `exception.expiry_warned` event with the `exception.expiring`
    /// notifications its routes ask for. Once per term and warning; a renewed term is warned of
    /// again.
    pub fn warn_expiring_exceptions(&self) -> Result<Vec<ExceptionId>> {
        let now = self.now();
        let mut warned = Vec::new();
        for exception in self.store.exceptions(Some(ExceptionState::Active))? {
            let left = exception.expires_at.as_millis().saturating_sub(now.as_millis());
            let closest = crate::expiry::WARNINGS.iter().rev().find(|w| left > 0 && left <= w.as_millis());
            let Some(before) = closest.copied() else { continue };
            if exception.warned.is_some_and(|w| w <= before) {
                continue;
            }
            let next = exception.warn(before, now)?;
            let note =
                format!("its term ends at {} (within {before}): owner and requester warned", next.expires_at);
            let actor = Actor::System(SystemActor::Scheduler);
            let event = self.exception_event(actor, &next, ExceptionEventKind::ExpiryWarned, note, None)?;
            let event = writ_store::NewEvent { notices: self.exception_notices(&next)?, ..event };
            // Due at once: the next pass settles it and schedules its end again, so a deadline
            // another step set is never lost.
            match self.store.update_exception(&next, Some(now), &event) {
                Ok(_) => warned.push(next.id),
                Err(writ_store::StoreError::Conflict(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(warned)
    }

    /// Returns the findings reopened if the exception expired now.
    fn drive_exception(&self, id: &ExceptionId) -> Result<Option<Vec<String>>> {
        let now = self.now();
        let Some(exception) = self.store.exception(id)? else { return Ok(None) };
        if exception.state.is_live() && exception.expires_at <= now {
            let next = exception.expire(now)?;
            let note = match exception.state {
                ExceptionState::Pending => "expired before it was approved".to_owned(),
                _ if exception.renewal.is_some() => {
                    "expired; the renewal was not approved in time".to_owned()
                }
                _ => "expired at the end of its term".to_owned(),
            };
            let event = self.exception_event(
                Actor::System(SystemActor::Scheduler),
                &next,
                ExceptionEventKind::Expired,
                note,
                None,
            )?;
            self.store.update_exception(&next, Some(now), &event)?;
            tracing::warn!(target: "writ::exceptions", exception = %id, "exception expired");
            return self.settle_exception(&next).map(Some);
        }
        self.settle_exception(&exception)?;
        Ok(None)
    }

    /// Records one step; if it changes what the exception covers, the exception is due at once
    /// until its findings are brought in line (done here, and again by the next pass after a
    /// crash).
    fn commit_exception(
        &self,
        actor: Actor,
        next: &Exception,
        kind: ExceptionEventKind,
        note: String,
        policy: Option<PolicyStamp>,
        coverage_changes: bool,
    ) -> Result<()> {
        let event = self.exception_event(actor, next, kind, note, policy)?;
        let due = if coverage_changes { Some(self.now()) } else { next.next_deadline() };
        self.store.update_exception(next, due, &event)?;
        tracing::info!(target: "writ::exceptions", exception = %next.id, state = %next.state, event = kind.as_str(), "exception updated");
        // The step is recorded; if its findings cannot be brought in line now, the exception
        // stays due and the next pass finishes the work.
        if coverage_changes && let Err(error) = self.settle_exception(next) {
            tracing::warn!(target: "writ::exceptions", exception = %next.id, error = %error, "findings not yet in line; the next pass retries");
        }
        Ok(())
    }

    /// Brings the findings of `exception` in line with its state, then schedules its next
    /// deadline. Returns the findings it reopened.
    fn settle_exception(&self, exception: &Exception) -> Result<Vec<String>> {
        let now = self.now();
        let mut reopened = Vec::new();
        if exception.state == ExceptionState::Active && now < exception.expires_at {
            for finding in self.store.findings(Some(FindingState::Open))? {
                if exception.covers(&finding, now) {
                    self.except_finding(finding, exception)?;
                }
            }
        } else {
            for finding in self.store.findings(Some(FindingState::Excepted))? {
                if finding.exception.as_deref() == Some(exception.id.as_str()) {
                    let note = format!(
                        "exception {} is {}: the finding is open again",
                        exception.id, exception.state
                    );
                    let id = finding.id.clone();
                    self.set_finding_state(
                        Actor::System(SystemActor::Scheduler),
                        finding,
                        FindingState::Open,
                        None,
                        note,
                    )?;
                    reopened.push(id);
                }
            }
        }
        self.store.reschedule_exception(&exception.id, exception.version, exception.next_deadline())?;
        Ok(reopened)
    }

    /// Marks an open finding as covered by `exception`.
    fn except_finding(&self, finding: Finding, exception: &Exception) -> Result<Finding> {
        let note = format!(
            "covered by exception {} (owner {}) until {}",
            exception.id, exception.owner, exception.expires_at
        );
        self.set_finding_state(
            Actor::System(SystemActor::Scheduler),
            finding,
            FindingState::Excepted,
            Some(exception.id.to_string()),
            note,
        )
    }

    /// If an active exception covers this open finding, marks it covered.
    pub(crate) fn apply_exceptions(&self, finding: Finding) -> Result<Finding> {
        if finding.state != FindingState::Open {
            return Ok(finding);
        }
        let now = self.now();
        let covering = self
            .store
            .exceptions(Some(ExceptionState::Active))?
            .into_iter()
            .find(|e| e.covers(&finding, now));
        match covering {
            Some(exception) => self.except_finding(finding, &exception),
            None => Ok(finding),
        }
    }

    /// The facts policy decides an exception on (with the approvals of its current round),
    /// and what the policy in force requires of it.
    fn exception_facts(&self, policy: &Policy, exception: &Exception) -> Result<(ChangeFacts, Validation)> {
        let requester = self.identity(&exception.requester)?;
        let owner: Identity = self.identity(&exception.owner)?;
        let approvers = exception.approvals.iter().map(|a| a.approver.to_string()).collect();
        let facts = ChangeFacts::exception(person_of(&requester), person_of(&owner), approvers);
        let validation = policy.validate(&facts).map_err(|denial| Denial {
            reason: format!("the policy in force now refuses this exception: {}", denial.reason),
            ..denial
        })?;
        Ok((facts, validation))
    }

    fn exception_event(
        &self,
        actor: Actor,
        exception: &Exception,
        kind: ExceptionEventKind,
        note: String,
        policy: Option<PolicyStamp>,
    ) -> Result<writ_store::NewEvent> {
        let event =
            RegistryEvent::Exception { actor, exception: Box::new(exception.clone()), kind, note, policy };
        Ok(registry_event(&event, self.hmac()?))
    }
}

/// Refuses a term longer than the policy allows.
fn within_term(policy: &Policy, now: Timestamp, until: Timestamp) -> Result<()> {
    let limits = policy.rules().exception_policy();
    if until.as_millis().saturating_sub(now.as_millis()) > limits.max_duration.as_millis() {
        return Err(Denial {
            code: "exception.duration_exceeded",
            rule: Some(limits.rule),
            reason: format!(
                "an exception's term lasts at most {} under the policy in force; {until} is later",
                limits.max_duration
            ),
        }
        .into());
    }
    Ok(())
}
