-- Writ store, schema version 21: grants by target in (identity, entitlement) order, the stream a
-- reconciliation of one target reads page by page. It covers every column that stream reads, so
-- the read walks the index in order instead of visiting the table row by row.
CREATE INDEX grants_by_target ON grants(target, identity, entitlement, change_id, granted_ms, expires_ms);
