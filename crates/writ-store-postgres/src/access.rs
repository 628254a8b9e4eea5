//! Tokens, roles, idempotency keys and leases in PostgreSQL.

use writ_core::access::{Delegation, Role, TokenInfo};
use writ_core::identity::{Identity, IdentityState};
use writ_core::name::IdentityName;
use writ_core::time::Timestamp;
use writ_store::{
    AccessStore, Claim, CoordinationStore, NewEvent, PolicyStore, Result, StoreError, StoredToken,
};

use crate::{PostgresStore, append, conflict_as, corrupt, map_err, parse_identity_at};

const TOKEN_COLUMNS: &str = "id, identity, label, hash, created_ms, expires_ms, revoked_ms";

fn parse_token(row: &postgres::Row) -> Result<StoredToken> {
    Ok(StoredToken {
        info: TokenInfo {
            id: row.get(0),
            identity: IdentityName::parse(row.get(1)).map_err(corrupt("token identity"))?,
            label: row.get(2),
            created_at: Timestamp::from_millis(row.get(4)),
            expires_at: Timestamp::from_millis(row.get(5)),
        },
        hash: row.get(3),
        revoked_at: row.get::<_, Option<i64>>(6).map(Timestamp::from_millis),
    })
}

fn first(indices: &[u64]) -> u64 {
    indices.first().copied().unwrap_or(0)
}

impl AccessStore for PostgresStore {
    fn add_token(&self, token: &StoredToken, event: &NewEvent) -> Result<u64> {
        let (token, event) = (token.clone(), event.clone());
        self.write(move |tx, next| {
            let info = &token.info;
            let inserted = tx
                .execute(
                    "INSERT INTO tokens (id, identity, label, hash, created_ms, expires_ms)
                 SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS
                     (SELECT 1 FROM identities WHERE name = $2 AND state = 'active')",
                    &[
                        &info.id,
                        &info.identity.as_str(),
                        &info.label,
                        &token.hash,
                        &info.created_at.as_millis(),
                        &info.expires_at.as_millis(),
                    ],
                )
                .map_err(map_err)
                .map_err(conflict_as(format!(
                    "token {} exists or identity {} is unknown",
                    info.id, info.identity
                )))?;
            if inserted != 1 {
                return Err(StoreError::Conflict(format!(
                    "identity {} is unknown or not active",
                    info.identity
                )));
            }
            Ok((first(&append(tx, next, std::slice::from_ref(&event))?), 1))
        })
    }

    fn token(&self, id: &str) -> Result<Option<StoredToken>> {
        let rows = self
            .lock()?
            .cached()
            .query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"), &[&id])
            .map_err(map_err)?;
        rows.first().map(parse_token).transpose()
    }

    fn tokens(&self) -> Result<Vec<StoredToken>> {
        let rows = self
            .lock()?
            .cached()
            .query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_ms, id"), &[])
            .map_err(map_err)?;
        rows.iter().map(parse_token).collect()
    }

    fn revoke_token(&self, id: &str, at: Timestamp, event: &NewEvent) -> Result<u64> {
        let (id, event) = (id.to_owned(), event.clone());
        self.write(move |tx, next| {
            let updated = tx
                .execute(
                    "UPDATE tokens SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL",
                    &[&id, &at.as_millis()],
                )
                .map_err(map_err)?;
            if updated != 1 {
                return Err(StoreError::Conflict(format!("token {id} is unknown or already revoked")));
            }
            Ok((first(&append(tx, next, std::slice::from_ref(&event))?), 1))
        })
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
        self.write(move |tx, next| {
            let updated = tx
                .execute(
                    "UPDATE identities SET state = $3 WHERE name = $1 AND state = $2",
                    &[&identity.as_str(), &from.as_str(), &to.as_str()],
                )
                .map_err(map_err)?;
            if updated != 1 {
                return Err(StoreError::Conflict(format!(
                    "identity {identity} is unknown or no longer {from}"
                )));
            }
            if to != IdentityState::Active {
                let revoked = tx
                    .execute(
                        "UPDATE tokens SET revoked_ms = $2 WHERE identity = $1 AND revoked_ms IS NULL",
                        &[&identity.as_str(), &at.as_millis()],
                    )
                    .map_err(map_err)?;
                if usize::try_from(revoked).ok() != Some(expected) {
                    return Err(StoreError::Conflict(format!(
                        "the tokens of {identity} changed meanwhile; try again"
                    )));
                }
            }
            Ok((first(&append(tx, next, std::slice::from_ref(&event))?), 1))
        })
    }

    fn set_delegation(&self, delegation: &Delegation, event: &NewEvent) -> Result<u64> {
        let (d, event) = (delegation.clone(), event.clone());
        self.write(move |tx, next| {
            tx.execute(
                "INSERT INTO delegations (principal, delegate, until_ms, created_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (principal, delegate) DO UPDATE SET until_ms = excluded.until_ms, created_ms = excluded.created_ms",
                &[&d.principal.as_str(), &d.delegate.as_str(), &d.until.as_millis(), &d.created_at.as_millis()],
            )
            .map_err(map_err)
            .map_err(conflict_as(format!("{} or {} is not a registered identity", d.principal, d.delegate)))?;
            Ok((first(&append(tx, next, std::slice::from_ref(&event))?), 1))
        })
    }

    fn revoke_delegation(
        &self,
        principal: &IdentityName,
        delegate: &IdentityName,
        event: &NewEvent,
    ) -> Result<u64> {
        let (principal, delegate, event) = (principal.clone(), delegate.clone(), event.clone());
        self.write(move |tx, next| {
            let deleted = tx
                .execute(
                    "DELETE FROM delegations WHERE principal = $1 AND delegate = $2",
                    &[&principal.as_str(), &delegate.as_str()],
                )
                .map_err(map_err)?;
            if deleted != 1 {
                return Err(StoreError::Conflict(format!("no delegation from {principal} to {delegate}")));
            }
            Ok((first(&append(tx, next, std::slice::from_ref(&event))?), 1))
        })
    }

    fn delegation(&self, principal: &IdentityName, delegate: &IdentityName) -> Result<Option<Delegation>> {
        let rows = self
            .lock()?
            .cached()
            .query(
                "SELECT principal, delegate, until_ms, created_ms FROM delegations WHERE principal = $1 AND delegate = $2",
                &[&principal.as_str(), &delegate.as_str()],
            )
            .map_err(map_err)?;
        rows.first().map(|r| writ_store::delegation(r.get(0), r.get(1), r.get(2), r.get(3))).transpose()
    }

    fn delegations(&self) -> Result<Vec<Delegation>> {
        let rows = self
            .lock()?
            .cached()
            .query(
                "SELECT principal, delegate, until_ms, created_ms FROM delegations ORDER BY principal, delegate",
                &[],
            )
            .map_err(map_err)?;
        rows.iter().map(|r| writ_store::delegation(r.get(0), r.get(1), r.get(2), r.get(3))).collect()
    }

    fn set_role(&self, identity: &IdentityName, role: Role, present: bool, event: &NewEvent) -> Result<u64> {
        let (identity, event) = (identity.clone(), event.clone());
        self.write(move |tx, next| {
            let sql = if present {
                "INSERT INTO roles (identity, role) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM roles WHERE identity = $1 AND role = $2"
            };
            let changed = tx
                .execute(sql, &[&identity.as_str(), &role.as_str()])
                .map_err(map_err)
                .map_err(conflict_as(format!("identity {identity} is unknown")))?;
            if changed != 1 {
                let state = if present { "already has" } else { "does not have" };
                return Err(StoreError::Conflict(format!("{identity} {state} the role {role}")));
            }
            Ok((first(&append(tx, next, std::slice::from_ref(&event))?), 1))
        })
    }

    fn role_assignments(&self) -> Result<Vec<(IdentityName, Role)>> {
        let rows = self
            .lock()?
            .cached()
            .query("SELECT identity, role FROM roles ORDER BY identity, role", &[])
            .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                Ok((
                    IdentityName::parse(row.get(0)).map_err(corrupt("role identity"))?,
                    Role::parse(row.get(1)).map_err(corrupt("role"))?,
                ))
            })
            .collect()
    }

    fn token_principal(&self, id: &str) -> Result<Option<(StoredToken, Identity, Vec<Role>)>> {
        let row = self
            .lock()?
            .cached()
            .query_opt(
                "SELECT t.id, t.identity, t.label, t.hash, t.created_ms, t.expires_ms, t.revoked_ms,
                        i.name, i.kind, i.owner, i.vendor, i.created_ms, i.state, i.email,
                        COALESCE(ARRAY_AGG(r.role ORDER BY r.role) FILTER (WHERE r.role IS NOT NULL), '{}')
                 FROM tokens t JOIN identities i ON i.name = t.identity
                 LEFT JOIN roles r ON r.identity = t.identity
                 WHERE t.id = $1
                 GROUP BY t.id, i.name",
                &[&id],
            )
            .map_err(map_err)?;
        let Some(row) = row else { return Ok(None) };
        let token = parse_token(&row)?;
        let identity = parse_identity_at(&row, 7)?;
        let roles = row
            .get::<_, Vec<String>>(14)
            .iter()
            .map(|r| Role::parse(r).map_err(corrupt("role")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some((token, identity, roles)))
    }

    fn roles_of(&self, identity: &IdentityName) -> Result<Vec<Role>> {
        let rows = self
            .lock()?
            .cached()
            .query("SELECT role FROM roles WHERE identity = $1 ORDER BY role", &[&identity.as_str()])
            .map_err(map_err)?;
        rows.iter().map(|row| Role::parse(row.get(0)).map_err(corrupt("role"))).collect()
    }
}

impl CoordinationStore for PostgresStore {
    fn claim_request(&self, scope: &str, key: &str, fingerprint: &str, now: Timestamp) -> Result<Claim> {
        self.side(|tx| {
            let inserted = tx
                .execute(
                    "INSERT INTO requests (scope, key, fingerprint, created_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                    &[&scope, &key, &fingerprint, &now.as_millis()],
                )
                .map_err(map_err)?;
            if inserted == 1 {
                return Ok(Claim::Fresh);
            }
            let row = tx
                .query_one(
                    "SELECT fingerprint, status, resource FROM requests WHERE scope = $1 AND key = $2",
                    &[&scope, &key],
                )
                .map_err(map_err)?;
            let (stored, status, resource): (String, Option<i64>, Option<String>) =
                (row.get(0), row.get(1), row.get(2));
            Ok(match (status, resource) {
                _ if stored != fingerprint => Claim::Mismatch,
                (Some(status), Some(resource)) => {
                    Claim::Replay { status: u16::try_from(status).unwrap_or(500), resource }
                }
                _ => Claim::InProgress,
            })
        })
    }

    fn finish_request(&self, scope: &str, key: &str, status: u16, resource: &str) -> Result<()> {
        self.side(|tx| {
            tx.execute(
                "UPDATE requests SET status = $3, resource = $4 WHERE scope = $1 AND key = $2",
                &[&scope, &key, &i64::from(status), &resource],
            )
            .map_err(map_err)?;
            Ok(())
        })
    }

    fn release_request(&self, scope: &str, key: &str) -> Result<()> {
        self.side(|tx| {
            tx.execute(
                "DELETE FROM requests WHERE scope = $1 AND key = $2 AND status IS NULL",
                &[&scope, &key],
            )
            .map_err(map_err)?;
            Ok(())
        })
    }

    fn purge_requests(&self, before: Timestamp) -> Result<u64> {
        self.side(|tx| {
            tx.execute("DELETE FROM requests WHERE created_ms < $1", &[&before.as_millis()]).map_err(map_err)
        })
    }

    fn acquire_lease(&self, name: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        self.side(|tx| {
            let rows = tx
                .query(
                    "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until_ms = EXCLUDED.until_ms
                     WHERE leases.holder = EXCLUDED.holder OR leases.until_ms < $4
                     RETURNING holder",
                    &[&name, &holder, &until.as_millis(), &now.as_millis()],
                )
                .map_err(map_err)?;
            Ok(rows.len() == 1)
        })
    }

    fn lease(&self, name: &str) -> Result<Option<(String, Timestamp)>> {
        let row = self
            .lock()?
            .cached()
            .query_opt("SELECT holder, until_ms FROM leases WHERE name = $1", &[&name])
            .map_err(map_err)?;
        Ok(row.map(|row| (row.get(0), Timestamp::from_millis(row.get(1)))))
    }
}

impl PolicyStore for PostgresStore {
    fn add_policy(&self, hash: &str, files: &str, at: Timestamp, event: &NewEvent) -> Result<u64> {
        let (hash, files, event) = (hash.to_owned(), files.to_owned(), event.clone());
        self.write(move |tx, next| {
            tx.execute(
                "INSERT INTO policies (hash, files, loaded_ms) VALUES ($1, $2, $3)",
                &[&hash, &files, &at.as_millis()],
            )
            .map_err(map_err)?;
            Ok((first(&append(tx, next, std::slice::from_ref(&event))?), 1))
        })
    }

    fn policy(&self, hash: Option<&str>) -> Result<Option<(String, String)>> {
        let mut client = self.lock()?;
        let row = match hash {
            None => client
                .cached()
                .query_opt("SELECT hash, files FROM policies ORDER BY seq DESC LIMIT 1", &[])
                .map_err(map_err)?,
            Some(hash) => client
                .cached()
                .query_opt(
                    "SELECT hash, files FROM policies WHERE hash = $1 ORDER BY seq DESC LIMIT 1",
                    &[&hash],
                )
                .map_err(map_err)?,
        };
        Ok(row.map(|row| (row.get(0), row.get(1))))
    }
}
