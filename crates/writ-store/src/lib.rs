//! Storage traits for Writ, split by role, with their contracts. No SQL lives here: each
//! backend crate (`writ-store-sqlite`, later `writ-store-postgres`) owns its SQL and migrations.
//!
//! The one rule every backend keeps: **an event is appended in the same transaction as the
//! state change it records**. If the event cannot be committed, nothing of the commit is
//! visible (fail closed). Events are append-only; no method updates or deletes one.

pub mod group_commit;

use writ_core::access::{Delegation, Role, TokenInfo};
use writ_core::change::{ChangeId, ChangeKind, ChangeState, ExternalRef, RefKind};
use writ_core::exception::{Exception, ExceptionApproval, ExceptionId, ExceptionState};
use writ_core::finding::{Finding, FindingState};
use writ_core::identity::{Grant, Identity, IdentityState, Target};
use writ_core::intake::{Delivery, DeliveryRecord, Outcome};
use writ_core::name::{EntitlementRef, IdentityName, SourceName, TargetName};
use writ_core::notify::{Channel, Notice, NoticeState, Notification};
use writ_core::time::Timestamp;
use writ_core::transfer::{Transfer, TransferId, TransferState};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What can go wrong in a store. Kept small on purpose.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness or optimistic-concurrency precondition failed; nothing was written.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The store cannot write now (read-only, disk full, locked past the timeout). Nothing was
    /// written; the caller must fail closed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The stored data is not what this build expects (schema mismatch, corrupt rows).
    #[error("store data is inconsistent: {0}")]
    Corrupt(String),
    /// Anything else the backend reported.
    #[error("store error: {0}")]
    Other(String),
}

/// An event ready to append: the canonical record bytes plus the columns it is indexed by.
/// The store assigns the ledger index; it never looks inside `bytes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub change: Option<ChangeId>,
    pub seq: Option<u64>,
    pub type_name: &'static str,
    pub phase: &'static str,
    pub actor: String,
    pub on_behalf_of: Option<String>,
    pub at: Timestamp,
    pub bytes: Vec<u8>,
    /// The RFC 9162 leaf hash of `bytes`, recorded beside them.
    pub leaf: [u8; 32],
    /// The notifications that tell of this event, written in its transaction (the outbox):
    /// the `n`th gets the id `NTF-<index>-<n>` and is due at once.
    pub notices: Vec<Notice>,
}

/// An appended event as read back: its ledger index, exact stored bytes and recorded leaf hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    pub index: u64,
    pub change: Option<ChangeId>,
    pub seq: Option<u64>,
    pub bytes: Vec<u8>,
    pub leaf: Option<[u8; 32]>,
}

/// The part of an event verification needs: index, exact bytes, recorded leaf hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafRow {
    pub index: u64,
    pub bytes: Vec<u8>,
    pub leaf: Option<[u8; 32]>,
}

/// A signed checkpoint as stored: the tree size, its root, and the signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: [u8; 32],
    pub note: String,
    pub created_at: Timestamp,
}

/// A change's queryable summary (the events are the record; this is the index over them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeSummary {
    pub id: ChangeId,
    pub kind: ChangeKind,
    pub state: ChangeState,
    pub requester: IdentityName,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// How a commit changes the grants table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantUpdate {
    /// Insert or replace the grant of this identity × entitlement.
    Upsert(Grant),
    /// Remove the grant if present (removing an absent grant is not an error).
    Remove { identity: IdentityName, entitlement: EntitlementRef },
}

/// One atomic step of one change: the new summary, the events that produced it, and the grant
/// updates it implies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeCommit {
    pub summary: ChangeSummary,
    /// How many events of this change the caller read before deciding. The commit fails with
    /// [`StoreError::Conflict`] if another writer appended in between.
    pub expected_seq: u64,
    pub events: Vec<NewEvent>,
    pub grants: Vec<GrantUpdate>,
    /// Evidence blobs the events reference, stored in the same transaction (deduplicated).
    pub evidence: Vec<EvidenceBlob>,
    /// Clear text of the sensitive values the events hold as HMACs: (hmac, value).
    pub sensitive: Vec<(String, String)>,
    /// The next time the scheduler must look at the change on its own, if any (see
    /// `Change::next_deadline`).
    pub due_at: Option<Timestamp>,
    /// A lease taken or given up in the same transaction (an execution claim): a `Take` that
    /// finds the lease held and live fails the whole commit with [`StoreError::Conflict`].
    pub claim: Option<ClaimOp>,
    /// What the commit's `change.erased` event erases, in the same transaction (retention).
    pub erase: Option<Erasure>,
}

/// Clear text and evidence erased under retention: the kept values of these seals are deleted,
/// and these blobs, each recorded as erased first (blobs may be deleted only so). The events
/// that reference them stay, so the ledger and bundles still verify.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Erasure {
    pub hmacs: Vec<String>,
    pub blobs: Vec<[u8; 32]>,
}

/// What a commit does to a lease (see [`CoordinationStore::acquire_lease`]) in its own
/// transaction. An execution's claim is taken with its `execution_started` event and given up
/// with its outcome, so an attempt in flight and its claim come and go together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOp {
    /// Takes `name` for `holder` until `until`, only if it is free or expired at `now`.
    Take { name: String, holder: String, now: Timestamp, until: Timestamp },
    /// Gives `name` up if `holder` still holds it (a lease taken over by someone else stays).
    Release { name: String, holder: String },
}

/// The conflict a commit fails with when its [`ClaimOp::Take`] finds the lease held.
pub const CLAIM_HELD: &str = "claim held";

/// A content-addressed evidence blob. The caller computes `sha256` over `bytes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidenceBlob {
    pub sha256: [u8; 32],
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// Identities and targets, each registration recorded by an event in the same transaction.
pub trait RegistryStore {
    /// Adds an identity and appends `event`. Conflict if the name exists. Returns the index.
    fn add_identity(&self, identity: &Identity, event: &NewEvent) -> Result<u64>;
    /// The identity of that name, or `None`.
    fn identity(&self, name: &IdentityName) -> Result<Option<Identity>>;
    /// Every identity, ordered by name.
    fn identities(&self) -> Result<Vec<Identity>>;
    /// Adds a target and appends `event`. Conflict if the name exists. Returns the index.
    fn add_target(&self, target: &Target, event: &NewEvent) -> Result<u64>;
    /// The target of that name, or `None`.
    fn target(&self, name: &TargetName) -> Result<Option<Target>>;
    /// Every target, ordered by name.
    fn targets(&self) -> Result<Vec<Target>>;
}

/// Changes: their events and summaries.
pub trait ChangeStore {
    /// Applies `commit` atomically: upserts the summary, appends the events with contiguous
    /// ledger indices (in order) and applies the grant updates, or does nothing at all.
    /// Conflict if the change already has a different number of events than `expected_seq`
    /// (including "already exists" for a new change). Returns the assigned indices.
    fn commit(&self, commit: ChangeCommit) -> Result<Vec<u64>>;
    /// All events of one change in sequence order; empty if the change is unknown.
    fn change_events(&self, id: &ChangeId) -> Result<Vec<EventRow>>;
    /// Up to `limit` summaries, newest first, optionally only those in `state`, starting after
    /// (older than) `before` when given: keyset pagination.
    fn changes_page(
        &self,
        state: Option<ChangeState>,
        before: Option<&ChangeId>,
        limit: usize,
    ) -> Result<Vec<ChangeSummary>>;
    /// Every summary, newest first, optionally only those in `state`.
    fn changes(&self, state: Option<ChangeState>) -> Result<Vec<ChangeSummary>> {
        self.changes_page(state, None, usize::MAX)
    }
    /// Up to `limit` changes whose deadline is at or before `now`, earliest first.
    fn due_changes(&self, now: Timestamp, limit: usize) -> Result<Vec<ChangeId>>;
    /// Sets when the scheduler must next look at a change (a derived index, not a fact: no
    /// event), if the change still has `seq` events: a deadline computed from a change read
    /// before a newer commit is not written over the newer one.
    fn reschedule(&self, id: &ChangeId, seq: u64, due_at: Option<Timestamp>) -> Result<()>;
    /// Every change's row as stored (summary, event count, scheduler deadline), ordered by id:
    /// what the projection check compares with the fold of each change's events.
    fn change_rows(&self) -> Result<Vec<ChangeRow>>;
}

/// A change's stored row: its summary, how many events it counts and its scheduler deadline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRow {
    pub summary: ChangeSummary,
    pub seq: u64,
    pub due_at: Option<Timestamp>,
}

/// Findings, each state it reaches recorded by an event in the same transaction.
pub trait FindingStore {
    /// Records a new finding. Conflict if one with that id exists.
    fn open_finding(&self, finding: &Finding, event: &NewEvent) -> Result<u64>;
    /// Stores a finding's new state if it is still in `expected`; Conflict otherwise.
    fn update_finding(&self, finding: &Finding, expected: FindingState, event: &NewEvent) -> Result<u64>;
    /// The finding with this id, or `None`.
    fn finding(&self, id: &str) -> Result<Option<Finding>>;
    /// Findings ordered by id, optionally only those in `state`.
    fn findings(&self, state: Option<FindingState>) -> Result<Vec<Finding>>;
    /// The findings whose remediation is `change`, ordered by id.
    fn findings_remediated_by(&self, change: &ChangeId) -> Result<Vec<Finding>>;
    /// The findings raised in `scope` (a reconciliation's), ordered by id.
    fn findings_in_scope(&self, scope: &str) -> Result<Vec<Finding>>;
    /// Records one reconciliation in one transaction (see [`ReconcileCommit`]): nothing of it
    /// is visible if any part fails (a finding that is not in its expected state any more is
    /// a Conflict).
    fn record_reconcile(&self, commit: ReconcileCommit) -> Result<Vec<u64>>;
}

/// The last use of accounts on targets, as reported (by a feed, or the sessions a
/// reconciliation saw), each report recorded by an event in the same transaction.
pub trait UsageStore {
    /// Moves each account's last use on `target` forward to the reported time (never back),
    /// and appends `event`.
    fn report_usage(
        &self,
        target: &TargetName,
        entries: &[(String, Timestamp)],
        event: &NewEvent,
    ) -> Result<u64>;
    /// The last use of every account on `target` that has one, ordered by account.
    fn usage(&self, target: &TargetName) -> Result<Vec<(String, Timestamp)>>;
    /// Every row, ordered by target then account: what the projection check compares.
    fn all_usage(&self) -> Result<Vec<(TargetName, String, Timestamp)>>;
}

/// Transfers of an NHI's ownership, each write recorded by its event in the same transaction.
pub trait TransferStore {
    /// Writes `transfer` and appends `event`. A pending transfer is inserted: `Conflict` if
    /// another is pending for the identity, unless `supersede` is that one, written (as given,
    /// superseded) in the same transaction. A decided one replaces the row of its id, which
    /// must still be pending (`Conflict` otherwise); an accepted one also makes `to` the
    /// identity's owner, `Conflict` if its owner is no longer `from`.
    fn write_transfer(
        &self,
        transfer: &Transfer,
        supersede: Option<&Transfer>,
        event: &NewEvent,
    ) -> Result<u64>;
    /// The transfer with this id.
    fn transfer(&self, id: &TransferId) -> Result<Option<Transfer>>;
    /// Every transfer (of one identity, when given), oldest first.
    fn transfers(&self, identity: Option<&IdentityName>) -> Result<Vec<Transfer>>;
}

/// The columns of the `transfers` table, in this order, for both backends.
pub const TRANSFER_COLUMNS: &str = "id, identity, from_owner, to_owner, requested_by, reason, requested_ms, \
                                    expires_ms, state, decided_by, decided_ms, note";

/// A transfer as its stored columns hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferRow {
    pub id: String,
    pub identity: String,
    pub from_owner: Option<String>,
    pub to_owner: String,
    pub requested_by: String,
    pub reason: String,
    pub requested_ms: i64,
    pub expires_ms: i64,
    pub state: String,
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    pub note: Option<String>,
}

impl TransferRow {
    pub fn of(t: &Transfer) -> TransferRow {
        TransferRow {
            id: t.id.to_string(),
            identity: t.identity.to_string(),
            from_owner: t.from.as_ref().map(ToString::to_string),
            to_owner: t.to.to_string(),
            requested_by: t.requested_by.to_string(),
            reason: t.reason.clone(),
            requested_ms: t.requested_at.as_millis(),
            expires_ms: t.expires_at.as_millis(),
            state: t.state.as_str().to_owned(),
            decided_by: t.decided_by.as_ref().map(ToString::to_string),
            decided_ms: t.decided_at.map(Timestamp::as_millis),
            note: t.note.clone(),
        }
    }

    pub fn transfer(self) -> Result<Transfer> {
        let corrupt = |e: writ_core::Refusal| StoreError::Corrupt(format!("transfer {}: {e}", self.id));
        let name = |n: &str| IdentityName::parse(n).map_err(corrupt);
        Ok(Transfer {
            id: TransferId::parse(&self.id).map_err(corrupt)?,
            identity: name(&self.identity)?,
            from: self.from_owner.as_deref().map(name).transpose()?,
            to: name(&self.to_owner)?,
            requested_by: name(&self.requested_by)?,
            requested_at: Timestamp::from_millis(self.requested_ms),
            expires_at: Timestamp::from_millis(self.expires_ms),
            state: TransferState::parse(&self.state).map_err(corrupt)?,
            decided_by: self.decided_by.as_deref().map(name).transpose()?,
            decided_at: self.decided_ms.map(Timestamp::from_millis),
            note: self.note,
            reason: self.reason,
        })
    }
}

/// Notifications in their outbox: written with the event they tell of (see
/// [`NewEvent::notices`]), delivered by whoever holds each one's lease. Like execution claims,
/// their rows are coordination, never authority.
pub trait NotifyStore {
    /// Leases up to `limit` pending notifications due at `now` (oldest first) whose lease is
    /// free or ended, to `holder` until `until`, and returns them: two dispatchers never hold
    /// one notification at once.
    fn claim_notifications(
        &self,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Notification>>;
    /// Records the outcome of `holder`'s attempt and gives the lease up: `Conflict` (nothing
    /// written) if `holder` no longer holds it.
    fn settle_notification(&self, id: &str, holder: &str, outcome: &Attempt) -> Result<()>;
    fn notification(&self, id: &str) -> Result<Option<Notification>>;
    /// Notifications, newest first: of one change, in one state, at most `limit`.
    fn notifications(
        &self,
        change: Option<&ChangeId>,
        state: Option<NoticeState>,
        limit: usize,
    ) -> Result<Vec<Notification>>;
    /// Makes a dead or pending notification due again at `now` (its attempts are kept);
    /// `false` if it does not exist or was delivered.
    fn retry_notification(&self, id: &str, now: Timestamp) -> Result<bool>;
}

/// What an attempt to deliver a notification came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub state: NoticeState,
    /// Attempts made so far, this one included.
    pub attempts: u32,
    pub next_at: Timestamp,
    pub error: Option<String>,
    /// When it was delivered, if it was.
    pub delivered_at: Option<Timestamp>,
}

/// The columns of the `notifications` table a [`NotificationRow`] reads, in this order.
pub const NOTIFICATION_COLUMNS: &str = "id, event_idx, change_id, kind, recipient, channel, address, clear, state, \
                                        attempts, next_ms, last_error, created_ms, delivered_ms";

/// A notification as its stored columns hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationRow {
    pub id: String,
    pub event_idx: i64,
    pub change_id: Option<String>,
    pub kind: String,
    pub recipient: String,
    pub channel: String,
    pub address: String,
    pub clear: bool,
    pub state: String,
    pub attempts: i64,
    pub next_ms: i64,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub delivered_ms: Option<i64>,
}

impl NotificationRow {
    pub fn notification(self) -> Result<Notification> {
        let corrupt = |e: writ_core::Refusal| StoreError::Corrupt(format!("notification {}: {e}", self.id));
        let number = |v: i64, what: &str| {
            u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("notification {}: {what} {v}", self.id)))
        };
        Ok(Notification {
            event: number(self.event_idx, "event index")?,
            change: self.change_id.as_deref().map(ChangeId::parse).transpose().map_err(corrupt)?,
            notice: Notice {
                kind: self.kind,
                recipient: self.recipient,
                channel: Channel::parse(&self.channel).map_err(corrupt)?,
                address: self.address,
                clear: self.clear,
            },
            state: NoticeState::parse(&self.state).map_err(corrupt)?,
            attempts: u32::try_from(number(self.attempts, "attempts")?).unwrap_or(u32::MAX),
            next_at: Timestamp::from_millis(self.next_ms),
            last_error: self.last_error,
            created_at: Timestamp::from_millis(self.created_ms),
            delivered_at: self.delivered_ms.map(Timestamp::from_millis),
            id: self.id,
        })
    }
}

/// What one reconciliation writes: the findings it opened and moved, the findings it saw
/// again, the snapshot it observed and its own event, appended last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconcileCommit {
    /// New findings, each with its `finding.opened` event.
    pub opened: Vec<(Finding, NewEvent)>,
    /// Findings reopened or resolved, each stored only if still in the expected state.
    pub updated: Vec<(Finding, FindingState, NewEvent)>,
    /// Findings the run saw that are otherwise unchanged: their `last_seen` becomes `at` and
    /// their evidence the snapshot's digest.
    pub seen: Vec<String>,
    pub at: Timestamp,
    /// The observed snapshot, kept as an evidence blob.
    pub snapshot: EvidenceBlob,
    /// The `reconcile.run` event.
    pub run: NewEvent,
}

impl ReconcileCommit {
    /// Every event in the order it is appended.
    pub fn events(&self) -> Vec<NewEvent> {
        self.opened
            .iter()
            .map(|(_, e)| e.clone())
            .chain(self.updated.iter().map(|(_, _, e)| e.clone()))
            .chain(std::iter::once(self.run.clone()))
            .collect()
    }

    /// The snapshot's digest as findings carry it (lowercase hex).
    pub fn evidence_hex(&self) -> String {
        self.snapshot.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A finding's stored columns beyond the first nine, for the backends: severity, controls
/// (one per line), scope, evidence, remediation, last seen.
pub struct FindingExtra {
    pub severity: String,
    pub controls: String,
    pub scope: Option<String>,
    pub evidence: Option<String>,
    pub remediation: Option<String>,
    pub seen_ms: Option<i64>,
}

impl FindingExtra {
    pub fn of(f: &Finding) -> FindingExtra {
        FindingExtra {
            severity: f.severity.as_str().to_owned(),
            controls: f.controls.join("\n"),
            scope: f.scope.clone(),
            evidence: f.evidence.clone(),
            remediation: f.remediation.as_ref().map(ToString::to_string),
            seen_ms: Some(f.last_seen.as_millis()),
        }
    }

    /// Fills `f`'s fields from these columns, checking each (an empty severity is a row from
    /// before severities: the kind's default).
    pub fn apply(self, f: &mut Finding) -> Result<()> {
        let corrupt = |what: &'static str| {
            move |e: writ_core::Refusal| StoreError::Corrupt(format!("finding {what}: {e}"))
        };
        f.severity = match self.severity.as_str() {
            "" => writ_core::finding::Severity::of_kind(&f.kind),
            text => writ_core::finding::Severity::parse(text).map_err(corrupt("severity"))?,
        };
        f.controls = self.controls.lines().map(str::to_owned).collect();
        f.scope = self.scope;
        f.evidence = self.evidence;
        f.remediation =
            self.remediation.as_deref().map(ChangeId::parse).transpose().map_err(corrupt("remediation"))?;
        f.last_seen = self.seen_ms.map_or(f.opened_at, Timestamp::from_millis);
        Ok(())
    }
}

/// Exceptions, each step recorded by an event in the same transaction. `due_at` is when the
/// scheduler must next look at the exception on its own (its expiry, or at once while the
/// findings it covers are being brought in line).
pub trait ExceptionStore {
    /// Records a new exception (version 1). Conflict if one with that id exists.
    fn open_exception(
        &self,
        exception: &Exception,
        due_at: Option<Timestamp>,
        event: &NewEvent,
    ) -> Result<u64>;
    /// Stores `exception` if the stored version is the one before it; Conflict otherwise.
    fn update_exception(
        &self,
        exception: &Exception,
        due_at: Option<Timestamp>,
        event: &NewEvent,
    ) -> Result<u64>;
    /// The exception with this id, or `None`.
    fn exception(&self, id: &ExceptionId) -> Result<Option<Exception>>;
    /// Exceptions ordered by id, optionally only those in `state`.
    fn exceptions(&self, state: Option<ExceptionState>) -> Result<Vec<Exception>>;
    /// Up to `limit` exceptions due at or before `now`, earliest first.
    fn due_exceptions(&self, now: Timestamp, limit: usize) -> Result<Vec<ExceptionId>>;
    /// Sets when the scheduler must next look at an exception, if it is still at `version`.
    fn reschedule_exception(&self, id: &ExceptionId, version: u64, due_at: Option<Timestamp>) -> Result<()>;
}

/// An exception as a backend stores it, before the approvals of its round are attached.
pub struct ExceptionRow {
    pub id: String,
    pub control: String,
    pub subject: String,
    pub owner: String,
    pub requester: String,
    pub justification: String,
    pub compensating_control: String,
    pub state: String,
    pub requested: i64,
    pub updated: i64,
    pub expires: i64,
    pub renewal: Option<i64>,
    pub needed: i64,
    pub version: i64,
    pub warned: Option<i64>,
}

impl ExceptionRow {
    /// The exception, checking every stored value.
    pub fn into_exception(self, approvals: Vec<ExceptionApproval>) -> Result<Exception> {
        let corrupt = |what: &str| {
            let what = what.to_owned();
            move |e: writ_core::Refusal| StoreError::Corrupt(format!("exception {what}: {e}"))
        };
        Ok(Exception {
            id: ExceptionId::parse(&self.id).map_err(corrupt("id"))?,
            control: writ_core::exception::parse_control(&self.control).map_err(corrupt("control"))?,
            subject: writ_core::exception::parse_subject(&self.subject).map_err(corrupt("subject"))?,
            owner: IdentityName::parse(&self.owner).map_err(corrupt("owner"))?,
            requester: IdentityName::parse(&self.requester).map_err(corrupt("requester"))?,
            justification: self.justification,
            compensating_control: self.compensating_control,
            state: ExceptionState::parse(&self.state).map_err(corrupt("state"))?,
            requested_at: Timestamp::from_millis(self.requested),
            updated_at: Timestamp::from_millis(self.updated),
            expires_at: Timestamp::from_millis(self.expires),
            renewal: self.renewal.map(Timestamp::from_millis),
            approvals_needed: u8::try_from(self.needed)
                .map_err(|_| StoreError::Corrupt("exception approvals_needed out of range".into()))?,
            approvals,
            version: u64::try_from(self.version)
                .map_err(|_| StoreError::Corrupt("exception version out of range".into()))?,
            warned: self
                .warned
                .map(writ_core::time::Duration::from_millis)
                .transpose()
                .map_err(corrupt("warned"))?,
        })
    }

    /// One stored approval.
    pub fn approval(approver: &str, at_ms: i64, slot: Option<String>) -> Result<ExceptionApproval> {
        Ok(ExceptionApproval {
            approver: IdentityName::parse(approver)
                .map_err(|e| StoreError::Corrupt(format!("exception approver: {e}")))?,
            at: Timestamp::from_millis(at_ms),
            slot,
        })
    }
}

/// Refused deliveries of one source for one reason in one window (see
/// [`IntakeStore::add_refusal`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusalBucket {
    pub source: SourceName,
    pub reason: String,
    pub window: Timestamp,
    /// Every refusal counted, the first (recorded on its own) included.
    pub count: u64,
    /// Up to five SHA-256 digests (hex), the first's included.
    pub samples: Vec<String>,
}

/// A delegation from its stored columns, for the backends.
pub fn delegation(principal: &str, delegate: &str, until: i64, created: i64) -> Result<Delegation> {
    let name = |text: &str| {
        IdentityName::parse(text).map_err(|e| StoreError::Corrupt(format!("delegation identity: {e}")))
    };
    Ok(Delegation {
        principal: name(principal)?,
        delegate: name(delegate)?,
        until: Timestamp::from_millis(until),
        created_at: Timestamp::from_millis(created),
    })
}

/// A bucket from its stored columns (samples comma-separated), for the backends.
pub fn refusal_bucket(
    source: &str,
    reason: String,
    window: i64,
    count: i64,
    samples: &str,
) -> Result<RefusalBucket> {
    Ok(RefusalBucket {
        source: SourceName::parse(source).map_err(|e| StoreError::Corrupt(format!("refusal source: {e}")))?,
        reason,
        window: Timestamp::from_millis(window),
        count: u64::try_from(count).map_err(|_| StoreError::Corrupt(format!("refusal count {count}")))?,
        samples: samples.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
    })
}

/// Deliveries from other systems (`writ_core::intake`) and the external objects bound to
/// changes. Every delivery write carries its ledger event in the same transaction.
pub trait IntakeStore {
    /// The delivery `id` from `source`, if it was received before.
    fn delivery(&self, source: &SourceName, id: &str) -> Result<Option<DeliveryRecord>>;
    /// Deliveries, most recently updated first; only those with `outcome` if given; at most
    /// `limit`.
    fn deliveries(&self, outcome: Option<Outcome>, limit: usize) -> Result<Vec<DeliveryRecord>>;
    /// The first delivery from `source` with the body digest `sha256` (hex) received at or after
    /// `since`, if any.
    fn delivery_by_digest(
        &self,
        source: &SourceName,
        sha256: &str,
        since: Timestamp,
    ) -> Result<Option<DeliveryRecord>>;
    /// Deliveries about one external object, in the order they were received.
    fn deliveries_about(&self, source: &SourceName, object: &str) -> Result<Vec<DeliveryRecord>>;
    /// Records a delivery received for the first time, with its ledger event. A `correlated`
    /// delivery with a version moves its bound object's newest version forward (never back).
    /// `Conflict` if (source, id) is recorded already: nothing is written.
    fn add_delivery(&self, record: &DeliveryRecord, event: &NewEvent) -> Result<u64>;
    /// Replaces what is recorded of a delivery (outcome, changes, detail, attempts, update
    /// time), with its ledger event, and moves the object's version as `add_delivery` does.
    /// `Conflict` unless the stored outcome and attempts are still `expected`.
    fn update_delivery(
        &self,
        record: &DeliveryRecord,
        expected: (Outcome, u32),
        event: &NewEvent,
    ) -> Result<u64>;
    /// Counts a refused delivery (its SHA-256 `sha256`, hex) in the bucket of (source, reason,
    /// window). The first of a bucket appends `event`, the security event of that refusal, in
    /// the same transaction and returns its index; later ones only raise the bucket's count
    /// (keeping up to five digests) and return `None`.
    fn add_refusal(
        &self,
        bucket: (&SourceName, &str, Timestamp),
        sha256: &str,
        event: &NewEvent,
    ) -> Result<Option<u64>>;
    /// Buckets whose window started before `before`, oldest first, at most `limit`.
    fn refusal_buckets(&self, before: Timestamp, limit: usize) -> Result<Vec<RefusalBucket>>;
    /// Removes `bucket`, appending `event` (what it counted beyond its first) in the same
    /// transaction when given. `Conflict` if it is gone or its count moved since it was read.
    fn close_refusal_bucket(&self, bucket: &RefusalBucket, event: Option<&NewEvent>) -> Result<()>;
    /// The change an external object is bound to, and the newest version of it seen.
    fn object(&self, source: &SourceName, object: &str) -> Result<Option<(ChangeId, Option<Timestamp>)>>;
    /// Binds an external object to `change` unless it is bound already (the first writer wins,
    /// also across processes); returns the change it is bound to.
    fn bind_object(
        &self,
        source: &SourceName,
        object: &str,
        change: &ChangeId,
        at: Timestamp,
    ) -> Result<ChangeId>;
    /// Objects of `source` whose change ID is still to be written back to them, due by `now`,
    /// soonest first, at most `limit`: (object, change, attempts so far).
    fn writebacks_due(
        &self,
        source: &SourceName,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(String, ChangeId, u32)>>;
    /// Records one write-back attempt on an object: `written` (done at that time), or not yet:
    /// tried again from `next`, with `error` kept for a person to read.
    fn record_writeback(
        &self,
        source: &SourceName,
        object: &str,
        written: Option<Timestamp>,
        next: Timestamp,
        error: Option<&str>,
    ) -> Result<()>;
}

/// A delivery as both backends store it: one row, references as `kind TAB value` lines and
/// change IDs separated by spaces.
pub struct DeliveryRow {
    pub source: String,
    pub id: String,
    pub event: String,
    pub object: Option<String>,
    pub version: Option<i64>,
    pub sha256: String,
    pub received: i64,
    pub refs: String,
    pub outcome: String,
    pub changes: String,
    pub detail: String,
    pub attempts: i64,
    pub updated: i64,
}

impl DeliveryRow {
    pub fn from_record(r: &DeliveryRecord) -> Result<DeliveryRow> {
        let d = &r.delivery;
        Ok(DeliveryRow {
            source: d.source.to_string(),
            id: d.id.clone(),
            event: d.event.clone(),
            object: d.object.clone(),
            version: d.version.map(Timestamp::as_millis),
            sha256: d.sha256_hex(),
            received: d.received_at.as_millis(),
            refs: d.refs.iter().map(|x| format!("{}\t{}\n", x.kind, x.value())).collect(),
            outcome: r.outcome.as_str().to_owned(),
            changes: r.changes.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
            detail: r.detail.clone(),
            attempts: i64::from(r.attempts),
            updated: r.updated_at.as_millis(),
        })
    }

    /// The delivery, checking every stored value.
    pub fn into_record(self) -> Result<DeliveryRecord> {
        let corrupt = |what: &'static str| {
            move |e: writ_core::Refusal| StoreError::Corrupt(format!("delivery {what}: {e}"))
        };
        let mut sha256 = [0u8; 32];
        if self.sha256.len() != 64 {
            return Err(StoreError::Corrupt("delivery sha256 is not 64 hex digits".into()));
        }
        for (i, byte) in sha256.iter_mut().enumerate() {
            let pair = self.sha256.get(i * 2..i * 2 + 2).unwrap_or("");
            *byte = u8::from_str_radix(pair, 16)
                .map_err(|_| StoreError::Corrupt("delivery sha256 is not 64 hex digits".into()))?;
        }
        let refs = self
            .refs
            .lines()
            .map(|line| {
                let (kind, value) = line.split_once('\t').unwrap_or((line, ""));
                ExternalRef::new(RefKind::parse(kind)?, value)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(corrupt("reference"))?;
        Ok(DeliveryRecord {
            delivery: Delivery {
                source: SourceName::parse(&self.source).map_err(corrupt("source"))?,
                id: writ_core::intake::key(&self.id, "delivery id").map_err(corrupt("id"))?,
                event: self.event,
                object: self.object,
                version: self.version.map(Timestamp::from_millis),
                sha256,
                received_at: Timestamp::from_millis(self.received),
                refs,
            },
            outcome: Outcome::parse(&self.outcome).map_err(corrupt("outcome"))?,
            changes: self
                .changes
                .split_whitespace()
                .map(ChangeId::parse)
                .collect::<Result<_, _>>()
                .map_err(corrupt("change"))?,
            detail: self.detail,
            attempts: u32::try_from(self.attempts)
                .map_err(|_| StoreError::Corrupt("delivery attempts out of range".into()))?,
            updated_at: Timestamp::from_millis(self.updated),
        })
    }
}

/// The grants Writ implemented.
pub trait GrantStore {
    /// Grants held by one identity, ordered by entitlement.
    fn grants_of(&self, identity: &IdentityName) -> Result<Vec<Grant>>;
    /// Up to `limit` time-bound grants whose expiry is at or before `now`, ordered by expiry,
    /// then change, identity, target and entitlement.
    fn due_grants(&self, now: Timestamp, limit: usize) -> Result<Vec<Grant>>;
    /// Every grant, ordered by identity, target and entitlement.
    fn all_grants(&self) -> Result<Vec<Grant>>;
    /// Up to `limit` grants on `target` after the (identity, entitlement) pair `after`, ordered
    /// by identity then entitlement in byte order: a page of the stream reconciliation merges.
    fn grants_on(
        &self,
        target: &TargetName,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<GrantRow>>;
}

/// A grant as reconciliation streams it: its stored columns, not parsed into names (there are
/// millions; the few a finding needs are parsed there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRow {
    pub identity: String,
    pub entitlement: String,
    pub change: String,
    pub granted_ms: i64,
    pub expires_ms: Option<i64>,
}

/// The whole log, in index order.
pub trait EventLog {
    /// Up to `limit` events starting at index `from`.
    fn events(&self, from: u64, limit: usize) -> Result<Vec<EventRow>>;
    /// Up to `limit` events starting at `from` as (index, bytes, recorded leaf hash) only: the
    /// lean read that verification uses.
    fn leaves(&self, from: u64, limit: usize) -> Result<Vec<LeafRow>>;
    /// Number of events, which is also the next index.
    fn event_count(&self) -> Result<u64>;
}

/// Signed checkpoints over the event log, and the log's settings.
pub trait CheckpointStore {
    /// Appends a checkpoint. Idempotent for an identical one; `Conflict` if a different
    /// checkpoint of the same size exists (two signed roots for one size is a fork).
    fn add_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<()>;
    /// Every checkpoint, ordered by size.
    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>>;
    /// The checkpoint of the largest size, if any.
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        Ok(self.checkpoints()?.pop())
    }
    /// The value of a setting, or `None`.
    fn meta(&self, key: &str) -> Result<Option<String>>;
    /// Sets a setting once; returns the value now stored (the existing one if already set).
    fn init_meta(&self, key: &str, value: &str) -> Result<String>;
    /// Records a checkpoint signing key joining or leaving the log: its public key under
    /// `ledger.key.<id>` (kept once) and `event`, in one transaction. Returns the event's index.
    fn add_ledger_key(&self, id: &str, key: &str, event: &NewEvent) -> Result<u64>;
    /// Appends `event` and sets `key` to `value` in one transaction, if `key` is not set yet;
    /// `None`, with nothing written, if it is (a decision taken once, such as an erasure's
    /// approval). The key is coordination: the event is the fact.
    fn append_once(&self, key: &str, value: &str, event: &NewEvent) -> Result<Option<u64>>;
    /// Keeps a witness's cosignature on the checkpoint of `size` (idempotent per witness and
    /// size: the first kept stays).
    fn add_cosignature(&self, cosignature: &StoredCosignature) -> Result<()>;
    /// The cosignatures kept on the checkpoint of `size`, ordered by witness.
    fn cosignatures(&self, size: u64) -> Result<Vec<StoredCosignature>>;
    /// Each witness with the largest size it cosigned, ordered by witness.
    fn witness_heads(&self) -> Result<Vec<(String, u64)>>;
}

/// A witness's cosignature line on one checkpoint, and its timestamp (POSIX seconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCosignature {
    /// The witness's verifier key.
    pub witness: String,
    pub size: u64,
    pub line: String,
    pub signed_s: u64,
}

/// Evidence blobs by digest, and the clear text of sealed values.
pub trait EvidenceStore {
    /// The blob with this SHA-256, or `None`.
    fn evidence(&self, sha256: &[u8; 32]) -> Result<Option<EvidenceBlob>>;
    /// The clear text kept for a sealed value, or `None` if it was erased or never stored.
    fn sensitive(&self, hmac: &str) -> Result<Option<String>>;
    /// The clear texts kept for several sealed values at once (erased ones are absent).
    fn sensitive_many(&self, hmacs: &[String]) -> Result<std::collections::BTreeMap<String, String>> {
        let mut found = std::collections::BTreeMap::new();
        for hmac in hmacs {
            if let Some(value) = self.sensitive(hmac)? {
                found.insert(hmac.clone(), value);
            }
        }
        Ok(found)
    }
}

/// An API token as stored: what the ledger records about it, its keyed hash, and whether it was
/// revoked. The token's secret is never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredToken {
    pub info: TokenInfo,
    /// Keyed hash of the secret (`hk-…:base64`), compared in constant time on use.
    pub hash: String,
    pub revoked_at: Option<Timestamp>,
}

/// Who may use the API: tokens bound to identities, and roles assigned to identities. Every
/// write appends its event in the same transaction.
pub trait AccessStore: RegistryStore {
    /// Stores a new token and appends `event`. Conflict if the id exists, or the identity does
    /// not exist or is not active.
    fn add_token(&self, token: &StoredToken, event: &NewEvent) -> Result<u64>;
    /// The token with this public id, or `None`.
    fn token(&self, id: &str) -> Result<Option<StoredToken>>;
    /// Every token, oldest first.
    fn tokens(&self) -> Result<Vec<StoredToken>>;
    /// Marks the token revoked and appends `event`. Conflict if it is unknown or already revoked.
    fn revoke_token(&self, id: &str, at: Timestamp, event: &NewEvent) -> Result<u64>;
    /// Assigns (`present`) or removes a role and appends `event`. Conflict if the identity already
    /// is in that state, or does not exist.
    fn set_role(&self, identity: &IdentityName, role: Role, present: bool, event: &NewEvent) -> Result<u64>;
    /// Moves `identity` from state `from` to `to` and appends `event`. Leaving `active` revokes
    /// (at `at`) every token of the identity not yet revoked, which must be exactly `tokens`
    /// (the ones the event names). Conflict if the identity is not in `from`, or its tokens
    /// changed meanwhile.
    fn set_identity_state(
        &self,
        identity: &IdentityName,
        from: IdentityState,
        to: IdentityState,
        tokens: &[String],
        at: Timestamp,
        event: &NewEvent,
    ) -> Result<u64>;
    /// Records `delegation` (replacing the end of one between the same two identities) and
    /// appends `event`. Conflict if either identity is unknown.
    fn set_delegation(&self, delegation: &Delegation, event: &NewEvent) -> Result<u64>;
    /// Removes the delegation from `principal` to `delegate` and appends `event`. Conflict if
    /// there is none.
    fn revoke_delegation(
        &self,
        principal: &IdentityName,
        delegate: &IdentityName,
        event: &NewEvent,
    ) -> Result<u64>;
    /// The delegation from `principal` to `delegate`, whatever its end.
    fn delegation(&self, principal: &IdentityName, delegate: &IdentityName) -> Result<Option<Delegation>>;
    /// Every delegation, ordered by principal then delegate.
    fn delegations(&self) -> Result<Vec<Delegation>>;
    /// Every role assignment, ordered by identity then role.
    fn role_assignments(&self) -> Result<Vec<(IdentityName, Role)>>;
    /// The roles of one identity.
    fn roles_of(&self, identity: &IdentityName) -> Result<Vec<Role>>;
    /// A token with the identity it is bound to and that identity's roles: what authenticating a
    /// request needs, in one read where the backend can.
    fn token_principal(&self, id: &str) -> Result<Option<(StoredToken, Identity, Vec<Role>)>> {
        let Some(token) = self.token(id)? else { return Ok(None) };
        let Some(identity) = self.identity(&token.info.identity)? else { return Ok(None) };
        let roles = self.roles_of(&identity.name)?;
        Ok(Some((token, identity, roles)))
    }
}

/// The state of an idempotency key when a request claims it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// First use: the caller owns the key and must `finish` or `release` it.
    Fresh,
    /// Used before and finished: replay this result.
    Replay { status: u16, resource: String },
    /// Used before by a request that has not finished (or died mid-way): refuse, never redo.
    InProgress,
    /// Used before for a different request.
    Mismatch,
}

/// Coordination between instances through the database: idempotency keys and leases. Neither
/// is part of the ledger.
pub trait CoordinationStore {
    /// Claims `key` within `scope` (the caller's identity) for a request with `fingerprint`.
    fn claim_request(&self, scope: &str, key: &str, fingerprint: &str, now: Timestamp) -> Result<Claim>;
    /// Records the result of a claimed request.
    fn finish_request(&self, scope: &str, key: &str, status: u16, resource: &str) -> Result<()>;
    /// Gives up a claim whose request changed nothing, so the key can be used again.
    fn release_request(&self, scope: &str, key: &str) -> Result<()>;
    /// Forgets keys claimed before `before`, finished or not (a claim left by an interrupted
    /// request stops blocking its key then); returns how many.
    fn purge_requests(&self, before: Timestamp) -> Result<u64>;
    /// Takes or renews the lease `name` for `holder` until `until` if it is free, expired at
    /// `now`, or already held by `holder`. True if `holder` now holds it.
    fn acquire_lease(&self, name: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool>;
    /// The lease `name` as stored, live or expired: (holder, until).
    fn lease(&self, name: &str) -> Result<Option<(String, Timestamp)>>;
}

/// Policy versions: each bundle loaded is kept with the ledger event that recorded it, so a
/// decision's policy hash can be looked up and replayed.
pub trait PolicyStore {
    /// Keeps a loaded policy (`files` as JSON) and appends its event; it becomes the active one.
    fn add_policy(&self, hash: &str, files: &str, at: Timestamp, event: &NewEvent) -> Result<u64>;
    /// The active policy (the last loaded) when `hash` is None, else the one with that hash:
    /// (hash, files as JSON).
    fn policy(&self, hash: Option<&str>) -> Result<Option<(String, String)>>;
}

/// A SCIM resource (a User or a Group pushed by an identity provider) as stored: the resource
/// document (JSON, attributes only), its version, and for a User the Writ identity it is and the
/// lifecycle state the engine has settled (JSON, the engine's own). A deleted resource is kept
/// as a tombstone: its lifecycle must still be settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimRow {
    /// `User` or `Group`.
    pub kind: String,
    pub id: String,
    /// The unique name (userName, displayName), lower-cased: unique among live resources.
    pub name_key: String,
    pub identity: Option<IdentityName>,
    pub doc: String,
    pub version: i64,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub deleted: bool,
    pub settled: String,
}

/// SCIM resources. Every write carries the delivery that records it (and its ledger event) in
/// the same transaction.
pub trait ScimStore {
    /// The resource, deleted or not.
    fn scim_resource(&self, kind: &str, id: &str) -> Result<Option<ScimRow>>;
    /// Every resource of `kind` (tombstones too if `deleted`), oldest first.
    fn scim_resources(&self, kind: &str, deleted: bool) -> Result<Vec<ScimRow>>;
    /// Creates (`expected` None) or replaces (`expected` Some(version read)) a resource, and
    /// records `delivery` with its ledger event. `Conflict` if the version moved on or a live
    /// resource of the kind has the name already: nothing is written.
    fn scim_write(
        &self,
        row: &ScimRow,
        expected: Option<i64>,
        delivery: &DeliveryRecord,
        event: &NewEvent,
    ) -> Result<u64>;
    /// Links an existing identity to the identity provider's `external_id` and appends
    /// `event`. Conflict if the identity is linked already, the id is another's, or the
    /// identity is unknown.
    fn link_scim(&self, identity: &IdentityName, external_id: &str, event: &NewEvent) -> Result<u64>;
    /// The `externalId` an admin linked `identity` to, if any.
    fn scim_link(&self, identity: &IdentityName) -> Result<Option<String>>;
    /// Every link, ordered by identity.
    fn scim_links(&self) -> Result<Vec<(IdentityName, String)>>;
    /// Records the lifecycle state settled for a resource. `Conflict` unless the stored state
    /// is still `expected`.
    fn scim_settle(&self, kind: &str, id: &str, settled: &str, expected: &str) -> Result<()>;
    /// When the identity provider last wrote any resource (deletions included), if ever.
    fn scim_last_write(&self) -> Result<Option<Timestamp>>;
}

/// One row of a projection put back to what the ledger's events say; `None` (or `false`) means
/// the ledger has no such row, so the row is removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fix {
    Identity(IdentityName, Option<Identity>),
    /// A target and its settings (the settings are replaced as a whole).
    Target(TargetName, Option<Target>),
    /// A token's facts and revocation. The secret's keyed hash is not in the ledger: a row that
    /// exists keeps it, a row re-created gets an empty hash that no secret matches.
    Token(String, Option<(TokenInfo, Option<Timestamp>)>),
    Role(IdentityName, Role, bool),
    Delegation(IdentityName, IdentityName, Option<Delegation>),
    ScimLink(IdentityName, Option<String>),
    /// Removes every stored policy no `policy.loaded` event names (`loaded`), then, if the newest
    /// row is not `in_force`, stores the kept files of `in_force` again as the newest.
    Policy {
        loaded: Vec<String>,
        in_force: Option<String>,
    },
    Change(ChangeId, Option<ChangeRow>),
    Grant(IdentityName, EntitlementRef, Option<Grant>),
    Finding(String, Option<Finding>),
    /// An exception with its approvals and scheduler deadline.
    Exception(ExceptionId, Option<(Exception, Option<Timestamp>)>),
    /// Kept clear text that no longer opens its seal: it is erased (it cannot be restored from
    /// the ledger, which holds only the seal).
    Sensitive(String),
    /// An account's last use on a target.
    Usage(TargetName, String, Option<Timestamp>),
    Transfer(TransferId, Option<Transfer>),
}

/// Putting diverged projections back from the ledger.
pub trait RepairStore {
    /// Applies every fix and appends `event` (which names them) in one transaction, or does
    /// nothing: `Conflict` unless the log still holds exactly `events` events (the fixes were
    /// computed from them). Returns the event's index.
    fn repair(&self, fixes: &[Fix], event: &NewEvent, events: u64) -> Result<u64>;
}

/// Everything the engine needs, as one object.
pub trait Store:
    RegistryStore
    + RepairStore
    + PolicyStore
    + FindingStore
    + UsageStore
    + TransferStore
    + ExceptionStore
    + IntakeStore
    + ScimStore
    + ChangeStore
    + GrantStore
    + EventLog
    + CheckpointStore
    + EvidenceStore
    + AccessStore
    + CoordinationStore
    + NotifyStore
    + Send
    + Sync
{
}

impl<T> Store for T where
    T: RegistryStore
        + RepairStore
        + PolicyStore
        + FindingStore
        + UsageStore
        + TransferStore
        + ExceptionStore
        + IntakeStore
        + ScimStore
        + ChangeStore
        + GrantStore
        + EventLog
        + CheckpointStore
        + EvidenceStore
        + AccessStore
        + CoordinationStore
        + NotifyStore
        + Send
        + Sync
{
}
