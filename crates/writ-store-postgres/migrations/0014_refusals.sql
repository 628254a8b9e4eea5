-- Refused deliveries counted per (source, reason, window): the first of a window is a ledger
-- event on its own, the rest are counted here and recorded as one intake.refusals_counted event
-- when the window has ended, so a flood of bad deliveries adds a bounded number of events.
CREATE TABLE intake_refusals (
    source    TEXT NOT NULL,
    reason    TEXT NOT NULL,
    window_ms BIGINT NOT NULL,
    count     BIGINT NOT NULL,
    samples   TEXT NOT NULL,
    PRIMARY KEY (source, reason, window_ms)
);

-- An envelope that names no object, sent again under a new id, is found by its bytes.
CREATE INDEX deliveries_by_digest ON deliveries(source, sha256);
