-- A run is a backfill or a sync; both write report rows, so `qbo report` shows both.
ALTER TABLE ops.backfill_runs
    ADD COLUMN kind text NOT NULL DEFAULT 'backfill' CHECK (kind IN ('backfill', 'sync'));
DROP INDEX ops.backfill_runs_latest_idx;
CREATE INDEX backfill_runs_latest_idx ON ops.backfill_runs (realm_id, entity, kind, started_at DESC);
