-- QBO allows 40 batch calls a minute per company besides its 500 requests: each process also
-- publishes when it started each batch call of the last minute, so the company's processes
-- share that budget as they share the requests (started_at).
ALTER TABLE ops.company_requests
    ADD COLUMN batch_started_at timestamptz[] NOT NULL DEFAULT '{}';
