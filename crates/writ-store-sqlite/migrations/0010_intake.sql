-- Writ store, schema version 10: intake. Deliveries from other systems (IdP feeds, ITSM and
-- SCM webhooks), one row per (source, delivery id), with what became of each; and the external
-- objects (a ticket, a pull request, an IdP user) bound to the change they concern, with the
-- newest version of each seen so far.
CREATE TABLE deliveries (
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    event TEXT NOT NULL,
    object TEXT,
    version_ms INTEGER,
    sha256 TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    refs TEXT NOT NULL,
    outcome TEXT NOT NULL,
    changes TEXT NOT NULL,
    detail TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (source, id)
);
CREATE INDEX deliveries_by_outcome ON deliveries(outcome, updated_ms);
CREATE INDEX deliveries_by_update ON deliveries(updated_ms);
CREATE INDEX deliveries_by_object ON deliveries(source, object) WHERE object IS NOT NULL;

CREATE TABLE intake_objects (
    source TEXT NOT NULL,
    object TEXT NOT NULL,
    change_id TEXT NOT NULL,
    version_ms INTEGER,
    bound_ms INTEGER NOT NULL,
    PRIMARY KEY (source, object)
);
