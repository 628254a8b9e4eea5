//! Transfers of an NHI's ownership in SQLite: each write appends its event in the same
//! transaction; an accepted transfer moves the identity's owner in it too.

use rusqlite::{OptionalExtension, Row, Transaction, params};
use writ_core::name::IdentityName;
use writ_core::transfer::{Transfer, TransferId, TransferState};
use writ_store::{NewEvent, Result, StoreError, TRANSFER_COLUMNS, TransferRow, TransferStore};

use crate::{SqliteStore, append, map_err};

fn row(row: &Row<'_>) -> rusqlite::Result<TransferRow> {
    Ok(TransferRow {
        id: row.get(0)?,
        identity: row.get(1)?,
        from_owner: row.get(2)?,
        to_owner: row.get(3)?,
        requested_by: row.get(4)?,
        reason: row.get(5)?,
        requested_ms: row.get(6)?,
        expires_ms: row.get(7)?,
        state: row.get(8)?,
        decided_by: row.get(9)?,
        decided_ms: row.get(10)?,
        note: row.get(11)?,
    })
}

/// Writes a transfer's row as a whole (no event: the caller appends the one that records it).
pub(crate) fn upsert_row(tx: &Transaction<'_>, t: &Transfer) -> Result<()> {
    let r = TransferRow::of(t);
    tx.prepare_cached(&format!(
        "INSERT INTO transfers ({TRANSFER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (id) DO UPDATE SET identity = excluded.identity, from_owner = excluded.from_owner,
           to_owner = excluded.to_owner, requested_by = excluded.requested_by, reason = excluded.reason,
           requested_ms = excluded.requested_ms, expires_ms = excluded.expires_ms, state = excluded.state,
           decided_by = excluded.decided_by, decided_ms = excluded.decided_ms, note = excluded.note"
    ))
    .and_then(|mut s| {
        s.execute(params![
            r.id,
            r.identity,
            r.from_owner,
            r.to_owner,
            r.requested_by,
            r.reason,
            r.requested_ms,
            r.expires_ms,
            r.state,
            r.decided_by,
            r.decided_ms,
            r.note
        ])
    })
    .map_err(map_err)?;
    Ok(())
}

/// Moves a pending row to `t` (decided); `Conflict` if it is no longer pending.
fn decide_row(tx: &Transaction<'_>, t: &Transfer) -> Result<()> {
    let state: Option<String> = tx
        .prepare_cached("SELECT state FROM transfers WHERE id = ?1")
        .and_then(|mut s| s.query_row([t.id.as_str()], |r| r.get(0)).optional())
        .map_err(map_err)?;
    if state.as_deref() != Some(TransferState::Pending.as_str()) {
        return Err(StoreError::Conflict(format!("transfer {} is no longer pending", t.id)));
    }
    upsert_row(tx, t)
}

impl TransferStore for SqliteStore {
    fn write_transfer(
        &self,
        transfer: &Transfer,
        supersede: Option<&Transfer>,
        event: &NewEvent,
    ) -> Result<u64> {
        let (t, old, event) = (transfer.clone(), supersede.cloned(), event.clone());
        let indices = self.writer.submit(Box::new(move |tx| {
            if let Some(old) = &old {
                decide_row(tx, old)?;
            }
            if t.state == TransferState::Pending {
                let exists: Option<String> = tx
                    .prepare_cached("SELECT id FROM transfers WHERE id = ?1")
                    .and_then(|mut s| s.query_row([t.id.as_str()], |r| r.get(0)).optional())
                    .map_err(map_err)?;
                if exists.is_some() {
                    return Err(StoreError::Conflict(format!("transfer {} exists", t.id)));
                }
                upsert_row(tx, &t).map_err(|e| match e {
                    StoreError::Conflict(_) => {
                        StoreError::Conflict(format!("another transfer of {} is pending", t.identity))
                    }
                    other => other,
                })?;
            } else {
                decide_row(tx, &t)?;
            }
            if t.state == TransferState::Accepted {
                let moved = tx
                    .prepare_cached("UPDATE identities SET owner = ?2 WHERE name = ?1 AND owner IS ?3")
                    .and_then(|mut s| {
                        s.execute(params![
                            t.identity.as_str(),
                            t.to.as_str(),
                            t.from.as_ref().map(IdentityName::as_str)
                        ])
                    })
                    .map_err(map_err)?;
                if moved != 1 {
                    return Err(StoreError::Conflict(format!(
                        "the owner of {} changed since {} was asked for",
                        t.identity, t.id
                    )));
                }
            }
            append(tx, std::slice::from_ref(&event))
        }))?;
        indices.first().copied().ok_or_else(|| StoreError::Other("no index assigned".into()))
    }

    fn transfer(&self, id: &TransferId) -> Result<Option<Transfer>> {
        let connection = self.lock()?;
        let found = connection
            .prepare_cached(&format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?1"))
            .and_then(|mut s| s.query_row([id.as_str()], row).optional())
            .map_err(map_err)?;
        found.map(TransferRow::transfer).transpose()
    }

    fn transfers(&self, identity: Option<&IdentityName>) -> Result<Vec<Transfer>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE ?1 IS NULL OR identity = ?1 ORDER BY requested_ms, id"
            ))
            .map_err(map_err)?;
        let rows = statement.query_map([identity.map(IdentityName::as_str)], row).map_err(map_err)?;
        rows.map(|r| r.map_err(map_err).and_then(TransferRow::transfer)).collect()
    }
}
