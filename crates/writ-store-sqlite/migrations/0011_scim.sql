-- Writ store, schema version 11: SCIM resources (Users and Groups an identity provider pushes).
-- One row per resource: the document (JSON attributes), its version, the Writ identity a User
-- is, and the lifecycle state Writ has settled for it (the birthright entitlements its changes
-- were opened for). A deleted resource stays as a tombstone (deleted = 1); names are unique
-- among live resources only, so a name can be used again after a delete.
CREATE TABLE scim_resources (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    name_key TEXT NOT NULL,
    identity TEXT,
    doc TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    settled TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE UNIQUE INDEX scim_live_names ON scim_resources(kind, name_key) WHERE deleted = 0;
CREATE INDEX scim_by_identity ON scim_resources(identity) WHERE identity IS NOT NULL;
