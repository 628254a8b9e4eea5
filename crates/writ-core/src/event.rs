//! Events: the facts a change is made of. Each is appended to the ledger in the same
//! transaction as the state it produces.

use std::fmt;

use crate::access::{Role, TokenInfo};
use crate::change::{
    ApprovalRequirement, BusinessEvent, ChangeId, ChangeKind, Controls, ExternalRef, Justification,
    Observation, OpOutcome, PlannedOp,
};
use crate::identity::{Actor, Identity, Target};
use crate::name::{IdentityName, OrgName};
use crate::time::Timestamp;

/// The step of the control chain an event belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Registry,
    Request,
    Validation,
    Approval,
    Implementation,
    Verification,
    Review,
}

impl Phase {
    pub const STEPS: [Phase; 6] = [
        Phase::Request,
        Phase::Validation,
        Phase::Approval,
        Phase::Implementation,
        Phase::Verification,
        Phase::Review,
    ];

    /// Parses a step of the control chain (not `registry`).
    pub fn parse_step(input: &str) -> Result<Phase, crate::Refusal> {
        Phase::STEPS.into_iter().find(|p| p.as_str() == input).ok_or_else(|| crate::Refusal::InvalidValue {
            field: "step",
            input: input.chars().take(40).collect(),
            expected: "one of request, validation, approval, implementation, verification, review",
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Registry => "registry",
            Phase::Request => "request",
            Phase::Validation => "validation",
            Phase::Approval => "approval",
            Phase::Implementation => "implementation",
            Phase::Verification => "verification",
            Phase::Review => "review",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One fact about one change. `seq` is its position in that change's history (0, 1, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeEvent {
    pub change: ChangeId,
    pub seq: u64,
    pub at: Timestamp,
    pub actor: Actor,
    pub on_behalf_of: Option<IdentityName>,
    pub body: ChangeEventBody,
    /// Evidence captured at the moment of this step; the blobs are stored beside the event.
    pub evidence: Vec<EvidenceRef>,
    /// The policy decision behind this step, when policy made one.
    pub policy: Option<PolicyStamp>,
}

/// Which policy decided a step and how, so an auditor can replay the decision: the hash of the
/// policy files in force, the rules that decided (Cedar policy ids and workflow rule ids), and
/// for an approval the slot it filled.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PolicyStamp {
    pub hash: String,
    pub rules: Vec<String>,
    pub slot: Option<String>,
}

/// A content-addressed evidence blob: SHA-256 of its bytes, what it is, and its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidenceRef {
    pub digest: [u8; 32],
    pub label: String,
    pub media_type: String,
    pub size: u64,
}

/// What happened. The actor of `Requested` is the requester; of `Approved`, the approver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeEventBody {
    Requested {
        kind: ChangeKind,
        event: BusinessEvent,
        refs: Vec<ExternalRef>,
        vendor: Option<OrgName>,
        justification: Justification,
        ops: Vec<PlannedOp>,
        /// The maintenance window the change must be carried out in, if any.
        window: Option<crate::change::Window>,
        /// The person who answers for undoing it.
        rollback_owner: Option<IdentityName>,
        /// For a rollback: the change it undoes.
        rollback_of: Option<crate::change::RollbackOf>,
    },
    Validated {
        requirement: ApprovalRequirement,
        controls: Option<Box<Controls>>,
    },
    /// Policy was evaluated again (before an approval or execution) and decided differently:
    /// the change needs approval again under the new requirement. `kept` are the approvers
    /// whose approval still counts.
    Revalidated {
        requirement: ApprovalRequirement,
        controls: Box<Controls>,
        kept: Vec<IdentityName>,
        reason: String,
    },
    /// A pending approval passed its escalation deadline; `to` (a policy target such as
    /// `group:security`) was told, naming `people`.
    Escalated {
        to: String,
        people: Vec<IdentityName>,
    },
    /// A person policy lets break glass opened this change: it is authorised to execute at
    /// once, and needs `requirement.approvals` approvals by someone else by `approval_due`
    /// (post-hoc), then a review.
    BreakGlass {
        approval_due: Timestamp,
        requirement: ApprovalRequirement,
        controls: Box<Controls>,
    },
    Approved {
        expires_at: Timestamp,
    },
    Rejected {
        reason: String,
    },
    Cancelled {
        reason: String,
    },
    Expired {
        reason: String,
    },
    /// `claimed_until`: when the attempt's execution claim ends unless renewed; until then no
    /// other attempt may start or recover it, whatever a coordination table says.
    ExecutionStarted {
        attempt: u32,
        claimed_until: Option<Timestamp>,
    },
    Implemented {
        outcomes: Vec<OpOutcome>,
    },
    ExecutionFailed {
        error: String,
        outcomes: Vec<OpOutcome>,
    },
    /// Attempt `attempt` was cut off before its outcome was recorded (its process died, or the
    /// store refused the outcome after the targets were written). A later attempt observed the
    /// targets and records what it finds as that attempt's outcome: each operation's state
    /// before the attempt (as it observed then) and now, with the write the target carries the
    /// change ID on (a commit, an audit row), if any. The change is `implemented` if everything
    /// approved is in effect (`error` none), else `failed`.
    AttemptRecovered {
        attempt: u32,
        outcomes: Vec<OpOutcome>,
        error: Option<String>,
    },
    Verified {
        observations: Vec<Observation>,
    },
    /// Observed state differs from the approved one, or (for a cleanup) the identity still
    /// holds access somewhere (`residual`).
    VerificationFailed {
        observations: Vec<Observation>,
        mismatches: Vec<usize>,
        residual: Vec<crate::change::Holding>,
    },
    Reviewed {
        notes: String,
    },
    /// A person attached evidence to a step (the blob is in the event's evidence list);
    /// `late`: the change had moved past that step when it came.
    EvidenceAttached {
        step: Phase,
        name: String,
        late: bool,
    },
    /// Writ opened a change to end time-bound access granted by `origin`, due at `due_at`.
    /// It is pre-authorised by the origin's approval, so it starts `approved`; `requester` is
    /// the origin's requester (the person whose request set the bound).
    ExpiryOpened {
        origin: ChangeId,
        requester: IdentityName,
        due_at: Timestamp,
        ops: Vec<PlannedOp>,
    },
    /// Writ could not finish the change on its own within its bound; a person must act. The
    /// state does not change; the alert stays on the record.
    AlertRaised {
        reason: String,
    },
    /// A delivery from another system was attached to this change (the change's external
    /// references grow by the ones it carries). `late`: it is older than a version of its
    /// object already seen, so it was recorded and not acted on. Allowed in every state, a
    /// closed change included.
    Linked {
        delivery: Box<crate::intake::Delivery>,
        late: bool,
    },
    /// The time-bound access this change granted `identity` to `entitlement` ends at `ends_at`,
    /// within `before`: the holder and owner were warned (a notification). Allowed in every
    /// state; once per grant, end and warning.
    ExpiryWarned {
        identity: IdentityName,
        entitlement: crate::name::EntitlementRef,
        ends_at: Timestamp,
        before: crate::time::Duration,
    },
    /// A comment (sealed like a justification), made while the change was at `step`; `source`
    /// for one from another system, `late` if written before one of that source already here.
    /// Allowed in every state.
    Commented {
        step: Phase,
        text: String,
        source: Option<crate::change::CommentSource>,
        late: bool,
    },
    /// `rollback`, the change that undoes this one, reached `step`. Noted after the rollback's
    /// own event (which is the fact); allowed in every state, once per rollback and step.
    RollbackNoted {
        rollback: ChangeId,
        step: crate::change::RollbackStep,
    },
    /// A legal hold was placed (`held`) or lifted, with the reason (sealed). Allowed in every
    /// state; while held, nothing of the change is erased.
    LegalHold {
        held: bool,
        reason: String,
    },
    /// Retention erased, under `rule`, the clear text of `values` sealed values (class
    /// `clear_text`) or the evidence blobs `blobs` (class `evidence`), in the same transaction.
    /// The events that hold the seals and digests stay, so the ledger still verifies.
    Erased {
        class: crate::change::RetentionClass,
        rule: String,
        values: u32,
        blobs: Vec<[u8; 32]>,
    },
}

impl ChangeEventBody {
    /// Stable type name, used in the ledger record and the trail.
    pub fn type_name(&self) -> &'static str {
        match self {
            ChangeEventBody::Requested { .. } => "change.requested",
            ChangeEventBody::Validated { .. } => "change.validated",
            ChangeEventBody::Revalidated { .. } => "change.revalidated",
            ChangeEventBody::Escalated { .. } => "change.escalated",
            ChangeEventBody::BreakGlass { .. } => "change.breakglass",
            ChangeEventBody::Approved { .. } => "change.approved",
            ChangeEventBody::Rejected { .. } => "change.rejected",
            ChangeEventBody::Cancelled { .. } => "change.cancelled",
            ChangeEventBody::Expired { .. } => "change.expired",
            ChangeEventBody::ExecutionStarted { .. } => "change.execution_started",
            ChangeEventBody::Implemented { .. } => "change.implemented",
            ChangeEventBody::ExecutionFailed { .. } => "change.execution_failed",
            ChangeEventBody::AttemptRecovered { .. } => "change.attempt_recovered",
            ChangeEventBody::Verified { .. } => "change.verified",
            ChangeEventBody::VerificationFailed { .. } => "change.verification_failed",
            ChangeEventBody::Reviewed { .. } => "change.reviewed",
            ChangeEventBody::EvidenceAttached { .. } => "change.evidence_attached",
            ChangeEventBody::ExpiryOpened { .. } => "change.expiry_opened",
            ChangeEventBody::AlertRaised { .. } => "change.alert_raised",
            ChangeEventBody::Linked { .. } => "change.linked",
            ChangeEventBody::ExpiryWarned { .. } => "change.expiry_warned",
            ChangeEventBody::Commented { .. } => "change.commented",
            ChangeEventBody::RollbackNoted { .. } => "change.rollback_noted",
            ChangeEventBody::LegalHold { .. } => "change.legal_hold",
            ChangeEventBody::Erased { .. } => "change.erased",
        }
    }

    pub fn phase(&self) -> Phase {
        match self {
            ChangeEventBody::Requested { .. } | ChangeEventBody::ExpiryOpened { .. } => Phase::Request,
            ChangeEventBody::Validated { .. } | ChangeEventBody::Revalidated { .. } => Phase::Validation,
            ChangeEventBody::Escalated { .. } | ChangeEventBody::BreakGlass { .. } => Phase::Approval,
            ChangeEventBody::Approved { .. }
            | ChangeEventBody::Rejected { .. }
            | ChangeEventBody::Cancelled { .. }
            | ChangeEventBody::Expired { .. } => Phase::Approval,
            ChangeEventBody::ExecutionStarted { .. }
            | ChangeEventBody::Implemented { .. }
            | ChangeEventBody::ExecutionFailed { .. }
            | ChangeEventBody::AttemptRecovered { .. }
            | ChangeEventBody::AlertRaised { .. }
            | ChangeEventBody::RollbackNoted { .. }
            | ChangeEventBody::ExpiryWarned { .. } => Phase::Implementation,
            ChangeEventBody::Verified { .. } | ChangeEventBody::VerificationFailed { .. } => {
                Phase::Verification
            }
            ChangeEventBody::Reviewed { .. }
            | ChangeEventBody::LegalHold { .. }
            | ChangeEventBody::Erased { .. } => Phase::Review,
            ChangeEventBody::EvidenceAttached { step, .. } | ChangeEventBody::Commented { step, .. } => *step,
            // A commit is telemetry of the implementation; anything else is about the request.
            ChangeEventBody::Linked { delivery, .. } => {
                if delivery.refs.iter().any(|r| r.kind == crate::change::RefKind::Commit) {
                    Phase::Implementation
                } else {
                    Phase::Request
                }
            }
        }
    }
}

/// Registration of identities and targets: administrative facts outside any change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryEvent {
    IdentityAdded {
        actor: Actor,
        identity: Identity,
    },
    TargetAdded {
        actor: Actor,
        target: Target,
    },
    /// An API token was issued for an identity (its secret is never recorded).
    TokenIssued {
        actor: Actor,
        token: TokenInfo,
    },
    /// An API token was revoked before its expiry.
    TokenRevoked {
        actor: Actor,
        id: String,
        identity: IdentityName,
        at: Timestamp,
    },
    /// An identity was disabled, offboarded or made active again. Leaving `active` revokes the
    /// listed tokens in the same write; its roles are suspended while it is not active.
    IdentityState {
        actor: Actor,
        identity: IdentityName,
        from: crate::identity::IdentityState,
        to: crate::identity::IdentityState,
        reason: String,
        tokens_revoked: Vec<String>,
        at: Timestamp,
    },
    /// An admin linked an existing person to the identity provider's record of them (its SCIM
    /// `externalId`): a SCIM User with that `externalId` and the person's name adopts them.
    ScimLinked {
        actor: Actor,
        identity: IdentityName,
        external_id: String,
        at: Timestamp,
    },
    /// A delegation was granted (or its end moved).
    DelegationGranted {
        actor: Actor,
        delegation: crate::access::Delegation,
    },
    /// A delegation was revoked before its end.
    DelegationRevoked {
        actor: Actor,
        principal: IdentityName,
        delegate: IdentityName,
        at: Timestamp,
    },
    /// A role was assigned to an identity.
    RoleGranted {
        actor: Actor,
        identity: IdentityName,
        role: Role,
        at: Timestamp,
    },
    /// A role was taken away from an identity.
    RoleRevoked {
        actor: Actor,
        identity: IdentityName,
        role: Role,
        at: Timestamp,
    },
    /// A policy was loaded and put in force: its hash and the files it holds.
    PolicyLoaded {
        actor: Actor,
        hash: String,
        files: Vec<String>,
        at: Timestamp,
    },
    /// A finding reached the state it carries (`first`: it was opened); `note` says why.
    Finding {
        actor: Actor,
        finding: crate::finding::Finding,
        first: bool,
        note: String,
    },
    /// A delivery from another system was received (`duplicate`: again, with the same bytes),
    /// or a queued one was attached later; the record says what became of it.
    Delivery {
        actor: Actor,
        record: Box<crate::intake::DeliveryRecord>,
        kind: crate::intake::DeliveryEventKind,
    },
    /// A delivery was refused before anything in it was believed (a security event). The first
    /// refusal of a source for a reason in a window is recorded one by one; the rest of that
    /// window are counted and recorded as one [`RegistryEvent::RefusalsCounted`].
    DeliveryRefused {
        actor: Actor,
        refused: Box<crate::intake::RefusedDelivery>,
    },
    /// `count` more deliveries of `source` refused for `reason` between `from` and `at`, beyond
    /// the one recorded on its own; `samples` holds SHA-256 digests of some of them.
    RefusalsCounted {
        actor: Actor,
        source: crate::name::SourceName,
        reason: String,
        from: Timestamp,
        at: Timestamp,
        count: u64,
        samples: Vec<String>,
    },
    /// A checkpoint signing key joined the log's keys (`retired: false`: from the next
    /// checkpoint on it signs beside the others) or left them (`retired: true`: no checkpoint
    /// that covers this event may rest on it alone). `key` is its verifier key.
    LedgerKey {
        actor: Actor,
        key: String,
        retired: bool,
        at: Timestamp,
    },
    /// An admin put tables that had diverged from the ledger back to what its events say
    /// (`writ ledger repair --projections`); `repaired` names each row (`table key`).
    ProjectionsRepaired {
        actor: Actor,
        repaired: Vec<String>,
        at: Timestamp,
    },
    /// A person asked for the clear text about `subject` to be erased (`id`: `ERS-…`), citing
    /// `reference` (the request's ticket, not its text: it is recorded in clear); it is carried
    /// out once someone else approves it.
    ErasureRequested {
        actor: Actor,
        id: String,
        subject: IdentityName,
        reference: String,
        at: Timestamp,
    },
    /// An erasure request was approved (recorded once); the erasures follow, each a
    /// `change.erased` on the change it erases.
    ErasureApproved {
        actor: Actor,
        id: String,
        at: Timestamp,
    },
    /// A reconciliation saw an open (or excepted) finding again with a different account of it
    /// (an unmatched account that now holds something): its detail says what is true now.
    FindingChanged {
        actor: Actor,
        finding: crate::finding::Finding,
        note: String,
    },
    /// A change was opened to fix a finding (`writ finding remediate`); the finding carries it
    /// as its remediation and is resolved when that change is verified.
    FindingRemediation {
        actor: Actor,
        finding: crate::finding::Finding,
        note: String,
    },
    /// Use of accounts on a target was reported (`source`: the feed, or the target's own
    /// sessions seen by a reconciliation): each account's last use at that time.
    UsageReported {
        actor: Actor,
        target: crate::name::TargetName,
        source: String,
        entries: Vec<(String, Timestamp)>,
        at: Timestamp,
    },
    /// A reconciliation compared what a target holds with what Writ approved (or checked the
    /// registry's owners): the snapshot's digest, the count per situation and the findings seen.
    Reconciled {
        actor: Actor,
        run: Box<crate::reconcile::Run>,
    },
    /// A transfer of an NHI's ownership reached the state it carries (see
    /// [`crate::transfer`]); accepted, it made `to` the owner. A new request names the pending
    /// one it supersedes.
    Transfer {
        actor: Actor,
        transfer: Box<crate::transfer::Transfer>,
        supersedes: Option<crate::transfer::TransferId>,
    },
    /// An exception after one step (`kind`), with the policy decision behind it if policy made
    /// one, and a note (a reason for a rejection or revocation).
    Exception {
        actor: Actor,
        exception: Box<crate::exception::Exception>,
        kind: crate::exception::ExceptionEventKind,
        note: String,
        policy: Option<PolicyStamp>,
    },
}

impl RegistryEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            RegistryEvent::IdentityAdded { .. } => "registry.identity_added",
            RegistryEvent::TargetAdded { .. } => "registry.target_added",
            RegistryEvent::TokenIssued { .. } => "access.token_issued",
            RegistryEvent::TokenRevoked { .. } => "access.token_revoked",
            RegistryEvent::IdentityState { .. } => "registry.identity_state",
            RegistryEvent::DelegationGranted { .. } => "access.delegation_granted",
            RegistryEvent::ScimLinked { .. } => "registry.scim_linked",
            RegistryEvent::DelegationRevoked { .. } => "access.delegation_revoked",
            RegistryEvent::RoleGranted { .. } => "access.role_granted",
            RegistryEvent::RoleRevoked { .. } => "access.role_revoked",
            RegistryEvent::PolicyLoaded { .. } => "policy.loaded",
            RegistryEvent::Finding { finding, first, .. } => finding.event_type(*first),
            RegistryEvent::Exception { kind, .. } => kind.as_str(),
            RegistryEvent::Delivery { kind, .. } => kind.as_str(),
            RegistryEvent::DeliveryRefused { .. } => "intake.refused",
            RegistryEvent::RefusalsCounted { .. } => "intake.refusals_counted",
            RegistryEvent::ProjectionsRepaired { .. } => "ledger.projections_repaired",
            RegistryEvent::Reconciled { .. } => "reconcile.run",
            RegistryEvent::FindingRemediation { .. } => "finding.remediation_opened",
            RegistryEvent::FindingChanged { .. } => "finding.changed",
            RegistryEvent::UsageReported { .. } => "usage.reported",
            RegistryEvent::Transfer { transfer, .. } => transfer.state.event_type(),
            RegistryEvent::LedgerKey { retired: false, .. } => "ledger.key_added",
            RegistryEvent::LedgerKey { retired: true, .. } => "ledger.key_retired",
            RegistryEvent::ErasureRequested { .. } => "erasure.requested",
            RegistryEvent::ErasureApproved { .. } => "erasure.approved",
        }
    }

    pub fn actor(&self) -> &Actor {
        match self {
            RegistryEvent::IdentityAdded { actor, .. }
            | RegistryEvent::TargetAdded { actor, .. }
            | RegistryEvent::TokenIssued { actor, .. }
            | RegistryEvent::TokenRevoked { actor, .. }
            | RegistryEvent::IdentityState { actor, .. }
            | RegistryEvent::DelegationGranted { actor, .. }
            | RegistryEvent::ScimLinked { actor, .. }
            | RegistryEvent::DelegationRevoked { actor, .. }
            | RegistryEvent::RoleGranted { actor, .. }
            | RegistryEvent::RoleRevoked { actor, .. }
            | RegistryEvent::PolicyLoaded { actor, .. }
            | RegistryEvent::Finding { actor, .. }
            | RegistryEvent::Exception { actor, .. }
            | RegistryEvent::Delivery { actor, .. }
            | RegistryEvent::DeliveryRefused { actor, .. }
            | RegistryEvent::RefusalsCounted { actor, .. }
            | RegistryEvent::ProjectionsRepaired { actor, .. }
            | RegistryEvent::Reconciled { actor, .. }
            | RegistryEvent::FindingRemediation { actor, .. }
            | RegistryEvent::FindingChanged { actor, .. }
            | RegistryEvent::UsageReported { actor, .. }
            | RegistryEvent::Transfer { actor, .. }
            | RegistryEvent::ErasureRequested { actor, .. }
            | RegistryEvent::ErasureApproved { actor, .. }
            | RegistryEvent::LedgerKey { actor, .. } => actor,
        }
    }

    pub fn at(&self) -> Timestamp {
        match self {
            RegistryEvent::IdentityAdded { identity, .. } => identity.created_at,
            RegistryEvent::TargetAdded { target, .. } => target.created_at,
            RegistryEvent::TokenIssued { token, .. } => token.created_at,
            RegistryEvent::DelegationGranted { delegation, .. } => delegation.created_at,
            RegistryEvent::TokenRevoked { at, .. }
            | RegistryEvent::IdentityState { at, .. }
            | RegistryEvent::DelegationRevoked { at, .. }
            | RegistryEvent::ScimLinked { at, .. }
            | RegistryEvent::RefusalsCounted { at, .. }
            | RegistryEvent::ProjectionsRepaired { at, .. }
            | RegistryEvent::UsageReported { at, .. }
            | RegistryEvent::LedgerKey { at, .. }
            | RegistryEvent::ErasureRequested { at, .. }
            | RegistryEvent::ErasureApproved { at, .. }
            | RegistryEvent::RoleGranted { at, .. }
            | RegistryEvent::RoleRevoked { at, .. }
            | RegistryEvent::PolicyLoaded { at, .. } => *at,
            RegistryEvent::Finding { finding, .. }
            | RegistryEvent::FindingRemediation { finding, .. }
            | RegistryEvent::FindingChanged { finding, .. } => finding.updated_at,
            RegistryEvent::Exception { exception, .. } => exception.updated_at,
            RegistryEvent::Delivery { record, .. } => record.updated_at,
            RegistryEvent::DeliveryRefused { refused, .. } => refused.at,
            RegistryEvent::Reconciled { run, .. } => run.at,
            RegistryEvent::Transfer { transfer, .. } => transfer.decided_at.unwrap_or(transfer.requested_at),
        }
    }

    /// The policy decision behind this event, if policy made one.
    pub fn policy(&self) -> Option<&PolicyStamp> {
        match self {
            RegistryEvent::Exception { policy, .. } => policy.as_ref(),
            _ => None,
        }
    }
}

/// Any event Writ records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Change(ChangeEvent),
    Registry(RegistryEvent),
}
