//! PostgreSQL implementation of the `writ-store` traits, for Writ at scale and for several
//! `writ serve` instances on one database.
//!
//! Architecture invariants: all PostgreSQL SQL lives in this crate, with migrations in
//! `migrations/` numbered like SQLite's. Every write transaction first locks the single
//! `log_head` row, so ledger indices are assigned in commit order, contiguously, by exactly one
//! writer at a time across all instances: the log cannot fork.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

mod access;
mod exceptions;
mod findings;
mod intake;
mod notify;
mod repair;
mod scim;
mod transfers;
mod writer;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Statement, Transaction};
use writ_core::change::{ChangeId, ChangeKind, ChangeState};
use writ_core::identity::{ConnectorKind, Grant, Identity, IdentityKind, IdentityState, Target};
use writ_core::name::{EntitlementName, EntitlementRef, IdentityName, OrgName, TargetName};
use writ_core::time::Timestamp;
use writ_store::{
    CLAIM_HELD, ChangeCommit, ChangeRow, ChangeStore, ChangeSummary, CheckpointStore, ClaimOp, EventLog,
    EventRow, EvidenceBlob, EvidenceStore, GrantRow, GrantStore, GrantUpdate, LeafRow, NewEvent,
    RegistryStore, Result, StoreError, StoredCheckpoint, StoredCosignature,
};

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

/// A Writ store in one PostgreSQL database: a small fixed pool of connections (callers in a
/// process take the first free one), processes coordinate through the database's locks.
pub struct PostgresStore {
    clients: Vec<Mutex<Conn>>,
    turn: AtomicUsize,
    writer: writer::Writer,
}

/// Connections a store opens unless told otherwise.
pub const DEFAULT_POOL: usize = 16;

impl PostgresStore {
    /// Connects with a libpq-style connection string or `postgres://` URL and applies pending
    /// migrations under an advisory lock (so instances starting together migrate once).
    pub fn connect(config: &str) -> Result<PostgresStore> {
        PostgresStore::connect_pool(config, DEFAULT_POOL)
    }

    /// Like [`PostgresStore::connect`] with `size` read connections (at least one) beside the
    /// writer's own.
    pub fn connect_pool(config: &str, size: usize) -> Result<PostgresStore> {
        let mut first = Client::connect(config, NoTls).map_err(map_err)?;
        migrate(&mut first)?;
        let writer = writer::writer(first);
        let mut clients = Vec::new();
        for _ in 0..size.max(1) {
            clients.push(Mutex::new(Conn::new(Client::connect(config, NoTls).map_err(map_err)?)));
        }
        Ok(PostgresStore { clients, turn: AtomicUsize::new(0), writer })
    }

    /// A free connection if there is one, otherwise waits for one in turn.
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, Conn>> {
        for client in &self.clients {
            if let Ok(guard) = client.try_lock() {
                return Ok(guard);
            }
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed) % self.clients.len().max(1);
        let client =
            self.clients.get(turn).ok_or_else(|| StoreError::Other("empty connection pool".into()))?;
        client.lock().map_err(|_| StoreError::Other("connection lock poisoned".into()))
    }

    /// Runs `work` in a transaction that does not touch the log (coordination tables).
    pub(crate) fn side<T>(&self, work: impl FnOnce(&mut Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut client = self.lock()?;
        let mut tx = client.transaction().map_err(map_err)?;
        let value = work(&mut tx)?;
        tx.commit().map_err(map_err)?;
        Ok(value)
    }

    /// Runs `work` in the next group-commit batch, at the next free ledger index, and waits
    /// for the batch to commit. `work` returns its value and how many events it appended.
    pub(crate) fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Tx<'_, '_>, i64) -> Result<(T, i64)> + Send + 'static,
    ) -> Result<T> {
        let slot = Arc::new(Mutex::new(None));
        let out = Arc::clone(&slot);
        self.writer.submit(Box::new(move |tx, next| {
            let (value, appended) = work(tx, next)?;
            if let Ok(mut guard) = out.lock() {
                *guard = Some(value);
            }
            Ok(appended)
        }))?;
        let value = slot.lock().map_err(|_| StoreError::Other("result lock poisoned".into()))?.take();
        value.ok_or_else(|| StoreError::Other("write produced no result".into()))
    }
}

/// A read connection with its prepared statements: each query is parsed and planned once per
/// connection, then runs in one round trip.
pub(crate) struct Conn {
    client: Client,
    prepared: HashMap<String, Statement>,
}

impl Conn {
    fn new(client: Client) -> Conn {
        Conn { client, prepared: HashMap::new() }
    }

    /// The connection with its prepared statements, for queries.
    pub(crate) fn cached(&mut self) -> Prepared<'_, Client> {
        Prepared { client: &mut self.client, prepared: &mut self.prepared }
    }

    pub(crate) fn transaction(&mut self) -> std::result::Result<Transaction<'_>, postgres::Error> {
        self.client.transaction()
    }
}

fn migrate(client: &mut Client) -> Result<()> {
    let mut tx = client.transaction().map_err(map_err)?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('writ-migrate'))", &[]).map_err(map_err)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS writ_schema (version INTEGER NOT NULL)").map_err(map_err)?;
    let version: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0)::BIGINT FROM writ_schema", &[])
        .map_err(map_err)?
        .get(0);
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::Corrupt(format!(
            "database schema version {version} is newer than this build ({known}); upgrade writ"
        )));
    }
    for (number, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
        tx.batch_execute(sql).map_err(map_err)?;
        tx.execute("INSERT INTO writ_schema (version) VALUES ($1)", &[&(number as i32 + 1)])
            .map_err(map_err)?;
    }
    tx.commit().map_err(map_err)
}

/// Maps PostgreSQL errors onto the store's small error set. Environment failures (connection
/// lost, read-only, disk full, shutting down) become `Unavailable`.
pub(crate) fn map_err(error: postgres::Error) -> StoreError {
    let Some(code) = error.code() else {
        return StoreError::Unavailable(error.to_string());
    };
    let detail = error.as_db_error().map_or_else(|| error.to_string(), |e| e.message().to_owned());
    if *code == SqlState::UNIQUE_VIOLATION
        || *code == SqlState::FOREIGN_KEY_VIOLATION
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
    {
        StoreError::Conflict(detail)
    } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION
        || *code == SqlState::DISK_FULL
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::QUERY_CANCELED
    {
        StoreError::Unavailable(detail)
    } else {
        StoreError::Other(detail)
    }
}

pub(crate) fn corrupt(what: &str) -> impl Fn(writ_core::Refusal) -> StoreError + '_ {
    move |refusal| StoreError::Corrupt(format!("{what}: {refusal}"))
}

/// A commit's lease step (see [`writ_store::ClaimOp`]), in its transaction.
fn write_claim(tx: &mut Tx<'_, '_>, claim: &ClaimOp) -> Result<()> {
    match claim {
        ClaimOp::Take { name, holder, now, until } => {
            let taken = tx
                .query(
                    "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until_ms = EXCLUDED.until_ms
                     WHERE leases.until_ms < $4
                     RETURNING holder",
                    &[name, holder, &until.as_millis(), &now.as_millis()],
                )
                .map_err(map_err)?;
            if taken.len() != 1 {
                return Err(StoreError::Conflict(format!("{CLAIM_HELD}: {name}")));
            }
        }
        ClaimOp::Release { name, holder } => {
            tx.execute("DELETE FROM leases WHERE name = $1 AND holder = $2", &[name, holder])
                .map_err(map_err)?;
        }
    }
    Ok(())
}

pub(crate) fn to_i64(value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt("integer out of range".into()))
}

fn to_u64(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt("negative integer".into()))
}

/// Appends events at indices `next..` in one statement; returns the indices.
pub(crate) fn append(tx: &mut Tx<'_, '_>, next: i64, events: &[NewEvent]) -> Result<Vec<u64>> {
    let count = i64::try_from(events.len()).map_err(|_| StoreError::Other("too many events".into()))?;
    let indices: Vec<i64> = (next..next + count).collect();
    let seqs = events.iter().map(|e| e.seq.map(to_i64).transpose()).collect::<Result<Vec<Option<i64>>>>()?;
    let changes: Vec<Option<&str>> = events.iter().map(|e| e.change.as_ref().map(ChangeId::as_str)).collect();
    let types: Vec<&str> = events.iter().map(|e| e.type_name).collect();
    let phases: Vec<&str> = events.iter().map(|e| e.phase).collect();
    let actors: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
    let behalf: Vec<Option<&str>> = events.iter().map(|e| e.on_behalf_of.as_deref()).collect();
    let at: Vec<i64> = events.iter().map(|e| e.at.as_millis()).collect();
    let bytes: Vec<&[u8]> = events.iter().map(|e| e.bytes.as_slice()).collect();
    let leaves: Vec<&[u8]> = events.iter().map(|e| e.leaf.as_slice()).collect();
    tx.execute(
        "INSERT INTO events (idx, change_id, seq, type, phase, actor, on_behalf_of, at_ms, bytes, leaf)
         SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::TEXT[],
                              $7::TEXT[], $8::BIGINT[], $9::BYTEA[], $10::BYTEA[])",
        &[&indices, &changes, &seqs, &types, &phases, &actors, &behalf, &at, &bytes, &leaves],
    )
    .map_err(map_err)?;
    notify::write_notices(tx, &indices, events)?;
    indices.into_iter().map(to_u64).collect()
}

/// A client (a connection or a transaction) with the prepared statements of its connection:
/// each statement is parsed once per connection and then runs in one round trip.
pub(crate) struct Prepared<'a, C> {
    pub(crate) client: &'a mut C,
    pub(crate) prepared: &'a mut HashMap<String, Statement>,
}

/// A write transaction on the writer connection, with its prepared statements.
pub(crate) type Tx<'a, 'b> = Prepared<'a, Transaction<'b>>;

type PgResult<T> = std::result::Result<T, postgres::Error>;

impl<C: GenericClient> Prepared<'_, C> {
    fn statement(&mut self, sql: &str) -> PgResult<Statement> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.prepared.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub(crate) fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<u64> {
        let statement = self.statement(sql)?;
        self.client.execute(&statement, params)
    }

    pub(crate) fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<Vec<Row>> {
        let statement = self.statement(sql)?;
        self.client.query(&statement, params)
    }

    pub(crate) fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<Row> {
        let statement = self.statement(sql)?;
        self.client.query_one(&statement, params)
    }

    pub(crate) fn query_opt(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<Option<Row>> {
        let statement = self.statement(sql)?;
        self.client.query_opt(&statement, params)
    }
}

pub(crate) fn conflict_as(what: String) -> impl Fn(StoreError) -> StoreError {
    move |error| match error {
        StoreError::Conflict(_) => StoreError::Conflict(what.clone()),
        other => other,
    }
}

impl RegistryStore for PostgresStore {
    fn add_identity(&self, identity: &Identity, event: &NewEvent) -> Result<u64> {
        let (identity, event) = (identity.clone(), event.clone());
        self.write(move |tx, next| {
            tx.execute(
                "INSERT INTO identities (name, kind, owner, vendor, created_ms, email) VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &identity.name.as_str(),
                    &identity.kind.as_str(),
                    &identity.owner.as_ref().map(IdentityName::as_str),
                    &identity.vendor.as_ref().map(OrgName::as_str),
                    &identity.created_at.as_millis(),
                    &identity.email,
                ],
            )
            .map_err(map_err)
            .map_err(conflict_as(format!("identity {} already exists", identity.name)))?;
            let indices = append(tx, next, std::slice::from_ref(&event))?;
            Ok((indices.first().copied().unwrap_or(0), 1))
        })
    }

    fn identity(&self, name: &IdentityName) -> Result<Option<Identity>> {
        let rows = self
            .lock()?
            .cached()
            .query(
                "SELECT name, kind, owner, vendor, created_ms, state, email FROM identities WHERE name = $1",
                &[&name.as_str()],
            )
            .map_err(map_err)?;
        rows.first().map(parse_identity).transpose()
    }

    fn identities(&self) -> Result<Vec<Identity>> {
        let rows = self
            .lock()?
            .cached()
            .query(
                "SELECT name, kind, owner, vendor, created_ms, state, email FROM identities ORDER BY name",
                &[],
            )
            .map_err(map_err)?;
        rows.iter().map(parse_identity).collect()
    }

    fn add_target(&self, target: &Target, event: &NewEvent) -> Result<u64> {
        let (target, event) = (target.clone(), event.clone());
        self.write(move |tx, next| {
            tx.execute(
                "INSERT INTO targets (name, connector, created_ms) VALUES ($1, $2, $3)",
                &[&target.name.as_str(), &target.connector.as_str(), &target.created_at.as_millis()],
            )
            .map_err(map_err)
            .map_err(conflict_as(format!("target {} already exists", target.name)))?;
            for (key, value) in &target.settings {
                tx.execute(
                    "INSERT INTO target_settings (target, key, value) VALUES ($1, $2, $3)",
                    &[&target.name.as_str(), key, value],
                )
                .map_err(map_err)?;
            }
            let indices = append(tx, next, std::slice::from_ref(&event))?;
            Ok((indices.first().copied().unwrap_or(0), 1))
        })
    }

    fn target(&self, name: &TargetName) -> Result<Option<Target>> {
        let mut client = self.lock()?;
        let row = client
            .cached()
            .query_opt("SELECT name, connector, created_ms FROM targets WHERE name = $1", &[&name.as_str()])
            .map_err(map_err)?;
        row.map(|row| parse_target(&mut client, &row)).transpose()
    }

    fn targets(&self) -> Result<Vec<Target>> {
        let mut client = self.lock()?;
        let rows = client
            .cached()
            .query("SELECT name, connector, created_ms FROM targets ORDER BY name", &[])
            .map_err(map_err)?;
        rows.iter().map(|row| parse_target(&mut client, row)).collect()
    }
}

/// A target from its row, with its settings.
fn parse_target(client: &mut Conn, row: &postgres::Row) -> Result<Target> {
    let name: String = row.get(0);
    let settings = client
        .cached()
        .query("SELECT key, value FROM target_settings WHERE target = $1 ORDER BY key", &[&name])
        .map_err(map_err)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(Target {
        name: TargetName::parse(&name).map_err(corrupt("target name"))?,
        connector: ConnectorKind::parse(row.get(1)).map_err(corrupt("connector"))?,
        settings,
        created_at: Timestamp::from_millis(row.get(2)),
    })
}

pub(crate) fn parse_identity(row: &postgres::Row) -> Result<Identity> {
    parse_identity_at(row, 0)
}

/// An identity from the seven columns `name, kind, owner, vendor, created_ms, state, email`
/// starting at column `at`.
pub(crate) fn parse_identity_at(row: &postgres::Row, at: usize) -> Result<Identity> {
    let owner: Option<String> = row.get(at + 2);
    let vendor: Option<String> = row.get(at + 3);
    Ok(Identity {
        name: IdentityName::parse(row.get(at)).map_err(corrupt("identity name"))?,
        kind: IdentityKind::parse(row.get(at + 1)).map_err(corrupt("identity kind"))?,
        owner: owner.as_deref().map(IdentityName::parse).transpose().map_err(corrupt("owner"))?,
        vendor: vendor.as_deref().map(OrgName::parse).transpose().map_err(corrupt("vendor"))?,
        created_at: Timestamp::from_millis(row.get(at + 4)),
        state: IdentityState::parse(row.get(at + 5)).map_err(corrupt("identity state"))?,
        email: row.get(at + 6),
    })
}

impl ChangeStore for PostgresStore {
    fn due_changes(&self, now: Timestamp, limit: usize) -> Result<Vec<ChangeId>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut client = self.lock()?;
        let rows = client
            .cached()
            .query(
                "SELECT id FROM changes WHERE due_ms IS NOT NULL AND due_ms <= $1 ORDER BY due_ms, id LIMIT $2",
                &[&now.as_millis(), &limit],
            )
            .map_err(map_err)?;
        rows.iter().map(|row| ChangeId::parse(row.get(0)).map_err(corrupt("change id"))).collect()
    }

    fn reschedule(&self, id: &ChangeId, seq: u64, due_at: Option<Timestamp>) -> Result<()> {
        let seq = to_i64(seq)?;
        self.side(|tx| {
            tx.execute(
                "UPDATE changes SET due_ms = $2 WHERE id = $1 AND seq = $3",
                &[&id.as_str(), &due_at.map(Timestamp::as_millis), &seq],
            )
            .map_err(map_err)?;
            Ok(())
        })
    }

    fn commit(&self, commit: ChangeCommit) -> Result<Vec<u64>> {
        self.write(move |tx, next| {
            let summary = &commit.summary;
            let expected = to_i64(commit.expected_seq)?;
            let appended = commit.events.len() as i64;
            // Insert a new change, or advance an existing one only from the sequence the caller
            // read: no row back means someone else wrote in between (or the change exists).
            let written = tx
                .query_opt(
                    "INSERT INTO changes (id, kind, state, requester, created_ms, updated_ms, seq, due_ms)
                     SELECT $1, $2, $3, $4, $5, $6, $7, $9 WHERE $8::BIGINT = 0 OR EXISTS (SELECT 1 FROM changes WHERE id = $1)
                     ON CONFLICT (id) DO UPDATE SET state = excluded.state, kind = excluded.kind,
                         updated_ms = excluded.updated_ms, seq = excluded.seq, due_ms = excluded.due_ms
                     WHERE changes.seq = $8 AND $8 > 0
                     RETURNING seq",
                    &[
                        &summary.id.as_str(),
                        &summary.kind.as_str(),
                        &summary.state.as_str(),
                        &summary.requester.as_str(),
                        &summary.created_at.as_millis(),
                        &summary.updated_at.as_millis(),
                        &(expected + appended),
                        &expected,
                        &commit.due_at.map(Timestamp::as_millis),
                    ],
                )
                .map_err(map_err)?;
            if written.is_none() {
                return Err(StoreError::Conflict(format!(
                    "{} was changed by someone else meanwhile; read it again and retry",
                    summary.id
                )));
            }
            if let Some(claim) = &commit.claim {
                write_claim(tx, claim)?;
            }
            let indices = append(tx, next, &commit.events)?;
            if let Some(erase) = &commit.erase {
                tx.execute("DELETE FROM sensitive WHERE hmac = ANY($1)", &[&erase.hmacs]).map_err(map_err)?;
                let digests: Vec<&[u8]> = erase.blobs.iter().map(<[u8; 32]>::as_slice).collect();
                tx.execute(
                    "INSERT INTO evidence_erased (sha256, erased_ms) SELECT d, $2 FROM UNNEST($1::BYTEA[]) AS u(d)
                     ON CONFLICT (sha256) DO NOTHING",
                    &[&digests, &summary.updated_at.as_millis()],
                )
                .map_err(map_err)?;
                tx.execute("DELETE FROM evidence WHERE sha256 = ANY($1)", &[&digests]).map_err(map_err)?;
            }
            if !commit.sensitive.is_empty() {
                let (hmacs, values): (Vec<&str>, Vec<&str>) =
                    commit.sensitive.iter().map(|(h, v)| (h.as_str(), v.as_str())).unzip();
                tx.execute(
                    "INSERT INTO sensitive (hmac, value) SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[])
                     ON CONFLICT (hmac) DO NOTHING",
                    &[&hmacs, &values],
                )
                .map_err(map_err)?;
            }
            if !commit.evidence.is_empty() {
                let digests: Vec<&[u8]> = commit.evidence.iter().map(|b| b.sha256.as_slice()).collect();
                let media: Vec<&str> = commit.evidence.iter().map(|b| b.media_type.as_str()).collect();
                let bytes: Vec<&[u8]> = commit.evidence.iter().map(|b| b.bytes.as_slice()).collect();
                tx.execute(
                    "INSERT INTO evidence (sha256, media_type, bytes, created_ms)
                     SELECT d, m, b, $4 FROM UNNEST($1::BYTEA[], $2::TEXT[], $3::BYTEA[]) AS u(d, m, b)
                     ON CONFLICT (sha256) DO NOTHING",
                    &[&digests, &media, &bytes, &summary.updated_at.as_millis()],
                )
                .map_err(map_err)?;
            }
            for update in &commit.grants {
                match update {
                    GrantUpdate::Upsert(grant) => tx.execute(
                        "INSERT INTO grants (identity, target, entitlement, change_id, granted_ms, expires_ms)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (identity, target, entitlement) DO UPDATE SET change_id = excluded.change_id,
                             granted_ms = excluded.granted_ms, expires_ms = excluded.expires_ms",
                        &[
                            &grant.identity.as_str(),
                            &grant.entitlement.target.as_str(),
                            &grant.entitlement.entitlement.as_str(),
                            &grant.change.as_str(),
                            &grant.granted_at.as_millis(),
                            &grant.expires_at.map(Timestamp::as_millis),
                        ],
                    ),
                    GrantUpdate::Remove { identity, entitlement } => tx.execute(
                        "DELETE FROM grants WHERE identity = $1 AND target = $2 AND entitlement = $3",
                        &[&identity.as_str(), &entitlement.target.as_str(), &entitlement.entitlement.as_str()],
                    ),
                }
                .map_err(map_err)?;
            }
            Ok((indices, appended))
        })
    }

    fn change_events(&self, id: &ChangeId) -> Result<Vec<EventRow>> {
        let rows = self
            .lock()?
            .cached()
            .query(
                "SELECT idx, change_id, seq, bytes, leaf FROM events WHERE change_id = $1 ORDER BY seq",
                &[&id.as_str()],
            )
            .map_err(map_err)?;
        rows.iter().map(parse_event).collect()
    }

    fn changes_page(
        &self,
        state: Option<ChangeState>,
        before: Option<&ChangeId>,
        limit: usize,
    ) -> Result<Vec<ChangeSummary>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .lock()?
            .cached()
            .query(
                "SELECT id, kind, state, requester, created_ms, updated_ms FROM changes
                 WHERE ($1::TEXT IS NULL OR state = $1) AND ($2::TEXT IS NULL OR id < $2)
                 ORDER BY id DESC LIMIT $3",
                &[&state.map(ChangeState::as_str), &before.map(ChangeId::as_str), &limit],
            )
            .map_err(map_err)?;
        rows.iter().map(summary_of).collect()
    }

    fn change_rows(&self) -> Result<Vec<ChangeRow>> {
        let rows = self
            .lock()?
            .cached()
            .query(
                "SELECT id, kind, state, requester, created_ms, updated_ms, seq, due_ms FROM changes ORDER BY id",
                &[],
            )
            .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                Ok(ChangeRow {
                    summary: summary_of(row)?,
                    seq: to_u64(row.get(6))?,
                    due_at: row.get::<_, Option<i64>>(7).map(Timestamp::from_millis),
                })
            })
            .collect()
    }
}

fn summary_of(row: &postgres::Row) -> Result<ChangeSummary> {
    Ok(ChangeSummary {
        id: ChangeId::parse(row.get(0)).map_err(corrupt("change id"))?,
        kind: ChangeKind::parse(row.get(1)).map_err(corrupt("change kind"))?,
        state: ChangeState::parse(row.get(2)).map_err(corrupt("change state"))?,
        requester: IdentityName::parse(row.get(3)).map_err(corrupt("requester"))?,
        created_at: Timestamp::from_millis(row.get(4)),
        updated_at: Timestamp::from_millis(row.get(5)),
    })
}

fn leaf_of(row: &postgres::Row, column: usize) -> Option<[u8; 32]> {
    let leaf: Option<&[u8]> = row.get(column);
    leaf.and_then(|l| <[u8; 32]>::try_from(l).ok())
}

fn parse_event(row: &postgres::Row) -> Result<EventRow> {
    let change: Option<String> = row.get(1);
    let seq: Option<i64> = row.get(2);
    Ok(EventRow {
        index: to_u64(row.get(0))?,
        change: change.as_deref().map(ChangeId::parse).transpose().map_err(corrupt("change id"))?,
        seq: seq.map(to_u64).transpose()?,
        bytes: row.get(3),
        leaf: leaf_of(row, 4),
    })
}

impl GrantStore for PostgresStore {
    fn grants_of(&self, identity: &IdentityName) -> Result<Vec<Grant>> {
        self.grants(
            "SELECT identity, target, entitlement, change_id, granted_ms, expires_ms FROM grants
             WHERE identity = $1 ORDER BY target, entitlement",
            &[&identity.as_str()],
        )
    }

    fn due_grants(&self, now: Timestamp, limit: usize) -> Result<Vec<Grant>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.grants(
            "SELECT identity, target, entitlement, change_id, granted_ms, expires_ms FROM grants
             WHERE expires_ms IS NOT NULL AND expires_ms <= $1
             ORDER BY expires_ms, change_id, identity, target, entitlement LIMIT $2",
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
        let order = "ORDER BY identity COLLATE \"C\", entitlement COLLATE \"C\" LIMIT $2";
        let mut client = self.lock()?;
        // Two statements, not one with an OR: each keeps to the index.
        let rows = match after {
            None => client
                .cached()
                .query(&format!("{columns} WHERE target = $1 {order}"), &[&target.as_str(), &limit]),
            Some((identity, entitlement)) => client.cached().query(
                &format!(
                    "{columns} WHERE target = $1
                     AND (identity COLLATE \"C\", entitlement COLLATE \"C\") > ($3 COLLATE \"C\", $4 COLLATE \"C\")
                     {order}"
                ),
                &[&target.as_str(), &limit, &identity, &entitlement],
            ),
        }
        .map_err(map_err)?;
        Ok(rows
            .iter()
            .map(|row| GrantRow {
                identity: row.get(0),
                entitlement: row.get(1),
                change: row.get(2),
                granted_ms: row.get(3),
                expires_ms: row.get(4),
            })
            .collect())
    }

    fn all_grants(&self) -> Result<Vec<Grant>> {
        self.grants(
            "SELECT identity, target, entitlement, change_id, granted_ms, expires_ms FROM grants
             ORDER BY identity, target, entitlement",
            &[],
        )
    }
}

impl PostgresStore {
    fn grants(&self, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Result<Vec<Grant>> {
        let rows = self.lock()?.cached().query(sql, params).map_err(map_err)?;
        rows.iter()
            .map(|row| {
                Ok(Grant {
                    identity: IdentityName::parse(row.get(0)).map_err(corrupt("grant identity"))?,
                    entitlement: EntitlementRef {
                        target: TargetName::parse(row.get(1)).map_err(corrupt("grant target"))?,
                        entitlement: EntitlementName::parse(row.get(2))
                            .map_err(corrupt("grant entitlement"))?,
                    },
                    change: ChangeId::parse(row.get(3)).map_err(corrupt("grant change"))?,
                    granted_at: Timestamp::from_millis(row.get(4)),
                    expires_at: row.get::<_, Option<i64>>(5).map(Timestamp::from_millis),
                })
            })
            .collect()
    }
}

impl EventLog for PostgresStore {
    fn events(&self, from: u64, limit: usize) -> Result<Vec<EventRow>> {
        let rows = self
            .lock()?
            .cached()
            .query(
                "SELECT idx, change_id, seq, bytes, leaf FROM events WHERE idx >= $1 ORDER BY idx LIMIT $2",
                &[&to_i64(from)?, &(limit as i64)],
            )
            .map_err(map_err)?;
        rows.iter().map(parse_event).collect()
    }

    fn leaves(&self, from: u64, limit: usize) -> Result<Vec<LeafRow>> {
        let rows = self
            .lock()?
            .cached()
            .query(
                "SELECT idx, bytes, leaf FROM events WHERE idx >= $1 ORDER BY idx LIMIT $2",
                &[&to_i64(from)?, &(limit as i64)],
            )
            .map_err(map_err)?;
        rows.iter()
            .map(|row| Ok(LeafRow { index: to_u64(row.get(0))?, bytes: row.get(1), leaf: leaf_of(row, 2) }))
            .collect()
    }

    fn event_count(&self) -> Result<u64> {
        let row = self
            .lock()?
            .cached()
            .query_one("SELECT COALESCE(MAX(idx) + 1, 0) FROM events", &[])
            .map_err(map_err)?;
        to_u64(row.get(0))
    }
}

impl CheckpointStore for PostgresStore {
    fn add_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<()> {
        let checkpoint = checkpoint.clone();
        self.write(move |tx, _| {
            let size = to_i64(checkpoint.size)?;
            let existing =
                tx.query_opt("SELECT root FROM checkpoints WHERE size = $1", &[&size]).map_err(map_err)?;
            match existing {
                Some(row) if row.get::<_, &[u8]>(0) == checkpoint.root.as_slice() => Ok(((), 0)),
                Some(_) => Err(StoreError::Conflict(format!(
                    "a different checkpoint of size {} is already stored",
                    checkpoint.size
                ))),
                None => {
                    tx.execute(
                        "INSERT INTO checkpoints (size, root, note, created_ms) VALUES ($1, $2, $3, $4)",
                        &[
                            &size,
                            &checkpoint.root.as_slice(),
                            &checkpoint.note,
                            &checkpoint.created_at.as_millis(),
                        ],
                    )
                    .map_err(map_err)?;
                    Ok(((), 0))
                }
            }
        })
    }

    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        self.checkpoints_where("ORDER BY size")
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        Ok(self.checkpoints_where("ORDER BY size DESC LIMIT 1")?.pop())
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        let row = self
            .lock()?
            .cached()
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
            .map_err(map_err)?;
        Ok(row.map(|r| r.get(0)))
    }

    fn init_meta(&self, key: &str, value: &str) -> Result<String> {
        let (owned_key, value) = (key.to_owned(), value.to_owned());
        self.write(move |tx, _| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&owned_key, &value],
            )
            .map_err(map_err)?;
            Ok(((), 0))
        })?;
        self.meta(key)?.ok_or_else(|| StoreError::Other(format!("setting {key} was not stored")))
    }

    fn append_once(&self, key: &str, value: &str, event: &NewEvent) -> Result<Option<u64>> {
        let (key, value, event) = (key.to_owned(), value.to_owned(), event.clone());
        self.write(move |tx, next| {
            let inserted = tx
                .execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                    &[&key, &value],
                )
                .map_err(map_err)?;
            if inserted == 0 {
                return Ok((None, 0));
            }
            let indices = append(tx, next, std::slice::from_ref(&event))?;
            Ok((indices.first().copied(), 1))
        })
    }

    fn add_ledger_key(&self, id: &str, key: &str, event: &NewEvent) -> Result<u64> {
        let (name, key, event) = (format!("ledger.key.{id}"), key.to_owned(), event.clone());
        self.write(move |tx, next| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&name, &key],
            )
            .map_err(map_err)?;
            let indices = append(tx, next, std::slice::from_ref(&event))?;
            let index =
                indices.first().copied().ok_or_else(|| StoreError::Other("no index assigned".into()))?;
            Ok((index, 1))
        })
    }

    fn add_cosignature(&self, c: &StoredCosignature) -> Result<()> {
        let (c, size, signed) = (c.clone(), to_i64(c.size)?, to_i64(c.signed_s)?);
        self.write(move |tx, _| {
            tx.execute(
                "INSERT INTO cosignatures (witness, size, line, signed_s) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (witness, size) DO NOTHING",
                &[&c.witness, &size, &c.line, &signed],
            )
            .map_err(map_err)?;
            Ok(((), 0))
        })
    }

    fn cosignatures(&self, size: u64) -> Result<Vec<StoredCosignature>> {
        let rows = self
            .lock()?
            .cached()
            .query(
                "SELECT witness, line, signed_s FROM cosignatures WHERE size = $1 ORDER BY witness",
                &[&to_i64(size)?],
            )
            .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                Ok(StoredCosignature {
                    witness: row.get(0),
                    size,
                    line: row.get(1),
                    signed_s: to_u64(row.get(2))?,
                })
            })
            .collect()
    }

    fn witness_heads(&self) -> Result<Vec<(String, u64)>> {
        let rows = self
            .lock()?
            .cached()
            .query("SELECT witness, MAX(size) FROM cosignatures GROUP BY witness ORDER BY witness", &[])
            .map_err(map_err)?;
        rows.iter().map(|row| Ok((row.get(0), to_u64(row.get(1))?))).collect()
    }
}

impl EvidenceStore for PostgresStore {
    fn evidence(&self, sha256: &[u8; 32]) -> Result<Option<EvidenceBlob>> {
        let row = self
            .lock()?
            .cached()
            .query_opt("SELECT media_type, bytes FROM evidence WHERE sha256 = $1", &[&sha256.as_slice()])
            .map_err(map_err)?;
        Ok(row.map(|r| EvidenceBlob { sha256: *sha256, media_type: r.get(0), bytes: r.get(1) }))
    }

    fn sensitive(&self, hmac: &str) -> Result<Option<String>> {
        let row = self
            .lock()?
            .cached()
            .query_opt("SELECT value FROM sensitive WHERE hmac = $1", &[&hmac])
            .map_err(map_err)?;
        Ok(row.map(|r| r.get(0)))
    }

    fn sensitive_many(&self, hmacs: &[String]) -> Result<std::collections::BTreeMap<String, String>> {
        let rows = self
            .lock()?
            .cached()
            .query("SELECT hmac, value FROM sensitive WHERE hmac = ANY($1)", &[&hmacs])
            .map_err(map_err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

impl PostgresStore {
    fn checkpoints_where(&self, order: &str) -> Result<Vec<StoredCheckpoint>> {
        let rows = self
            .lock()?
            .cached()
            .query(&format!("SELECT size, root, note, created_ms FROM checkpoints {order}"), &[])
            .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                Ok(StoredCheckpoint {
                    size: to_u64(row.get(0))?,
                    root: <[u8; 32]>::try_from(row.get::<_, &[u8]>(1))
                        .map_err(|_| StoreError::Corrupt("checkpoint root is not 32 bytes".into()))?,
                    note: row.get(2),
                    created_at: Timestamp::from_millis(row.get(3)),
                })
            })
            .collect()
    }
}
