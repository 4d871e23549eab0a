-- The cash-basis ledger: what QBO's ProfitAndLoss with accounting_method=Cash adds up.
--
-- One row per posting to an income or expense account (AccountClassification Revenue or
-- Expense) as QBO recognizes it on the cash basis:
--   * an invoice's (bill's) income and expense postings are recognized when, and as far as,
--     payments (bill payments) are applied to it: each `Payment` line linked to the invoice
--     (each `BillPayment` line linked to the bill) recognizes every one of the document's
--     income and expense postings x (amount applied / document TotalAmt), on the payment's
--     date, rounded to the cent posting by posting. The ratio is taken in the document's
--     currency (a payment is in its customer's or vendor's currency), the posting in home
--     currency at the document's rate, as the accrual ledger booked it. A credit memo
--     (vendor credit) applied to an invoice (bill) is such a payment line too: QBO's API
--     shows the application as a Payment (BillPayment) linked to both;
--   * everything else posts as on the accrual basis, on its own date: sales receipts,
--     refund receipts, expenses and checks and card charges (`Purchase`: QBO treats a card
--     charge as paid), deposits, journal entries (QBO: a journal entry that touches an
--     income or expense account shows on both bases, even beside an A/R or A/P line), and
--     credit memos and vendor credits (they show as negative income or expense on their
--     own date, applied or not).
-- Balance-sheet postings are not restated (QBO's cash-basis balance sheet and trial balance
-- move A/R and A/P in ways its documentation does not specify), so this ledger serves the
-- cash-basis P&L only. Built from staging.general_ledger and staging.transaction_lines:
-- refresh it after them (`qbo model refresh` does).

CREATE MATERIALIZED VIEW staging.general_ledger_cash AS
WITH applications AS (
    -- One line of a payment (bill payment) applying money to an invoice (bill).
    SELECT l.realm_id,
           l.linked_txn_type AS document_entity,
           l.linked_txn_id AS document_id,
           l.source_entity AS payment_entity,
           l.txn_id AS payment_id,
           l.line_index AS payment_line_index,
           l.txn_date AS paid_date,
           l.amount AS applied
    FROM staging.transaction_lines l
    WHERE l.sub_index = 0 AND l.amount IS NOT NULL AND l.amount <> 0
      AND ((l.source_entity = 'Payment' AND l.linked_txn_type = 'Invoice')
           OR (l.source_entity = 'BillPayment' AND l.linked_txn_type = 'Bill'))
),
profit_and_loss AS (
    SELECT g.*
    FROM staging.general_ledger g
    WHERE g.account_classification IN ('Revenue', 'Expense')
)
SELECT g.realm_id,
       a.paid_date AS txn_date,
       g.txn_date AS document_date,
       g.account_id, g.account_name, g.account_type, g.account_classification,
       round(g.amount * a.applied / t.total_amount, 2) AS amount,
       round(g.home_amount * a.applied / t.total_amount, 2) AS home_amount,
       g.source_entity, g.source_id, g.doc_number, g.posting_key,
       a.payment_entity, a.payment_id, a.payment_line_index,
       a.payment_entity || ':' || a.payment_id || ':' || a.payment_line_index AS recognition_key,
       g.line_index, g.sub_index, g.line_id, g.description,
       g.class_id, g.department_id, g.customer_id, g.vendor_id
FROM profit_and_loss g
JOIN staging.transactions t
    ON t.realm_id = g.realm_id AND t.source_entity = g.source_entity AND t.txn_id = g.source_id
JOIN applications a
    ON a.realm_id = g.realm_id AND a.document_entity = g.source_entity AND a.document_id = g.source_id
WHERE g.source_entity IN ('Invoice', 'Bill') AND t.total_amount <> 0
UNION ALL
SELECT g.realm_id,
       g.txn_date,
       g.txn_date AS document_date,
       g.account_id, g.account_name, g.account_type, g.account_classification,
       g.amount,
       g.home_amount,
       g.source_entity, g.source_id, g.doc_number, g.posting_key,
       NULL, NULL, NULL,
       '' AS recognition_key,
       g.line_index, g.sub_index, g.line_id, g.description,
       g.class_id, g.department_id, g.customer_id, g.vendor_id
FROM profit_and_loss g
WHERE g.source_entity NOT IN ('Invoice', 'Bill')
WITH NO DATA;

CREATE UNIQUE INDEX general_ledger_cash_key
    ON staging.general_ledger_cash (realm_id, source_entity, source_id, posting_key, recognition_key);
CREATE INDEX general_ledger_cash_account_idx
    ON staging.general_ledger_cash (realm_id, account_id, txn_date);

COMMENT ON MATERIALIZED VIEW staging.general_ledger_cash IS 'Postings to income and expense accounts on the cash basis: invoices and bills as payments are applied to them (pro rata, on the payment date), everything else on its own date; see the migration for the rules';
COMMENT ON COLUMN staging.general_ledger_cash.txn_date IS 'The date QBO recognizes the posting on the cash basis: the payment''s date for an invoice or bill, else the transaction''s';
COMMENT ON COLUMN staging.general_ledger_cash.recognition_key IS 'Payment:<id>:<line_index> or BillPayment:<id>:<line_index> for a share of an invoice or bill; empty for a cash transaction';
