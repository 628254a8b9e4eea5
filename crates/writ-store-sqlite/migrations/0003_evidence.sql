-- Writ embedded store, schema version 3: evidence blobs, content-addressed by SHA-256 and
-- written in the same transaction as the event that references them.
CREATE TABLE evidence (
    sha256      BLOB PRIMARY KEY,
    media_type  TEXT NOT NULL,
    bytes       BLOB NOT NULL,
    created_ms  INTEGER NOT NULL
) STRICT;
CREATE TRIGGER evidence_no_update BEFORE UPDATE ON evidence
BEGIN SELECT RAISE(ABORT, 'evidence is immutable'); END;
CREATE TRIGGER evidence_no_delete BEFORE DELETE ON evidence
BEGIN SELECT RAISE(ABORT, 'evidence is immutable'); END;
