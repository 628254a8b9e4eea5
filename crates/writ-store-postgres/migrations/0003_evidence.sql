-- Writ PostgreSQL store, schema version 3: evidence blobs, content-addressed by SHA-256.
CREATE TABLE evidence (
    sha256      BYTEA PRIMARY KEY,
    media_type  TEXT NOT NULL,
    bytes       BYTEA NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE TRIGGER evidence_immutable BEFORE UPDATE OR DELETE ON evidence
FOR EACH ROW EXECUTE FUNCTION writ_refuse_change();
