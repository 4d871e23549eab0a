-- Request-optimal backfills (issue 9).
--
-- A run spends requests that belong to no single window: the COUNTs that plan its windows
-- and the one changed-since sweep after them. They are kept on the run so that the run's
-- cost (windows' requests + run_requests) is what QBO was actually asked.
ALTER TABLE ops.backfill_runs
    ADD COLUMN run_requests integer NOT NULL DEFAULT 0 CHECK (run_requests >= 0);

-- What the planner's COUNT(*) said the window held when the run was planned. A window
-- claimed with a planned count starts paging at once; the claim keeps this (it clears
-- expected_count, the attempt's own figure).
ALTER TABLE ops.backfill_report
    ADD COLUMN planned_count bigint CHECK (planned_count >= 0);

-- `paged`: every page of the window is loaded, but paging took several pages (or fell short
-- of the count), so it is complete only once the run's changed-since sweep shows that no
-- record it read moved while it paged. Never claimed; the sweep settles it (success, or
-- back to pending to be read again).
ALTER TABLE ops.backfill_report DROP CONSTRAINT backfill_report_status_check;
ALTER TABLE ops.backfill_report ADD CONSTRAINT backfill_report_status_check
    CHECK (status IN ('pending', 'running', 'paged', 'success', 'error'));

-- `all` planned by counts has no calendar step: chunk_days is NULL and window_pages says
-- how many pages a window may hold.
ALTER TABLE ops.backfill_invocations ALTER COLUMN chunk_days DROP NOT NULL;
ALTER TABLE ops.backfill_invocations ADD COLUMN window_pages integer CHECK (window_pages > 0);
