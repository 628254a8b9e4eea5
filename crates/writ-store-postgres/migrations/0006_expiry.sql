-- Writ store, schema version 6: the scheduler finds time-bound grants that are due by their
-- expiry, oldest first.
CREATE INDEX grants_by_expiry ON grants(expires_ms) WHERE expires_ms IS NOT NULL;
