-- How a report row's records were read (query windows, the whole entity, change data
-- capture, or an id reconciliation that finds deletes) and how many it marked deleted.
ALTER TABLE ops.backfill_report
    ADD COLUMN deleted bigint NOT NULL DEFAULT 0,
    ADD COLUMN read_via text NOT NULL DEFAULT 'query'
        CHECK (read_via IN ('query', 'whole', 'cdc', 'reconcile'));
