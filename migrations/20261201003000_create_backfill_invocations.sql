-- One row per `qbo backfill all --start .. --end ..`: what the user asked for (the range, the
-- entities, the options that shape new runs), so `qbo backfill all --resume` can finish all
-- of it, starting fresh runs for the entities a killed invocation never reached. The runs an
-- invocation created carry its id in ops.backfill_runs.options->>'invocation'.
CREATE TABLE ops.backfill_invocations (
    invocation_id uuid        PRIMARY KEY,
    realm_id      text        NOT NULL,
    entities      text[]      NOT NULL,
    range_start   date        NOT NULL,
    range_end     date        NOT NULL,
    window_field  text        NOT NULL CHECK (window_field IN ('last-updated', 'txn-date')),
    chunk_days    integer     NOT NULL CHECK (chunk_days > 0),
    page_size     integer     NOT NULL CHECK (page_size BETWEEN 1 AND 1000),
    started_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX backfill_invocations_latest_idx ON ops.backfill_invocations (realm_id, started_at DESC);
CREATE INDEX backfill_runs_invocation_idx ON ops.backfill_runs ((options->>'invocation'))
    WHERE options ? 'invocation';
