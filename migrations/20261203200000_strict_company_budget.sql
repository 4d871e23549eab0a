-- One strict budget per company, held in Postgres, however many qbo processes and machines
-- share the company (it replaces the once-a-second exchange of ops.company_requests, which N
-- processes starting at once could overrun together).
--
-- A process leases request permits (and batch-call permits) in small blocks, and seats for
-- its requests in flight, through ops.lease_budget: one statement that locks the company's
-- row for microseconds, never across a call to QBO. Times are the database's clock.

-- Each permit leased in the rolling window, as the time it stops counting (lease time +
-- the window + the time the lease allows to use it). Unused permits count all the same.
CREATE TABLE ops.company_budget (
    realm_id       text          PRIMARY KEY,
    request_until  timestamptz[] NOT NULL DEFAULT '{}',
    batch_until    timestamptz[] NOT NULL DEFAULT '{}'
);

-- Seats for requests in flight, per process (holder): at most the company's limit across
-- every live row. A row is a lease: its holder extends it while it holds seats, and a
-- process that died (SIGKILL, a lost machine) frees its seats when expires_at passes.
CREATE TABLE ops.company_seats (
    realm_id    text        NOT NULL,
    holder      uuid        NOT NULL,
    seats       integer     NOT NULL CHECK (seats >= 0),
    -- Seats the holder would use now (in flight + waiting): the company's seats are shared
    -- fairly among the holders that want more than they have.
    wanted      integer     NOT NULL CHECK (wanted >= 0),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (realm_id, holder)
);

-- The app's QBO requests per calendar month (UTC), as Intuit meters reads: every request
-- sent, retries included, and each query a batch call carries as one.
CREATE TABLE ops.app_reads (
    month       date        PRIMARY KEY,
    reads       bigint      NOT NULL DEFAULT 0 CHECK (reads >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The one statement a process runs to lease (and renew, and give back) its company's budget.
--   p_requests / p_batches: permits wanted now (a batch call asks one of each, all or none);
--   p_keep: seats in use that the process keeps whatever happens; p_seats: seats it asks to
--   hold (>= p_keep); p_wanted: seats it would use now;
--   p_counts_for: seconds a permit counts from its lease (QBO's window, a margin, and the
--   time the process has to use it); p_seat_lease: seconds a seat row lives unrenewed;
--   p_reads: requests sent since the last lease, added to the month's reads; p_read_cap: stop
--   leasing permits once the month's reads reach it (NULL: no cap).
-- Returns what was granted, how long until the next permit frees (when fewer were granted
-- than asked), how long the company is paused by a 429, the month's reads and whether the
-- cap is reached. The company's row is locked first, so every later statement of the
-- function sees what the other holders committed before.
CREATE FUNCTION ops.lease_budget(
    p_realm text, p_holder uuid,
    p_requests integer, p_batches integer,
    p_keep integer, p_seats integer, p_wanted integer,
    p_requests_per_window integer, p_batches_per_window integer, p_max_seats integer,
    p_counts_for double precision, p_seat_lease double precision,
    p_reads bigint, p_read_cap bigint)
RETURNS TABLE (requests integer, batches integer, seats integer, seat_cap integer,
               permit_wait double precision, paused_for double precision,
               month_reads bigint, cap_reached boolean)
LANGUAGE plpgsql AS $$
DECLARE
    t        timestamptz;
    req      timestamptz[];
    bat      timestamptz[];
    free_r   integer;
    free_b   integer;
    others   integer;
    starved  integer;
    wanting  integer;
    mine     integer;
    fair     integer;
    v_reads  bigint;
BEGIN
    INSERT INTO ops.company_budget (realm_id) VALUES (p_realm) ON CONFLICT DO NOTHING;
    SELECT b.request_until, b.batch_until INTO req, bat
      FROM ops.company_budget b WHERE b.realm_id = p_realm FOR UPDATE;
    -- After the lock: now() is the statement's start, which a wait for the lock made stale.
    t := clock_timestamp();
    req := ARRAY(SELECT u FROM unnest(req) u WHERE u > t ORDER BY u);
    bat := ARRAY(SELECT u FROM unnest(bat) u WHERE u > t ORDER BY u);

    IF p_reads > 0 THEN
        INSERT INTO ops.app_reads AS a (month, reads, updated_at)
        VALUES (date_trunc('month', t AT TIME ZONE 'UTC')::date, p_reads, t)
        ON CONFLICT (month) DO UPDATE SET reads = a.reads + EXCLUDED.reads, updated_at = t
        RETURNING a.reads INTO v_reads;
    ELSE
        SELECT a.reads INTO v_reads FROM ops.app_reads a
         WHERE a.month = date_trunc('month', t AT TIME ZONE 'UTC')::date;
    END IF;
    month_reads := coalesce(v_reads, 0);
    cap_reached := p_read_cap IS NOT NULL AND month_reads >= p_read_cap;

    SELECT extract(epoch FROM c.paused_until - t)::float8 INTO paused_for
      FROM ops.company_throttle c WHERE c.realm_id = p_realm AND c.paused_until > t;

    requests := 0;
    batches := 0;
    permit_wait := NULL;
    IF (p_requests > 0 OR p_batches > 0) AND paused_for IS NULL AND NOT cap_reached THEN
        free_r := greatest(p_requests_per_window - cardinality(req), 0);
        free_b := greatest(p_batches_per_window - cardinality(bat), 0);
        IF p_batches > 0 THEN
            IF free_b >= p_batches AND free_r >= p_requests THEN
                requests := p_requests;
                batches := p_batches;
            ELSE
                permit_wait := greatest(
                    CASE WHEN free_r < p_requests THEN
                        extract(epoch FROM req[cardinality(req) - p_requests_per_window + p_requests] - t)
                    END,
                    CASE WHEN free_b < p_batches THEN
                        extract(epoch FROM bat[cardinality(bat) - p_batches_per_window + p_batches] - t)
                    END);
            END IF;
        ELSE
            requests := least(p_requests, free_r);
            IF requests = 0 THEN
                permit_wait := extract(epoch FROM req[cardinality(req) - p_requests_per_window + 1] - t);
            END IF;
        END IF;
        req := req || array_fill(t + make_interval(secs => p_counts_for), ARRAY[requests]);
        bat := bat || array_fill(t + make_interval(secs => p_counts_for), ARRAY[batches]);
    END IF;
    UPDATE ops.company_budget b SET request_until = req, batch_until = bat
     WHERE b.realm_id = p_realm;

    -- Seats: the other holders' live rows first.
    DELETE FROM ops.company_seats s WHERE s.realm_id = p_realm AND s.expires_at <= t;
    SELECT coalesce(sum(s.seats), 0),
           count(*) FILTER (WHERE s.wanted > s.seats),
           count(*) FILTER (WHERE s.wanted > 0)
      INTO others, starved, wanting
      FROM ops.company_seats s WHERE s.realm_id = p_realm AND s.holder <> p_holder;
    SELECT s.seats INTO mine FROM ops.company_seats s
     WHERE s.realm_id = p_realm AND s.holder = p_holder;
    -- Fair share when others want more than they hold: the limit split among the holders
    -- that want any. The holder gives back what is over it as its requests finish.
    fair := CASE WHEN starved > 0
                 THEN greatest(ceil(p_max_seats::numeric / (wanting + 1))::integer, 1)
                 ELSE p_max_seats END;
    seat_cap := least(fair, greatest(p_max_seats - others, 0));
    seats := greatest(least(p_keep, coalesce(mine, 0)), least(p_seats, seat_cap));
    IF seats > 0 OR p_wanted > 0 THEN
        INSERT INTO ops.company_seats AS s (realm_id, holder, seats, wanted, expires_at)
        VALUES (p_realm, p_holder, seats, p_wanted, t + make_interval(secs => p_seat_lease))
        ON CONFLICT (realm_id, holder) DO UPDATE
           SET seats = EXCLUDED.seats, wanted = EXCLUDED.wanted,
               expires_at = EXCLUDED.expires_at;
    ELSE
        DELETE FROM ops.company_seats s WHERE s.realm_id = p_realm AND s.holder = p_holder;
    END IF;
    RETURN NEXT;
END
$$;

-- Superseded by ops.company_budget (the per-process request start times of the last minute).
DROP TABLE ops.company_requests;
