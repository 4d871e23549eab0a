-- One changed-since sweep per queued run (issue 10): a `qbo worker` parks a multi-page window
-- durably (what it read is kept here, the window holds no lease), and whichever worker finds
-- the run with nothing left to load but parked windows takes the run's sweep lease and settles
-- them all at once. A sweep lease that runs out (its worker was killed) is taken over.

ALTER TABLE ops.backfill_runs
    ADD COLUMN sweep_owner      text,
    ADD COLUMN sweep_expires_at timestamptz;

-- What a durably parked window read: each id with the LastUpdatedTime it was first seen at
-- (the sweep's evidence that nothing it read moved), its count and when paging began. One
-- row per window, for the attempt that parked it; deleted when the sweep settles it.
CREATE TABLE ops.paged_reads (
    run_id      uuid        NOT NULL,
    chunk_index integer     NOT NULL,
    attempt     integer     NOT NULL,
    expected    bigint      NOT NULL,
    counted_at  timestamptz,
    began       timestamptz NOT NULL,
    pass        integer     NOT NULL,
    ids         text[]        NOT NULL,
    seen_at     timestamptz[] NOT NULL,
    PRIMARY KEY (run_id, chunk_index),
    FOREIGN KEY (run_id, chunk_index)
        REFERENCES ops.backfill_report (run_id, chunk_index) ON DELETE CASCADE,
    CHECK (cardinality(ids) = cardinality(seen_at))
);

-- Every worker slot looks for a due sweep before it claims a window: it starts from the
-- durably parked windows, a handful at any time, not from every queued run.
CREATE INDEX backfill_report_parked_idx ON ops.backfill_report (run_id)
    WHERE status = 'paged' AND lease_owner IS NULL;
