-- Writ embedded store, schema version 4: clear text of sealed values, keyed by their HMAC.
-- Kept outside the event log on purpose: a value can be erased (for example personal data on
-- request) while the event, which holds only the HMAC, still verifies.
CREATE TABLE sensitive (
    hmac   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) STRICT;
