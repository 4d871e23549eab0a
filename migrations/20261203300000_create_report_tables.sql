-- QBO reports as `qbo reports` loads them. Reports cannot be paged, so a range is asked for
-- in pieces (one per --period, split further when QBO answers that a piece is too large);
-- each piece is one request, stored whole and exactly as received in raw.qb_reports, keyed
-- by its parameters, so loading the same piece again replaces it instead of adding a copy.
CREATE TABLE raw.qb_reports (
    realm_id            text        NOT NULL,
    report_name         text        NOT NULL,
    -- md5 of the canonical parameter text (`params_text`), the key of a request.
    params_hash         text        NOT NULL,
    params_text         text        NOT NULL,
    params              jsonb       NOT NULL,
    period_start        date        NOT NULL,
    period_end          date        NOT NULL,
    accounting_method   text        NOT NULL,
    -- The wider piece QBO refused as too large, when this one is part of its split.
    split_from_start    date,
    split_from_end      date,
    payload             jsonb       NOT NULL,
    intuit_tid          text,
    loaded_at_utc       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (realm_id, report_name, params_hash),
    CHECK (period_end >= period_start)
);
CREATE INDEX qb_reports_period_idx ON raw.qb_reports (realm_id, report_name, period_start, period_end);

-- Every report flattened: one row per (report row, money or text column), typed. Section
-- rows contribute their Summary (row_kind 'summary'); data rows their cells ('data').
-- `section_path` is the headers above the row (e.g. {Income} or {ASSETS,Current Assets}).
CREATE TABLE raw.qb_report_cells (
    realm_id        text    NOT NULL,
    report_name     text    NOT NULL,
    params_hash     text    NOT NULL,
    row_index       integer NOT NULL,
    column_index    integer NOT NULL,
    row_kind        text    NOT NULL CHECK (row_kind IN ('data', 'summary')),
    section_path    text[]  NOT NULL,
    section_group   text,
    label           text,
    account_id      text,
    column_key      text,
    column_title    text,
    column_type     text,
    column_start    date,
    column_end      date,
    value           text    NOT NULL,
    -- The value of a Money column as a number; NULL for a blank cell or another column type.
    amount          numeric,
    PRIMARY KEY (realm_id, report_name, params_hash, row_index, column_index),
    FOREIGN KEY (realm_id, report_name, params_hash)
        REFERENCES raw.qb_reports (realm_id, report_name, params_hash) ON DELETE CASCADE
);
CREATE INDEX qb_report_cells_account_idx ON raw.qb_report_cells (realm_id, report_name, account_id);

COMMENT ON TABLE raw.qb_reports IS 'QBO reports exactly as received, one row per request (qbo reports)';
COMMENT ON TABLE raw.qb_report_cells IS 'raw.qb_reports flattened: one row per report row and column';
