-- Writ embedded store, schema version 1.
CREATE TABLE identities (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    owner       TEXT REFERENCES identities(name),
    vendor      TEXT,
    created_ms  INTEGER NOT NULL
) STRICT;

CREATE TABLE targets (
    name        TEXT PRIMARY KEY,
    connector   TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
) STRICT;

CREATE TABLE target_settings (
    target      TEXT NOT NULL REFERENCES targets(name),
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (target, key)
) STRICT;

CREATE TABLE changes (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    requester   TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    seq         INTEGER NOT NULL
) STRICT;
CREATE INDEX changes_by_state ON changes(state, created_ms);

CREATE TABLE grants (
    identity    TEXT NOT NULL,
    target      TEXT NOT NULL,
    entitlement TEXT NOT NULL,
    change_id   TEXT NOT NULL REFERENCES changes(id),
    granted_ms  INTEGER NOT NULL,
    expires_ms  INTEGER,
    PRIMARY KEY (identity, target, entitlement)
) STRICT;

-- The append-only event log. idx is the ledger index: contiguous from 0, never reused.
CREATE TABLE events (
    idx          INTEGER PRIMARY KEY,
    change_id    TEXT,
    seq          INTEGER,
    type         TEXT NOT NULL,
    phase        TEXT NOT NULL,
    actor        TEXT NOT NULL,
    on_behalf_of TEXT,
    at_ms        INTEGER NOT NULL,
    bytes        BLOB NOT NULL,
    UNIQUE (change_id, seq)
) STRICT;

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'ledger events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'ledger events are append-only'); END;
