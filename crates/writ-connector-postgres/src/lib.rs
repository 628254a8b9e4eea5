//! The PostgreSQL target connector. Three kinds of entitlement, all read from the catalog:
//!
//! - **group roles** (roles that cannot log in), named as they are: a grant is membership
//!   (`GRANT group TO member`), observed in `pg_auth_members`;
//! - **`login`**: the right to log in at all. A grant creates the member's login role if it is
//!   missing, or sets it `VALID UNTIL` the grant's end (`infinity` when not time-bound), so the
//!   server itself refuses the login once a time-bound grant is over; a revoke sets `VALID
//!   UNTIL '-infinity'` and ends the member's open sessions. Observed in `pg_roles`
//!   (`rolcanlogin` and `rolvaliduntil` in the future);
//! - **privileges** on the tables and schemas of the schemas listed in `schemas`:
//!   `table/SCHEMA.TABLE/PRIVILEGE` (select, insert, update, delete, truncate, references,
//!   trigger) and `schema/SCHEMA/PRIVILEGE` (usage, create), observed with `aclexplode` over
//!   `relacl`/`nspacl` (the default ACL when none is set).
//!
//! A member is always a login role named like the Writ identity. Every apply runs in one
//! transaction on the target under an advisory lock: it reads the catalog rows it is about to
//! change, runs the statements, and appends one row per operation to `writ_audit.changes` on
//! the target with the Writ change ID, requester, approvers and executor — so the change ID is
//! findable on the target itself, next to PostgreSQL's own catalog. `observe` reads the
//! catalog, never Writ's records.
//!
//! Every round trip has a deadline (`timeout`, 10 s by default). A call without an answer in
//! time fails the apply as unavailable and the connection is dropped: the server may still
//! have committed it (a "late success"), which the next plan observes, so a retry changes
//! nothing twice. An apply takes two round trips: `BEGIN` with the advisory lock pipelined
//! with the catalog read (sent together; the read's snapshot is taken after the lock is held,
//! since the server runs them in order), then the statements, trail rows and `COMMIT`.
//!
//! Target settings: `dsn` (libpq key=value or URL, **without a password**: a DSN carrying one
//! is refused, because target settings are stored and shown), `password_file` (optional, read
//! when connecting), `roles` (optional comma-separated list limiting which group roles, and
//! whether `login`, Writ manages; by default every group role except PostgreSQL's own `pg_*`
//! roles, and `login`), and `schemas` (optional comma-separated list of schemas whose table and
//! schema privileges are entitlements; none by default).
//!
//! Architecture invariant: SQL here manages access on the target; identifiers are always
//! quoted, values bound or quoted as literals.

mod registration;

pub use registration::REGISTRATION;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_postgres::{Client, NoTls};
use writ_connector::{
    AppliedOp, ApplyContext, ApplyReport, Connector, ConnectorError, Holdings, Observed, PlanStep, Result,
    TargetOp, no_rotation, plan_against,
};
use writ_core::change::{ChangeId, OpAction};
use writ_core::name::{EntitlementName, IdentityName};

type Members = BTreeMap<EntitlementName, BTreeSet<IdentityName>>;

/// The entitlement that stands for the right to log in.
pub const LOGIN: &str = "login";

/// What an entitlement is on the server.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Object {
    Role(String),
    Login,
    Table { schema: String, table: String, privilege: String },
    Schema { schema: String, privilege: String },
}

/// The managed part of the catalog: who holds what, and what each entitlement is.
#[derive(Default)]
struct Catalog {
    members: Members,
    objects: BTreeMap<EntitlementName, Object>,
}

/// Settings of one PostgreSQL target (see the module documentation).
#[derive(Clone, Debug)]
pub struct PostgresSettings {
    pub dsn: String,
    pub roles: Option<String>,
    pub schemas: Option<String>,
    /// The deadline of each round trip (and of connecting).
    pub timeout: Duration,
}

/// A connection to one PostgreSQL target, driven by its own single-threaded runtime (the
/// connector is called from blocking code).
pub struct PostgresConnector {
    name: String,
    runtime: tokio::runtime::Runtime,
    client: Mutex<Client>,
    /// [`CATALOG`], prepared once per connection (it is planned once, not on every read).
    catalog: tokio_postgres::Statement,
    managed: Option<BTreeSet<String>>,
    schemas: Vec<String>,
    timeout: Duration,
    /// Whether `writ_audit.changes` is known to exist on this connection's target.
    audit_ready: AtomicBool,
    /// Set when a round trip got no answer in time: what the connection is in the middle of is
    /// unknown, so it is not used again.
    broken: AtomicBool,
}

/// Why a round trip did not give an answer.
enum Failed {
    Db(tokio_postgres::Error),
    Late,
}

impl From<tokio_postgres::Error> for Failed {
    fn from(error: tokio_postgres::Error) -> Failed {
        Failed::Db(error)
    }
}

/// Every managed entitlement with its members, one row per (entitlement, member); rows with a
/// NULL member keep entitlements without members. `$1`: the schemas whose privileges are
/// managed; `$2`: only these entitlements, or NULL for all.
const CATALOG: &str = "
SELECT kind, ent, nsp, rel, priv, member FROM (
    SELECT 'role' AS kind, g.rolname::text AS ent, NULL::text AS nsp, NULL::text AS rel,
           NULL::text AS priv, m.rolname::text AS member
    FROM pg_roles g
    LEFT JOIN pg_auth_members am ON am.roleid = g.oid
    LEFT JOIN pg_roles m ON m.oid = am.member AND m.rolcanlogin
    WHERE NOT g.rolcanlogin AND g.rolname NOT LIKE 'pg\\_%'
      AND g.rolname <> 'login' AND strpos(g.rolname, '/') = 0
  UNION ALL
    SELECT 'login', 'login', NULL, NULL, NULL, NULL
  UNION ALL
    SELECT 'login', 'login', NULL, NULL, NULL, rolname::text FROM pg_roles
    WHERE rolcanlogin AND (rolvaliduntil IS NULL OR rolvaliduntil > now())
  UNION ALL
    SELECT 'table', 'table/' || n.nspname || '.' || c.relname || '/' || lower(p.priv),
           n.nspname::text, c.relname::text, p.priv, r.rolname::text
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE','REFERENCES','TRIGGER']) AS p(priv)
    LEFT JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
           ON a.privilege_type = p.priv
    LEFT JOIN pg_roles r ON r.oid = a.grantee AND r.rolcanlogin
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname = ANY($1)
  UNION ALL
    SELECT 'schema', 'schema/' || n.nspname || '/' || lower(p.priv), n.nspname::text, NULL, p.priv,
           r.rolname::text
    FROM pg_namespace n
    CROSS JOIN unnest(ARRAY['USAGE','CREATE']) AS p(priv)
    LEFT JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
           ON a.privilege_type = p.priv
    LEFT JOIN pg_roles r ON r.oid = a.grantee AND r.rolcanlogin
    WHERE n.nspname = ANY($1)
) catalog
WHERE $2::text[] IS NULL OR ent = ANY($2)";

/// Every login role but the one Writ connects as and PostgreSQL's own: the target's accounts.
const ACCOUNTS: &str = "SELECT rolname::text FROM pg_roles
    WHERE rolcanlogin AND rolname <> session_user AND rolname NOT LIKE 'pg\\_%' ORDER BY 1";

/// The logins with a session open now (not Writ's own), at the server's time in milliseconds.
const SESSIONS: &str = "SELECT DISTINCT usename::text, (extract(epoch FROM now()) * 1000)::bigint
    FROM pg_stat_activity WHERE usename IS NOT NULL AND usename <> session_user";

/// How many times the timeout a full read of the catalog may take.
const READ_TIMEOUTS: u32 = 10;

/// Quotes an SQL identifier (`"` doubled), so no role name can break out of its position.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal (`'` doubled; the batch sets `standard_conforming_strings`, so a
/// backslash is an ordinary character).
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// True if a DSN carries a password (key=value `password=` or a URL's `user:secret@`).
pub fn dsn_has_password(dsn: &str) -> bool {
    let lower = dsn.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        let rest = lower.split_once("://").map_or("", |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or_default();
        return authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
            || lower.contains("password=");
    }
    lower.split_whitespace().any(|kv| kv.starts_with("password="))
}

fn list(setting: Option<&str>) -> Option<BTreeSet<String>> {
    setting.map(|r| r.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
}

impl PostgresConnector {
    /// Connects to the target named `name`. `password` (from a password file) is added to the
    /// DSN only in memory.
    pub fn connect(name: &str, settings: &PostgresSettings, password: Option<&str>) -> Result<Self> {
        let invalid = |detail: String| ConnectorError::Invalid { target: name.to_owned(), detail };
        if dsn_has_password(&settings.dsn) {
            return Err(invalid(
                "the dsn carries a password; target settings are stored and shown, so put it in a file \
                 and name it with password_file"
                    .into(),
            ));
        }
        let mut config: tokio_postgres::Config =
            settings.dsn.parse().map_err(|e| invalid(format!("bad dsn: {e}")))?;
        if let Some(password) = password {
            config.password(password.trim_end_matches(['\n', '\r']));
        }
        config.application_name("writ");
        config.connect_timeout(settings.timeout);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
            ConnectorError::Unavailable {
                target: name.to_owned(),
                detail: format!("cannot start a runtime: {e}"),
            }
        })?;
        let late = |what: &str| no_answer(name, settings.timeout, what);
        // Connecting and preparing share one deadline.
        let deadline = runtime.block_on(async { tokio::time::Instant::now() + settings.timeout });
        let (client, connection) = runtime
            .block_on(async { tokio::time::timeout_at(deadline, config.connect(NoTls)).await })
            .map_err(|_| late("connect"))?
            .map_err(|e| unavailable(name, &e))?;
        // The connection task runs whenever a call below drives the runtime.
        runtime.spawn(connection);
        let catalog = runtime
            .block_on(async { tokio::time::timeout_at(deadline, client.prepare(CATALOG)).await })
            .map_err(|_| late("prepare"))?
            .map_err(|e| unavailable(name, &e))?;
        Ok(PostgresConnector {
            name: name.to_owned(),
            runtime,
            client: Mutex::new(client),
            catalog,
            managed: list(settings.roles.as_deref()),
            schemas: list(settings.schemas.as_deref()).unwrap_or_default().into_iter().collect(),
            timeout: settings.timeout,
            audit_ready: AtomicBool::new(false),
            broken: AtomicBool::new(false),
        })
    }

    /// True once the connection to the target is gone or was given up on (the factory then
    /// connects again).
    pub fn is_closed(&self) -> bool {
        self.broken.load(Ordering::Relaxed) || self.client.lock().map_or(true, |c| c.is_closed())
    }

    /// Drives `work` to its end or to the deadline. Past the deadline the connection is marked
    /// broken: a later answer would belong to a request nobody waits for any more.
    fn wait<T>(
        &self,
        work: impl Future<Output = std::result::Result<T, Failed>>,
    ) -> std::result::Result<T, Failed> {
        self.wait_until(self.deadline(), work)
    }

    /// The deadline of an exchange that starts now.
    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.timeout
    }

    /// [`Self::wait`] for a step of a longer exchange: every step shares the exchange's
    /// `deadline`, so the configured timeout bounds the whole of it.
    fn wait_until<T>(
        &self,
        deadline: tokio::time::Instant,
        work: impl Future<Output = std::result::Result<T, Failed>>,
    ) -> std::result::Result<T, Failed> {
        match self.runtime.block_on(async { tokio::time::timeout_at(deadline, work).await }) {
            Ok(done) => done,
            Err(_) => {
                self.broken.store(true, Ordering::Relaxed);
                Err(Failed::Late)
            }
        }
    }

    fn fail(&self, failed: Failed) -> ConnectorError {
        match failed {
            Failed::Db(error) => self.err(&error),
            Failed::Late => no_answer(
                &self.name,
                self.timeout,
                "whether the last statement took effect is unknown until the target is observed again",
            ),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Client>> {
        self.client.lock().map_err(|_| ConnectorError::Unavailable {
            target: self.name.clone(),
            detail: "connection lock poisoned".into(),
        })
    }

    fn err(&self, error: &tokio_postgres::Error) -> ConnectorError {
        unavailable(&self.name, error)
    }

    /// The managed entitlements (all, or only `only`) with their login members, read from the
    /// catalog.
    fn catalog(&self, client: &Client, only: Option<&[EntitlementName]>) -> Result<Catalog> {
        let only: Option<Vec<&str>> = only.map(|o| o.iter().map(EntitlementName::as_str).collect());
        let rows = self
            .wait(async { Ok(client.query(&self.catalog, &[&self.schemas, &only]).await?) })
            .map_err(|f| self.fail(f))?;
        self.read_catalog(rows)
    }

    /// The catalog from the rows of [`CATALOG`].
    fn read_catalog(&self, rows: Vec<tokio_postgres::Row>) -> Result<Catalog> {
        let mut catalog = Catalog::default();
        for row in rows {
            let (kind, name): (&str, String) = (row.get(0), row.get(1));
            let object = match kind {
                "role" => Object::Role(name.clone()),
                "login" => Object::Login,
                "table" => Object::Table { schema: row.get(2), table: row.get(3), privilege: row.get(4) },
                _ => Object::Schema { schema: row.get(2), privilege: row.get(4) },
            };
            let roles = matches!(object, Object::Role(_) | Object::Login);
            if roles && self.managed.as_ref().is_some_and(|m| !m.contains(&name)) {
                continue;
            }
            // Objects whose names Writ cannot represent are not offered as entitlements.
            let Ok(entitlement) = EntitlementName::parse(&name) else { continue };
            let set = catalog.members.entry(entitlement.clone()).or_default();
            if let Some(member) = row.get::<_, Option<String>>(5).and_then(|m| IdentityName::parse(&m).ok()) {
                set.insert(member);
            }
            catalog.objects.insert(entitlement, object);
        }
        Ok(catalog)
    }

    /// Runs one apply inside the open transaction (whose catalog read is `catalog`) and
    /// commits it; the caller rolls back on error.
    fn apply_in(
        &self,
        client: &Client,
        catalog: Catalog,
        context: &ApplyContext,
        ops: &[TargetOp],
        deadline: tokio::time::Instant,
    ) -> Result<Vec<AppliedOp>> {
        plan_against(&self.name, &catalog.members, ops)?;
        let mut batch = String::from("SET LOCAL standard_conforming_strings = on;\n");
        if !self.audit_ready.load(Ordering::Relaxed) {
            batch.push_str(AUDIT_TABLE);
        }
        let mut applied = Vec::with_capacity(ops.len());
        for op in ops {
            let before = catalog.members.get(&op.entitlement).is_some_and(|m| m.contains(&op.member));
            let want = op.action == OpAction::Grant;
            if before != want {
                let object = catalog.objects.get(&op.entitlement).ok_or_else(|| {
                    ConnectorError::UnknownEntitlement {
                        target: self.name.clone(),
                        entitlement: op.entitlement.clone(),
                    }
                })?;
                let until = match op.ttl {
                    Some(ttl) if *object == Object::Login => {
                        let seconds = ttl.as_millis() as f64 / 1000.0;
                        let row = self
                            .wait_until(deadline, async {
                                let sql = "SELECT (now() + make_interval(secs => $1))::text";
                                Ok(client.query_one(sql, &[&seconds]).await?)
                            })
                            .map_err(|f| self.fail(f))?;
                        row.get::<_, String>(0)
                    }
                    _ => "infinity".to_owned(),
                };
                batch.push_str(&statement(object, op, &until));
                batch.push_str(";\n");
            }
            batch.push_str(&format!(
                "INSERT INTO writ_audit.changes
                     (change_id, action, role_name, member, changed, requester, approvers, executor)
                 VALUES ({}, {}, {}, {}, {}, {}, {}, {});\n",
                literal(context.change.as_str()),
                literal(op.action.as_str()),
                literal(op.entitlement.as_str()),
                literal(op.member.as_str()),
                before != want,
                literal(&context.requester),
                literal(&context.approvers.join(",")),
                literal(&context.executor),
            ));
            applied.push(AppliedOp { op: op.clone(), before, after: want });
        }
        batch.push_str("COMMIT");
        self.wait_until(deadline, async { Ok(client.batch_execute(&batch).await?) }).map_err(|failed| {
            match failed {
                Failed::Db(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_OBJECT) => {
                    ConnectorError::Invalid {
                        target: self.name.clone(),
                        detail: format!("a member has no login role on the target: {}", db_message(&e)),
                    }
                }
                other => self.fail(other),
            }
        })?;
        Ok(applied)
    }
}

/// The statement that makes `op` true on the server. `until` is the `VALID UNTIL` of a login
/// grant.
fn statement(object: &Object, op: &TargetOp, until: &str) -> String {
    let member = ident(op.member.as_str());
    let grant = op.action == OpAction::Grant;
    let privilege = |on: String| {
        if grant { format!("GRANT {on} TO {member}") } else { format!("REVOKE {on} FROM {member}") }
    };
    match object {
        Object::Role(role) if grant => format!("GRANT {} TO {member}", ident(role)),
        Object::Role(role) => format!("REVOKE {} FROM {member}", ident(role)),
        Object::Login if grant => format!(
            "DO $writ$ BEGIN
               IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {name} AND NOT rolcanlogin) THEN
                 RAISE EXCEPTION 'writ: % is a group role, not a login', {name};
               ELSIF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {name}) THEN
                 ALTER ROLE {member} VALID UNTIL {until};
               ELSE
                 CREATE ROLE {member} LOGIN VALID UNTIL {until};
               END IF;
             END $writ$",
            name = literal(op.member.as_str()),
            until = literal(until),
        ),
        Object::Login => format!("ALTER ROLE {member} VALID UNTIL '-infinity'"),
        Object::Table { schema, table, privilege: p } => {
            privilege(format!("{p} ON TABLE {}.{}", ident(schema), ident(table)))
        }
        Object::Schema { schema, privilege: p } => privilege(format!("{p} ON SCHEMA {}", ident(schema))),
    }
}

/// A time column or expression as text the way audit rows are named by (UTC, microseconds):
/// the apply that wrote them and the lookup that finds them again must agree to the character.
fn utc_text(time: &str) -> String {
    format!("to_char({time} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
}

/// How an apply's audit rows are referred to: the change and the transaction's time.
fn reference(change: &str, at: &str) -> String {
    format!("writ_audit.changes change_id={change} at={at}")
}

/// The target-side trail, made on first use. `role_name` holds the entitlement's name.
const AUDIT_TABLE: &str = "
CREATE SCHEMA IF NOT EXISTS writ_audit;
CREATE TABLE IF NOT EXISTS writ_audit.changes (
    id          BIGSERIAL PRIMARY KEY,
    change_id   TEXT NOT NULL,
    action      TEXT NOT NULL,
    role_name   TEXT NOT NULL,
    member      TEXT NOT NULL,
    changed     BOOLEAN NOT NULL,
    requester   TEXT NOT NULL,
    approvers   TEXT NOT NULL,
    executor    TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
";

fn db_message(error: &tokio_postgres::Error) -> String {
    error.as_db_error().map_or_else(|| error.to_string(), |db| db.message().to_owned())
}

/// The target gave no answer within `timeout`.
fn no_answer(target: &str, timeout: Duration, detail: &str) -> ConnectorError {
    ConnectorError::Unavailable {
        target: target.to_owned(),
        detail: format!("no answer within {timeout:?}; {detail}"),
    }
}

fn unavailable(target: &str, error: &tokio_postgres::Error) -> ConnectorError {
    ConnectorError::Unavailable { target: target.to_owned(), detail: db_message(error) }
}

impl Connector for PostgresConnector {
    fn is_closed(&self) -> bool {
        PostgresConnector::is_closed(self)
    }

    fn entitlements(&self) -> Result<Vec<EntitlementName>> {
        let client = self.lock()?;
        Ok(self.catalog(&client, None)?.members.into_keys().collect())
    }

    fn plan(&self, ops: &[TargetOp]) -> Result<Vec<PlanStep>> {
        no_rotation(&self.name, "PostgreSQL", ops)?;
        let entitlements: Vec<EntitlementName> = ops.iter().map(|op| op.entitlement.clone()).collect();
        let client = self.lock()?;
        let catalog = self.catalog(&client, Some(&entitlements))?;
        plan_against(&self.name, &catalog.members, ops)
    }

    fn apply(&self, context: &ApplyContext, ops: &[TargetOp]) -> Result<ApplyReport> {
        no_rotation(&self.name, "PostgreSQL", ops)?;
        let client = self.lock()?;
        // One writer per target at a time, so the catalog read stays true until commit. The
        // lock and the read are sent together; the server runs the read after the lock is held.
        let only = Some(ops.iter().map(|op| op.entitlement.as_str()).collect::<Vec<&str>>());
        // One deadline for the whole apply: lock, read, statements and commit.
        let deadline = self.deadline();
        let begun = self.wait_until(deadline, async {
            let lock =
                client.batch_execute("BEGIN; SELECT pg_advisory_xact_lock(hashtext('writ-connector'))");
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&self.schemas, &only];
            let read = client.query(&self.catalog, &params);
            // The transaction's time names its audit rows: this apply's reference.
            let transaction_time = format!("SELECT {}", utc_text("now()"));
            let stamp = client.query_one(&transaction_time, &[]);
            let ((), rows, stamp) = futures_util::future::try_join3(lock, read, stamp).await?;
            Ok((rows, stamp.get::<_, String>(0)))
        });
        let mut at = String::new();
        let read = begun.map_err(|f| self.fail(f)).and_then(|(rows, stamp)| {
            at = stamp;
            self.read_catalog(rows)
        });
        let applied = match read.and_then(|catalog| self.apply_in(&client, catalog, context, ops, deadline)) {
            Ok(applied) => applied,
            Err(error) => {
                // Nothing of this apply stays (a broken connection rolls back by itself).
                if !self.broken.load(Ordering::Relaxed) {
                    let _ = self.wait(async { Ok(client.batch_execute("ROLLBACK").await?) });
                }
                return Err(error);
            }
        };
        self.audit_ready.store(true, Ordering::Relaxed);
        // A revoked login also loses the sessions it has open (after commit, so a session that
        // reconnects meets the new VALID UNTIL).
        let logins: Vec<&str> = applied
            .iter()
            .filter(|a| a.before && !a.after && a.op.entitlement.as_str() == LOGIN)
            .map(|a| a.op.member.as_str())
            .collect();
        if !logins.is_empty() {
            let ended = self.wait_until(deadline, async {
                let sql = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                           WHERE usename = ANY($1) AND pid <> pg_backend_pid()";
                Ok(client.execute(sql, &[&logins]).await?)
            });
            // The revoke is committed either way; sessions left open are the server's to end.
            if let Err(failed) = ended {
                let error = self.fail(failed);
                tracing::warn!(target: "writ::connector", target_name = %self.name, %error, "cannot end the revoked logins' sessions");
            }
        }
        Ok(ApplyReport { applied, reference: Some(reference(context.change.as_str(), &at)) })
    }

    fn stamped(&self, change: &ChangeId, _ops: &[TargetOp]) -> Result<Option<String>> {
        let client = self.lock()?;
        let sql = format!(
            "SELECT {} FROM writ_audit.changes WHERE change_id = $1 ORDER BY id DESC LIMIT 1",
            utc_text("at")
        );
        let found = self.wait(async { Ok(client.query_opt(&sql, &[&change.as_str()]).await?) });
        match found {
            Ok(row) => Ok(row.map(|row| reference(change.as_str(), &row.get::<_, String>(0)))),
            // No audit table yet: no write of Writ's was ever committed here.
            Err(Failed::Db(e)) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                Ok(None)
            }
            Err(Failed::Db(e)) if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_SCHEMA_NAME) => {
                Ok(None)
            }
            Err(failed) => Err(self.fail(failed)),
        }
    }

    /// Every member of every managed entitlement as the server names it (a login whose name no
    /// Writ identity can have is held by that name, and is unmatched), every login role but
    /// Writ's own, and the logins with a session open now (the usage signal); read under one
    /// deadline of ten timeouts.
    fn holdings(&self) -> Result<Holdings> {
        let client = self.lock()?;
        let deadline = tokio::time::Instant::now() + self.timeout * READ_TIMEOUTS;
        let none: Option<Vec<&str>> = None;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&self.schemas, &none];
        let read = self.wait_until(deadline, async {
            let catalog = client.query(&self.catalog, &params);
            let accounts = client.query(ACCOUNTS, &[]);
            let sessions = client.query(SESSIONS, &[]);
            Ok(futures_util::future::try_join3(catalog, accounts, sessions).await?)
        });
        let (rows, accounts, sessions) = read.map_err(|f| self.fail(f))?;
        let mut holdings = Holdings::default();
        for row in rows {
            let (kind, name): (&str, String) = (row.get(0), row.get(1));
            if matches!(kind, "role" | "login") && self.managed.as_ref().is_some_and(|m| !m.contains(&name)) {
                continue;
            }
            let (Ok(entitlement), Some(member)) =
                (EntitlementName::parse(&name), row.get::<_, Option<String>>(5))
            else {
                continue;
            };
            holdings.held.push((member, entitlement));
        }
        holdings.accounts = accounts.iter().map(|row| row.get::<_, String>(0)).collect();
        // Sessions open now: a momentary usage signal, which the engine keeps.
        holdings.usage = Some(
            sessions
                .iter()
                .map(|row| (row.get::<_, String>(0), writ_core::time::Timestamp::from_millis(row.get(1))))
                .collect(),
        );
        holdings.normalize();
        Ok(holdings)
    }

    fn observe(&self, entitlements: &[EntitlementName]) -> Result<Observed> {
        let client = self.lock()?;
        let members = self.catalog(&client, Some(entitlements))?.members;
        Ok(Observed { members, ..Observed::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_passwords_in_dsns_are_spotted() {
        assert_eq!(ident("app_read"), "\"app_read\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        for with in [
            "host=db user=writ password=hunter2",
            "postgres://writ:hunter2@db/app",
            "postgresql://db/app?password=hunter2",
        ] {
            assert!(dsn_has_password(with), "{with}");
        }
        for without in ["host=db user=writ dbname=app", "postgres://writ@db/app", "postgres://db:5432/app"] {
            assert!(!dsn_has_password(without), "{without}");
        }
    }
}
