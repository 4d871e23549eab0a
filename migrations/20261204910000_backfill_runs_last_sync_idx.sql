-- The status page reloads every 5 seconds. Its "last successful sync" of each company is one
-- probe of this partial index (newest finished successful sync run of the company) instead of
-- a scan of every run. (Its list of the latest 50 runs uses backfill_runs_started_idx.)
CREATE INDEX backfill_runs_last_sync_idx ON ops.backfill_runs (realm_id, finished_at DESC)
    WHERE kind = 'sync' AND status = 'success' AND finished_at IS NOT NULL;
