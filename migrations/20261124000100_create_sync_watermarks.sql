-- Incremental sync: per company and entity, the last LastUpdatedTime (by QBO's clock) up to
-- which every change is in the raw zone. It moves in the same transaction as the last rows
-- it covers, so it is never ahead of the data. `source` says who set it (a sync, or a
-- backfill that covered everything up to it); `needs_reconcile` asks the next sync to list
-- QBO's ids once, because deletes before the watermark may not be in the raw zone yet.
CREATE TABLE ops.sync_watermarks (
    realm_id         text        NOT NULL,
    entity           text        NOT NULL,
    watermark_utc    timestamptz NOT NULL,
    run_id           uuid        NOT NULL,
    source           text        NOT NULL CHECK (source IN ('sync', 'backfill')),
    needs_reconcile  boolean     NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (realm_id, entity)
);
