//! Tokens, roles, idempotency keys and leases in PostgreSQL.

use writ_core::access::{Role, TokenInfo};
use writ_core::identity::{Identity, IdentityKind};
use writ_core::name::{IdentityName, OrgName};
use writ_core::time::Timestamp;
use writ_store::{
    AccessStore, Claim, CoordinationStore, NewEvent, PolicyStore, Result, StoreError, StoredToken,
};

use crate::{PostgresStore, append, conflict_as, corrupt, map_err};

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
            tx.execute(
                "INSERT INTO tokens (id, identity, label, hash, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6)",
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
            .map_err(conflict_as(format!("token {} exists or identity {} is unknown", info.id, info.identity)))?;
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
                        i.name, i.kind, i.owner, i.vendor, i.created_ms,
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
        let identity = Identity {
            name: IdentityName::parse(row.get(7)).map_err(corrupt("identity name"))?,
            kind: IdentityKind::parse(row.get(8)).map_err(corrupt("identity kind"))?,
            owner: row
                .get::<_, Option<&str>>(9)
                .map(IdentityName::parse)
                .transpose()
                .map_err(corrupt("owner"))?,
            vendor: row
                .get::<_, Option<&str>>(10)
                .map(OrgName::parse)
                .transpose()
                .map_err(corrupt("vendor"))?,
            created_at: Timestamp::from_millis(row.get(11)),
        };
        let roles = row
            .get::<_, Vec<String>>(12)
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
