-- `qbo reports --enqueue` (issue 12): queued report runs are claimed by `qbo worker`s like
-- queued backfills, so the workers' claimable-runs index covers both kinds (its predicate is
-- the claim's own, written the same way, so the planner can prove the claim implies it).
DROP INDEX ops.backfill_runs_claimable_idx;
CREATE INDEX backfill_runs_claimable_idx ON ops.backfill_runs (run_id)
    WHERE kind IN ('backfill', 'report') AND (options->>'queued')::boolean IS TRUE
      AND status IN ('running', 'incomplete');
