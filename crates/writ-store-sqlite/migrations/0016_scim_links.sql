-- An existing person becomes a SCIM User only where an admin linked them: the identity
-- provider's externalId for that person (registry.scim_linked in the ledger).
CREATE TABLE scim_links (
    identity    TEXT PRIMARY KEY REFERENCES identities(name),
    external_id TEXT NOT NULL UNIQUE
);
