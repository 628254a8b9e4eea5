-- Writ store, schema version 8: deadlines and findings.
-- due_ms: the next time the scheduler must look at a change on its own (an escalation, a
-- break-glass change's post-hoc approval deadline); NULL when nothing is due. Pending changes
-- recorded before this version are looked at once (0), then rescheduled.
ALTER TABLE changes ADD COLUMN due_ms BIGINT;
UPDATE changes SET due_ms = 0 WHERE state = 'pending_approval';
CREATE INDEX changes_due ON changes(due_ms) WHERE due_ms IS NOT NULL;

-- Findings: problems that need a person, each recorded in the ledger as it opens and changes.
CREATE TABLE findings (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    change_id TEXT,
    detail TEXT NOT NULL,
    state TEXT NOT NULL,
    opened_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    exception TEXT
);
CREATE INDEX findings_by_state ON findings(state, id);
CREATE INDEX findings_by_change ON findings(change_id) WHERE change_id IS NOT NULL;
