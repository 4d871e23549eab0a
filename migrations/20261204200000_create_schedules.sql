-- Schedules (triggers) that `qbo serve` fires: a cron expression (UTC) and what to enqueue
-- when it ticks, a rolling backfill of the last N days or a sync, for one company or for
-- every active one. `next_tick_at` is the claim: an instance fires a tick by moving it
-- forward with `UPDATE ... WHERE next_tick_at = <the value it read>`, so one instance only
-- fires each tick however many serve the database.
CREATE TABLE ops.schedules (
    schedule_id   uuid        PRIMARY KEY,
    name          text        NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    -- 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), in UTC.
    cron          text        NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('backfill', 'sync')),
    -- `all`, or one entity as `qbo entities` spells it.
    entity        text        NOT NULL,
    -- A backfill's range: the last `days` days up to today (UTC), today included.
    days          integer     CHECK (days BETWEEN 1 AND 3650),
    -- NULL: every active company at the time of each tick.
    realm_id      text        CHECK (realm_id ~ '^[0-9]+$'),
    next_tick_at  timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'backfill') = (days IS NOT NULL))
);
CREATE INDEX schedules_due_idx ON ops.schedules (next_tick_at);

-- One row per tick an instance claimed: what it did and what it produced. The primary key
-- is the second guard of "each tick once".
CREATE TABLE ops.schedule_firings (
    schedule_id       uuid        NOT NULL REFERENCES ops.schedules (schedule_id) ON DELETE CASCADE,
    -- The tick fired (after downtime: the latest one due; `missed_ticks` counts the earlier
    -- ones it stands for).
    tick_at           timestamptz NOT NULL,
    missed_ticks      integer     NOT NULL DEFAULT 0,
    -- `firing` while its work is being enqueued; `fired`, `skipped` (the previous tick's work
    -- is still going, or there is no active company) or `failed` (enqueueing failed).
    outcome           text        NOT NULL CHECK (outcome IN ('firing', 'fired', 'skipped', 'failed')),
    reason            text,
    run_ids           uuid[]      NOT NULL DEFAULT '{}',
    sync_request_ids  uuid[]      NOT NULL DEFAULT '{}',
    -- The `qbo serve` instance (host:pid) that claimed it.
    fired_by          text        NOT NULL,
    fired_at          timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    PRIMARY KEY (schedule_id, tick_at)
);
