//! Exceptions: an owned, justified, time-bound acceptance that a control is not met for one
//! subject (a long-lived secret that cannot rotate yet, a break-glass change nobody approved in
//! time). An exception is approved like a change, by people other than its requester and its
//! owner; while active it covers the findings of its control about its subject; it stops
//! covering anything when it expires, unless it was approved again (renewed) before that.
//!
//! Every transition here is pure: the engine supplies the time, the approver slot policy chose
//! and the number of approvals policy requires, and records the result in the ledger.

use std::fmt;

use crate::change::{is_ulid, ulid};
use crate::error::Refusal;
use crate::finding::Finding;
use crate::machine::text;
use crate::name::IdentityName;
use crate::time::{Duration, Timestamp};

/// `EXC-` followed by a 26-character Crockford base32 ULID, like a change ID.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExceptionId(String);

impl ExceptionId {
    /// Builds an ID from a creation time and 80 random bits supplied by the caller.
    pub fn generate(at: Timestamp, random: u128) -> ExceptionId {
        ExceptionId(ulid("EXC-", at, random))
    }

    pub fn parse(input: &str) -> Result<ExceptionId, Refusal> {
        if !is_ulid("EXC-", input) {
            return Err(Refusal::InvalidValue {
                field: "exception id",
                input: input.chars().take(40).collect(),
                expected: "EXC- followed by 26 characters of Crockford base32",
            });
        }
        Ok(ExceptionId(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExceptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_enum!(
    /// Where an exception stands. `pending` waits for approval; `active` covers its findings
    /// until it expires; `rejected`, `expired` and `revoked` are final.
    ExceptionState, "exception state" {
        Pending => "pending",
        Active => "active",
        Rejected => "rejected",
        Expired => "expired",
        Revoked => "revoked",
    }
);

impl ExceptionState {
    /// Pending or active: the exception can still change on its own (expire).
    pub fn is_live(self) -> bool {
        matches!(self, ExceptionState::Pending | ExceptionState::Active)
    }
}

string_enum!(
    /// What one ledger event of an exception records.
    ExceptionEventKind, "exception event" {
        Requested => "exception.requested",
        Approved => "exception.approved",
        Rejected => "exception.rejected",
        RenewalRequested => "exception.renewal_requested",
        Expired => "exception.expired",
        Revoked => "exception.revoked",
        ExpiryWarned => "exception.expiry_warned",
    }
);

/// One approval of the current round (the first request, or the latest renewal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExceptionApproval {
    pub approver: IdentityName,
    pub at: Timestamp,
    /// The policy slot the approval filled.
    pub slot: Option<String>,
}

/// An exception and where it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    pub id: ExceptionId,
    /// The control not met, as the finding kind it produces (`secret.long_lived`,
    /// `breakglass.approval_missed`, …).
    pub control: String,
    /// What the exception is about, exactly as the findings name it (an identity, a change
    /// ID, `target:entitlement`).
    pub subject: String,
    /// The person accountable for the risk and for the compensating control.
    pub owner: IdentityName,
    pub requester: IdentityName,
    pub justification: String,
    /// What is done instead while the control is not met.
    pub compensating_control: String,
    pub state: ExceptionState,
    pub requested_at: Timestamp,
    pub updated_at: Timestamp,
    /// When the exception stops covering anything (the end of its current term).
    pub expires_at: Timestamp,
    /// The new end of term a pending re-approval would set.
    pub renewal: Option<Timestamp>,
    /// Approvals the current round needs (from policy, when it was last decided).
    pub approvals_needed: u8,
    pub approvals: Vec<ExceptionApproval>,
    /// Events recorded for this exception; each stored update must name the count it read.
    pub version: u64,
    /// The closest warning given that the current term ends (a day, an hour before); a new term
    /// starts without one.
    pub warned: Option<Duration>,
}

/// The longest a control name or a subject may be.
pub const MAX_CONTROL: usize = 100;
pub const MAX_SUBJECT: usize = 200;

/// Checks a control name: the code of a finding kind (lowercase letters, digits, `.`, `_`, `-`).
pub fn parse_control(input: &str) -> Result<String, Refusal> {
    let ok = !input.is_empty()
        && input.len() <= MAX_CONTROL // ASCII only, so bytes are characters
        && input.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !ok {
        return Err(Refusal::InvalidValue {
            field: "control",
            input: input.chars().take(40).collect(),
            expected: "a finding kind such as secret.long_lived (1 to 100 of a-z, 0-9, '.', '_', '-')",
        });
    }
    Ok(input.to_owned())
}

/// Checks a subject: 1 to 200 printable characters without spaces.
pub fn parse_subject(input: &str) -> Result<String, Refusal> {
    let ok = !input.is_empty()
        && input.chars().count() <= MAX_SUBJECT
        && !input.chars().any(|c| c.is_control() || c.is_whitespace());
    if !ok {
        return Err(Refusal::InvalidValue {
            field: "subject",
            input: input.chars().take(40).collect(),
            expected: "what the findings name: an identity, a change ID or TARGET:ENTITLEMENT (1 to 200 \
                       printable characters, no spaces)",
        });
    }
    Ok(input.to_owned())
}

/// What a new exception asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExceptionRequest {
    pub control: String,
    pub subject: String,
    pub owner: IdentityName,
    pub requester: IdentityName,
    pub justification: String,
    pub compensating_control: String,
    pub expires_at: Timestamp,
}

impl Exception {
    /// A new pending exception. The expiry must lie in the future.
    pub fn new(
        id: ExceptionId,
        request: ExceptionRequest,
        approvals_needed: u8,
        now: Timestamp,
    ) -> Result<Exception, Refusal> {
        if request.expires_at <= now {
            return Err(Refusal::TooEarly {
                field: "expiry",
                input: request.expires_at.to_rfc3339(),
                expected: "a time in the future",
            });
        }
        Ok(Exception {
            id,
            control: parse_control(&request.control)?,
            subject: parse_subject(&request.subject)?,
            owner: request.owner,
            requester: request.requester,
            justification: text(request.justification, "justification")?,
            compensating_control: text(request.compensating_control, "compensating control")?,
            state: ExceptionState::Pending,
            requested_at: now,
            updated_at: now,
            expires_at: request.expires_at,
            renewal: None,
            approvals_needed: approvals_needed.max(1),
            approvals: Vec::new(),
            version: 1,
            warned: None,
        })
    }

    /// Pending or active and not past its expiry.
    pub fn is_open_at(&self, now: Timestamp) -> bool {
        self.state.is_live() && now < self.expires_at
    }

    /// Whether this exception covers `finding` at `now`.
    pub fn covers(&self, finding: &Finding, now: Timestamp) -> bool {
        self.state == ExceptionState::Active
            && now < self.expires_at
            && finding.kind == self.control
            && finding.subject == self.subject
    }

    /// Awaiting approval: the first request, or a renewal of an active exception.
    pub fn awaits_approval(&self) -> bool {
        self.state == ExceptionState::Pending
            || (self.state == ExceptionState::Active && self.renewal.is_some())
    }

    /// The next time the scheduler must look at this exception on its own.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.state.is_live().then_some(self.expires_at)
    }

    fn refuse(&self, action: &'static str) -> Refusal {
        Refusal::ExceptionTransition { exception: self.id.to_string(), state: self.state, action }
    }

    fn next(&self, now: Timestamp) -> Exception {
        Exception { updated_at: now, version: self.version + 1, ..self.clone() }
    }

    /// Who `actor` is to this exception, if they have a stake in it.
    fn stake(&self, actor: &IdentityName) -> Option<&'static str> {
        if actor == &self.requester {
            Some("requester")
        } else if actor == &self.owner {
            Some("owner")
        } else {
            None
        }
    }

    /// Records one approval of the current round. With `needed` approvals from distinct people
    /// (neither the requester nor the owner), a pending exception becomes active, and a renewal
    /// takes effect (the term ends at the renewed time).
    pub fn approve(
        &self,
        approver: &IdentityName,
        slot: Option<String>,
        needed: u8,
        now: Timestamp,
    ) -> Result<Exception, Refusal> {
        if !self.awaits_approval() || !self.is_open_at(now) {
            return Err(self.refuse("approve"));
        }
        if let Some(role) = self.stake(approver) {
            return Err(Refusal::ExceptionSelfApproval {
                exception: self.id.to_string(),
                approver: approver.clone(),
                role,
            });
        }
        if self.approvals.iter().any(|a| &a.approver == approver) {
            return Err(Refusal::ExceptionDuplicateApproval {
                exception: self.id.to_string(),
                approver: approver.clone(),
            });
        }
        let mut next = self.next(now);
        next.approvals.push(ExceptionApproval { approver: approver.clone(), at: now, slot });
        next.approvals_needed = needed.max(1);
        if next.approvals.len() >= usize::from(next.approvals_needed) {
            next.state = ExceptionState::Active;
            if let Some(until) = next.renewal.take() {
                next.expires_at = until;
                next.warned = None;
            }
        }
        Ok(next)
    }

    /// Refuses the request (a pending exception ends `rejected`) or the renewal (an active
    /// exception keeps its current term and ends when it expires).
    pub fn reject(&self, actor: &IdentityName, now: Timestamp) -> Result<Exception, Refusal> {
        if !self.awaits_approval() || !self.is_open_at(now) {
            return Err(self.refuse("reject"));
        }
        if let Some(role) = self.stake(actor) {
            return Err(Refusal::ExceptionSelfRejection {
                exception: self.id.to_string(),
                actor: actor.clone(),
                role,
            });
        }
        let mut next = self.next(now);
        if next.state == ExceptionState::Pending {
            next.state = ExceptionState::Rejected;
        } else {
            next.renewal = None;
            next.approvals.clear();
        }
        Ok(next)
    }

    /// Records that its owner and requester were warned that the current term ends within
    /// `before`: only an active exception not past its end, once per term and warning (a warning
    /// for an hour after one for a day, not the other way round).
    pub fn warn(&self, before: Duration, now: Timestamp) -> Result<Exception, Refusal> {
        if self.state != ExceptionState::Active
            || !self.is_open_at(now)
            || self.warned.is_some_and(|w| w <= before)
        {
            return Err(self.refuse("warn"));
        }
        let mut next = self.next(now);
        next.warned = Some(before);
        Ok(next)
    }

    /// Asks for the term to end at `until` instead: a new approval round, while the current
    /// term still runs. Only an active exception can be renewed, and only to a later time.
    pub fn request_renewal(
        &self,
        until: Timestamp,
        needed: u8,
        now: Timestamp,
    ) -> Result<Exception, Refusal> {
        if self.state != ExceptionState::Active || !self.is_open_at(now) {
            return Err(self.refuse("renew"));
        }
        if until <= self.expires_at {
            return Err(Refusal::TooEarly {
                field: "renewal",
                input: until.to_rfc3339(),
                expected: "a time after the current expiry",
            });
        }
        let mut next = self.next(now);
        next.renewal = Some(until);
        next.approvals.clear();
        next.approvals_needed = needed.max(1);
        Ok(next)
    }

    /// Withdraws a pending or active exception: it stops covering anything now.
    pub fn revoke(&self, now: Timestamp) -> Result<Exception, Refusal> {
        if !self.state.is_live() {
            return Err(self.refuse("revoke"));
        }
        let mut next = self.next(now);
        next.state = ExceptionState::Revoked;
        next.renewal = None;
        Ok(next)
    }

    /// Ends the exception at its expiry (a pending request or renewal lapses with it).
    pub fn expire(&self, now: Timestamp) -> Result<Exception, Refusal> {
        if !self.state.is_live() {
            return Err(self.refuse("expire"));
        }
        if now < self.expires_at {
            return Err(Refusal::ExceptionNotDue {
                exception: self.id.to_string(),
                expires_at: self.expires_at,
            });
        }
        let mut next = self.next(now);
        next.state = ExceptionState::Expired;
        next.renewal = None;
        Ok(next)
    }
}
