-- `qbo serve`'s cancel (issue 11): a run can be `cancelled`. Its unfinished windows were
-- handed back (`pending`, no lease) and are never claimed again; its finished windows keep
-- what they loaded.
ALTER TABLE ops.backfill_runs DROP CONSTRAINT backfill_runs_status_check;
ALTER TABLE ops.backfill_runs ADD CONSTRAINT backfill_runs_status_check
    CHECK (status IN ('running', 'incomplete', 'success', 'partial', 'error', 'cancelled'));

-- The windows a cancel found unfinished (pending, running or paged) become `cancelled`:
-- no lease, never claimed again, and a worker that was loading one finds its lease gone (its
-- fenced writes match no row) and moves on.
ALTER TABLE ops.backfill_report DROP CONSTRAINT backfill_report_status_check;
ALTER TABLE ops.backfill_report ADD CONSTRAINT backfill_report_status_check
    CHECK (status IN ('pending', 'running', 'paged', 'success', 'error', 'cancelled'));
