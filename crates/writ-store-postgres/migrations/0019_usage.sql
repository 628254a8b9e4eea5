-- Writ store, schema version 19: the last use of accounts on targets, as reported by a feed or
-- seen by a reconciliation (a projection of the usage.reported events).
CREATE TABLE usage (
    target   TEXT NOT NULL,
    account  TEXT NOT NULL,
    last_ms  BIGINT NOT NULL,
    PRIMARY KEY (target, account)
);
