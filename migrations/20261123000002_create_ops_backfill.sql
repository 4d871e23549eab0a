-- Operational state: one row per run and one per chunk (date window) of a run. Chunks are
-- claimed with FOR UPDATE SKIP LOCKED under a lease, so several workers (threads today,
-- machines later) can share a run without two of them loading the same window.
CREATE SCHEMA IF NOT EXISTS ops;

CREATE TABLE ops.backfill_runs (
    run_id        uuid        PRIMARY KEY,
    realm_id      text        NOT NULL,
    entity        text        NOT NULL,
    range_start   date        NOT NULL,
    range_end     date        NOT NULL,
    window_field  text        NOT NULL CHECK (window_field IN ('last-updated', 'txn-date')),
    options       jsonb       NOT NULL,
    status        text        NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'incomplete', 'success', 'partial', 'error')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX backfill_runs_latest_idx ON ops.backfill_runs (realm_id, entity, started_at DESC);

CREATE TABLE ops.backfill_report (
    run_id            uuid        NOT NULL REFERENCES ops.backfill_runs (run_id) ON DELETE CASCADE,
    chunk_index       integer     NOT NULL,
    realm_id          text        NOT NULL,
    entity            text        NOT NULL,
    window_start_utc  timestamptz NOT NULL,
    window_end_utc    timestamptz NOT NULL,
    status            text        NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'success', 'error')),
    attempts          integer     NOT NULL DEFAULT 0,
    expected_count    bigint,
    row_count         bigint      NOT NULL DEFAULT 0,
    inserted          bigint      NOT NULL DEFAULT 0,
    updated           bigint      NOT NULL DEFAULT 0,
    skipped           bigint      NOT NULL DEFAULT 0,
    pages             integer     NOT NULL DEFAULT 0,
    requests          integer     NOT NULL DEFAULT 0,
    retries           integer     NOT NULL DEFAULT 0,
    passes            integer     NOT NULL DEFAULT 0,
    started_at        timestamptz,
    finished_at       timestamptz,
    error_message     text,
    last_intuit_tid   text,
    -- Which worker holds the chunk, until when, and which invocation last claimed it (so one
    -- invocation tries a chunk at most once).
    lease_owner       text,
    lease_expires_at  timestamptz,
    last_invocation   uuid,
    PRIMARY KEY (run_id, chunk_index)
);
CREATE INDEX backfill_report_claim_idx ON ops.backfill_report (run_id, status, chunk_index);
CREATE INDEX backfill_report_entity_idx ON ops.backfill_report (realm_id, entity, window_start_utc);
