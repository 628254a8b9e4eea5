//! Refusals: every reason the core says no. Each is data with a stable code, so the CLI, the
//! API and the ledger can all report it the same way. A refusal never changes anything.

use crate::change::{ChangeId, ChangeState};
use crate::identity::IdentityKind;
use crate::name::IdentityName;
use crate::time::Timestamp;

/// Why a command or an input was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A name is empty, too long or uses characters Writ does not accept.
    #[error("invalid {what} {input:?}: {reason}")]
    InvalidName { what: &'static str, input: String, reason: &'static str },
    /// A value is not one of the accepted forms.
    #[error("invalid {field} {input:?}: expected {expected}")]
    InvalidValue { field: &'static str, input: String, expected: &'static str },
    /// A well-formed time that is too early for what it is asked for (an expiry already past).
    #[error("{field} {input} is too early: expected {expected}")]
    TooEarly { field: &'static str, input: String, expected: &'static str },
    /// The actor's relationship to the change does not let them do this (see
    /// [`crate::authority`]).
    #[error("{actor} may not {action} {change}: {reason}")]
    NotYours { change: ChangeId, actor: IdentityName, action: &'static str, reason: String },
    /// Evidence the change cannot take now: it is closed, the step is not reached, or its quota
    /// is used up.
    #[error("{change} takes no more evidence here: {reason}")]
    EvidenceRefused { change: ChangeId, code: &'static str, reason: String },
    /// A duration could not be parsed or is out of range.
    #[error("invalid duration {input:?}: {reason}")]
    InvalidDuration { input: String, reason: &'static str },
    /// A change needs a reason a reviewer can read.
    #[error("justification must not be empty: say why this access is needed")]
    EmptyJustification,
    /// A change must plan at least one operation.
    #[error("a change needs at least one --grant or --revoke")]
    NoOperations,
    /// A change has more operations than one record should carry.
    #[error("a change may carry at most {max} operations, this one has {count}")]
    TooManyOperations { count: usize, max: usize },
    /// The same identity × entitlement appears twice.
    #[error("{identity} on {entitlement} appears more than once in this change")]
    DuplicateOperation { identity: IdentityName, entitlement: String },
    /// Only grants can be time-bound.
    #[error("--for applies to grants only; revocations and rotations take effect permanently")]
    DurationOnRevoke,
    /// Acting on behalf of yourself records nothing useful and hides the real principal.
    #[error("{requester} cannot act on behalf of themselves")]
    OnBehalfOfSelf { requester: IdentityName },
    /// Non-human identities need an accountable human owner.
    #[error("{identity} is a {kind} and needs an accountable human owner (--owner NAME)")]
    OwnerRequired { identity: IdentityName, kind: IdentityKind },
    /// Only non-human identities have owners.
    #[error("{identity} is a human; only non-human identities have an owner")]
    OwnerOnHuman { identity: IdentityName },
    /// An owner must be a person.
    #[error("owner {owner} of {identity} is a {owner_kind}; owners must be humans")]
    OwnerNotHuman { identity: IdentityName, owner: IdentityName, owner_kind: IdentityKind },
    /// Access cannot be granted to a non-human identity nobody is accountable for.
    #[error("{identity} is an orphaned {kind} (no owner); assign an owner before granting access")]
    OrphanIdentity { identity: IdentityName, kind: IdentityKind },
    /// Acting on behalf of someone needs their delegation, in force (see
    /// [`crate::access::Delegation`]).
    #[error(
        "{actor} may not act on behalf of {principal}: no delegation from {principal} to {actor} is in force (`writ delegation grant {principal} {actor} --for …`, by {principal} or an admin)"
    )]
    NoDelegation { actor: IdentityName, principal: IdentityName },
    /// A delegation only its principal (or an admin) may grant, and its principal, delegate or
    /// an admin revoke.
    #[error("{actor} may not {action} a delegation from {principal}: {reason}")]
    DelegationRefused { actor: String, principal: IdentityName, action: &'static str, reason: &'static str },
    /// Nobody disables or offboards themselves: another admin does (and the ledger shows who).
    #[error("{identity} cannot disable or offboard themselves: another admin does")]
    OwnStanding { identity: IdentityName },
    /// A disabled or offboarded identity does nothing in Writ.
    #[error(
        "{identity} is {state}: a disabled or offboarded identity cannot act in Writ (an admin can re-enable it with `writ identity enable {identity}`)"
    )]
    IdentityInactive { identity: IdentityName, state: crate::identity::IdentityState },
    /// Approvals, rejections and reviews need an accountable person.
    #[error("{actor} is a {kind}; only humans can {action}")]
    NotHuman { actor: IdentityName, kind: IdentityKind, action: &'static str },
    /// Separation of duties: the requester (or the person they act for, or a beneficiary)
    /// approving the change.
    #[error("separation of duties: {approver} cannot approve {change} because they are its {role}")]
    SelfApproval { change: ChangeId, approver: IdentityName, role: &'static str },
    /// Separation of duties: one approver counted twice.
    #[error(
        "separation of duties: {approver} has already approved {change}; a second approval must come from someone else"
    )]
    DuplicateApproval { change: ChangeId, approver: IdentityName },
    /// Separation of duties: a vendor approving a change requested by its own organisation.
    #[error("separation of duties: {approver} belongs to vendor {org}, which requested {change}")]
    VendorSelfApproval { change: ChangeId, approver: IdentityName, org: String },
    /// Separation of duties: the executor also asked for, benefits from or approved the change.
    #[error("separation of duties: {executor} cannot execute {change} because they are its {role}")]
    ExecutorNotIndependent { change: ChangeId, executor: IdentityName, role: &'static str },
    /// Separation of duties: the reviewer also asked for, approved or executed the change.
    #[error("separation of duties: {reviewer} cannot review {change} because they are its {role}")]
    ReviewerNotIndependent { change: ChangeId, reviewer: IdentityName, role: &'static str },
    /// A rejection must come from someone other than the requester (who can cancel instead).
    #[error("{actor} requested {change}; use cancel to withdraw your own change")]
    SelfRejection { change: ChangeId, actor: IdentityName },
    /// An approval's validity ended before execution.
    #[error("approval of {change} by {approver} expired at {expired_at}; the change needs a fresh approval")]
    ApprovalExpired { change: ChangeId, approver: IdentityName, expired_at: Timestamp },
    /// Execution without the approvals policy requires.
    #[error("{change} has {have} of {need} required approvals")]
    NotEnoughApprovals { change: ChangeId, have: usize, need: usize },
    /// The command does not apply in the change's current state.
    #[error("{change} is {state}; cannot {action}")]
    InvalidTransition { change: ChangeId, state: ChangeState, action: &'static str },
    /// A change that ends time-bound access cannot be withdrawn: access must end when its
    /// approval said it would.
    #[error("{change} ends time-bound access granted by {origin}; it cannot be cancelled or rejected")]
    ExpiryIrrevocable { change: ChangeId, origin: ChangeId },
    /// Nothing is due yet (for example expiring a change whose approval is still valid).
    #[error("{change} is not due to {action} yet")]
    NotDue { change: ChangeId, action: &'static str },
    /// A reason, note or similar text is empty or too long.
    #[error("{field} must be between 1 and {max} characters")]
    InvalidText { field: &'static str, max: usize },
    /// A new identity's name differs from an existing one only in case or end separators.
    #[error(
        "{name} looks like the existing identity {existing} (names are compared in lower case, without . - _ at the ends)"
    )]
    LookAlike { name: IdentityName, existing: IdentityName },
    /// The business event does not fit the operations (a `leaver` that grants).
    #[error("a {event} change {reason}")]
    EventMismatch { event: crate::change::BusinessEvent, reason: &'static str },
    /// A text holds a control character it may not (NUL, ESC; a line break in a one-line field).
    #[error("{field} may not contain control characters (line breaks only where it may span lines)")]
    ControlCharacter { field: &'static str },
    /// An execution or verification report does not cover the change's operations exactly.
    #[error("report for {change} does not cover its operations: {detail}")]
    InconsistentReport { change: ChangeId, detail: String },
    /// A break-glass request outside what break-glass may do.
    #[error("break-glass only grants short, time-bound access: {detail}")]
    BreakGlassScope { detail: String },
    /// A break-glass change is reviewed only once someone else has approved it after the fact.
    #[error(
        "{change} is a break-glass change: it needs {need} post-hoc approval(s) by someone else \
         (it has {have}) before it can be reviewed"
    )]
    PostHocApprovalMissing { change: ChangeId, have: usize, need: usize },
    /// The command does not apply in the exception's current state (or it has expired).
    #[error("{exception} is {state}; cannot {action}")]
    ExceptionTransition { exception: String, state: crate::exception::ExceptionState, action: &'static str },
    /// Separation of duties: the requester or owner of an exception approving it.
    #[error("separation of duties: {approver} cannot approve {exception} because they are its {role}")]
    ExceptionSelfApproval { exception: String, approver: IdentityName, role: &'static str },
    /// Separation of duties: the requester or owner rejecting their own exception (they revoke).
    #[error("{actor} is the {role} of {exception}; use revoke to withdraw your own exception")]
    ExceptionSelfRejection { exception: String, actor: IdentityName, role: &'static str },
    /// Separation of duties: one approver counted twice in a round.
    #[error(
        "separation of duties: {approver} has already approved {exception}; a second approval must come from someone else"
    )]
    ExceptionDuplicateApproval { exception: String, approver: IdentityName },
    /// An exception expires only at its expiry.
    #[error("{exception} does not expire until {expires_at}")]
    ExceptionNotDue { exception: String, expires_at: Timestamp },
    /// The delivery is already attached to the change; attaching it again would add nothing.
    #[error("delivery {delivery} from {sender} is already attached to {change}")]
    AlreadyLinked { change: ChangeId, sender: String, delivery: String },
    /// A transfer of ownership that may not be asked for or decided this way (see
    /// [`crate::transfer`]).
    #[error("{reason}")]
    TransferRefused { code: &'static str, reason: String },
    /// A rollback that cannot be opened: nothing was carried out, or one is already open.
    #[error("{change} cannot be rolled back now: {reason}")]
    RollbackRefused { change: ChangeId, code: &'static str, reason: String },
    /// What retention may not do to a change (a legal hold blocks every erasure).
    #[error("{change} is not erased: {reason}")]
    RetentionRefused { change: ChangeId, code: &'static str, reason: String },
    /// A comment the change cannot take: one already attached, or past its quota.
    #[error("{change} takes no more comments here: {reason}")]
    CommentRefused { change: ChangeId, code: &'static str, reason: String },
    /// Execution outside the change's maintenance window (before it opens or after it closed).
    #[error(
        "{change} may be carried out only in its maintenance window, {} to {} (given in {zone}); it is {now}",
        window.0, window.1
    )]
    OutsideWindow { change: ChangeId, window: (Timestamp, Timestamp), zone: String, now: Timestamp },
    /// Stored events do not fold into a valid change (corrupted or foreign history).
    #[error("history of {change} is inconsistent at event {seq}: {detail}")]
    CorruptHistory { change: String, seq: u64, detail: &'static str },
}

impl Refusal {
    /// A stable, machine-readable code (`sod.self_approval`, `input.invalid_duration`, …).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::InvalidName { .. } => "input.invalid_name",
            Refusal::InvalidValue { .. } => "input.invalid_value",
            Refusal::TooEarly { .. } => "input.too_early",
            Refusal::NotYours { .. } => "authority.not_yours",
            Refusal::EvidenceRefused { code, .. } => code,
            Refusal::CommentRefused { code, .. } => code,
            Refusal::RetentionRefused { code, .. } => code,
            Refusal::RollbackRefused { code, .. } => code,
            Refusal::TransferRefused { code, .. } => code,
            Refusal::InvalidDuration { .. } => "input.invalid_duration",
            Refusal::EmptyJustification => "input.empty_justification",
            Refusal::NoOperations => "input.no_operations",
            Refusal::TooManyOperations { .. } => "input.too_many_operations",
            Refusal::DuplicateOperation { .. } => "input.duplicate_operation",
            Refusal::DurationOnRevoke => "input.duration_on_revoke",
            Refusal::InvalidText { .. } => "input.invalid_text",
            Refusal::ControlCharacter { .. } => "input.control_character",
            Refusal::EventMismatch { .. } => "input.event_mismatch",
            Refusal::LookAlike { .. } => "identity.lookalike",
            Refusal::OnBehalfOfSelf { .. } => "input.on_behalf_of_self",
            Refusal::OwnerRequired { .. } => "identity.owner_required",
            Refusal::OwnerOnHuman { .. } => "identity.owner_on_human",
            Refusal::OwnerNotHuman { .. } => "identity.owner_not_human",
            Refusal::OrphanIdentity { .. } => "identity.orphan",
            Refusal::NotHuman { .. } => "identity.not_human",
            Refusal::IdentityInactive { .. } => "identity.inactive",
            Refusal::OwnStanding { .. } => "authority.own_standing",
            Refusal::NoDelegation { .. } => "authority.no_delegation",
            Refusal::DelegationRefused { .. } => "authority.not_yours",
            Refusal::SelfApproval { .. } => "sod.self_approval",
            Refusal::DuplicateApproval { .. } => "sod.duplicate_approval",
            Refusal::VendorSelfApproval { .. } => "sod.vendor_self_approval",
            Refusal::ExecutorNotIndependent { .. } => "sod.executor_not_independent",
            Refusal::ReviewerNotIndependent { .. } => "sod.reviewer_not_independent",
            Refusal::SelfRejection { .. } => "sod.self_rejection",
            Refusal::ApprovalExpired { .. } => "approval.expired",
            Refusal::NotEnoughApprovals { .. } => "approval.insufficient",
            Refusal::InvalidTransition { .. } => "state.invalid_transition",
            Refusal::NotDue { .. } => "state.not_due",
            Refusal::ExpiryIrrevocable { .. } => "state.expiry_irrevocable",
            Refusal::InconsistentReport { .. } => "engine.inconsistent_report",
            Refusal::BreakGlassScope { .. } => "breakglass.scope",
            Refusal::PostHocApprovalMissing { .. } => "breakglass.approval_missing",
            Refusal::ExceptionTransition { .. } => "state.invalid_transition",
            Refusal::ExceptionSelfApproval { .. } => "sod.self_approval",
            Refusal::ExceptionSelfRejection { .. } => "sod.self_rejection",
            Refusal::ExceptionDuplicateApproval { .. } => "sod.duplicate_approval",
            Refusal::ExceptionNotDue { .. } => "state.not_due",
            Refusal::AlreadyLinked { .. } => "intake.already_linked",
            Refusal::OutsideWindow { .. } => "window.outside",
            Refusal::CorruptHistory { .. } => "ledger.corrupt_history",
        }
    }

    /// True for separation-of-duties refusals.
    pub fn is_sod(&self) -> bool {
        self.code().starts_with("sod.")
    }
}
