//! The change record: the one place that answers who asked, who approved, who executed, what
//! changed, and whether the observed result was the approved one.

use std::fmt;

use crate::error::Refusal;
use crate::name::{EntitlementRef, IdentityName, OrgName};
use crate::time::{Duration, Timestamp};

/// `CHG-` followed by a 26-character Crockford base32 ULID: sortable by creation time, unique,
/// and never changed once issued.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeId(String);

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl ChangeId {
    /// Builds an ID from a creation time and 80 random bits supplied by the caller.
    pub fn generate(at: Timestamp, random: u128) -> ChangeId {
        ChangeId(ulid("CHG-", at, random))
    }

    pub fn parse(input: &str) -> Result<ChangeId, Refusal> {
        if !is_ulid("CHG-", input) {
            return Err(Refusal::InvalidValue {
                field: "change id",
                input: input.chars().take(40).collect(),
                expected: "CHG- followed by 26 characters of Crockford base32",
            });
        }
        Ok(ChangeId(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `prefix` and a 26-character Crockford base32 ULID of `at` and 80 bits of `random`.
pub(crate) fn ulid(prefix: &str, at: Timestamp, random: u128) -> String {
    let millis = u128::from(at.as_millis().max(0).unsigned_abs()) & ((1 << 48) - 1);
    let value = (millis << 80) | (random & ((1 << 80) - 1));
    let mut text = String::with_capacity(prefix.len() + 26);
    text.push_str(prefix);
    for i in (0..26).rev() {
        let digit = usize::try_from((value >> (i * 5)) & 0x1f).unwrap_or(0);
        text.push(char::from(CROCKFORD.get(digit).copied().unwrap_or(b'0')));
    }
    text
}

/// `ERS-` and a ULID: the id of a request to erase what Writ keeps about a person.
pub fn erasure_id(at: Timestamp, random: u128) -> String {
    ulid("ERS-", at, random)
}

/// Whether `input` is an erasure request's id.
pub fn is_erasure_id(input: &str) -> bool {
    is_ulid("ERS-", input)
}

/// Whether `input` is `prefix` followed by a ULID as [`ulid`] writes it.
pub(crate) fn is_ulid(prefix: &str, input: &str) -> bool {
    let Some(body) = input.strip_prefix(prefix) else { return false };
    let first_ok = body.bytes().next().is_some_and(|b| b <= b'7');
    body.len() == 26 && first_ok && body.bytes().all(|b| CROCKFORD.contains(&b))
}

impl fmt::Display for ChangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! string_enum {
    ($(#[$doc:meta])* $ty:ident, $field:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $ty { $($variant),+ }

        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }

            pub fn parse(input: &str) -> Result<$ty, Refusal> {
                match input {
                    $($text => Ok($ty::$variant),)+
                    _ => Err(Refusal::InvalidValue {
                        field: $field,
                        input: input.chars().take(40).collect(),
                        expected: concat!("one of", $(" ", $text),+),
                    }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// The lifecycle state of a change. `rejected`, `expired`, `cancelled` and `reviewed` are
    /// terminal.
    ChangeState, "state" {
        Requested => "requested",
        PendingApproval => "pending_approval",
        Approved => "approved",
        Rejected => "rejected",
        Expired => "expired",
        Implementing => "implementing",
        Implemented => "implemented",
        Failed => "failed",
        Verified => "verified",
        VerificationFailed => "verification_failed",
        Reviewed => "reviewed",
        Cancelled => "cancelled",
    }
);

impl ChangeState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ChangeState::Rejected | ChangeState::Expired | ChangeState::Cancelled | ChangeState::Reviewed
        )
    }
}

string_enum!(
    /// What a change does, derived from its planned operations.
    ChangeKind, "change kind" {
        Grant => "grant",
        Revoke => "revoke",
        Modify => "modify",
        TimeBoundElevation => "time_bound_elevation",
        RotateSecret => "rotate_secret",
        RotateCertificate => "rotate_certificate",
        CreateIdentity => "create_identity",
        DecommissionIdentity => "decommission_identity",
        TransferOwnership => "transfer_ownership",
    }
);

impl ChangeKind {
    /// What a change does, from the action of each of its operations (and whether a grant is
    /// time-bound) and its business event: only grants is a grant (a time-bound elevation if any
    /// is time-bound), only revokes a revoke (a decommission for a leaver), only rotations a
    /// secret rotation, anything else a modification.
    pub fn derive(ops: &[(OpAction, bool)], event: BusinessEvent) -> ChangeKind {
        let all = |action: OpAction| ops.iter().all(|(a, _)| *a == action);
        match (all(OpAction::Grant), all(OpAction::Revoke), all(OpAction::Rotate)) {
            (true, _, _) if ops.iter().any(|(_, bounded)| *bounded) => ChangeKind::TimeBoundElevation,
            (true, _, _) => ChangeKind::Grant,
            (_, true, _) if event == BusinessEvent::Leaver => ChangeKind::DecommissionIdentity,
            (_, true, _) => ChangeKind::Revoke,
            (_, _, true) => ChangeKind::RotateSecret,
            _ => ChangeKind::Modify,
        }
    }
}

string_enum!(
    /// The business event that caused a change.
    BusinessEvent, "business event" {
        Joiner => "joiner",
        Mover => "mover",
        Leaver => "leaver",
        Deploy => "deploy",
        Decommission => "decommission",
        Incident => "incident",
        Vendor => "vendor",
        Adhoc => "adhoc",
        Expiry => "expiry",
        Rollback => "rollback",
    }
);

string_enum!(
    /// The kind of an external reference carried by a change (`finding`: the finding, `FND-…`,
    /// a remediation change fixes).
    RefKind, "reference kind" {
        Ticket => "ticket",
        Commit => "commit",
        PullRequest => "pull_request",
        Record => "record",
        Finding => "finding",
    }
);

string_enum!(
    /// Whether an operation adds or removes access, or replaces a credential: a rotation issues
    /// a new credential to the holder and retires the previous one.
    OpAction, "operation" {
        Grant => "grant",
        Revoke => "revoke",
        Rotate => "rotate",
    }
);

impl OpAction {
    /// Whether the identity holds the entitlement once the operation is done (the approved
    /// state verification compares with).
    pub fn leaves_present(self) -> bool {
        !matches!(self, OpAction::Revoke)
    }
}

/// A link to the change in another system: an ITSM ticket, an SCM commit or pull request, an
/// HR or IdP record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExternalRef {
    pub kind: RefKind,
    value: String,
}

impl ExternalRef {
    pub const MAX_LEN: usize = 200;

    pub fn new(kind: RefKind, value: &str) -> Result<ExternalRef, Refusal> {
        let trimmed = value.trim();
        if trimmed.is_empty() || value.chars().count() > Self::MAX_LEN || value.chars().any(char::is_control)
        {
            return Err(Refusal::InvalidValue {
                field: "external reference",
                input: value.chars().take(40).collect(),
                expected: "1 to 200 printable characters",
            });
        }
        Ok(ExternalRef { kind, value: trimmed.to_owned() })
    }

    pub fn value(&self) -> &str {
        &self.value
    }
}

/// Why a change is asked for. Never blank, at most [`Justification::MAX_LEN`] characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Justification(String);

impl Justification {
    pub const MAX_LEN: usize = 2000;

    pub fn parse(input: &str) -> Result<Justification, Refusal> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(Refusal::EmptyJustification);
        }
        if !input.chars().all(crate::machine::allowed_in_text) {
            return Err(Refusal::ControlCharacter { field: "justification" });
        }
        if input.chars().count() > Self::MAX_LEN {
            return Err(Refusal::InvalidValue {
                field: "justification",
                input: trimmed.chars().take(40).collect(),
                expected: "at most 2000 characters",
            });
        }
        Ok(Justification(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A maintenance window: the change may be carried out from `start` until `end` (UTC
/// instants, end excluded); `zone` is the IANA time zone it was given in, kept for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
    pub zone: String,
}

impl Window {
    /// The longest window a change may carry.
    pub const MAX: Duration = Duration::hours(7 * 24);

    pub fn new(start: Timestamp, end: Timestamp, zone: &str) -> Result<Window, Refusal> {
        if end <= start || end.as_millis() - start.as_millis() > Self::MAX.as_millis() {
            return Err(Refusal::InvalidValue {
                field: "maintenance window",
                input: format!("{start} to {end}"),
                expected: "an end after its start, at most 7 days later",
            });
        }
        let zone_ok = !zone.is_empty()
            && zone.len() <= 64
            && zone.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-+".contains(&b));
        if !zone_ok {
            return Err(Refusal::InvalidValue {
                field: "maintenance window zone",
                input: zone.chars().take(40).collect(),
                expected: "an IANA time zone name such as Europe/Berlin or UTC",
            });
        }
        Ok(Window { start, end, zone: zone.to_owned() })
    }

    /// Whether `at` falls inside the window.
    pub fn contains(&self, at: Timestamp) -> bool {
        self.start <= at && at < self.end
    }
}

/// One step of the desired state: give or take `entitlement` for `identity`. A grant may be
/// time-bound: it expires `duration` after it is implemented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedOp {
    pub action: OpAction,
    pub identity: IdentityName,
    pub entitlement: EntitlementRef,
    pub duration: Option<Duration>,
}

/// How many distinct approvals a change needs and how long each stays valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApprovalRequirement {
    pub approvals: u8,
    pub validity: Duration,
}

impl ApprovalRequirement {
    /// The baseline until policy as code decides per change: one approval, valid for 24 hours.
    pub const BASELINE: ApprovalRequirement =
        ApprovalRequirement { approvals: 1, validity: Duration::hours(24) };
}

/// What policy decided at validation beyond the approval count: the risk tier, the approver
/// slot each approval must fill, when a pending approval escalates and to whom, and whether
/// the change needs a review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Controls {
    pub tier: String,
    pub slots: Vec<String>,
    pub escalate_at: Option<Timestamp>,
    pub escalate_to: Option<String>,
    pub review_required: bool,
    /// The rules (or `tier.NAME`) that demand the change be carried out in a maintenance
    /// window; empty when none does. A break-glass change waives them.
    pub window_rules: Vec<String>,
}

/// A break-glass change: executed at once for a person policy lets break glass, on the
/// condition that someone else approves it by `approval_due` and it is reviewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emergency {
    pub declared_at: Timestamp,
    pub approval_due: Timestamp,
}

/// One approver's decision, valid until `expires_at`; `slot` is the policy slot it filled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    pub approver: IdentityName,
    pub on_behalf_of: Option<IdentityName>,
    pub at: Timestamp,
    pub expires_at: Timestamp,
    pub slot: Option<String>,
}

/// What one operation did on its target: membership before and after, and the target's own
/// reference for the write (for git, the commit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpOutcome {
    pub op: usize,
    pub before: bool,
    pub after: bool,
    pub reference: Option<String>,
}

/// What verification saw on a target for one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub op: usize,
    pub present: bool,
}

/// One try at implementing the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Execution {
    pub executor: crate::identity::Actor,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub outcomes: Vec<OpOutcome>,
    pub error: Option<String>,
    /// The attempt was cut off and its outcome recorded by a later attempt (see
    /// `ChangeEventBody::AttemptRecovered`).
    pub recovered: bool,
}

/// Access an identity was observed to hold on a target.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Holding {
    pub identity: IdentityName,
    pub entitlement: EntitlementRef,
}

/// The result of comparing observed with approved state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub at: Timestamp,
    pub observations: Vec<Observation>,
    pub mismatches: Vec<usize>,
    /// For a cleanup (leaver, decommission): access the identity still held anywhere.
    pub residual: Vec<Holding>,
}

/// A terminal or closing decision by a person with a reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub actor: crate::identity::Actor,
    pub at: Timestamp,
    pub reason: String,
}

/// The change record, rebuilt by folding its events (see [`crate::machine::evolve`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub id: ChangeId,
    pub kind: ChangeKind,
    pub event: BusinessEvent,
    pub refs: Vec<ExternalRef>,
    pub requester: IdentityName,
    pub on_behalf_of: Option<IdentityName>,
    pub vendor: Option<OrgName>,
    pub justification: Justification,
    pub ops: Vec<PlannedOp>,
    /// When the change may be carried out, if it is bound to a maintenance window.
    pub window: Option<Window>,
    pub created_at: Timestamp,
    pub state: ChangeState,
    pub requirement: ApprovalRequirement,
    /// Tier, slots, escalation and review as policy decided them (None before policy as code).
    pub controls: Option<Controls>,
    /// When the pending approval was escalated, and to whom.
    pub escalated: Option<(Timestamp, String)>,
    /// Set for a break-glass change: approvals come after execution, by a deadline.
    pub emergency: Option<Emergency>,
    pub approvals: Vec<Approval>,
    pub executions: Vec<Execution>,
    pub verification: Option<Verification>,
    pub closing: Option<Decision>,
    /// For a change Writ opened itself to end time-bound access: the change that granted it.
    pub origin: Option<ChangeId>,
    /// Set when Writ gave up retrying on its own and a person must act (see
    /// [`crate::event::ChangeEventBody::AlertRaised`]).
    pub alert: Option<String>,
    /// Every evidence blob attached so far: the event sequence, the step, and the reference.
    pub evidence: Vec<(u64, crate::event::Phase, crate::event::EvidenceRef)>,
    /// Deliveries from other systems attached to this change, in the order they were attached.
    pub links: Vec<crate::intake::Link>,
    /// Warnings that time-bound access this change granted is about to end.
    pub warnings: Vec<ExpiryWarning>,
    /// Comments, in the order they were recorded.
    pub comments: Vec<Comment>,
    /// The person who answers for undoing this change (see [`RollbackOf`]).
    pub rollback_owner: Option<IdentityName>,
    /// For a rollback: the change it undoes.
    pub rollback_of: Option<RollbackOf>,
    /// For a change that was rolled back: each step its rollbacks reached, as noted on it.
    pub rollbacks: Vec<RollbackNote>,
    /// Set while the change is under legal hold: nothing of it is erased.
    pub legal_hold: Option<LegalHold>,
    /// What retention erased of it, in order.
    pub erasures: Vec<ErasureNote>,
    /// How many events have been folded into this record; the next event has this sequence.
    pub seq: u64,
}

/// The change a rollback undoes, and who requested that change (who may not approve, execute
/// or review its undoing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackOf {
    pub origin: ChangeId,
    pub origin_requester: IdentityName,
}

string_enum!(
    /// How far a rollback has come, as noted on the change it undoes.
    RollbackStep, "rollback step" {
        Requested => "requested",
        Approved => "approved",
        Executed => "executed",
        Verified => "verified",
        Failed => "failed",
        Closed => "closed",
    }
);

/// One step of a rollback, noted on the change it undoes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackNote {
    pub rollback: ChangeId,
    pub step: RollbackStep,
    pub at: Timestamp,
}

string_enum!(
    /// What retention erases: the clear text of sealed values (justifications, reasons, notes,
    /// comments, evidence names), or evidence blobs.
    RetentionClass, "retention class" {
        ClearText => "clear_text",
        Evidence => "evidence",
    }
);

/// A legal hold: who placed it, when, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegalHold {
    pub by: crate::identity::Actor,
    pub at: Timestamp,
    pub reason: String,
}

/// One erasure: under which rule, when, how many sealed values lost their clear text and which
/// evidence blobs were deleted (their digests stay in the ledger).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErasureNote {
    pub class: RetentionClass,
    pub rule: String,
    pub at: Timestamp,
    pub values: u32,
    pub blobs: Vec<[u8; 32]>,
}

/// Most comments one change may carry.
pub const MAX_COMMENTS: usize = 500;

/// A remark on a change by a person, or from a ticket through intake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    /// The sequence of the event that recorded it.
    pub seq: u64,
    pub at: Timestamp,
    /// Who wrote it: a person, or intake when the ticket's author maps to no identity.
    pub author: crate::identity::Actor,
    /// The step the change had reached when it was made.
    pub step: crate::event::Phase,
    pub text: String,
    /// Where it came from, for a comment from another system.
    pub source: Option<CommentSource>,
    /// Written before a comment of the same source already attached (it arrived out of order).
    pub late: bool,
}

/// A comment's origin in another system: the source (a configured hook), the comment's own id
/// there, the account that wrote it, and when it was written there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommentSource {
    pub source: crate::name::SourceName,
    pub id: String,
    pub account: Option<String>,
    pub written_at: Timestamp,
}

/// A warning, told to the holder and owner, that access a change granted ends soon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiryWarning {
    pub identity: IdentityName,
    pub entitlement: EntitlementRef,
    pub ends_at: Timestamp,
    /// How long before the end it was given for (one day, one hour).
    pub before: Duration,
    pub at: Timestamp,
}

impl Change {
    /// Every identity that asked for or benefits from this change: none of them may approve,
    /// execute or review it.
    pub fn interested_parties(&self) -> Vec<&IdentityName> {
        let mut parties: Vec<&IdentityName> = vec![&self.requester];
        parties.extend(self.on_behalf_of.iter());
        parties.extend(self.rollback_of.iter().map(|r| &r.origin_requester));
        parties.extend(self.ops.iter().map(|op| &op.identity));
        parties
    }

    /// The earliest expiry among the approvals, if any.
    pub fn approvals_valid_until(&self) -> Option<Timestamp> {
        self.approvals.iter().map(|a| a.expires_at).min()
    }

    pub fn last_execution(&self) -> Option<&Execution> {
        self.executions.last()
    }

    /// A break-glass change still waiting for the approvals it must get after the fact.
    pub fn awaits_post_hoc_approval(&self) -> bool {
        self.emergency.is_some()
            && self.approvals.len() < usize::from(self.requirement.approvals)
            && !matches!(self.state, ChangeState::Rejected | ChangeState::Cancelled | ChangeState::Expired)
    }

    /// The next time the scheduler must look at this change without being asked: a pending
    /// approval's escalation, or a break-glass change's post-hoc approval deadline (until it is
    /// approved or its miss is on record as an alert).
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let escalation = self
            .controls
            .as_ref()
            .filter(|c| self.state == ChangeState::PendingApproval && c.escalate_to.is_some())
            .and_then(|c| c.escalate_at)
            .filter(|_| self.escalated.is_none());
        let approval = self
            .emergency
            .filter(|_| self.awaits_post_hoc_approval() && self.alert.is_none())
            .map(|e| e.approval_due);
        escalation.into_iter().chain(approval).min()
    }
}
