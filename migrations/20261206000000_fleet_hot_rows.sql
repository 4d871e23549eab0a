-- Cheaper coordination for a fleet (issue 10), after profiling `qbo-bench --only fleet` with
-- pg_stat_statements: most of Postgres's time per request went to the app's read counter and
-- to the window and sweep claims (whose statements, in crates/qbo-core/src/queue, now look
-- at one run at a time instead of every claimable window of every company).
--
-- 1. `ops.app_reads` had one row per month, which every budget lease of every company
--    updated: all the fleet's leases queued on that row's lock (4 ms a lease at 20
--    companies). It now has one row per month and company; the app's month is their sum,
--    which `ops.lease_budget` reads only when a cap is set (`p_read_cap`). Without a cap, the
--    `month_reads` it returns is the company's own.
-- 2. The budget's row is locked first and inserted only when missing, instead of an
--    INSERT ... ON CONFLICT DO NOTHING on every lease.
-- 3. A queued run's sweep is due only when none of its windows is `pending` or `running`:
--    an index of exactly those windows answers that with one probe per run.

ALTER TABLE ops.app_reads ADD COLUMN realm_id text NOT NULL DEFAULT '';
ALTER TABLE ops.app_reads DROP CONSTRAINT app_reads_pkey;
ALTER TABLE ops.app_reads ADD PRIMARY KEY (month, realm_id);
-- Rows from before this migration keep realm '' (reads no company was named for).
ALTER TABLE ops.app_reads ALTER COLUMN realm_id DROP DEFAULT;

CREATE INDEX backfill_report_open_idx ON ops.backfill_report (run_id)
    WHERE status IN ('pending', 'running');

-- Returns as before, except `month_reads` (see 1.).
CREATE OR REPLACE FUNCTION ops.lease_budget(
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
    v_month  date;
BEGIN
    -- The row exists but for a company's first lease: lock it first, and insert only when
    -- it is missing (an INSERT ... ON CONFLICT on every lease waits for the lease that
    -- updated the row last to commit before it can tell the row is there).
    SELECT b.request_until, b.batch_until INTO req, bat
      FROM ops.company_budget b WHERE b.realm_id = p_realm FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO ops.company_budget (realm_id) VALUES (p_realm) ON CONFLICT DO NOTHING;
        SELECT b.request_until, b.batch_until INTO req, bat
          FROM ops.company_budget b WHERE b.realm_id = p_realm FOR UPDATE;
    END IF;
    -- After the lock: now() is the statement's start, which a wait for the lock made stale.
    t := clock_timestamp();
    req := ARRAY(SELECT u FROM unnest(req) u WHERE u > t ORDER BY u);
    bat := ARRAY(SELECT u FROM unnest(bat) u WHERE u > t ORDER BY u);

    -- The company's own row of the month: locked only by its own leases, which already
    -- take turns on its budget row.
    v_month := date_trunc('month', t AT TIME ZONE 'UTC')::date;
    IF p_reads > 0 THEN
        INSERT INTO ops.app_reads AS a (month, realm_id, reads, updated_at)
        VALUES (v_month, p_realm, p_reads, t)
        ON CONFLICT (month, realm_id) DO UPDATE
           SET reads = a.reads + EXCLUDED.reads, updated_at = t
        RETURNING a.reads INTO month_reads;
    ELSE
        SELECT a.reads INTO month_reads FROM ops.app_reads a
         WHERE a.month = v_month AND a.realm_id = p_realm;
    END IF;
    -- The app's figure is the sum over its companies: read only when a cap is checked
    -- against it (it reads a row per company), which is what a cap costs.
    IF p_read_cap IS NOT NULL THEN
        SELECT sum(a.reads) INTO month_reads FROM ops.app_reads a WHERE a.month = v_month;
    END IF;
    month_reads := coalesce(month_reads, 0);
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
