-- The raw zone: one table per QBO entity, the record exactly as QBO sent it plus where it
-- came from. Primary key includes the realm so many companies can share one database.
CREATE SCHEMA IF NOT EXISTS raw;

CREATE TABLE raw.qb_invoices (
    realm_id                  text        NOT NULL,
    id                        text        NOT NULL,
    payload                   jsonb       NOT NULL,
    sync_token                text        NOT NULL,
    last_updated_utc          timestamptz NOT NULL,
    ingested_at_utc           timestamptz NOT NULL DEFAULT now(),
    extract_window_start_utc  timestamptz NOT NULL,
    extract_window_end_utc    timestamptz NOT NULL,
    page_number               integer     NOT NULL,
    page_size                 integer     NOT NULL,
    request_payload           jsonb       NOT NULL,
    run_id                    uuid        NOT NULL,
    intuit_tid                text,
    PRIMARY KEY (realm_id, id)
);
CREATE INDEX qb_invoices_window_idx ON raw.qb_invoices (realm_id, extract_window_start_utc);
CREATE INDEX qb_invoices_last_updated_idx ON raw.qb_invoices (realm_id, last_updated_utc);

CREATE TABLE raw.qb_customers (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_items (LIKE raw.qb_invoices INCLUDING ALL);

COMMENT ON COLUMN raw.qb_invoices.payload IS 'The record exactly as QBO returned it';
COMMENT ON COLUMN raw.qb_invoices.request_payload IS 'The query and parameters sent to QBO (never a token)';
COMMENT ON COLUMN raw.qb_invoices.intuit_tid IS 'intuit_tid response header of the page, for Intuit support';
