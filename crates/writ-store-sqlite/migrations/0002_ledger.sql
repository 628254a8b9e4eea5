-- Writ embedded store, schema version 2: the Merkle ledger.
-- The leaf hash recorded when each event was appended (SHA-256(0x00 || bytes)).
ALTER TABLE events ADD COLUMN leaf BLOB;

-- Signed checkpoints (C2SP signed notes), append-only like the events they cover.
CREATE TABLE checkpoints (
    size        INTEGER PRIMARY KEY,
    root        BLOB NOT NULL,
    note        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
) STRICT;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;

-- Settings that belong to the database: the log's origin and the public keys it was signed with.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
