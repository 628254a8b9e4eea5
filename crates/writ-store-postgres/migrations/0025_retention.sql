-- Writ PostgreSQL store, schema version 25: retention. An evidence blob may be deleted only
-- once its erasure is recorded here, in the transaction of the `change.erased` event that names
-- it (the ledger keeps its digest, so a bundle still verifies and says it was erased).
CREATE TABLE evidence_erased (
    sha256     BYTEA PRIMARY KEY,
    erased_ms  BIGINT NOT NULL
);
CREATE TRIGGER evidence_erased_immutable BEFORE UPDATE OR DELETE ON evidence_erased
FOR EACH ROW EXECUTE FUNCTION writ_refuse_change();
CREATE FUNCTION writ_refuse_unerased_delete() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM evidence_erased WHERE sha256 = OLD.sha256) THEN
        RAISE EXCEPTION 'evidence is immutable unless its erasure is recorded';
    END IF;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER evidence_immutable ON evidence;
CREATE TRIGGER evidence_immutable BEFORE UPDATE ON evidence
FOR EACH ROW EXECUTE FUNCTION writ_refuse_change();
CREATE TRIGGER evidence_delete_erased_only BEFORE DELETE ON evidence
FOR EACH ROW EXECUTE FUNCTION writ_refuse_unerased_delete();
