//! Putting diverged projections back from the ledger: each [`Fix`] rewrites or removes one row,
//! all of them and the event that names them in one transaction. Rows other rows refer to
//! (identities, targets, tokens, changes) are upserted so no reference breaks; the rest are
//! removed and written again.

use rusqlite::{Transaction, params};
use writ_core::name::{IdentityName, OrgName};
use writ_core::time::Timestamp;
use writ_store::{Fix, NewEvent, RepairStore, Result};

use crate::access::first;
use crate::{SqliteStore, append, map_err, to_i64};

fn run(tx: &Transaction<'_>, sql: &str, values: &[&dyn rusqlite::ToSql]) -> Result<()> {
    tx.prepare_cached(sql).and_then(|mut s| s.execute(values)).map_err(map_err)?;
    Ok(())
}

fn apply(tx: &Transaction<'_>, fix: &Fix) -> Result<()> {
    match fix {
        Fix::Identity(name, None) => run(tx, "DELETE FROM identities WHERE name = ?1", &[&name.as_str()]),
        Fix::Identity(_, Some(i)) => run(
            tx,
            "INSERT INTO identities (name, kind, owner, vendor, created_ms, state, email) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, owner = excluded.owner,
                 vendor = excluded.vendor, created_ms = excluded.created_ms, state = excluded.state,
                 email = excluded.email",
            params![
                i.name.as_str(),
                i.kind.as_str(),
                i.owner.as_ref().map(IdentityName::as_str),
                i.vendor.as_ref().map(OrgName::as_str),
                i.created_at.as_millis(),
                i.state.as_str(),
                i.email,
            ],
        ),
        Fix::Target(name, target) => {
            run(tx, "DELETE FROM target_settings WHERE target = ?1", &[&name.as_str()])?;
            let Some(t) = target else {
                return run(tx, "DELETE FROM targets WHERE name = ?1", &[&name.as_str()]);
            };
            run(
                tx,
                "INSERT INTO targets (name, connector, created_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET connector = excluded.connector, created_ms = excluded.created_ms",
                params![t.name.as_str(), t.connector.as_str(), t.created_at.as_millis()],
            )?;
            for (key, value) in &t.settings {
                run(
                    tx,
                    "INSERT INTO target_settings (target, key, value) VALUES (?1, ?2, ?3)",
                    params![t.name.as_str(), key, value],
                )?;
            }
            Ok(())
        }
        Fix::Token(id, None) => run(tx, "DELETE FROM tokens WHERE id = ?1", &[id]),
        Fix::Token(_, Some((info, revoked))) => run(
            tx,
            "INSERT INTO tokens (id, identity, label, hash, created_ms, expires_ms, revoked_ms)
             VALUES (?1, ?2, ?3, '', ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET identity = excluded.identity, label = excluded.label,
                 created_ms = excluded.created_ms, expires_ms = excluded.expires_ms,
                 revoked_ms = excluded.revoked_ms",
            params![
                info.id,
                info.identity.as_str(),
                info.label,
                info.created_at.as_millis(),
                info.expires_at.as_millis(),
                revoked.map(Timestamp::as_millis),
            ],
        ),
        Fix::Role(identity, role, present) => {
            run(tx, "DELETE FROM roles WHERE identity = ?1 AND role = ?2", params![identity.as_str(), role.as_str()])?;
            if *present {
                run(tx, "INSERT INTO roles (identity, role) VALUES (?1, ?2)", params![identity.as_str(), role.as_str()])?;
            }
            Ok(())
        }
        Fix::Delegation(principal, delegate, delegation) => {
            run(
                tx,
                "DELETE FROM delegations WHERE principal = ?1 AND delegate = ?2",
                params![principal.as_str(), delegate.as_str()],
            )?;
            if let Some(d) = delegation {
                run(
                    tx,
                    "INSERT INTO delegations (principal, delegate, until_ms, created_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![d.principal.as_str(), d.delegate.as_str(), d.until.as_millis(), d.created_at.as_millis()],
                )?;
            }
            Ok(())
        }
        Fix::ScimLink(identity, external_id) => {
            run(tx, "DELETE FROM scim_links WHERE identity = ?1", &[&identity.as_str()])?;
            if let Some(external_id) = external_id {
                run(
                    tx,
                    "INSERT INTO scim_links (identity, external_id) VALUES (?1, ?2)",
                    params![identity.as_str(), external_id],
                )?;
            }
            Ok(())
        }
        Fix::Policy { loaded, in_force } => {
            let stored: Vec<(i64, String)> = tx
                .prepare_cached("SELECT seq, hash FROM policies ORDER BY seq")
                .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                .map_err(map_err)?;
            for (seq, hash) in &stored {
                if !loaded.contains(hash) {
                    run(tx, "DELETE FROM policies WHERE seq = ?1", &[seq])?;
                }
            }
            let newest: Option<String> = tx
                .prepare_cached("SELECT hash FROM policies ORDER BY seq DESC LIMIT 1")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.next().transpose())
                .map_err(map_err)?;
            match in_force {
                Some(hash) if newest.as_ref() != Some(hash) => run(
                    tx,
                    "INSERT INTO policies (hash, files, loaded_ms)
                     SELECT hash, files, loaded_ms FROM policies WHERE hash = ?1 ORDER BY seq DESC LIMIT 1",
                    &[hash],
                ),
                _ => Ok(()),
            }
        }
        Fix::Change(id, None) => run(tx, "DELETE FROM changes WHERE id = ?1", &[&id.as_str()]),
        Fix::Change(_, Some(row)) => {
            let s = &row.summary;
            run(
                tx,
                "INSERT INTO changes (id, kind, state, requester, created_ms, updated_ms, seq, due_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, state = excluded.state,
                     requester = excluded.requester, created_ms = excluded.created_ms,
                     updated_ms = excluded.updated_ms, seq = excluded.seq, due_ms = excluded.due_ms",
                params![
                    s.id.as_str(),
                    s.kind.as_str(),
                    s.state.as_str(),
                    s.requester.as_str(),
                    s.created_at.as_millis(),
                    s.updated_at.as_millis(),
                    to_i64(row.seq)?,
                    row.due_at.map(Timestamp::as_millis),
                ],
            )
        }
        Fix::Grant(identity, entitlement, grant) => {
            run(
                tx,
                "DELETE FROM grants WHERE identity = ?1 AND target = ?2 AND entitlement = ?3",
                params![identity.as_str(), entitlement.target.as_str(), entitlement.entitlement.as_str()],
            )?;
            if let Some(g) = grant {
                run(
                    tx,
                    "INSERT INTO grants (identity, target, entitlement, change_id, granted_ms, expires_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        g.identity.as_str(),
                        g.entitlement.target.as_str(),
                        g.entitlement.entitlement.as_str(),
                        g.change.as_str(),
                        g.granted_at.as_millis(),
                        g.expires_at.map(Timestamp::as_millis),
                    ],
                )?;
            }
            Ok(())
        }
        Fix::Usage(target, account, last) => {
            run(tx, "DELETE FROM usage WHERE target = ?1 AND account = ?2", &[&target.as_str(), account])?;
            last.map_or(Ok(()), |at| crate::findings::upsert_usage(tx, target.as_str(), account, at))
        }
        Fix::Finding(id, finding) => {
            run(tx, "DELETE FROM findings WHERE id = ?1", &[id])?;
            finding.as_ref().map_or(Ok(()), |f| crate::findings::insert_row(tx, f))
        }
        Fix::Exception(id, exception) => {
            run(tx, "DELETE FROM exception_approvals WHERE exception_id = ?1", &[&id.as_str()])?;
            run(tx, "DELETE FROM exceptions WHERE id = ?1", &[&id.as_str()])?;
            exception.as_ref().map_or(Ok(()), |(e, due)| crate::exceptions::insert_row(tx, e, *due))
        }
        Fix::Sensitive(seal) => run(tx, "DELETE FROM sensitive WHERE hmac = ?1", &[seal]),
        Fix::Transfer(id, transfer) => {
            run(tx, "DELETE FROM transfers WHERE id = ?1", &[&id.as_str()])?;
            transfer.as_ref().map_or(Ok(()), |t| crate::transfers::upsert_row(tx, t))
        }
    }
}

impl RepairStore for SqliteStore {
    fn repair(&self, fixes: &[Fix], event: &NewEvent, events: u64) -> Result<u64> {
        let (fixes, event, events) = (fixes.to_vec(), event.clone(), to_i64(events)?);
        first(self.writer.submit(Box::new(move |tx| {
            let count: i64 = tx
                .query_row("SELECT COALESCE(MAX(idx) + 1, 0) FROM events", [], |r| r.get(0))
                .map_err(map_err)?;
            if count != events {
                return Err(writ_store::StoreError::Conflict(format!(
                    "{} events were recorded since the tables were compared with the log; run the repair again",
                    count - events
                )));
            }
            for fix in &fixes {
                apply(tx, fix)?;
            }
            append(tx, std::slice::from_ref(&event))
        }))?)
    }
}
