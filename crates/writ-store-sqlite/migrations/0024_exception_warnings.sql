-- Writ store, schema version 24: the closest warning given that an exception's term ends (how
-- long before its end, in milliseconds), so that each warning is given once per term.
ALTER TABLE exceptions ADD COLUMN warned_ms INTEGER;
