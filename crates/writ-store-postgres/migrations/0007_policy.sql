-- Writ store, schema version 7: policy versions. Each loaded policy bundle is kept by hash
-- (the files as JSON); the one loaded last is in force.
CREATE TABLE policies (
    seq BIGSERIAL PRIMARY KEY,
    hash TEXT NOT NULL,
    files TEXT NOT NULL,
    loaded_ms BIGINT NOT NULL
);
CREATE INDEX policies_by_hash ON policies(hash);
