-- Writ PostgreSQL store, schema version 4: clear text of sealed values, keyed by their HMAC,
-- outside the event log so that a value can be erased while the ledger still verifies.
CREATE TABLE sensitive (
    hmac   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
