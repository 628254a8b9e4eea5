//! The PostgreSQL target connector: an entitlement is a group role (a role that cannot log in),
//! a member is the login role named like the Writ identity, and a grant is role membership
//! (`GRANT group TO member`).
//!
//! Every apply runs in one transaction on the target: it reads the membership it is about to
//! change (`pg_auth_members`), grants or revokes, and appends one row per operation to
//! `writ_audit.changes` on the target with the Writ change ID, requester, approvers and
//! executor — so the change ID is findable on the target itself, next to PostgreSQL's own
//! catalog. `observe` reads the catalog, never Writ's records.
//!
//! Target settings: `dsn` (libpq key=value or URL, **without a password**: a DSN carrying one
//! is refused, because target settings are stored and shown), `password_file` (optional, read
//! when connecting), and `roles` (optional comma-separated list limiting which group roles Writ
//! manages; by default every non-login role except PostgreSQL's own `pg_*` roles).
//!
//! Architecture invariant: SQL here manages access on the target; identifiers are always
//! quoted, values always bound.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use postgres::{Client, NoTls};
use writ_connector::{
    AppliedOp, ApplyContext, ApplyReport, Connector, ConnectorError, Observed, PlanStep, Result, TargetOp,
    plan_against,
};
use writ_core::change::OpAction;
use writ_core::name::{EntitlementName, IdentityName};

type Members = BTreeMap<EntitlementName, BTreeSet<IdentityName>>;

/// A connection to one PostgreSQL target.
pub struct PostgresConnector {
    name: String,
    client: Mutex<Client>,
    managed: Option<BTreeSet<String>>,
    /// Whether `writ_audit.changes` is known to exist on this connection's target.
    audit_ready: std::sync::atomic::AtomicBool,
}

/// Quotes an SQL identifier (`"` doubled), so no role name can break out of its position.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
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

impl PostgresConnector {
    /// Connects to the target named `name`. `password` (from a password file) is added to the
    /// DSN only in memory.
    pub fn connect(name: &str, dsn: &str, password: Option<&str>, roles: Option<&str>) -> Result<Self> {
        let invalid = |detail: String| ConnectorError::Invalid { target: name.to_owned(), detail };
        if dsn_has_password(dsn) {
            return Err(invalid(
                "the dsn carries a password; target settings are stored and shown, so put it in a file \
                 and name it with password_file"
                    .into(),
            ));
        }
        let mut config: postgres::Config = dsn.parse().map_err(|e| invalid(format!("bad dsn: {e}")))?;
        if let Some(password) = password {
            config.password(password.trim_end_matches(['\n', '\r']));
        }
        config.application_name("writ");
        config.connect_timeout(std::time::Duration::from_secs(5));
        let client = config.connect(NoTls).map_err(|e| unavailable(name, &e))?;
        let managed =
            roles.map(|r| r.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect());
        Ok(PostgresConnector {
            name: name.to_owned(),
            client: Mutex::new(client),
            managed,
            audit_ready: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// True once the connection to the target is gone (the factory then connects again).
    pub fn is_closed(&self) -> bool {
        self.client.lock().map_or(true, |c| c.is_closed())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Client>> {
        self.client.lock().map_err(|_| ConnectorError::Unavailable {
            target: self.name.clone(),
            detail: "connection lock poisoned".into(),
        })
    }

    fn err(&self, error: &postgres::Error) -> ConnectorError {
        unavailable(&self.name, error)
    }

    /// Every managed group role with its login members, read from the catalog.
    fn members(&self, client: &mut impl postgres::GenericClient) -> Result<Members> {
        let rows = client
            .query(
                "SELECT g.rolname, m.rolname
                 FROM pg_roles g
                 LEFT JOIN pg_auth_members am ON am.roleid = g.oid
                 LEFT JOIN pg_roles m ON m.oid = am.member AND m.rolcanlogin
                 WHERE NOT g.rolcanlogin AND g.rolname NOT LIKE 'pg\\_%'
                 ORDER BY 1, 2",
                &[],
            )
            .map_err(|e| self.err(&e))?;
        let mut members = Members::new();
        for row in rows {
            let group: String = row.get(0);
            if self.managed.as_ref().is_some_and(|m| !m.contains(&group)) {
                continue;
            }
            // Roles whose names Writ cannot represent are not offered as entitlements.
            let Ok(entitlement) = EntitlementName::parse(&group) else { continue };
            let set = members.entry(entitlement).or_default();
            if let Some(member) = row.get::<_, Option<String>>(1).and_then(|m| IdentityName::parse(&m).ok()) {
                set.insert(member);
            }
        }
        Ok(members)
    }
}

fn unavailable(target: &str, error: &postgres::Error) -> ConnectorError {
    let detail = error.as_db_error().map_or_else(|| error.to_string(), |db| db.message().to_owned());
    ConnectorError::Unavailable { target: target.to_owned(), detail }
}

impl Connector for PostgresConnector {
    fn entitlements(&self) -> Result<Vec<EntitlementName>> {
        let mut client = self.lock()?;
        Ok(self.members(&mut *client)?.into_keys().collect())
    }

    fn plan(&self, ops: &[TargetOp]) -> Result<Vec<PlanStep>> {
        let mut client = self.lock()?;
        let members = self.members(&mut *client)?;
        plan_against(&self.name, &members, ops)
    }

    fn apply(&self, context: &ApplyContext, ops: &[TargetOp]) -> Result<ApplyReport> {
        let mut client = self.lock()?;
        let mut tx = client.transaction().map_err(|e| self.err(&e))?;
        // One writer per target at a time, so the membership read below stays true until commit.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('writ-connector'))", &[])
            .map_err(|e| self.err(&e))?;
        let create_audit = !self.audit_ready.load(std::sync::atomic::Ordering::Relaxed);
        if create_audit {
            tx.batch_execute(
                "CREATE SCHEMA IF NOT EXISTS writ_audit;
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
             );",
            )
            .map_err(|e| self.err(&e))?;
        }
        let members = self.members(&mut tx)?;
        plan_against(&self.name, &members, ops)?;
        let mut applied = Vec::with_capacity(ops.len());
        let mut last_row: Option<i64> = None;
        for op in ops {
            let before = members.get(&op.entitlement).is_some_and(|m| m.contains(&op.member));
            let want = op.action == OpAction::Grant;
            if before != want {
                let sql = match op.action {
                    OpAction::Grant => {
                        format!("GRANT {} TO {}", ident(op.entitlement.as_str()), ident(op.member.as_str()))
                    }
                    OpAction::Revoke => {
                        format!(
                            "REVOKE {} FROM {}",
                            ident(op.entitlement.as_str()),
                            ident(op.member.as_str())
                        )
                    }
                };
                tx.batch_execute(&sql).map_err(|e| match e.code() {
                    Some(code) if *code == postgres::error::SqlState::UNDEFINED_OBJECT => {
                        ConnectorError::Invalid {
                            target: self.name.clone(),
                            detail: format!("{} has no login role on the target", op.member),
                        }
                    }
                    _ => self.err(&e),
                })?;
            }
            let row = tx
                .query_one(
                    "INSERT INTO writ_audit.changes
                         (change_id, action, role_name, member, changed, requester, approvers, executor)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                    &[
                        &context.change.as_str(),
                        &op.action.as_str(),
                        &op.entitlement.as_str(),
                        &op.member.as_str(),
                        &(before != want),
                        &context.requester,
                        &context.approvers.join(","),
                        &context.executor,
                    ],
                )
                .map_err(|e| self.err(&e))?;
            last_row = Some(row.get(0));
            applied.push(AppliedOp { op: op.clone(), before, after: want });
        }
        tx.commit().map_err(|e| self.err(&e))?;
        if create_audit {
            self.audit_ready.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(ApplyReport { applied, reference: last_row.map(|id| format!("writ_audit.changes#{id}")) })
    }

    fn observe(&self, entitlements: &[EntitlementName]) -> Result<Observed> {
        let mut client = self.lock()?;
        let members = self.members(&mut *client)?;
        let members =
            entitlements.iter().filter_map(|e| members.get(e).map(|m| (e.clone(), m.clone()))).collect();
        Ok(Observed { members, reference: None })
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
