-- Every other QBO entity gets its raw table, shaped like raw.qb_invoices; and every raw
-- table gets deleted_at_utc: a record QBO reports deleted (CDC status "Deleted") keeps its
-- last payload and is marked, never dropped.
ALTER TABLE raw.qb_invoices ADD COLUMN deleted_at_utc timestamptz;
ALTER TABLE raw.qb_customers ADD COLUMN deleted_at_utc timestamptz;
ALTER TABLE raw.qb_items ADD COLUMN deleted_at_utc timestamptz;
COMMENT ON COLUMN raw.qb_invoices.deleted_at_utc IS 'When QBO deleted the record (its LastUpdatedTime in the CDC delete); NULL while it exists';

CREATE TABLE raw.qb_accounts (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_attachables (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_bills (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_bill_payments (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_budgets (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_classes (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_company_currencies (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_company_info (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_credit_card_payments (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_credit_memos (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_customer_types (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_departments (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_deposits (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_employees (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_estimates (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_journal_codes (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_journal_entries (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_payments (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_payment_methods (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_preferences (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_purchases (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_purchase_orders (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_recurring_transactions (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_refund_receipts (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_sales_receipts (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_tax_agencies (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_tax_codes (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_tax_rates (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_terms (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_time_activities (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_transfers (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_vendors (LIKE raw.qb_invoices INCLUDING ALL);
CREATE TABLE raw.qb_vendor_credits (LIKE raw.qb_invoices INCLUDING ALL);
