//! Transfers of an NHI's ownership in PostgreSQL: each write appends its event in the same
//! transaction; an accepted transfer moves the identity's owner in it too.

use writ_core::name::IdentityName;
use writ_core::transfer::{Transfer, TransferId, TransferState};
use writ_store::{NewEvent, Result, StoreError, TRANSFER_COLUMNS, TransferRow, TransferStore};

use crate::{PostgresStore, Tx, append, conflict_as, map_err};

fn row(row: &postgres::Row) -> TransferRow {
    TransferRow {
        id: row.get(0),
        identity: row.get(1),
        from_owner: row.get(2),
        to_owner: row.get(3),
        requested_by: row.get(4),
        reason: row.get(5),
        requested_ms: row.get(6),
        expires_ms: row.get(7),
        state: row.get(8),
        decided_by: row.get(9),
        decided_ms: row.get(10),
        note: row.get(11),
    }
}

/// Writes a transfer's row as a whole (no event: the caller appends the one that records it).
pub(crate) fn upsert_row(tx: &mut Tx<'_, '_>, t: &Transfer) -> Result<()> {
    let r = TransferRow::of(t);
    tx.execute(
        &format!(
            "INSERT INTO transfers ({TRANSFER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO UPDATE SET identity = excluded.identity, from_owner = excluded.from_owner,
               to_owner = excluded.to_owner, requested_by = excluded.requested_by, reason = excluded.reason,
               requested_ms = excluded.requested_ms, expires_ms = excluded.expires_ms, state = excluded.state,
               decided_by = excluded.decided_by, decided_ms = excluded.decided_ms, note = excluded.note"
        ),
        &[
            &r.id,
            &r.identity,
            &r.from_owner,
            &r.to_owner,
            &r.requested_by,
            &r.reason,
            &r.requested_ms,
            &r.expires_ms,
            &r.state,
            &r.decided_by,
            &r.decided_ms,
            &r.note,
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

fn state_of(tx: &mut Tx<'_, '_>, id: &TransferId) -> Result<Option<String>> {
    Ok(tx
        .query_opt("SELECT state FROM transfers WHERE id = $1 FOR UPDATE", &[&id.as_str()])
        .map_err(map_err)?
        .map(|r| r.get(0)))
}

/// Moves a pending row to `t` (decided); `Conflict` if it is no longer pending.
fn decide_row(tx: &mut Tx<'_, '_>, t: &Transfer) -> Result<()> {
    if state_of(tx, &t.id)?.as_deref() != Some(TransferState::Pending.as_str()) {
        return Err(StoreError::Conflict(format!("transfer {} is no longer pending", t.id)));
    }
    upsert_row(tx, t)
}

impl TransferStore for PostgresStore {
    fn write_transfer(
        &self,
        transfer: &Transfer,
        supersede: Option<&Transfer>,
        event: &NewEvent,
    ) -> Result<u64> {
        let (t, old, event) = (transfer.clone(), supersede.cloned(), event.clone());
        self.write(move |tx, next| {
            if let Some(old) = &old {
                decide_row(tx, old)?;
            }
            if t.state == TransferState::Pending {
                if state_of(tx, &t.id)?.is_some() {
                    return Err(StoreError::Conflict(format!("transfer {} exists", t.id)));
                }
                upsert_row(tx, &t)
                    .map_err(conflict_as(format!("another transfer of {} is pending", t.identity)))?;
            } else {
                decide_row(tx, &t)?;
            }
            if t.state == TransferState::Accepted {
                let from = t.from.as_ref().map(IdentityName::as_str);
                let moved = tx
                    .execute(
                        "UPDATE identities SET owner = $2 WHERE name = $1 AND owner IS NOT DISTINCT FROM $3",
                        &[&t.identity.as_str(), &t.to.as_str(), &from],
                    )
                    .map_err(map_err)?;
                if moved != 1 {
                    return Err(StoreError::Conflict(format!(
                        "the owner of {} changed since {} was asked for",
                        t.identity, t.id
                    )));
                }
            }
            let indices = append(tx, next, std::slice::from_ref(&event))?;
            let index =
                indices.first().copied().ok_or_else(|| StoreError::Other("no index assigned".into()))?;
            Ok((index, 1))
        })
    }

    fn transfer(&self, id: &TransferId) -> Result<Option<Transfer>> {
        let mut client = self.lock()?;
        let found = client
            .cached()
            .query_opt(&format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = $1"), &[&id.as_str()])
            .map_err(map_err)?;
        found.map(|r| row(&r).transfer()).transpose()
    }

    fn transfers(&self, identity: Option<&IdentityName>) -> Result<Vec<Transfer>> {
        let identity = identity.map(IdentityName::as_str);
        let mut client = self.lock()?;
        let rows = client
            .cached()
            .query(
                &format!(
                    "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE $1::TEXT IS NULL OR identity = $1
                     ORDER BY requested_ms, id COLLATE \"C\""
                ),
                &[&identity],
            )
            .map_err(map_err)?;
        rows.iter().map(|r| row(r).transfer()).collect()
    }
}
