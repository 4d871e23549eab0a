-- Indexes for the workers' hot claim (`Queue::claim_next_any`, run by every idle worker slot
-- at every poll) and for the run listings. Their predicates are the claim's own, written the
-- same way, so the planner can prove the query implies them:
--
-- * the runs a worker may take windows of: queued backfills still `running` or `incomplete`
--   (a handful, beside thousands of finished runs and syncs);
CREATE INDEX backfill_runs_claimable_idx ON ops.backfill_runs (run_id)
    WHERE kind = 'backfill' AND (options->>'queued')::boolean IS TRUE
      AND status IN ('running', 'incomplete');
-- * the windows a claim may take: `pending`, or `running`/`paged` under a lease that may have
--   run out (a finished run's `success` windows, nearly all rows, are not in it). The claim
--   states `c.status IN ('pending', 'running', 'paged')` as well as its OR of the two cases:
--   the planner does not prove the OR implies this predicate on its own;
CREATE INDEX backfill_report_claimable_idx ON ops.backfill_report (run_id, chunk_index)
    WHERE status IN ('pending', 'running', 'paged');
-- * the newest runs first (`qbo runs`, GET /api/runs, the serve pages): ORDER BY started_at
--   DESC, run_id LIMIT n.
CREATE INDEX backfill_runs_started_idx ON ops.backfill_runs (started_at DESC, run_id);
