//! SQLite implementation of the `writ-store` traits: one database file in WAL mode with
//! `synchronous=FULL`, so a commit that returned is on disk.
//!
//! Architecture invariant: all SQL for SQLite lives in this crate; migrations are in
//! `migrations/` and applied in order by [`SqliteStore::open`].

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

mod writer;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use writ_core::change::{ChangeId, ChangeKind, ChangeState};
use writ_core::identity::{ConnectorKind, Grant, Identity, IdentityKind, IdentityState, Target};
use writ_core::name::{EntitlementName, EntitlementRef, IdentityName, OrgName, TargetName};
use writ_core::time::Timestamp;
use writ_store::{
    CLAIM_HELD, ChangeCommit, ChangeRow, ChangeStore, ChangeSummary, CheckpointStore, ClaimOp, EventLog,
    EventRow, EvidenceBlob, EvidenceStore, GrantRow, GrantStore, GrantUpdate, LeafRow, NewEvent,
    RegistryStore, Result, StoreError, StoredCheckpoint, StoredCosignature,
};
use writer::Writer;

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_ledger.sql"),
    include_str!("../migrations/0003_evidence.sql"),
    include_str!("../migrations/0004_sensitive.sql"),
    include_str!("../migrations/0005_access.sql"),
    include_str!("../migrations/0006_expiry.sql"),
    include_str!("../migrations/0007_policy.sql"),
    include_str!("../migrations/0008_findings.sql"),
    include_str!("../migrations/0009_exceptions.sql"),
    include_str!("../migrations/0010_intake.sql"),
    include_str!("../migrations/0011_scim.sql"),
    include_str!("../migrations/0012_writeback.sql"),
    include_str!("../migrations/0013_identity_state.sql"),
    include_str!("../migrations/0014_refusals.sql"),
    include_str!("../migrations/0015_delegations.sql"),
    include_str!("../migrations/0016_scim_links.sql"),
    include_str!("../migrations/0017_cosignatures.sql"),
    include_str!("../migrations/0018_reconcile.sql"),
    include_str!("../migrations/0019_usage.sql"),
    include_str!("../migrations/0020_transfers.sql"),
    include_str!("../migrations/0021_grants_by_target.sql"),
    include_str!("../migrations/0022_scim_last_write.sql"),
    include_str!("../migrations/0023_notifications.sql"),
    include_str!("../migrations/0024_exception_warnings.sql"),
    include_str!("../migrations/0025_retention.sql"),
];

mod access;
mod exceptions;
mod findings;
mod intake;
mod notify;
mod repair;
mod scim;
mod transfers;

/// How to open the database file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the file and schema if missing (`writ init`).
    Create,
    /// The file must exist and carry a Writ schema.
    Existing,
}

/// A Writ store in one SQLite file. All writes of a process go through one writer thread that
/// group-commits them (see `writer.rs`); reads use their own connection. Between processes,
/// writes are serialised by SQLite's lock (`BEGIN IMMEDIATE`), so several may share the file.
pub struct SqliteStore {
    readers: Vec<Mutex<Connection>>,
    turn: std::sync::atomic::AtomicUsize,
    writer: Writer,
}

/// Read connections per store: WAL lets readers proceed side by side and beside the writer.
const READERS: usize = 4;

impl SqliteStore {
    pub fn open(path: &Path, mode: OpenMode) -> Result<SqliteStore> {
        if mode == OpenMode::Existing && !path.exists() {
            return Err(StoreError::Unavailable(format!(
                "no Writ database at {}; run `writ init` first",
                path.display()
            )));
        }
        if !path.exists() {
            create_private(path)?;
        }
        let writer = connect(path)?;
        migrate(&writer, mode)?;
        let readers = (0..READERS).map(|_| connect(path).map(Mutex::new)).collect::<Result<Vec<_>>>()?;
        Ok(SqliteStore {
            readers,
            turn: std::sync::atomic::AtomicUsize::new(0),
            writer: writer::writer(writer),
        })
    }

    /// A free read connection if there is one, otherwise one in turn.
    fn lock(&self) -> Result<MutexGuard<'_, Connection>> {
        for reader in &self.readers {
            if let Ok(guard) = reader.try_lock() {
                return Ok(guard);
            }
        }
        let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.readers.len().max(1);
        let reader = self.readers.get(turn).ok_or_else(|| StoreError::Other("no read connection".into()))?;
        reader.lock().map_err(|_| StoreError::Other("connection lock poisoned".into()))
    }

    /// Runs a statement on the writer connection, for tests that break the store on purpose.
    #[cfg(test)]
    pub(crate) fn writer_pragma(&self, sql: &'static str) -> Result<()> {
        self.writer
            .submit(Box::new(move |tx| tx.execute_batch(sql).map(|()| Vec::new()).map_err(map_err)))?;
        Ok(())
    }
}

/// Creates the database file readable by its owner only (0600): it holds sealed clear text and
/// SCIM's personal data. SQLite gives its `-wal` and `-shm` files the database file's mode.
fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", path.display())))
}

fn connect(path: &Path) -> Result<Connection> {
    let connection = Connection::open(path).map_err(map_err)?;
    connection
        .execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;",
        )
        .map_err(map_err)?;
    connection.busy_timeout(std::time::Duration::from_secs(5)).map_err(map_err)?;
    Ok(connection)
}

fn migrate(connection: &Connection, mode: OpenMode) -> Result<()> {
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(map_err)?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > known {
        return Err(StoreError::Corrupt(format!(
            "database schema version {version} is newer than this build ({known}); upgrade writ"
        )));
    }
    if version == 0 && mode == OpenMode::Existing {
        return Err(StoreError::Corrupt(
            "file is not a Writ database (no schema); run `writ init` on a new path".into(),
        ));
    }
    for (number, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
        let next = i64::try_from(number).unwrap_or(i64::MAX) + 1;
        let script = format!("BEGIN IMMEDIATE; {sql}\nPRAGMA user_version = {next}; COMMIT;");
        connection.execute_batch(&script).map_err(map_err)?;
    }
    Ok(())
}

/// Maps SQLite errors onto the store's small error set. Write failures caused by the
/// environment (read-only file, full disk, lock timeout, I/O error) become `Unavailable`.
pub(crate) fn map_err(error: rusqlite::Error) -> StoreError {
    map_err_ref(&error)
}

fn map_err_ref(error: &rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    if let rusqlite::Error::SqliteFailure(failure, message) = error {
        let detail = message.clone().unwrap_or_else(|| failure.to_string());
        return match failure.code {
            ErrorCode::ConstraintViolation => StoreError::Conflict(detail),
            ErrorCode::ReadOnly
            | ErrorCode::DiskFull
            | ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied => StoreError::Unavailable(detail),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StoreError::Corrupt(detail),
            _ => StoreError::Other(detail),
        };
    }
    StoreError::Other(error.to_string())
}

pub(crate) fn corrupt(what: &str) -> impl Fn(writ_core::Refusal) -> StoreError + '_ {
    move |refusal| StoreError::Corrupt(format!("{what}: {refusal}"))
}

pub(crate) fn to_i64(value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt("integer out of range".into()))
}

pub(crate) fn append(tx: &Transaction<'_>, events: &[NewEvent]) -> Result<Vec<u64>> {
    let next: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(idx) + 1, 0) FROM events")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .map_err(map_err)?;
    let mut statement = tx
        .prepare_cached(
            "INSERT INTO events (idx, change_id, seq, type, phase, actor, on_behalf_of, at_ms, bytes, leaf)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(map_err)?;
    let mut indices = Vec::with_capacity(events.len());
    for (offset, event) in events.iter().enumerate() {
        let index = next + i64::try_from(offset).unwrap_or(i64::MAX);
        let seq = event.seq.map(to_i64).transpose()?;
        statement
            .execute(params![
                index,
                event.change.as_ref().map(ChangeId::as_str),
                seq,
                event.type_name,
                event.phase,
                event.actor,
                event.on_behalf_of,
                event.at.as_millis(),
                event.bytes,
                event.leaf.as_slice(),
            ])
            .map_err(map_err)?;
        notify::write_notices(tx, index, event)?;
        indices.push(u64::try_from(index).unwrap_or(0));
    }
    Ok(indices)
}

fn write_identity(tx: &Transaction<'_>, identity: &Identity, event: &NewEvent) -> Result<Vec<u64>> {
    tx.prepare_cached(
        "INSERT INTO identities (name, kind, owner, vendor, created_ms, email) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            identity.name.as_str(),
            identity.kind.as_str(),
            identity.owner.as_ref().map(IdentityName::as_str),
            identity.vendor.as_ref().map(OrgName::as_str),
            identity.created_at.as_millis(),
            identity.email,
        ])
    })
    .map_err(|e| match map_err(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("identity {} already exists", identity.name)),
        other => other,
    })?;
    append(tx, std::slice::from_ref(event))
}

fn write_target(tx: &Transaction<'_>, target: &Target, event: &NewEvent) -> Result<Vec<u64>> {
    tx.prepare_cached("INSERT INTO targets (name, connector, created_ms) VALUES (?1, ?2, ?3)")
        .and_then(|mut statement| {
            statement.execute(params![
                target.name.as_str(),
                target.connector.as_str(),
                target.created_at.as_millis()
            ])
        })
        .map_err(|e| match map_err(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("target {} already exists", target.name)),
            other => other,
        })?;
    for (key, value) in &target.settings {
        tx.prepare_cached("INSERT INTO target_settings (target, key, value) VALUES (?1, ?2, ?3)")
            .and_then(|mut statement| statement.execute(params![target.name.as_str(), key, value]))
            .map_err(map_err)?;
    }
    append(tx, std::slice::from_ref(event))
}

/// A commit's lease step (see [`writ_store::ClaimOp`]), in its transaction.
fn write_claim(tx: &Transaction<'_>, claim: &ClaimOp) -> Result<()> {
    match claim {
        ClaimOp::Take { name, holder, now, until } => {
            let taken = tx
                .prepare_cached(
                    "INSERT INTO leases (name, holder, until_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
                     WHERE leases.until_ms < ?4",
                )
                .and_then(|mut s| s.execute(params![name, holder, until.as_millis(), now.as_millis()]))
                .map_err(map_err)?;
            if taken != 1 {
                return Err(StoreError::Conflict(format!("{CLAIM_HELD}: {name}")));
            }
        }
        ClaimOp::Release { name, holder } => {
            tx.prepare_cached("DELETE FROM leases WHERE name = ?1 AND holder = ?2")
                .and_then(|mut s| s.execute(params![name, holder]))
                .map_err(map_err)?;
        }
    }
    Ok(())
}

fn write_commit(tx: &Transaction<'_>, commit: &ChangeCommit) -> Result<Vec<u64>> {
    let summary = &commit.summary;
    let stored_seq: Option<i64> = tx
        .prepare_cached("SELECT seq FROM changes WHERE id = ?1")
        .and_then(|mut statement| statement.query_row([summary.id.as_str()], |row| row.get(0)))
        .optional()
        .map_err(map_err)?;
    let expected = to_i64(commit.expected_seq)?;
    if stored_seq.unwrap_or(0) != expected || (stored_seq.is_some() && expected == 0) {
        return Err(StoreError::Conflict(format!(
            "{} was changed by someone else meanwhile; read it again and retry",
            summary.id
        )));
    }
    if let Some(claim) = &commit.claim {
        write_claim(tx, claim)?;
    }
    let new_seq = expected + i64::try_from(commit.events.len()).unwrap_or(i64::MAX);
    tx.prepare_cached(
        "INSERT INTO changes (id, kind, state, requester, created_ms, updated_ms, seq, due_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(id) DO UPDATE SET state = excluded.state, kind = excluded.kind,
             updated_ms = excluded.updated_ms, seq = excluded.seq, due_ms = excluded.due_ms",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            summary.id.as_str(),
            summary.kind.as_str(),
            summary.state.as_str(),
            summary.requester.as_str(),
            summary.created_at.as_millis(),
            summary.updated_at.as_millis(),
            new_seq,
            commit.due_at.map(Timestamp::as_millis),
        ])
    })
    .map_err(map_err)?;
    let indices = append(tx, &commit.events)?;
    if let Some(erase) = &commit.erase {
        for hmac in &erase.hmacs {
            tx.prepare_cached("DELETE FROM sensitive WHERE hmac = ?1")
                .and_then(|mut statement| statement.execute(params![hmac]))
                .map_err(map_err)?;
        }
        for digest in &erase.blobs {
            tx.prepare_cached("INSERT OR IGNORE INTO evidence_erased (sha256, erased_ms) VALUES (?1, ?2)")
                .and_then(|mut statement| {
                    statement.execute(params![digest.as_slice(), summary.updated_at.as_millis()])
                })
                .map_err(map_err)?;
            tx.prepare_cached("DELETE FROM evidence WHERE sha256 = ?1")
                .and_then(|mut statement| statement.execute(params![digest.as_slice()]))
                .map_err(map_err)?;
        }
    }
    for (hmac, value) in &commit.sensitive {
        tx.prepare_cached("INSERT OR IGNORE INTO sensitive (hmac, value) VALUES (?1, ?2)")
            .and_then(|mut statement| statement.execute(params![hmac, value]))
            .map_err(map_err)?;
    }
    for blob in &commit.evidence {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO evidence (sha256, media_type, bytes, created_ms) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                blob.sha256.as_slice(),
                blob.media_type,
                blob.bytes,
                summary.updated_at.as_millis()
            ])
        })
        .map_err(map_err)?;
    }
    for update in &commit.grants {
        match update {
            GrantUpdate::Upsert(grant) => tx.prepare_cached("INSERT OR REPLACE INTO grants (identity, target, entitlement, change_id, granted_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)").and_then(|mut statement| statement.execute(params![
                    grant.identity.as_str(),
                    grant.entitlement.target.as_str(),
                    grant.entitlement.entitlement.as_str(),
                    grant.change.as_str(),
                    grant.granted_at.as_millis(),
                    grant.expires_at.map(Timestamp::as_millis),
                ],)),
            GrantUpdate::Remove { identity, entitlement } => tx.prepare_cached("DELETE FROM grants WHERE identity = ?1 AND target = ?2 AND entitlement = ?3").and_then(|mut statement| statement.execute(params![identity.as_str(), entitlement.target.as_str(), entitlement.entitlement.as_str()],)),
        }
        .map_err(map_err)?;
    }
    Ok(indices)
}

impl RegistryStore for SqliteStore {
    fn add_identity(&self, identity: &Identity, event: &NewEvent) -> Result<u64> {
        let (identity, event) = (identity.clone(), event.clone());
        let indices = self.writer.submit(Box::new(move |tx| write_identity(tx, &identity, &event)))?;
        indices.first().copied().ok_or_else(|| StoreError::Other("no index assigned".into()))
    }

    fn identity(&self, name: &IdentityName) -> Result<Option<Identity>> {
        let connection = self.lock()?;
        connection
            .prepare_cached(
                "SELECT name, kind, owner, vendor, created_ms, state, email FROM identities WHERE name = ?1",
            )
            .and_then(|mut statement| statement.query_row([name.as_str()], identity_columns))
            .optional()
            .map_err(map_err)?
            .map(parse_identity)
            .transpose()
    }

    fn identities(&self) -> Result<Vec<Identity>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare(
                "SELECT name, kind, owner, vendor, created_ms, state, email FROM identities ORDER BY name",
            )
            .map_err(map_err)?;
        let rows = statement.query_map([], identity_columns).map_err(map_err)?;
        rows.map(|row| row.map_err(map_err).and_then(parse_identity)).collect()
    }

    fn add_target(&self, target: &Target, event: &NewEvent) -> Result<u64> {
        let (target, event) = (target.clone(), event.clone());
        let indices = self.writer.submit(Box::new(move |tx| write_target(tx, &target, &event)))?;
        indices.first().copied().ok_or_else(|| StoreError::Other("no index assigned".into()))
    }

    fn target(&self, name: &TargetName) -> Result<Option<Target>> {
        let connection = self.lock()?;
        let row: Option<(String, i64)> = connection
            .prepare_cached("SELECT connector, created_ms FROM targets WHERE name = ?1")
            .and_then(|mut statement| {
                statement.query_row([name.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
            })
            .optional()
            .map_err(map_err)?;
        let Some((connector, created_ms)) = row else { return Ok(None) };
        let settings = connection
            .prepare_cached("SELECT key, value FROM target_settings WHERE target = ?1 ORDER BY key")
            .and_then(|mut statement| {
                statement.query_map([name.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))?.collect()
            })
            .map_err(map_err)?;
        Ok(Some(Target {
            name: name.clone(),
            connector: ConnectorKind::parse(&connector).map_err(corrupt("connector"))?,
            settings,
            created_at: Timestamp::from_millis(created_ms),
        }))
    }

    fn targets(&self) -> Result<Vec<Target>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare("SELECT name, connector, created_ms FROM targets ORDER BY name")
            .map_err(map_err)?;
        let rows: Vec<(String, String, i64)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .map_err(map_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(map_err)?;
        let mut settings = connection
            .prepare("SELECT key, value FROM target_settings WHERE target = ?1 ORDER BY key")
            .map_err(map_err)?;
        let mut targets = Vec::with_capacity(rows.len());
        for (name, connector, created_ms) in rows {
            let pairs = settings
                .query_map([&name], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(map_err)?
                .collect::<rusqlite::Result<Vec<(String, String)>>>()
                .map_err(map_err)?;
            targets.push(Target {
                name: TargetName::parse(&name).map_err(corrupt("target name"))?,
                connector: ConnectorKind::parse(&connector).map_err(corrupt("connector"))?,
                settings: pairs,
                created_at: Timestamp::from_millis(created_ms),
            });
        }
        Ok(targets)
    }
}

type IdentityColumns = (String, String, Option<String>, Option<String>, i64, String, Option<String>);

fn identity_columns(row: &rusqlite::Row<'_>) -> rusqlite::Result<IdentityColumns> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?))
}

fn parse_identity(
    (name, kind, owner, vendor, created_ms, state, email): IdentityColumns,
) -> Result<Identity> {
    Ok(Identity {
        name: IdentityName::parse(&name).map_err(corrupt("identity name"))?,
        kind: IdentityKind::parse(&kind).map_err(corrupt("identity kind"))?,
        owner: owner.as_deref().map(IdentityName::parse).transpose().map_err(corrupt("owner"))?,
        vendor: vendor.as_deref().map(OrgName::parse).transpose().map_err(corrupt("vendor"))?,
        created_at: Timestamp::from_millis(created_ms),
        state: IdentityState::parse(&state).map_err(corrupt("identity state"))?,
        email,
    })
}

impl ChangeStore for SqliteStore {
    fn commit(&self, commit: ChangeCommit) -> Result<Vec<u64>> {
        self.writer.submit(Box::new(move |tx| write_commit(tx, &commit)))
    }

    fn due_changes(&self, now: Timestamp, limit: usize) -> Result<Vec<ChangeId>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(
                "SELECT id FROM changes WHERE due_ms IS NOT NULL AND due_ms <= ?1 ORDER BY due_ms, id LIMIT ?2",
            )
            .map_err(map_err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement
            .query_map(params![now.as_millis(), limit], |row| row.get::<_, String>(0))
            .map_err(map_err)?;
        rows.map(|row| ChangeId::parse(&row.map_err(map_err)?).map_err(corrupt("change id"))).collect()
    }

    fn change_rows(&self) -> Result<Vec<ChangeRow>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(
                "SELECT id, kind, state, requester, created_ms, updated_ms, seq, due_ms FROM changes ORDER BY id",
            )
            .map_err(map_err)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    (
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, i64>(4)?,
                        row.get::<_, i64>(5)?,
                    ),
                    row.get::<_, i64>(6)?,
                    row.get::<_, Option<i64>>(7)?,
                ))
            })
            .map_err(map_err)?;
        rows.map(|row| {
            let (columns, seq, due_ms) = row.map_err(map_err)?;
            Ok(ChangeRow {
                summary: summary_of(columns)?,
                seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt("negative change seq".into()))?,
                due_at: due_ms.map(Timestamp::from_millis),
            })
        })
        .collect()
    }

    fn reschedule(&self, id: &ChangeId, seq: u64, due_at: Option<Timestamp>) -> Result<()> {
        let (id, seq) = (id.clone(), to_i64(seq)?);
        self.writer.submit(Box::new(move |tx| {
            tx.prepare_cached("UPDATE changes SET due_ms = ?2 WHERE id = ?1 AND seq = ?3")
                .and_then(|mut s| s.execute(params![id.as_str(), due_at.map(Timestamp::as_millis), seq]))
                .map_err(map_err)?;
            Ok(Vec::new())
        }))?;
        Ok(())
    }

    fn change_events(&self, id: &ChangeId) -> Result<Vec<EventRow>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(
                "SELECT idx, change_id, seq, bytes, leaf FROM events WHERE change_id = ?1 ORDER BY seq",
            )
            .map_err(map_err)?;
        let rows = statement.query_map([id.as_str()], event_columns).map_err(map_err)?;
        rows.map(|row| row.map_err(map_err).and_then(parse_event)).collect()
    }

    fn changes_page(
        &self,
        state: Option<ChangeState>,
        before: Option<&ChangeId>,
        limit: usize,
    ) -> Result<Vec<ChangeSummary>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(
                "SELECT id, kind, state, requester, created_ms, updated_ms FROM changes
                 WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3",
            )
            .map_err(map_err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement
            .query_map(params![state.map(ChangeState::as_str), before.map(ChangeId::as_str), limit], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, i64>(5)?,
                ))
            })
            .map_err(map_err)?;
        rows.map(|row| summary_of(row.map_err(map_err)?)).collect()
    }
}

type SummaryColumns = (String, String, String, String, i64, i64);

fn summary_of((id, kind, state, requester, created_ms, updated_ms): SummaryColumns) -> Result<ChangeSummary> {
    Ok(ChangeSummary {
        id: ChangeId::parse(&id).map_err(corrupt("change id"))?,
        kind: ChangeKind::parse(&kind).map_err(corrupt("change kind"))?,
        state: ChangeState::parse(&state).map_err(corrupt("change state"))?,
        requester: IdentityName::parse(&requester).map_err(corrupt("requester"))?,
        created_at: Timestamp::from_millis(created_ms),
        updated_at: Timestamp::from_millis(updated_ms),
    })
}

type EventColumns = (i64, Option<String>, Option<i64>, Vec<u8>, Option<Vec<u8>>);

fn event_columns(row: &rusqlite::Row<'_>) -> rusqlite::Result<EventColumns> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
}

fn parse_event((index, change, seq, bytes, leaf): EventColumns) -> Result<EventRow> {
    let unsigned = |v: i64| u64::try_from(v).map_err(|_| StoreError::Corrupt("negative index".into()));
    Ok(EventRow {
        index: unsigned(index)?,
        change: change.as_deref().map(ChangeId::parse).transpose().map_err(corrupt("change id"))?,
        seq: seq.map(unsigned).transpose()?,
        bytes,
        leaf: leaf.and_then(|l| <[u8; 32]>::try_from(l.as_slice()).ok()),
    })
}

impl GrantStore for SqliteStore {
    fn grants_of(&self, identity: &IdentityName) -> Result<Vec<Grant>> {
        self.grants(
            "SELECT identity, target, entitlement, change_id, granted_ms, expires_ms FROM grants
             WHERE identity = ?1 ORDER BY target, entitlement",
            &[&identity.as_str()],
        )
    }

    fn due_grants(&self, now: Timestamp, limit: usize) -> Result<Vec<Grant>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.grants(
            "SELECT identity, target, entitlement, change_id, granted_ms, expires_ms FROM grants
             WHERE expires_ms IS NOT NULL AND expires_ms <= ?1
             ORDER BY expires_ms, change_id, identity, target, entitlement LIMIT ?2",
            &[&now.as_millis(), &limit],
        )
    }

    fn grants_on(
        &self,
        target: &TargetName,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<GrantRow>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let columns = "SELECT identity, entitlement, change_id, granted_ms, expires_ms FROM grants";
        let connection = self.lock()?;
        // Two statements, not one with an OR: each keeps to the index.
        let mut statement = connection
            .prepare_cached(&match after {
                None => format!("{columns} WHERE target = ?1 ORDER BY identity, entitlement LIMIT ?2"),
                Some(_) => format!(
                    "{columns} WHERE target = ?1 AND (identity, entitlement) > (?3, ?4)
                     ORDER BY identity, entitlement LIMIT ?2"
                ),
            })
            .map_err(map_err)?;
        let row = |row: &rusqlite::Row<'_>| {
            Ok(GrantRow {
                identity: row.get(0)?,
                entitlement: row.get(1)?,
                change: row.get(2)?,
                granted_ms: row.get(3)?,
                expires_ms: row.get(4)?,
            })
        };
        let rows = match after {
            None => statement.query_map(params![target.as_str(), limit], row),
            Some((identity, entitlement)) => {
                statement.query_map(params![target.as_str(), limit, identity, entitlement], row)
            }
        }
        .map_err(map_err)?;
        rows.map(|row| row.map_err(map_err)).collect()
    }

    fn all_grants(&self) -> Result<Vec<Grant>> {
        self.grants(
            "SELECT identity, target, entitlement, change_id, granted_ms, expires_ms FROM grants
             ORDER BY identity, target, entitlement",
            &[],
        )
    }
}

impl SqliteStore {
    fn grants(&self, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<Vec<Grant>> {
        let connection = self.lock()?;
        let mut statement = connection.prepare_cached(sql).map_err(map_err)?;
        let rows = statement
            .query_map(params, |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, Option<i64>>(5)?,
                ))
            })
            .map_err(map_err)?;
        rows.map(|row| {
            let (identity, target, entitlement, change, granted_ms, expires_ms) = row.map_err(map_err)?;
            Ok(Grant {
                identity: IdentityName::parse(&identity).map_err(corrupt("grant identity"))?,
                entitlement: EntitlementRef {
                    target: TargetName::parse(&target).map_err(corrupt("grant target"))?,
                    entitlement: EntitlementName::parse(&entitlement)
                        .map_err(corrupt("grant entitlement"))?,
                },
                change: ChangeId::parse(&change).map_err(corrupt("grant change"))?,
                granted_at: Timestamp::from_millis(granted_ms),
                expires_at: expires_ms.map(Timestamp::from_millis),
            })
        })
        .collect()
    }
}

impl EventLog for SqliteStore {
    fn events(&self, from: u64, limit: usize) -> Result<Vec<EventRow>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(
                "SELECT idx, change_id, seq, bytes, leaf FROM events WHERE idx >= ?1 ORDER BY idx LIMIT ?2",
            )
            .map_err(map_err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement.query_map(params![to_i64(from)?, limit], event_columns).map_err(map_err)?;
        rows.map(|row| row.map_err(map_err).and_then(parse_event)).collect()
    }

    fn leaves(&self, from: u64, limit: usize) -> Result<Vec<LeafRow>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached("SELECT idx, bytes, leaf FROM events WHERE idx >= ?1 ORDER BY idx LIMIT ?2")
            .map_err(map_err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement
            .query_map(params![to_i64(from)?, limit], |row| {
                // The leaf is read as a borrowed blob: no allocation per row.
                let leaf = row.get_ref(2)?.as_blob_or_null()?.and_then(|l| <[u8; 32]>::try_from(l).ok());
                Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?, leaf))
            })
            .map_err(map_err)?;
        rows.map(|row| {
            let (index, bytes, leaf) = row.map_err(map_err)?;
            let index = u64::try_from(index).map_err(|_| StoreError::Corrupt("negative index".into()))?;
            Ok(LeafRow { index, bytes, leaf })
        })
        .collect()
    }

    fn event_count(&self) -> Result<u64> {
        let connection = self.lock()?;
        let count: i64 = connection
            .query_row("SELECT COALESCE(MAX(idx) + 1, 0) FROM events", [], |row| row.get(0))
            .map_err(map_err)?;
        u64::try_from(count).map_err(|_| StoreError::Corrupt("negative event count".into()))
    }
}

#[cfg(test)]
mod tests;

impl CheckpointStore for SqliteStore {
    fn add_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<()> {
        let checkpoint = checkpoint.clone();
        self.writer.submit(Box::new(move |tx| {
            let size = to_i64(checkpoint.size)?;
            let existing: Option<(Vec<u8>, String)> = tx
                .query_row("SELECT root, note FROM checkpoints WHERE size = ?1", [size], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
                .map_err(map_err)?;
            match existing {
                Some((root, _)) if root == checkpoint.root => Ok(Vec::new()),
                Some(_) => Err(StoreError::Conflict(format!(
                    "a different checkpoint of size {} is already stored",
                    checkpoint.size
                ))),
                None => {
                    tx.prepare_cached(
                        "INSERT INTO checkpoints (size, root, note, created_ms) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .and_then(|mut statement| {
                        statement.execute(params![
                            size,
                            checkpoint.root.as_slice(),
                            checkpoint.note,
                            checkpoint.created_at.as_millis()
                        ])
                    })
                    .map_err(map_err)?;
                    Ok(Vec::new())
                }
            }
        }))?;
        Ok(())
    }

    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        self.checkpoints_where("ORDER BY size")
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        Ok(self.checkpoints_where("ORDER BY size DESC LIMIT 1")?.pop())
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        let connection = self.lock()?;
        connection
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0))
            .optional()
            .map_err(map_err)
    }

    fn init_meta(&self, key: &str, value: &str) -> Result<String> {
        let (key, value) = (key.to_owned(), value.to_owned());
        let k = key.clone();
        self.writer.submit(Box::new(move |tx| {
            tx.prepare_cached("INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)")
                .and_then(|mut statement| statement.execute(params![key, value]))
                .map_err(map_err)?;
            Ok(Vec::new())
        }))?;
        self.meta(&k)?.ok_or_else(|| StoreError::Other(format!("setting {k} was not stored")))
    }

    fn append_once(&self, key: &str, value: &str, event: &NewEvent) -> Result<Option<u64>> {
        let (key, value, event) = (key.to_owned(), value.to_owned(), event.clone());
        let indices = self.writer.submit(Box::new(move |tx| {
            let inserted = tx
                .prepare_cached("INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)")
                .and_then(|mut statement| statement.execute(params![key, value]))
                .map_err(map_err)?;
            if inserted == 0 { Ok(Vec::new()) } else { append(tx, std::slice::from_ref(&event)) }
        }))?;
        Ok(indices.first().copied())
    }

    fn add_ledger_key(&self, id: &str, key: &str, event: &NewEvent) -> Result<u64> {
        let (name, key, event) = (format!("ledger.key.{id}"), key.to_owned(), event.clone());
        let indices = self.writer.submit(Box::new(move |tx| {
            tx.prepare_cached("INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)")
                .and_then(|mut statement| statement.execute(params![name, key]))
                .map_err(map_err)?;
            append(tx, std::slice::from_ref(&event))
        }))?;
        indices.first().copied().ok_or_else(|| StoreError::Other("no index assigned".into()))
    }

    fn add_cosignature(&self, c: &StoredCosignature) -> Result<()> {
        let (c, size, signed) = (c.clone(), to_i64(c.size)?, to_i64(c.signed_s)?);
        self.writer.submit(Box::new(move |tx| {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO cosignatures (witness, size, line, signed_s) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut statement| statement.execute(params![c.witness, size, c.line, signed]))
            .map_err(map_err)?;
            Ok(Vec::new())
        }))?;
        Ok(())
    }

    fn cosignatures(&self, size: u64) -> Result<Vec<StoredCosignature>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(
                "SELECT witness, line, signed_s FROM cosignatures WHERE size = ?1 ORDER BY witness",
            )
            .map_err(map_err)?;
        let rows = statement
            .query_map([to_i64(size)?], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?))
            })
            .map_err(map_err)?;
        rows.map(|row| {
            let (witness, line, signed) = row.map_err(map_err)?;
            let signed_s =
                u64::try_from(signed).map_err(|_| StoreError::Corrupt("negative timestamp".into()))?;
            Ok(StoredCosignature { witness, size, line, signed_s })
        })
        .collect()
    }

    fn witness_heads(&self) -> Result<Vec<(String, u64)>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached("SELECT witness, MAX(size) FROM cosignatures GROUP BY witness ORDER BY witness")
            .map_err(map_err)?;
        let rows = statement
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
            .map_err(map_err)?;
        rows.map(|row| {
            let (witness, size) = row.map_err(map_err)?;
            Ok((witness, u64::try_from(size).map_err(|_| StoreError::Corrupt("negative size".into()))?))
        })
        .collect()
    }
}

impl EvidenceStore for SqliteStore {
    fn sensitive(&self, hmac: &str) -> Result<Option<String>> {
        let connection = self.lock()?;
        connection
            .prepare_cached("SELECT value FROM sensitive WHERE hmac = ?1")
            .and_then(|mut statement| statement.query_row([hmac], |row| row.get(0)))
            .optional()
            .map_err(map_err)
    }

    fn evidence(&self, sha256: &[u8; 32]) -> Result<Option<EvidenceBlob>> {
        let connection = self.lock()?;
        connection
            .query_row(
                "SELECT media_type, bytes FROM evidence WHERE sha256 = ?1",
                [sha256.as_slice()],
                |row| Ok(EvidenceBlob { sha256: *sha256, media_type: row.get(0)?, bytes: row.get(1)? }),
            )
            .optional()
            .map_err(map_err)
    }
}

impl SqliteStore {
    fn checkpoints_where(&self, order: &str) -> Result<Vec<StoredCheckpoint>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(&format!("SELECT size, root, note, created_ms FROM checkpoints {order}"))
            .map_err(map_err)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })
            .map_err(map_err)?;
        rows.map(|row| {
            let (size, root, note, created_ms) = row.map_err(map_err)?;
            Ok(StoredCheckpoint {
                size: u64::try_from(size)
                    .map_err(|_| StoreError::Corrupt("negative checkpoint size".into()))?,
                root: <[u8; 32]>::try_from(root.as_slice())
                    .map_err(|_| StoreError::Corrupt("checkpoint root is not 32 bytes".into()))?,
                note,
                created_at: Timestamp::from_millis(created_ms),
            })
        })
        .collect()
    }
}
