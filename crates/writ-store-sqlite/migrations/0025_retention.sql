-- Writ embedded store, schema version 25: retention. An evidence blob may be deleted only once
-- its erasure is recorded here, in the transaction of the `change.erased` event that names it
-- (the ledger keeps its digest, so a bundle still verifies and says it was erased).
CREATE TABLE evidence_erased (
    sha256     BLOB PRIMARY KEY,
    erased_ms  INTEGER NOT NULL
) STRICT;
CREATE TRIGGER evidence_erased_no_update BEFORE UPDATE ON evidence_erased
BEGIN SELECT RAISE(ABORT, 'erasures are immutable'); END;
CREATE TRIGGER evidence_erased_no_delete BEFORE DELETE ON evidence_erased
BEGIN SELECT RAISE(ABORT, 'erasures are immutable'); END;
DROP TRIGGER evidence_no_delete;
CREATE TRIGGER evidence_no_delete BEFORE DELETE ON evidence
WHEN NOT EXISTS (SELECT 1 FROM evidence_erased WHERE sha256 = OLD.sha256)
BEGIN SELECT RAISE(ABORT, 'evidence is immutable unless its erasure is recorded'); END;
