-- Writ store, schema version 22: SCIM resources by the time of their last write, so the newest
-- write (how long the identity provider's feed has been silent) is one index lookup.
CREATE INDEX scim_resources_by_update ON scim_resources(updated_ms);
