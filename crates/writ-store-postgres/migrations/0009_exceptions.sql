-- Writ store, schema version 9: exceptions (accepted risk for a control not met, with an
-- owner, an expiry and approvals like a change). due_ms: when the scheduler must next look at
-- one on its own (its expiry, or at once while the findings it covers are brought in line).
CREATE TABLE exceptions (
    id TEXT PRIMARY KEY,
    control TEXT NOT NULL,
    subject TEXT NOT NULL,
    owner TEXT NOT NULL,
    requester TEXT NOT NULL,
    justification TEXT NOT NULL,
    compensating_control TEXT NOT NULL,
    state TEXT NOT NULL,
    requested_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    renewal_ms BIGINT,
    approvals_needed BIGINT NOT NULL,
    version BIGINT NOT NULL,
    due_ms BIGINT
);
CREATE INDEX exceptions_by_state ON exceptions(state, id);
CREATE INDEX exceptions_due ON exceptions(due_ms) WHERE due_ms IS NOT NULL;
-- At most one pending or active exception per control and subject, even under concurrent
-- requests.
CREATE UNIQUE INDEX exceptions_one_live ON exceptions(control, subject) WHERE state IN ('pending', 'active');

-- The approvals of each exception's current round, in the order given.
CREATE TABLE exception_approvals (
    exception_id TEXT NOT NULL REFERENCES exceptions(id),
    position BIGINT NOT NULL,
    approver TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    slot TEXT,
    PRIMARY KEY (exception_id, position)
);
