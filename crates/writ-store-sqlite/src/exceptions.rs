//! Exceptions in SQLite: the record, the approvals of its current round, and its deadline,
//! each step written with its ledger event in one transaction and guarded by the version the
//! caller read.

use std::collections::BTreeMap;

use rusqlite::{Row, Transaction, params};
use writ_core::exception::{Exception, ExceptionApproval, ExceptionId, ExceptionState};
use writ_core::time::Timestamp;
use writ_store::{ExceptionRow, ExceptionStore, NewEvent, Result, StoreError};

use crate::{SqliteStore, append, corrupt, map_err, to_i64};

const COLUMNS: &str = "id, control, subject, owner, requester, justification, compensating_control, state, \
                       requested_ms, updated_ms, expires_ms, renewal_ms, approvals_needed, version, warned_ms";

fn columns(row: &Row<'_>) -> rusqlite::Result<ExceptionRow> {
    Ok(ExceptionRow {
        id: row.get(0)?,
        control: row.get(1)?,
        subject: row.get(2)?,
        owner: row.get(3)?,
        requester: row.get(4)?,
        justification: row.get(5)?,
        compensating_control: row.get(6)?,
        state: row.get(7)?,
        requested: row.get(8)?,
        updated: row.get(9)?,
        expires: row.get(10)?,
        renewal: row.get(11)?,
        needed: row.get(12)?,
        version: row.get(13)?,
        warned: row.get(14)?,
    })
}

fn one_index(indices: Vec<u64>) -> Result<u64> {
    indices.first().copied().ok_or_else(|| StoreError::Other("no index assigned".into()))
}

fn write_approvals(tx: &Transaction<'_>, e: &Exception) -> Result<()> {
    tx.prepare_cached("DELETE FROM exception_approvals WHERE exception_id = ?1")
        .and_then(|mut s| s.execute([e.id.as_str()]))
        .map_err(map_err)?;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO exception_approvals (exception_id, position, approver, at_ms, slot)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(map_err)?;
    for (position, a) in e.approvals.iter().enumerate() {
        let position = i64::try_from(position).unwrap_or(i64::MAX);
        insert
            .execute(params![e.id.as_str(), position, a.approver.as_str(), a.at.as_millis(), a.slot])
            .map_err(map_err)?;
    }
    Ok(())
}

fn insert(tx: &Transaction<'_>, e: &Exception, due: Option<Timestamp>, event: &NewEvent) -> Result<Vec<u64>> {
    insert_row(tx, e, due)?;
    append(tx, std::slice::from_ref(event))
}

/// Writes an exception's row and approvals (no event: the caller appends the one that records
/// it).
pub(crate) fn insert_row(tx: &Transaction<'_>, e: &Exception, due: Option<Timestamp>) -> Result<()> {
    let version = to_i64(e.version)?;
    tx.prepare_cached(&format!(
        "INSERT INTO exceptions ({COLUMNS}, due_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            e.id.as_str(),
            e.control,
            e.subject,
            e.owner.as_str(),
            e.requester.as_str(),
            e.justification,
            e.compensating_control,
            e.state.as_str(),
            e.requested_at.as_millis(),
            e.updated_at.as_millis(),
            e.expires_at.as_millis(),
            e.renewal.map(Timestamp::as_millis),
            i64::from(e.approvals_needed),
            version,
            e.warned.map(writ_core::time::Duration::as_millis),
            due.map(Timestamp::as_millis),
        ])
    })
    .map_err(|error| match map_err(error) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("exception {} already exists", e.id)),
        other => other,
    })?;
    write_approvals(tx, e)
}

fn update(tx: &Transaction<'_>, e: &Exception, due: Option<Timestamp>, event: &NewEvent) -> Result<Vec<u64>> {
    let (version, read) = (to_i64(e.version)?, to_i64(e.version.saturating_sub(1))?);
    let changed = tx
        .prepare_cached(
            "UPDATE exceptions SET state = ?2, updated_ms = ?3, expires_ms = ?4, renewal_ms = ?5,
                 approvals_needed = ?6, version = ?7, due_ms = ?8, warned_ms = ?10
             WHERE id = ?1 AND version = ?9",
        )
        .and_then(|mut s| {
            s.execute(params![
                e.id.as_str(),
                e.state.as_str(),
                e.updated_at.as_millis(),
                e.expires_at.as_millis(),
                e.renewal.map(Timestamp::as_millis),
                i64::from(e.approvals_needed),
                version,
                due.map(Timestamp::as_millis),
                read,
                e.warned.map(writ_core::time::Duration::as_millis),
            ])
        })
        .map_err(map_err)?;
    if changed != 1 {
        return Err(StoreError::Conflict(format!(
            "exception {} changed since it was read (or does not exist); read it again",
            e.id
        )));
    }
    write_approvals(tx, e)?;
    append(tx, std::slice::from_ref(event))
}

impl SqliteStore {
    /// Exceptions matching `filter` (a WHERE clause over `exceptions` with one parameter).
    fn read_exceptions(&self, filter: &str, value: Option<&str>) -> Result<Vec<Exception>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(&format!("SELECT {COLUMNS} FROM exceptions WHERE {filter} ORDER BY id"))
            .map_err(map_err)?;
        let rows: Vec<ExceptionRow> = statement
            .query_map([value], columns)
            .map_err(map_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(map_err)?;
        let mut approvals: BTreeMap<String, Vec<ExceptionApproval>> = BTreeMap::new();
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT exception_id, approver, at_ms, slot FROM exception_approvals
                 WHERE exception_id IN (SELECT id FROM exceptions WHERE {filter})
                 ORDER BY exception_id, position"
            ))
            .map_err(map_err)?;
        let mut query = statement.query([value]).map_err(map_err)?;
        while let Some(row) = query.next().map_err(map_err)? {
            let id: String = row.get(0).map_err(map_err)?;
            let approver: String = row.get(1).map_err(map_err)?;
            let (at, slot) = (row.get(2).map_err(map_err)?, row.get(3).map_err(map_err)?);
            approvals.entry(id).or_default().push(ExceptionRow::approval(&approver, at, slot)?);
        }
        rows.into_iter()
            .map(|row| {
                let list = approvals.remove(&row.id).unwrap_or_default();
                row.into_exception(list)
            })
            .collect()
    }
}

impl ExceptionStore for SqliteStore {
    fn open_exception(
        &self,
        exception: &Exception,
        due_at: Option<Timestamp>,
        event: &NewEvent,
    ) -> Result<u64> {
        let (exception, event) = (exception.clone(), event.clone());
        one_index(self.writer.submit(Box::new(move |tx| insert(tx, &exception, due_at, &event)))?)
    }

    fn update_exception(
        &self,
        exception: &Exception,
        due_at: Option<Timestamp>,
        event: &NewEvent,
    ) -> Result<u64> {
        let (exception, event) = (exception.clone(), event.clone());
        one_index(self.writer.submit(Box::new(move |tx| update(tx, &exception, due_at, &event)))?)
    }

    fn exception(&self, id: &ExceptionId) -> Result<Option<Exception>> {
        Ok(self.read_exceptions("id = ?1", Some(id.as_str()))?.pop())
    }

    fn exceptions(&self, state: Option<ExceptionState>) -> Result<Vec<Exception>> {
        self.read_exceptions("(?1 IS NULL OR state = ?1)", state.map(ExceptionState::as_str))
    }

    fn due_exceptions(&self, now: Timestamp, limit: usize) -> Result<Vec<ExceptionId>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(
                "SELECT id FROM exceptions WHERE due_ms IS NOT NULL AND due_ms <= ?1 ORDER BY due_ms, id LIMIT ?2",
            )
            .map_err(map_err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement
            .query_map(params![now.as_millis(), limit], |row| row.get::<_, String>(0))
            .map_err(map_err)?;
        rows.map(|row| ExceptionId::parse(&row.map_err(map_err)?).map_err(corrupt("exception id"))).collect()
    }

    fn reschedule_exception(&self, id: &ExceptionId, version: u64, due_at: Option<Timestamp>) -> Result<()> {
        let (id, version) = (id.clone(), to_i64(version)?);
        self.writer.submit(Box::new(move |tx| {
            tx.prepare_cached("UPDATE exceptions SET due_ms = ?2 WHERE id = ?1 AND version = ?3")
                .and_then(|mut s| s.execute(params![id.as_str(), due_at.map(Timestamp::as_millis), version]))
                .map_err(map_err)?;
            Ok(Vec::new())
        }))?;
        Ok(())
    }
}
