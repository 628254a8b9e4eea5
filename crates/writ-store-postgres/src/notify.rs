//! The notification outbox in PostgreSQL: rows written by [`crate::append`] with their
//! events, leased to a dispatcher (`FOR UPDATE SKIP LOCKED`, so concurrent dispatchers take
//! different rows), settled by the holder of the lease.

use postgres::Transaction;
use writ_core::change::ChangeId;
use writ_core::notify::{NoticeState, Notification};
use writ_core::time::Timestamp;
use writ_store::{Attempt, NOTIFICATION_COLUMNS, NewEvent, NotificationRow, NotifyStore, Result, StoreError};

use crate::{PostgresStore, Tx, map_err};

/// Writes the notices of `events` (appended at `indices`), due at once, in one statement.
pub(crate) fn write_notices(tx: &mut Tx<'_, '_>, indices: &[i64], events: &[NewEvent]) -> Result<()> {
    let mut ids = Vec::new();
    let mut at_index = Vec::new();
    let mut changes = Vec::new();
    let mut kinds = Vec::new();
    let mut recipients = Vec::new();
    let mut channels = Vec::new();
    let mut addresses = Vec::new();
    let mut clear = Vec::new();
    let mut at = Vec::new();
    for (index, event) in indices.iter().zip(events) {
        let event_index =
            u64::try_from(*index).map_err(|_| StoreError::Corrupt("negative event index".into()))?;
        for (n, notice) in event.notices.iter().enumerate() {
            ids.push(Notification::id_of(event_index, n));
            at_index.push(*index);
            changes.push(event.change.as_ref().map(ChangeId::as_str));
            kinds.push(notice.kind.as_str());
            recipients.push(notice.recipient.as_str());
            channels.push(notice.channel.as_str());
            addresses.push(notice.address.as_str());
            clear.push(notice.clear);
            at.push(event.at.as_millis());
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO notifications (id, event_idx, change_id, kind, recipient, channel, address, clear,
                                    state, attempts, next_ms, created_ms)
         SELECT id, idx, change_id, kind, recipient, channel, address, clear, 'pending', 0, at_ms, at_ms
         FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[],
                     $8::BOOLEAN[], $9::BIGINT[])
              AS n(id, idx, change_id, kind, recipient, channel, address, clear, at_ms)",
        &[&ids, &at_index, &changes, &kinds, &recipients, &channels, &addresses, &clear, &at],
    )
    .map_err(map_err)?;
    Ok(())
}

fn row(row: &postgres::Row) -> NotificationRow {
    NotificationRow {
        id: row.get(0),
        event_idx: row.get(1),
        change_id: row.get(2),
        kind: row.get(3),
        recipient: row.get(4),
        channel: row.get(5),
        address: row.get(6),
        clear: row.get(7),
        state: row.get(8),
        attempts: row.get(9),
        next_ms: row.get(10),
        last_error: row.get(11),
        created_ms: row.get(12),
        delivered_ms: row.get(13),
    }
}

fn rows(found: &[postgres::Row]) -> Result<Vec<Notification>> {
    found.iter().map(|r| row(r).notification()).collect()
}

impl NotifyStore for PostgresStore {
    fn claim_notifications(
        &self,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Notification>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found = self.side(|tx: &mut Transaction<'_>| {
            tx.query(
                &format!(
                    "UPDATE notifications SET holder = $1, held_until_ms = $2
                     WHERE id IN (SELECT id FROM notifications
                                  WHERE state = 'pending' AND next_ms <= $3
                                    AND (held_until_ms IS NULL OR held_until_ms < $3)
                                  ORDER BY next_ms, event_idx, id LIMIT $4
                                  FOR UPDATE SKIP LOCKED)
                     RETURNING {NOTIFICATION_COLUMNS}"
                ),
                &[&holder, &until.as_millis(), &now.as_millis(), &limit],
            )
            .map_err(map_err)
        })?;
        let mut claimed = rows(&found)?;
        claimed.sort_by_key(|n| (n.next_at, n.event, n.id.clone()));
        Ok(claimed)
    }

    fn settle_notification(&self, id: &str, holder: &str, outcome: &Attempt) -> Result<()> {
        let attempts = i64::from(outcome.attempts);
        let changed = self.side(|tx: &mut Transaction<'_>| {
            tx.execute(
                "UPDATE notifications SET state = $3, attempts = $4, next_ms = $5, last_error = $6,
                     delivered_ms = $7, holder = NULL, held_until_ms = NULL
                 WHERE id = $1 AND holder = $2 AND state = 'pending'",
                &[
                    &id,
                    &holder,
                    &outcome.state.as_str(),
                    &attempts,
                    &outcome.next_at.as_millis(),
                    &outcome.error,
                    &outcome.delivered_at.map(Timestamp::as_millis),
                ],
            )
            .map_err(map_err)
        })?;
        if changed == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!("notification {id} is no longer held by {holder}")))
        }
    }

    fn notification(&self, id: &str) -> Result<Option<Notification>> {
        let found = self
            .lock()?
            .cached()
            .query_opt(&format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = $1"), &[&id])
            .map_err(map_err)?;
        found.map(|r| row(&r).notification()).transpose()
    }

    fn notifications(
        &self,
        change: Option<&ChangeId>,
        state: Option<NoticeState>,
        limit: usize,
    ) -> Result<Vec<Notification>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found = self
            .lock()?
            .cached()
            .query(
                &format!(
                    "SELECT {NOTIFICATION_COLUMNS} FROM notifications
                     WHERE ($1::TEXT IS NULL OR change_id = $1) AND ($2::TEXT IS NULL OR state = $2)
                     ORDER BY event_idx DESC, id DESC LIMIT $3"
                ),
                &[&change.map(ChangeId::as_str), &state.map(NoticeState::as_str), &limit],
            )
            .map_err(map_err)?;
        rows(&found)
    }

    fn retry_notification(&self, id: &str, now: Timestamp) -> Result<bool> {
        let changed = self.side(|tx: &mut Transaction<'_>| {
            tx.execute(
                "UPDATE notifications SET state = 'pending', next_ms = $2, holder = NULL, held_until_ms = NULL
                 WHERE id = $1 AND state IN ('pending', 'dead')",
                &[&id, &now.as_millis()],
            )
            .map_err(map_err)
        })?;
        Ok(changed == 1)
    }
}
