-- Report loads are runs (issue 12): `qbo reports` (and `qbo sync --reports`) record a run of
-- kind `report` whose windows are the report pieces, one per (report, period piece), so
-- resume, retry-failed, leases and `qbo report` work for reports as for entities. A report
-- window's entity is `report:<ReportName>` (e.g. `report:ProfitAndLoss`), it is read via
-- `report`, and the run's window_field is `period` (its windows are report periods, not
-- LastUpdatedTime or TxnDate ranges). Report runs are never queued for `qbo worker`s.
ALTER TABLE ops.backfill_runs DROP CONSTRAINT backfill_runs_kind_check;
ALTER TABLE ops.backfill_runs ADD CONSTRAINT backfill_runs_kind_check
    CHECK (kind IN ('backfill', 'sync', 'report'));
ALTER TABLE ops.backfill_runs DROP CONSTRAINT backfill_runs_window_field_check;
ALTER TABLE ops.backfill_runs ADD CONSTRAINT backfill_runs_window_field_check
    CHECK (window_field IN ('last-updated', 'txn-date', 'period'));
ALTER TABLE ops.backfill_report DROP CONSTRAINT backfill_report_read_via_check;
ALTER TABLE ops.backfill_report ADD CONSTRAINT backfill_report_read_via_check
    CHECK (read_via IN ('query', 'whole', 'cdc', 'reconcile', 'report'));

-- The run whose window stored the piece (NULL for pieces stored before report runs).
ALTER TABLE raw.qb_reports ADD COLUMN run_id uuid;
CREATE INDEX qb_reports_run_idx ON raw.qb_reports (run_id);

-- One view per report over raw.qb_reports: the `raw.qb_report_<name>` tables issue 12
-- names. Each is that report's pieces, every column of raw.qb_reports.
CREATE VIEW raw.qb_report_profit_and_loss AS
    SELECT * FROM raw.qb_reports WHERE report_name = 'ProfitAndLoss';
CREATE VIEW raw.qb_report_profit_and_loss_detail AS
    SELECT * FROM raw.qb_reports WHERE report_name = 'ProfitAndLossDetail';
CREATE VIEW raw.qb_report_balance_sheet AS
    SELECT * FROM raw.qb_reports WHERE report_name = 'BalanceSheet';
CREATE VIEW raw.qb_report_trial_balance AS
    SELECT * FROM raw.qb_reports WHERE report_name = 'TrialBalance';
CREATE VIEW raw.qb_report_general_ledger AS
    SELECT * FROM raw.qb_reports WHERE report_name = 'GeneralLedger';
CREATE VIEW raw.qb_report_cash_flow AS
    SELECT * FROM raw.qb_reports WHERE report_name = 'CashFlow';
CREATE VIEW raw.qb_report_aged_receivables AS
    SELECT * FROM raw.qb_reports WHERE report_name = 'AgedReceivables';
CREATE VIEW raw.qb_report_aged_payables AS
    SELECT * FROM raw.qb_reports WHERE report_name = 'AgedPayables';
CREATE VIEW raw.qb_report_transaction_list AS
    SELECT * FROM raw.qb_reports WHERE report_name = 'TransactionList';
