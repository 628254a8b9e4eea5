-- Writ store, schema version 21: grants by target in (identity, entitlement) byte order, the
-- stream a reconciliation of one target reads page by page. It includes every column that stream
-- reads, so the read can be an index-only scan.
CREATE INDEX grants_by_target ON grants(target, identity COLLATE "C", entitlement COLLATE "C")
    INCLUDE (change_id, granted_ms, expires_ms);
