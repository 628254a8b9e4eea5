-- Writ PostgreSQL store, schema version 1 (aligned with writ-store-sqlite/migrations/0001).
CREATE TABLE identities (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    owner       TEXT REFERENCES identities(name),
    vendor      TEXT,
    created_ms  BIGINT NOT NULL
);
CREATE TABLE targets (
    name        TEXT PRIMARY KEY,
    connector   TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE TABLE target_settings (
    target      TEXT NOT NULL REFERENCES targets(name),
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (target, key)
);
CREATE TABLE changes (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    requester   TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    seq         BIGINT NOT NULL
);
CREATE INDEX changes_by_state ON changes(state, created_ms);
CREATE TABLE grants (
    identity    TEXT NOT NULL,
    target      TEXT NOT NULL,
    entitlement TEXT NOT NULL,
    change_id   TEXT NOT NULL REFERENCES changes(id),
    granted_ms  BIGINT NOT NULL,
    expires_ms  BIGINT,
    PRIMARY KEY (identity, target, entitlement)
);
-- The append-only event log. idx is the ledger index: contiguous from 0, assigned under the
-- row lock of log_head so that concurrent writers (several servers) never fork the log.
CREATE TABLE events (
    idx          BIGINT PRIMARY KEY,
    change_id    TEXT,
    seq          BIGINT,
    type         TEXT NOT NULL,
    phase        TEXT NOT NULL,
    actor        TEXT NOT NULL,
    on_behalf_of TEXT,
    at_ms        BIGINT NOT NULL,
    bytes        BYTEA NOT NULL,
    UNIQUE (change_id, seq)
);
CREATE TABLE log_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    next  BIGINT NOT NULL
);
INSERT INTO log_head (id, next) VALUES (1, 0);
CREATE FUNCTION writ_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
FOR EACH ROW EXECUTE FUNCTION writ_refuse_change();
