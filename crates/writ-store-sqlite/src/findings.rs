//! Findings in SQLite: each insert or state change appends its ledger event in the same
//! transaction.

use rusqlite::{OptionalExtension, Row, Transaction, params};
use writ_core::change::ChangeId;
use writ_core::finding::{Finding, FindingState};
use writ_core::time::Timestamp;
use writ_store::{FindingStore, NewEvent, Result, StoreError};

use crate::{SqliteStore, append, corrupt, map_err};

const COLUMNS: &str = "id, kind, subject, change_id, detail, state, opened_ms, updated_ms, exception";

type Columns = (String, String, String, Option<String>, String, String, i64, i64, Option<String>);

fn columns(row: &Row<'_>) -> rusqlite::Result<Columns> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

fn parse((id, kind, subject, change, detail, state, opened, updated, exception): Columns) -> Result<Finding> {
    Ok(Finding {
        id,
        kind,
        subject,
        change: change.as_deref().map(ChangeId::parse).transpose().map_err(corrupt("finding change"))?,
        detail,
        state: FindingState::parse(&state).map_err(corrupt("finding state"))?,
        opened_at: Timestamp::from_millis(opened),
        updated_at: Timestamp::from_millis(updated),
        exception,
    })
}

fn one_index(indices: Vec<u64>) -> Result<u64> {
    indices.first().copied().ok_or_else(|| StoreError::Other("no index assigned".into()))
}

fn insert(tx: &Transaction<'_>, f: &Finding, event: &NewEvent) -> Result<Vec<u64>> {
    insert_row(tx, f)?;
    append(tx, std::slice::from_ref(event))
}

/// Writes a finding's row (no event: the caller appends the one that records it).
pub(crate) fn insert_row(tx: &Transaction<'_>, f: &Finding) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO findings (id, kind, subject, change_id, detail, state, opened_ms, updated_ms, exception)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            f.id,
            f.kind,
            f.subject,
            f.change.as_ref().map(ChangeId::as_str),
            f.detail,
            f.state.as_str(),
            f.opened_at.as_millis(),
            f.updated_at.as_millis(),
            f.exception,
        ])
    })
    .map_err(|e| match map_err(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("finding {} already exists", f.id)),
        other => other,
    })?;
    Ok(())
}

fn update(tx: &Transaction<'_>, f: &Finding, expected: FindingState, event: &NewEvent) -> Result<Vec<u64>> {
    let changed = tx
        .prepare_cached(
            "UPDATE findings SET detail = ?2, state = ?3, updated_ms = ?4, exception = ?5
             WHERE id = ?1 AND state = ?6",
        )
        .and_then(|mut s| {
            s.execute(params![
                f.id,
                f.detail,
                f.state.as_str(),
                f.updated_at.as_millis(),
                f.exception,
                expected.as_str()
            ])
        })
        .map_err(map_err)?;
    if changed != 1 {
        return Err(StoreError::Conflict(format!(
            "finding {} is not {expected} any more (or does not exist); read it again",
            f.id
        )));
    }
    append(tx, std::slice::from_ref(event))
}

impl FindingStore for SqliteStore {
    fn open_finding(&self, finding: &Finding, event: &NewEvent) -> Result<u64> {
        let (finding, event) = (finding.clone(), event.clone());
        one_index(self.writer.submit(Box::new(move |tx| insert(tx, &finding, &event)))?)
    }

    fn update_finding(&self, finding: &Finding, expected: FindingState, event: &NewEvent) -> Result<u64> {
        let (finding, event) = (finding.clone(), event.clone());
        one_index(self.writer.submit(Box::new(move |tx| update(tx, &finding, expected, &event)))?)
    }

    fn finding(&self, id: &str) -> Result<Option<Finding>> {
        let connection = self.lock()?;
        connection
            .prepare_cached(&format!("SELECT {COLUMNS} FROM findings WHERE id = ?1"))
            .and_then(|mut s| s.query_row([id], columns))
            .optional()
            .map_err(map_err)?
            .map(parse)
            .transpose()
    }

    fn findings(&self, state: Option<FindingState>) -> Result<Vec<Finding>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM findings WHERE (?1 IS NULL OR state = ?1) ORDER BY id"
            ))
            .map_err(map_err)?;
        let rows = statement.query_map([state.map(FindingState::as_str)], columns).map_err(map_err)?;
        rows.map(|row| parse(row.map_err(map_err)?)).collect()
    }
}
