-- Writ store, schema version 23: where notifications reach an identity (its email), and the
-- notification outbox, each row written in the transaction of the event it tells of and
-- leased by the dispatcher that delivers it.
ALTER TABLE identities ADD COLUMN email TEXT;
CREATE TABLE notifications (
    id            TEXT PRIMARY KEY,
    event_idx     BIGINT NOT NULL,
    change_id     TEXT,
    kind          TEXT NOT NULL,
    recipient     TEXT NOT NULL,
    channel       TEXT NOT NULL,
    address       TEXT NOT NULL,
    clear         BOOLEAN NOT NULL,
    state         TEXT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    next_ms       BIGINT NOT NULL,
    last_error    TEXT,
    created_ms    BIGINT NOT NULL,
    delivered_ms  BIGINT,
    holder        TEXT,
    held_until_ms BIGINT
);
CREATE INDEX notifications_due ON notifications(state, next_ms);
CREATE INDEX notifications_by_change ON notifications(change_id, event_idx);
