-- Writ embedded store, schema version 5: API access and coordination between instances.
-- Tokens keep only a keyed hash of their secret; their issue and revocation, and every role
-- assignment, are also events in the log. `requests` holds idempotency keys; `leases` says
-- which instance runs a singleton job (checkpoint signing, due work) until when.
CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    identity    TEXT NOT NULL REFERENCES identities(name),
    label       TEXT NOT NULL,
    hash        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER
) STRICT;

CREATE TABLE roles (
    identity  TEXT NOT NULL REFERENCES identities(name),
    role      TEXT NOT NULL,
    PRIMARY KEY (identity, role)
) STRICT;

CREATE TABLE requests (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    status       INTEGER,
    resource     TEXT,
    created_ms   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) STRICT;

CREATE TABLE leases (
    name      TEXT PRIMARY KEY,
    holder    TEXT NOT NULL,
    until_ms  INTEGER NOT NULL
) STRICT;
