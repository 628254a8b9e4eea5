-- Writ PostgreSQL store, schema version 2: the Merkle ledger.
ALTER TABLE events ADD COLUMN leaf BYTEA;
CREATE TABLE checkpoints (
    size        BIGINT PRIMARY KEY,
    root        BYTEA NOT NULL,
    note        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
FOR EACH ROW EXECUTE FUNCTION writ_refuse_change();
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
