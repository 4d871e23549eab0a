-- The retries behind ops.backfill_runs.run_requests (requests that belong to no window), so
-- a run's windows and the run itself account for every request and retry QBO saw.
ALTER TABLE ops.backfill_runs
    ADD COLUMN run_retries integer NOT NULL DEFAULT 0 CHECK (run_retries >= 0);
