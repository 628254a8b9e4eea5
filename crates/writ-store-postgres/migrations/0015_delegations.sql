-- Delegations: who may act on behalf of whom, until when. Written only with their ledger event
-- (access.delegation_granted, access.delegation_revoked); a revoked one is deleted here.
CREATE TABLE delegations (
    principal  TEXT NOT NULL REFERENCES identities(name),
    delegate   TEXT NOT NULL REFERENCES identities(name),
    until_ms   BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (principal, delegate)
);
