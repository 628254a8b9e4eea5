//! Findings in PostgreSQL: each insert or state change appends its ledger event in the same
//! transaction.

use writ_core::change::ChangeId;
use writ_core::finding::{Finding, FindingState};
use writ_core::time::Timestamp;
use writ_store::{FindingStore, NewEvent, Result, StoreError};

use crate::{PostgresStore, Tx, append, conflict_as, corrupt, map_err};

const COLUMNS: &str = "id, kind, subject, change_id, detail, state, opened_ms, updated_ms, exception";

fn parse(row: &postgres::Row) -> Result<Finding> {
    Ok(Finding {
        id: row.get(0),
        kind: row.get(1),
        subject: row.get(2),
        change: row
            .get::<_, Option<&str>>(3)
            .map(ChangeId::parse)
            .transpose()
            .map_err(corrupt("finding change"))?,
        detail: row.get(4),
        state: FindingState::parse(row.get(5)).map_err(corrupt("finding state"))?,
        opened_at: Timestamp::from_millis(row.get(6)),
        updated_at: Timestamp::from_millis(row.get(7)),
        exception: row.get(8),
    })
}

fn one_index(indices: &[u64]) -> Result<u64> {
    indices.first().copied().ok_or_else(|| StoreError::Other("no index assigned".into()))
}

/// Writes a finding's row (no event: the caller appends the one that records it).
pub(crate) fn insert_row(tx: &mut Tx<'_, '_>, f: &Finding) -> Result<()> {
    tx.execute(
        "INSERT INTO findings (id, kind, subject, change_id, detail, state, opened_ms, updated_ms, exception)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &f.id,
            &f.kind,
            &f.subject,
            &f.change.as_ref().map(ChangeId::as_str),
            &f.detail,
            &f.state.as_str(),
            &f.opened_at.as_millis(),
            &f.updated_at.as_millis(),
            &f.exception,
        ],
    )
    .map_err(map_err)
    .map_err(conflict_as(format!("finding {} already exists", f.id)))?;
    Ok(())
}

impl FindingStore for PostgresStore {
    fn open_finding(&self, finding: &Finding, event: &NewEvent) -> Result<u64> {
        let (f, event) = (finding.clone(), event.clone());
        self.write(move |tx, next| {
            insert_row(tx, &f)?;
            Ok((one_index(&append(tx, next, std::slice::from_ref(&event))?)?, 1))
        })
    }

    fn update_finding(&self, finding: &Finding, expected: FindingState, event: &NewEvent) -> Result<u64> {
        let (f, event) = (finding.clone(), event.clone());
        self.write(move |tx, next| {
            let changed = tx
                .execute(
                    "UPDATE findings SET detail = $2, state = $3, updated_ms = $4, exception = $5
                     WHERE id = $1 AND state = $6",
                    &[
                        &f.id,
                        &f.detail,
                        &f.state.as_str(),
                        &f.updated_at.as_millis(),
                        &f.exception,
                        &expected.as_str(),
                    ],
                )
                .map_err(map_err)?;
            if changed != 1 {
                return Err(StoreError::Conflict(format!(
                    "finding {} is not {expected} any more (or does not exist); read it again",
                    f.id
                )));
            }
            Ok((one_index(&append(tx, next, std::slice::from_ref(&event))?)?, 1))
        })
    }

    fn finding(&self, id: &str) -> Result<Option<Finding>> {
        let mut client = self.lock()?;
        let row = client
            .cached()
            .query_opt(&format!("SELECT {COLUMNS} FROM findings WHERE id = $1"), &[&id])
            .map_err(map_err)?;
        row.as_ref().map(parse).transpose()
    }

    fn findings(&self, state: Option<FindingState>) -> Result<Vec<Finding>> {
        let mut client = self.lock()?;
        let rows = client
            .cached()
            .query(
                &format!("SELECT {COLUMNS} FROM findings WHERE ($1::TEXT IS NULL OR state = $1) ORDER BY id"),
                &[&state.map(FindingState::as_str)],
            )
            .map_err(map_err)?;
        rows.iter().map(parse).collect()
    }
}
