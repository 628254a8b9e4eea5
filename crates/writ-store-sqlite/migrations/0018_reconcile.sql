-- Writ store, schema version 18: reconciliation's findings. A finding now carries its severity
-- (empty on rows from before: the kind's default), the controls it fails (one per line), the
-- scope that raised it (a reconciliation's: target:NAME or registry), the digest of the
-- snapshot that last saw it, the change opened to fix it, and when it was last seen.
ALTER TABLE findings ADD COLUMN severity TEXT NOT NULL DEFAULT '';
ALTER TABLE findings ADD COLUMN controls TEXT NOT NULL DEFAULT '';
ALTER TABLE findings ADD COLUMN scope TEXT;
ALTER TABLE findings ADD COLUMN evidence TEXT;
ALTER TABLE findings ADD COLUMN remediation TEXT;
ALTER TABLE findings ADD COLUMN seen_ms INTEGER;
UPDATE findings SET seen_ms = opened_ms;
CREATE INDEX findings_by_remediation ON findings(remediation) WHERE remediation IS NOT NULL;
CREATE INDEX findings_by_scope ON findings(scope, id) WHERE scope IS NOT NULL;
