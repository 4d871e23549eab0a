-- Queued syncs: `qbo sync --enqueue`, the API's "sync now" and sync schedules record a
-- request here, and one `qbo worker` slot runs it whole (a sync reads its watermarks under the
-- company's sync lock and asks QBO for the time, so it is not split into windows like a
-- backfill). A request is leased like a window: a worker that died leaves it `running` under
-- an expired lease, and the next worker takes it over (a sync is safe to run again).
CREATE TYPE ops.sync_request_status AS ENUM
    ('queued', 'running', 'success', 'partial', 'error', 'cancelled');
CREATE TYPE ops.sync_requester AS ENUM ('cli', 'api', 'schedule');

CREATE TABLE ops.sync_requests (
    request_id        uuid                    PRIMARY KEY,
    realm_id          text                    NOT NULL CHECK (realm_id ~ '^[0-9]+$'),
    -- What to sync: `{all}`, or entity names (as `qbo entities` spells them) in registry
    -- order, each once, so that equal selections are equal arrays.
    entities          text[]                  NOT NULL CHECK (cardinality(entities) > 0),
    -- The sync's options (since, lookback, CDC batch, window days): fleet::SyncOptions.
    options           jsonb                   NOT NULL DEFAULT '{}',
    status            ops.sync_request_status NOT NULL DEFAULT 'queued',
    requested_by      ops.sync_requester      NOT NULL,
    -- The schedule that fired it, when requested_by = 'schedule' (no foreign key: schedules
    -- may be removed while their requests stay as history).
    schedule_id       uuid,
    requested_at      timestamptz             NOT NULL DEFAULT now(),
    -- The worker running it and until when its lease holds without a heartbeat.
    lease_owner       text,
    lease_expires_at  timestamptz,
    -- Times a worker took it (more than 1: a worker died or was drained mid-sync).
    attempts          integer                 NOT NULL DEFAULT 0,
    started_at        timestamptz,
    finished_at       timestamptz,
    -- The sync runs (ops.backfill_runs, kind sync) it produced, one per entity and attempt.
    run_ids           uuid[]                  NOT NULL DEFAULT '{}',
    -- Why it ended partial or error; never a token.
    error             text,
    CHECK ((status = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);

-- At most one queued request per company and selection: enqueueing again returns it.
CREATE UNIQUE INDEX sync_requests_one_queued
    ON ops.sync_requests (realm_id, entities) WHERE status = 'queued';
-- What workers claim, and what "is a sync queued or running" reads.
CREATE INDEX sync_requests_open
    ON ops.sync_requests (realm_id, requested_at) WHERE status IN ('queued', 'running');
CREATE INDEX sync_requests_recent ON ops.sync_requests (requested_at DESC);
