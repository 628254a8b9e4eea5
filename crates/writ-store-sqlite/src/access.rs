//! Tokens, roles, idempotency keys and leases in SQLite.

use std::sync::{Arc, Mutex};

use rusqlite::{OptionalExtension, Transaction, params};
use writ_core::access::{Delegation, Role, TokenInfo};
use writ_core::identity::IdentityState;
use writ_core::name::IdentityName;
use writ_core::time::Timestamp;
use writ_store::{
    AccessStore, Claim, CoordinationStore, NewEvent, PolicyStore, Result, StoreError, StoredToken,
};

use crate::{SqliteStore, append, corrupt, map_err};

impl SqliteStore {
    /// Runs `work` through the group-committing writer and hands back its value once committed.
    pub(crate) fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let slot = Arc::new(Mutex::new(None));
        let out = Arc::clone(&slot);
        self.writer.submit(Box::new(move |tx| {
            let value = work(tx)?;
            if let Ok(mut guard) = out.lock() {
                *guard = Some(value);
            }
            Ok(Vec::new())
        }))?;
        let value = slot.lock().map_err(|_| StoreError::Other("result lock poisoned".into()))?.take();
        value.ok_or_else(|| StoreError::Other("write produced no result".into()))
    }
}

pub(crate) fn first(indices: Vec<u64>) -> Result<u64> {
    indices.first().copied().ok_or_else(|| StoreError::Other("no index assigned".into()))
}

type TokenColumns = (String, String, String, String, i64, i64, Option<i64>);

const TOKEN_COLUMNS: &str = "id, identity, label, hash, created_ms, expires_ms, revoked_ms";

fn token_columns(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenColumns> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?))
}

fn parse_token((id, identity, label, hash, created, expires, revoked): TokenColumns) -> Result<StoredToken> {
    Ok(StoredToken {
        info: TokenInfo {
            id,
            identity: IdentityName::parse(&identity).map_err(corrupt("token identity"))?,
            label,
            created_at: Timestamp::from_millis(created),
            expires_at: Timestamp::from_millis(expires),
        },
        hash,
        revoked_at: revoked.map(Timestamp::from_millis),
    })
}

const DELEGATION_COLUMNS: &str = "principal, delegate, until_ms, created_ms";

fn delegation_columns(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, i64, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn parse_delegation((principal, delegate, until, created): (String, String, i64, i64)) -> Result<Delegation> {
    writ_store::delegation(&principal, &delegate, until, created)
}

impl AccessStore for SqliteStore {
    fn add_token(&self, token: &StoredToken, event: &NewEvent) -> Result<u64> {
        let (token, event) = (token.clone(), event.clone());
        let indices = self.writer.submit(Box::new(move |tx| {
            let info = &token.info;
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO tokens (id, identity, label, hash, created_ms, expires_ms)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS
                     (SELECT 1 FROM identities WHERE name = ?2 AND state = 'active')",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        info.id,
                        info.identity.as_str(),
                        info.label,
                        token.hash,
                        info.created_at.as_millis(),
                        info.expires_at.as_millis()
                    ])
                })
                .map_err(|e| match map_err(e) {
                    StoreError::Conflict(_) => StoreError::Conflict(format!(
                        "token {} exists or identity {} is unknown",
                        info.id, info.identity
                    )),
                    other => other,
                })?;
            if inserted != 1 {
                return Err(StoreError::Conflict(format!(
                    "identity {} is unknown or not active",
                    info.identity
                )));
            }
            append(tx, std::slice::from_ref(&event))
        }))?;
        first(indices)
    }

    fn token(&self, id: &str) -> Result<Option<StoredToken>> {
        let connection = self.lock()?;
        connection
            .prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"))
            .and_then(|mut s| s.query_row([id], token_columns))
            .optional()
            .map_err(map_err)?
            .map(parse_token)
            .transpose()
    }

    fn tokens(&self) -> Result<Vec<StoredToken>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_ms, id"))
            .map_err(map_err)?;
        let rows = statement.query_map([], token_columns).map_err(map_err)?;
        rows.map(|row| row.map_err(map_err).and_then(parse_token)).collect()
    }

    fn revoke_token(&self, id: &str, at: Timestamp, event: &NewEvent) -> Result<u64> {
        let (id, event) = (id.to_owned(), event.clone());
        let indices = self.writer.submit(Box::new(move |tx| {
            let updated = tx
                .prepare_cached("UPDATE tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL")
                .and_then(|mut s| s.execute(params![id, at.as_millis()]))
                .map_err(map_err)?;
            if updated != 1 {
                return Err(StoreError::Conflict(format!("token {id} is unknown or already revoked")));
            }
            append(tx, std::slice::from_ref(&event))
        }))?;
        first(indices)
    }

    fn set_identity_state(
        &self,
        identity: &IdentityName,
        from: IdentityState,
        to: IdentityState,
        tokens: &[String],
        at: Timestamp,
        event: &NewEvent,
    ) -> Result<u64> {
        let (identity, expected, event) = (identity.clone(), tokens.len(), event.clone());
        let indices = self.writer.submit(Box::new(move |tx| {
            let updated = tx
                .prepare_cached("UPDATE identities SET state = ?3 WHERE name = ?1 AND state = ?2")
                .and_then(|mut s| s.execute(params![identity.as_str(), from.as_str(), to.as_str()]))
                .map_err(map_err)?;
            if updated != 1 {
                return Err(StoreError::Conflict(format!(
                    "identity {identity} is unknown or no longer {from}"
                )));
            }
            if to != IdentityState::Active {
                let revoked = tx
                    .prepare_cached(
                        "UPDATE tokens SET revoked_ms = ?2 WHERE identity = ?1 AND revoked_ms IS NULL",
                    )
                    .and_then(|mut s| s.execute(params![identity.as_str(), at.as_millis()]))
                    .map_err(map_err)?;
                if revoked != expected {
                    return Err(StoreError::Conflict(format!(
                        "the tokens of {identity} changed meanwhile; try again"
                    )));
                }
            }
            append(tx, std::slice::from_ref(&event))
        }))?;
        first(indices)
    }

    fn set_delegation(&self, delegation: &Delegation, event: &NewEvent) -> Result<u64> {
        let (d, event) = (delegation.clone(), event.clone());
        let indices = self.writer.submit(Box::new(move |tx| {
            tx.prepare_cached(
                "INSERT INTO delegations (principal, delegate, until_ms, created_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (principal, delegate) DO UPDATE SET until_ms = excluded.until_ms, created_ms = excluded.created_ms",
            )
            .and_then(|mut s| {
                s.execute(params![
                    d.principal.as_str(),
                    d.delegate.as_str(),
                    d.until.as_millis(),
                    d.created_at.as_millis()
                ])
            })
            .map_err(|e| match map_err(e) {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("{} or {} is not a registered identity", d.principal, d.delegate))
                }
                other => other,
            })?;
            append(tx, std::slice::from_ref(&event))
        }))?;
        first(indices)
    }

    fn revoke_delegation(
        &self,
        principal: &IdentityName,
        delegate: &IdentityName,
        event: &NewEvent,
    ) -> Result<u64> {
        let (principal, delegate, event) = (principal.clone(), delegate.clone(), event.clone());
        let indices = self.writer.submit(Box::new(move |tx| {
            let deleted = tx
                .prepare_cached("DELETE FROM delegations WHERE principal = ?1 AND delegate = ?2")
                .and_then(|mut s| s.execute(params![principal.as_str(), delegate.as_str()]))
                .map_err(map_err)?;
            if deleted != 1 {
                return Err(StoreError::Conflict(format!("no delegation from {principal} to {delegate}")));
            }
            append(tx, std::slice::from_ref(&event))
        }))?;
        first(indices)
    }

    fn delegation(&self, principal: &IdentityName, delegate: &IdentityName) -> Result<Option<Delegation>> {
        let connection = self.lock()?;
        connection
            .prepare_cached(&format!(
                "SELECT {DELEGATION_COLUMNS} FROM delegations WHERE principal = ?1 AND delegate = ?2"
            ))
            .and_then(|mut s| {
                s.query_row(params![principal.as_str(), delegate.as_str()], delegation_columns).optional()
            })
            .map_err(map_err)?
            .map(parse_delegation)
            .transpose()
    }

    fn delegations(&self) -> Result<Vec<Delegation>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare(&format!("SELECT {DELEGATION_COLUMNS} FROM delegations ORDER BY principal, delegate"))
            .map_err(map_err)?;
        let rows = statement.query_map([], delegation_columns).map_err(map_err)?;
        rows.map(|row| row.map_err(map_err).and_then(parse_delegation)).collect()
    }

    fn set_role(&self, identity: &IdentityName, role: Role, present: bool, event: &NewEvent) -> Result<u64> {
        let (identity, event) = (identity.clone(), event.clone());
        let indices = self.writer.submit(Box::new(move |tx| {
            let sql = if present {
                "INSERT OR IGNORE INTO roles (identity, role) VALUES (?1, ?2)"
            } else {
                "DELETE FROM roles WHERE identity = ?1 AND role = ?2"
            };
            let changed = tx
                .prepare_cached(sql)
                .and_then(|mut s| s.execute(params![identity.as_str(), role.as_str()]))
                .map_err(|e| match map_err(e) {
                    StoreError::Conflict(_) => {
                        StoreError::Conflict(format!("identity {identity} is unknown"))
                    }
                    other => other,
                })?;
            if changed != 1 {
                let state = if present { "already has" } else { "does not have" };
                return Err(StoreError::Conflict(format!("{identity} {state} the role {role}")));
            }
            append(tx, std::slice::from_ref(&event))
        }))?;
        first(indices)
    }

    fn role_assignments(&self) -> Result<Vec<(IdentityName, Role)>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare("SELECT identity, role FROM roles ORDER BY identity, role")
            .map_err(map_err)?;
        let rows = statement
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
            .map_err(map_err)?;
        rows.map(|row| {
            let (identity, role) = row.map_err(map_err)?;
            Ok((
                IdentityName::parse(&identity).map_err(corrupt("role identity"))?,
                Role::parse(&role).map_err(corrupt("role"))?,
            ))
        })
        .collect()
    }

    fn roles_of(&self, identity: &IdentityName) -> Result<Vec<Role>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached("SELECT role FROM roles WHERE identity = ?1 ORDER BY role")
            .map_err(map_err)?;
        let rows =
            statement.query_map([identity.as_str()], |row| row.get::<_, String>(0)).map_err(map_err)?;
        rows.map(|row| Role::parse(&row.map_err(map_err)?).map_err(corrupt("role"))).collect()
    }
}

impl CoordinationStore for SqliteStore {
    fn claim_request(&self, scope: &str, key: &str, fingerprint: &str, now: Timestamp) -> Result<Claim> {
        let (scope, key, fingerprint) = (scope.to_owned(), key.to_owned(), fingerprint.to_owned());
        self.write(move |tx| {
            let existing: Option<(String, Option<i64>, Option<String>)> = tx
                .prepare_cached(
                    "SELECT fingerprint, status, resource FROM requests WHERE scope = ?1 AND key = ?2",
                )
                .and_then(|mut s| s.query_row([&scope, &key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
                .optional()
                .map_err(map_err)?;
            Ok(match existing {
                None => {
                    tx.prepare_cached(
                        "INSERT INTO requests (scope, key, fingerprint, created_ms) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .and_then(|mut s| s.execute(params![scope, key, fingerprint, now.as_millis()]))
                    .map_err(map_err)?;
                    Claim::Fresh
                }
                Some((stored, _, _)) if stored != fingerprint => Claim::Mismatch,
                Some((_, Some(status), Some(resource))) => {
                    Claim::Replay { status: u16::try_from(status).unwrap_or(500), resource }
                }
                Some(_) => Claim::InProgress,
            })
        })
    }

    fn finish_request(&self, scope: &str, key: &str, status: u16, resource: &str) -> Result<()> {
        let (scope, key, resource) = (scope.to_owned(), key.to_owned(), resource.to_owned());
        self.write(move |tx| {
            tx.prepare_cached("UPDATE requests SET status = ?3, resource = ?4 WHERE scope = ?1 AND key = ?2")
                .and_then(|mut s| s.execute(params![scope, key, i64::from(status), resource]))
                .map_err(map_err)?;
            Ok(())
        })
    }

    fn release_request(&self, scope: &str, key: &str) -> Result<()> {
        let (scope, key) = (scope.to_owned(), key.to_owned());
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM requests WHERE scope = ?1 AND key = ?2 AND status IS NULL")
                .and_then(|mut s| s.execute(params![scope, key]))
                .map_err(map_err)?;
            Ok(())
        })
    }

    fn purge_requests(&self, before: Timestamp) -> Result<u64> {
        self.write(move |tx| {
            let purged = tx
                .prepare_cached("DELETE FROM requests WHERE created_ms < ?1")
                .and_then(|mut s| s.execute([before.as_millis()]))
                .map_err(map_err)?;
            Ok(u64::try_from(purged).unwrap_or(0))
        })
    }

    fn acquire_lease(&self, name: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |tx| {
            let changed = tx
                .prepare_cached(
                    "INSERT INTO leases (name, holder, until_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
                     WHERE leases.holder = excluded.holder OR leases.until_ms < ?4",
                )
                .and_then(|mut s| s.execute(params![name, holder, until.as_millis(), now.as_millis()]))
                .map_err(map_err)?;
            Ok(changed == 1)
        })
    }

    fn lease(&self, name: &str) -> Result<Option<(String, Timestamp)>> {
        self.lock()?
            .prepare_cached("SELECT holder, until_ms FROM leases WHERE name = ?1")
            .and_then(|mut s| {
                s.query_row([name], |row| Ok((row.get(0)?, Timestamp::from_millis(row.get(1)?)))).optional()
            })
            .map_err(map_err)
    }
}

impl PolicyStore for SqliteStore {
    fn add_policy(&self, hash: &str, files: &str, at: Timestamp, event: &NewEvent) -> Result<u64> {
        let (hash, files, event) = (hash.to_owned(), files.to_owned(), event.clone());
        let indices = self.writer.submit(Box::new(move |tx| {
            tx.prepare_cached("INSERT INTO policies (hash, files, loaded_ms) VALUES (?1, ?2, ?3)")
                .and_then(|mut s| s.execute(params![hash, files, at.as_millis()]))
                .map_err(map_err)?;
            append(tx, std::slice::from_ref(&event))
        }))?;
        first(indices)
    }

    fn policy(&self, hash: Option<&str>) -> Result<Option<(String, String)>> {
        let connection = self.lock()?;
        let row = match hash {
            None => connection
                .prepare_cached("SELECT hash, files FROM policies ORDER BY seq DESC LIMIT 1")
                .and_then(|mut s| s.query_row([], |row| Ok((row.get(0)?, row.get(1)?))))
                .optional(),
            Some(hash) => connection
                .prepare_cached("SELECT hash, files FROM policies WHERE hash = ?1 ORDER BY seq DESC LIMIT 1")
                .and_then(|mut s| s.query_row([hash], |row| Ok((row.get(0)?, row.get(1)?))))
                .optional(),
        };
        row.map_err(map_err)
    }
}
