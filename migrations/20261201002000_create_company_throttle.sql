-- QBO's limits are per company (realm), not per process: these tables let every qbo process
-- of a company see the pause a 429 imposed and the requests the others started in the last
-- minute, so a `--resume` right after Ctrl-C, or a second command right after the first, does
-- not start with a fresh budget. Times are the database's clock, the one all processes share.

-- The latest throttle of each company: nobody sends before paused_until.
CREATE TABLE ops.company_throttle (
    realm_id           text        PRIMARY KEY,
    paused_until       timestamptz NOT NULL,
    -- When QBO last answered 429, and the Retry-After it gave (NULL: none, so qbo paused for
    -- QBO_THROTTLE_PAUSE_MS).
    last_throttled_at  timestamptz NOT NULL,
    retry_after_secs   double precision
);

-- Per process, when it started each request of the last minute (the rolling window QBO's
-- 500 requests a minute count over). Rows of processes gone for a while are deleted.
CREATE TABLE ops.company_requests (
    realm_id    text          NOT NULL,
    process_id  uuid          NOT NULL,
    started_at  timestamptz[] NOT NULL,
    updated_at  timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (realm_id, process_id)
);
