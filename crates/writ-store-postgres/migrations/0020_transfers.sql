-- Writ store, schema version 20: transfers of a non-human identity's ownership (a projection of
-- the identity.transfer_* events). An accepted one made to_owner the identity's owner.
CREATE TABLE transfers (
    id            TEXT PRIMARY KEY,
    identity      TEXT NOT NULL REFERENCES identities(name),
    from_owner    TEXT,
    to_owner      TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    reason        TEXT NOT NULL,
    requested_ms  BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL,
    state         TEXT NOT NULL,
    decided_by    TEXT,
    decided_ms    BIGINT,
    note          TEXT
);
CREATE INDEX transfers_by_identity ON transfers(identity, requested_ms);
-- At most one pending transfer per identity, even under concurrent requests.
CREATE UNIQUE INDEX transfers_one_pending ON transfers(identity) WHERE state = 'pending';
