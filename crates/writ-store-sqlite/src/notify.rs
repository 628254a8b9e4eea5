//! The notification outbox in SQLite: rows written by [`crate::append`] with their event,
//! leased to a dispatcher, settled by the holder of the lease.

use rusqlite::{OptionalExtension, Row, Transaction, params};
use writ_core::change::ChangeId;
use writ_core::notify::{NoticeState, Notification};
use writ_core::time::Timestamp;
use writ_store::{Attempt, NOTIFICATION_COLUMNS, NewEvent, NotificationRow, NotifyStore, Result, StoreError};

use crate::{SqliteStore, map_err};

/// Writes the notices of the event at `index`, due at once.
pub(crate) fn write_notices(tx: &Transaction<'_>, index: i64, event: &NewEvent) -> Result<()> {
    if event.notices.is_empty() {
        return Ok(());
    }
    let mut statement = tx
        .prepare_cached(
            "INSERT INTO notifications (id, event_idx, change_id, kind, recipient, channel, address, clear,
                                        state, attempts, next_ms, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', 0, ?9, ?9)",
        )
        .map_err(map_err)?;
    let event_index = u64::try_from(index).map_err(|_| StoreError::Corrupt("negative event index".into()))?;
    for (n, notice) in event.notices.iter().enumerate() {
        statement
            .execute(params![
                Notification::id_of(event_index, n),
                index,
                event.change.as_ref().map(ChangeId::as_str),
                notice.kind,
                notice.recipient,
                notice.channel.as_str(),
                notice.address,
                notice.clear,
                event.at.as_millis(),
            ])
            .map_err(map_err)?;
    }
    Ok(())
}

fn row(row: &Row<'_>) -> rusqlite::Result<NotificationRow> {
    Ok(NotificationRow {
        id: row.get(0)?,
        event_idx: row.get(1)?,
        change_id: row.get(2)?,
        kind: row.get(3)?,
        recipient: row.get(4)?,
        channel: row.get(5)?,
        address: row.get(6)?,
        clear: row.get(7)?,
        state: row.get(8)?,
        attempts: row.get(9)?,
        next_ms: row.get(10)?,
        last_error: row.get(11)?,
        created_ms: row.get(12)?,
        delivered_ms: row.get(13)?,
    })
}

impl NotifyStore for SqliteStore {
    fn claim_notifications(
        &self,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Notification>> {
        let holder = holder.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<NotificationRow> = self.write(move |tx| {
            let mut statement = tx
                .prepare_cached(&format!(
                    "UPDATE notifications SET holder = ?1, held_until_ms = ?2
                     WHERE id IN (SELECT id FROM notifications
                                  WHERE state = 'pending' AND next_ms <= ?3
                                    AND (held_until_ms IS NULL OR held_until_ms < ?3)
                                  ORDER BY next_ms, event_idx, id LIMIT ?4)
                     RETURNING {NOTIFICATION_COLUMNS}"
                ))
                .map_err(map_err)?;
            let rows = statement
                .query_map(params![holder, until.as_millis(), now.as_millis(), limit], row)
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })?;
        let mut claimed = rows.into_iter().map(NotificationRow::notification).collect::<Result<Vec<_>>>()?;
        claimed.sort_by_key(|n| (n.next_at, n.event, n.id.clone()));
        Ok(claimed)
    }

    fn settle_notification(&self, id: &str, holder: &str, outcome: &Attempt) -> Result<()> {
        let (id, holder, outcome) = (id.to_owned(), holder.to_owned(), outcome.clone());
        self.write(move |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE notifications SET state = ?3, attempts = ?4, next_ms = ?5, last_error = ?6,
                         delivered_ms = ?7, holder = NULL, held_until_ms = NULL
                     WHERE id = ?1 AND holder = ?2 AND state = 'pending'",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        id,
                        holder,
                        outcome.state.as_str(),
                        outcome.attempts,
                        outcome.next_at.as_millis(),
                        outcome.error,
                        outcome.delivered_at.map(Timestamp::as_millis),
                    ])
                })
                .map_err(map_err)?;
            if changed == 1 {
                Ok(())
            } else {
                Err(StoreError::Conflict(format!("notification {id} is no longer held by {holder}")))
            }
        })
    }

    fn notification(&self, id: &str) -> Result<Option<Notification>> {
        let found = self
            .lock()?
            .prepare_cached(&format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = ?1"))
            .and_then(|mut s| s.query_row([id], row).optional())
            .map_err(map_err)?;
        found.map(NotificationRow::notification).transpose()
    }

    fn notifications(
        &self,
        change: Option<&ChangeId>,
        state: Option<NoticeState>,
        limit: usize,
    ) -> Result<Vec<Notification>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM notifications
                 WHERE (?1 IS NULL OR change_id = ?1) AND (?2 IS NULL OR state = ?2)
                 ORDER BY event_idx DESC, id DESC LIMIT ?3"
            ))
            .map_err(map_err)?;
        let rows = statement
            .query_map(
                params![
                    change.map(ChangeId::as_str),
                    state.map(NoticeState::as_str),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                row,
            )
            .map_err(map_err)?;
        rows.map(|r| r.map_err(map_err).and_then(NotificationRow::notification)).collect()
    }

    fn retry_notification(&self, id: &str, now: Timestamp) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE notifications SET state = 'pending', next_ms = ?2, holder = NULL, held_until_ms = NULL
                     WHERE id = ?1 AND state IN ('pending', 'dead')",
                )
                .and_then(|mut s| s.execute(params![id, now.as_millis()]))
                .map_err(map_err)?;
            Ok(changed == 1)
        })
    }
}
