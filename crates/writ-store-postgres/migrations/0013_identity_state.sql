-- Identity lifecycle: only an active identity authenticates and acts. Leaving `active` revokes
-- the identity's tokens in the same transaction (registry.identity_state in the ledger).
ALTER TABLE identities ADD COLUMN state TEXT NOT NULL DEFAULT 'active'
    CHECK (state IN ('active', 'disabled', 'offboarded'));
