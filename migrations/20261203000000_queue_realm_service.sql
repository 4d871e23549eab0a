-- The queue (src/queue): fair claims across companies, and runs that wait for a worker.
--
-- A worker that serves every company claims from the company served least recently first;
-- each claim stamps the company here (src/queue/claim.rs, claim_next_any).
CREATE TABLE ops.realm_service (
    realm_id        text        PRIMARY KEY,
    last_served_at  timestamptz NOT NULL
);
