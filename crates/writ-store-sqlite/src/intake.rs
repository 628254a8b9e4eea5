//! Intake in SQLite: deliveries (one row per source and delivery id, each write with its ledger
//! event in one transaction) and the external objects bound to changes.

use rusqlite::{OptionalExtension, Row, Transaction, params};
use writ_core::change::ChangeId;
use writ_core::intake::{DeliveryRecord, Outcome};
use writ_core::name::SourceName;
use writ_core::time::Timestamp;
use writ_store::{DeliveryRow, IntakeStore, NewEvent, RefusalBucket, Result, StoreError, refusal_bucket};

use crate::{SqliteStore, append, corrupt, map_err};

const COLUMNS: &str = "source, id, event, object, version_ms, sha256, received_ms, refs, outcome, changes, \
                       detail, attempts, updated_ms";

fn columns(row: &Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok(DeliveryRow {
        source: row.get(0)?,
        id: row.get(1)?,
        event: row.get(2)?,
        object: row.get(3)?,
        version: row.get(4)?,
        sha256: row.get(5)?,
        received: row.get(6)?,
        refs: row.get(7)?,
        outcome: row.get(8)?,
        changes: row.get(9)?,
        detail: row.get(10)?,
        attempts: row.get(11)?,
        updated: row.get(12)?,
    })
}

/// Counts one refusal in its bucket and answers the bucket's count (1: the first).
const COUNT_REFUSAL: &str = "INSERT INTO intake_refusals (source, reason, window_ms, count, samples)
     VALUES (?1, ?2, ?3, 1, ?4)
     ON CONFLICT (source, reason, window_ms) DO UPDATE SET
         count = intake_refusals.count + 1,
         samples = CASE WHEN intake_refusals.count < 5
             THEN intake_refusals.samples || ',' || excluded.samples ELSE intake_refusals.samples END
     RETURNING count";

fn one_index(indices: Vec<u64>) -> Result<u64> {
    indices.first().copied().ok_or_else(|| StoreError::Other("no index assigned".into()))
}

/// Moves the newest version seen of a correlated delivery's bound object forward.
fn see_version(tx: &Transaction<'_>, r: &DeliveryRecord) -> Result<()> {
    let d = &r.delivery;
    if let (Outcome::Correlated, Some(version)) = (r.outcome, d.version) {
        tx.prepare_cached(
            "UPDATE intake_objects SET version_ms = MAX(COALESCE(version_ms, ?3), ?3)
             WHERE source = ?1 AND object = ?2",
        )
        .and_then(|mut s| s.execute(params![d.source.as_str(), d.object_key(), version.as_millis()]))
        .map_err(map_err)?;
    }
    Ok(())
}

/// Inserts a delivery row; `Conflict` if (source, id) is recorded already.
pub(crate) fn insert_delivery(tx: &Transaction<'_>, row: &DeliveryRow) -> Result<()> {
    tx.prepare_cached(&format!(
        "INSERT INTO deliveries ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            row.source,
            row.id,
            row.event,
            row.object,
            row.version,
            row.sha256,
            row.received,
            row.refs,
            row.outcome,
            row.changes,
            row.detail,
            row.attempts,
            row.updated,
        ])
    })
    .map_err(|error| match map_err(error) {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("delivery {} from {} is recorded already", row.id, row.source))
        }
        other => other,
    })?;
    Ok(())
}

impl SqliteStore {
    fn read_deliveries(&self, filter: &str, values: &[&dyn rusqlite::ToSql]) -> Result<Vec<DeliveryRecord>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(&format!("SELECT {COLUMNS} FROM deliveries WHERE {filter}"))
            .map_err(map_err)?;
        let rows: Vec<DeliveryRow> = statement
            .query_map(values, columns)
            .map_err(map_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(map_err)?;
        rows.into_iter().map(DeliveryRow::into_record).collect()
    }
}

impl IntakeStore for SqliteStore {
    fn delivery(&self, source: &SourceName, id: &str) -> Result<Option<DeliveryRecord>> {
        Ok(self.read_deliveries("source = ?1 AND id = ?2", &[&source.as_str(), &id])?.pop())
    }

    fn deliveries(&self, outcome: Option<Outcome>, limit: usize) -> Result<Vec<DeliveryRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read_deliveries(
            "(?1 IS NULL OR outcome = ?1) ORDER BY updated_ms DESC, source, id LIMIT ?2",
            &[&outcome.map(Outcome::as_str), &limit],
        )
    }

    fn delivery_by_digest(
        &self,
        source: &SourceName,
        sha256: &str,
        since: Timestamp,
    ) -> Result<Option<DeliveryRecord>> {
        let since = since.as_millis();
        let found = self.read_deliveries(
            "source = ?1 AND sha256 = ?2 AND received_ms >= ?3 ORDER BY received_ms, id LIMIT 1",
            &[&source.as_str(), &sha256, &since],
        )?;
        Ok(found.into_iter().next())
    }

    fn deliveries_about(&self, source: &SourceName, object: &str) -> Result<Vec<DeliveryRecord>> {
        self.read_deliveries(
            "source = ?1 AND object = ?2 ORDER BY received_ms, id",
            &[&source.as_str(), &object],
        )
    }

    fn add_delivery(&self, record: &DeliveryRecord, event: &NewEvent) -> Result<u64> {
        let (record, event) = (record.clone(), event.clone());
        let row = DeliveryRow::from_record(&record)?;
        one_index(self.writer.submit(Box::new(move |tx| {
            insert_delivery(tx, &row)?;
            see_version(tx, &record)?;
            append(tx, std::slice::from_ref(&event))
        }))?)
    }

    fn update_delivery(
        &self,
        record: &DeliveryRecord,
        expected: (Outcome, u32),
        event: &NewEvent,
    ) -> Result<u64> {
        let (record, event) = (record.clone(), event.clone());
        let row = DeliveryRow::from_record(&record)?;
        one_index(self.writer.submit(Box::new(move |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE deliveries SET outcome = ?3, changes = ?4, detail = ?5, attempts = ?6, updated_ms = ?7
                     WHERE source = ?1 AND id = ?2 AND outcome = ?8 AND attempts = ?9",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        row.source,
                        row.id,
                        row.outcome,
                        row.changes,
                        row.detail,
                        row.attempts,
                        row.updated,
                        expected.0.as_str(),
                        i64::from(expected.1),
                    ])
                })
                .map_err(map_err)?;
            if changed != 1 {
                return Err(StoreError::Conflict(format!(
                    "delivery {} from {} changed since it was read; read it again",
                    row.id, row.source
                )));
            }
            see_version(tx, &record)?;
            append(tx, std::slice::from_ref(&event))
        }))?)
    }

    fn add_refusal(
        &self,
        (source, reason, window): (&SourceName, &str, Timestamp),
        sha256: &str,
        event: &NewEvent,
    ) -> Result<Option<u64>> {
        let (source, reason, sha256, event) =
            (source.to_string(), reason.to_owned(), sha256.to_owned(), event.clone());
        let indices = self.writer.submit(Box::new(move |tx| {
            let count: i64 = tx
                .prepare_cached(COUNT_REFUSAL)
                .and_then(|mut s| {
                    s.query_row(params![source, reason, window.as_millis(), sha256], |r| r.get(0))
                })
                .map_err(map_err)?;
            if count == 1 { append(tx, std::slice::from_ref(&event)) } else { Ok(Vec::new()) }
        }))?;
        Ok(indices.first().copied())
    }

    fn refusal_buckets(&self, before: Timestamp, limit: usize) -> Result<Vec<RefusalBucket>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(
                "SELECT source, reason, window_ms, count, samples FROM intake_refusals
                 WHERE window_ms < ?1 ORDER BY window_ms, source, reason LIMIT ?2",
            )
            .map_err(map_err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement
            .query_map(params![before.as_millis(), limit], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(map_err)?;
        rows.map(|row| {
            let (source, reason, window, count, samples) = row.map_err(map_err)?;
            refusal_bucket(&source, reason, window, count, &samples)
        })
        .collect()
    }

    fn close_refusal_bucket(&self, bucket: &RefusalBucket, event: Option<&NewEvent>) -> Result<()> {
        let (bucket, event) = (bucket.clone(), event.cloned());
        self.writer.submit(Box::new(move |tx| {
            let deleted = tx
                .prepare_cached(
                    "DELETE FROM intake_refusals WHERE source = ?1 AND reason = ?2 AND window_ms = ?3 AND count = ?4",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        bucket.source.as_str(),
                        bucket.reason,
                        bucket.window.as_millis(),
                        i64::try_from(bucket.count).unwrap_or(i64::MAX)
                    ])
                })
                .map_err(map_err)?;
            if deleted != 1 {
                return Err(StoreError::Conflict(format!(
                    "the refusals of {} ({}) changed since they were read",
                    bucket.source, bucket.reason
                )));
            }
            match event {
                Some(event) => append(tx, std::slice::from_ref(&event)),
                None => Ok(Vec::new()),
            }
        }))?;
        Ok(())
    }

    fn object(&self, source: &SourceName, object: &str) -> Result<Option<(ChangeId, Option<Timestamp>)>> {
        let connection = self.lock()?;
        let row: Option<(String, Option<i64>)> = connection
            .prepare_cached(
                "SELECT change_id, version_ms FROM intake_objects WHERE source = ?1 AND object = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![source.as_str(), object], |r| Ok((r.get(0)?, r.get(1)?))).optional()
            })
            .map_err(map_err)?;
        row.map(|(change, version)| {
            Ok((
                ChangeId::parse(&change).map_err(corrupt("object change"))?,
                version.map(Timestamp::from_millis),
            ))
        })
        .transpose()
    }

    fn bind_object(
        &self,
        source: &SourceName,
        object: &str,
        change: &ChangeId,
        at: Timestamp,
    ) -> Result<ChangeId> {
        let (source, object, change) = (source.to_string(), object.to_owned(), change.to_string());
        let bound = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let out = std::sync::Arc::clone(&bound);
        self.writer.submit(Box::new(move |tx| {
            tx.prepare_cached(
                "INSERT INTO intake_objects (source, object, change_id, version_ms, bound_ms)
                 VALUES (?1, ?2, ?3, NULL, ?4) ON CONFLICT (source, object) DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![source, object, change, at.as_millis()]))
            .map_err(map_err)?;
            let winner: String = tx
                .prepare_cached("SELECT change_id FROM intake_objects WHERE source = ?1 AND object = ?2")
                .and_then(|mut s| s.query_row(params![source, object], |r| r.get(0)))
                .map_err(map_err)?;
            if let Ok(mut slot) = out.lock() {
                *slot = winner;
            }
            Ok(Vec::new())
        }))?;
        let winner = bound.lock().map(|s| s.clone()).unwrap_or_default();
        ChangeId::parse(&winner).map_err(corrupt("object change"))
    }

    fn writebacks_due(
        &self,
        source: &SourceName,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(String, ChangeId, u32)>> {
        let connection = self.lock()?;
        let rows: Vec<(String, String, i64)> = connection
            .prepare_cached(
                "SELECT object, change_id, writeback_attempts FROM intake_objects
                 WHERE source = ?1 AND written_ms IS NULL AND writeback_next_ms <= ?2
                 ORDER BY writeback_next_ms, bound_ms LIMIT ?3",
            )
            .and_then(|mut s| {
                s.query_map(params![source.as_str(), now.as_millis(), limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect()
            })
            .map_err(map_err)?;
        rows.into_iter()
            .map(|(object, change, attempts)| {
                let change = ChangeId::parse(&change).map_err(corrupt("object change"))?;
                Ok((object, change, u32::try_from(attempts).unwrap_or(u32::MAX)))
            })
            .collect()
    }

    fn record_writeback(
        &self,
        source: &SourceName,
        object: &str,
        written: Option<Timestamp>,
        next: Timestamp,
        error: Option<&str>,
    ) -> Result<()> {
        let (source, object, error) = (source.to_string(), object.to_owned(), error.map(str::to_owned));
        self.writer.submit(Box::new(move |tx| {
            tx.prepare_cached(
                "UPDATE intake_objects SET written_ms = ?3, writeback_next_ms = ?4, writeback_error = ?5,
                 writeback_attempts = writeback_attempts + 1 WHERE source = ?1 AND object = ?2",
            )
            .and_then(|mut s| {
                s.execute(params![source, object, written.map(|t| t.as_millis()), next.as_millis(), error])
            })
            .map_err(map_err)?;
            Ok(Vec::new())
        }))?;
        Ok(())
    }
}
