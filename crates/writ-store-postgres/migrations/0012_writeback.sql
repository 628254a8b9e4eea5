-- Write-back of the Writ change ID to the external object it is bound to (a ServiceNow change
-- request, a Jira issue). The binding is the outbox: a row of a source with write-back
-- configured is due until written_ms is set; attempts back off through writeback_next_ms.
ALTER TABLE intake_objects ADD COLUMN written_ms BIGINT;
ALTER TABLE intake_objects ADD COLUMN writeback_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE intake_objects ADD COLUMN writeback_next_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE intake_objects ADD COLUMN writeback_error TEXT;
CREATE INDEX intake_objects_writeback ON intake_objects(source, writeback_next_ms) WHERE written_ms IS NULL;
