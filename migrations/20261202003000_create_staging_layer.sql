-- The analysis-ready staging layer: typed tables built by SQL from the raw zone, so users
-- query transaction lines and a general ledger without writing JSON paths.
--
-- Live rows only (deleted_at_utc IS NULL); realm_id in every key; amounts numeric (jsonb
-- keeps QBO's decimal text exactly, so ::numeric loses nothing), dates date, flags boolean.
--
-- Three materialized views hold the work (JSON unnesting is what costs: re-doing it on every
-- query of a large company takes seconds to minutes), `qbo model refresh` rebuilds them
-- (CONCURRENTLY once populated, so readers are never blocked); everything else in the schema
-- is a plain view over them or over small name lists, and so always as current as they are.
-- They are created empty: a migration must stay fast on a database that already holds
-- millions of raw rows; the first `qbo model refresh` fills them.
CREATE SCHEMA IF NOT EXISTS staging;

-- Every live transaction of every type, as (type, realm, id, payload). Internal to the
-- layer: the materialized views below read it.
CREATE VIEW staging.raw_transactions AS
          SELECT 'Invoice'::text AS source_entity, realm_id, id, payload FROM raw.qb_invoices WHERE deleted_at_utc IS NULL
UNION ALL SELECT 'SalesReceipt', realm_id, id, payload FROM raw.qb_sales_receipts WHERE deleted_at_utc IS NULL
UNION ALL SELECT 'CreditMemo', realm_id, id, payload FROM raw.qb_credit_memos WHERE deleted_at_utc IS NULL
UNION ALL SELECT 'RefundReceipt', realm_id, id, payload FROM raw.qb_refund_receipts WHERE deleted_at_utc IS NULL
UNION ALL SELECT 'Estimate', realm_id, id, payload FROM raw.qb_estimates WHERE deleted_at_utc IS NULL
UNION ALL SELECT 'Bill', realm_id, id, payload FROM raw.qb_bills WHERE deleted_at_utc IS NULL
UNION ALL SELECT 'VendorCredit', realm_id, id, payload FROM raw.qb_vendor_credits WHERE deleted_at_utc IS NULL
UNION ALL SELECT 'Purchase', realm_id, id, payload FROM raw.qb_purchases WHERE deleted_at_utc IS NULL
UNION ALL SELECT 'PurchaseOrder', realm_id, id, payload FROM raw.qb_purchase_orders WHERE deleted_at_utc IS NULL
UNION ALL SELECT 'JournalEntry', realm_id, id, payload FROM raw.qb_journal_entries WHERE deleted_at_utc IS NULL
UNION ALL SELECT 'Deposit', realm_id, id, payload FROM raw.qb_deposits WHERE deleted_at_utc IS NULL
UNION ALL SELECT 'Payment', realm_id, id, payload FROM raw.qb_payments WHERE deleted_at_utc IS NULL
UNION ALL SELECT 'BillPayment', realm_id, id, payload FROM raw.qb_bill_payments WHERE deleted_at_utc IS NULL
UNION ALL SELECT 'Transfer', realm_id, id, payload FROM raw.qb_transfers WHERE deleted_at_utc IS NULL
UNION ALL SELECT 'CreditCardPayment', realm_id, id, payload FROM raw.qb_credit_card_payments WHERE deleted_at_utc IS NULL;

-- Name lists the ledger and users join to: small, so plain views.
CREATE VIEW staging.accounts AS
SELECT realm_id, id AS account_id,
       payload->>'Name' AS name,
       payload->>'FullyQualifiedName' AS fully_qualified_name,
       payload->>'AcctNum' AS account_number,
       payload->>'AccountType' AS account_type,
       payload->>'AccountSubType' AS account_sub_type,
       payload->>'Classification' AS classification,
       payload->'ParentRef'->>'value' AS parent_account_id,
       coalesce((payload->>'Active')::boolean, true) AS active,
       (payload->>'CurrentBalance')::numeric AS current_balance,
       payload->'CurrencyRef'->>'value' AS currency
FROM raw.qb_accounts WHERE deleted_at_utc IS NULL;

CREATE VIEW staging.customers AS
SELECT realm_id, id AS customer_id,
       payload->>'DisplayName' AS display_name,
       payload->>'CompanyName' AS company_name,
       payload->'ParentRef'->>'value' AS parent_customer_id,
       coalesce((payload->>'Active')::boolean, true) AS active,
       (payload->>'Balance')::numeric AS balance,
       payload->'CurrencyRef'->>'value' AS currency
FROM raw.qb_customers WHERE deleted_at_utc IS NULL;

CREATE VIEW staging.vendors AS
SELECT realm_id, id AS vendor_id,
       payload->>'DisplayName' AS display_name,
       payload->>'CompanyName' AS company_name,
       coalesce((payload->>'Active')::boolean, true) AS active,
       (payload->>'Balance')::numeric AS balance,
       payload->'CurrencyRef'->>'value' AS currency
FROM raw.qb_vendors WHERE deleted_at_utc IS NULL;

CREATE VIEW staging.items AS
SELECT realm_id, id AS item_id,
       payload->>'Name' AS name,
       payload->>'FullyQualifiedName' AS fully_qualified_name,
       payload->>'Type' AS item_type,
       coalesce((payload->>'Active')::boolean, true) AS active,
       (payload->>'UnitPrice')::numeric AS unit_price,
       (payload->>'PurchaseCost')::numeric AS purchase_cost,
       payload->'IncomeAccountRef'->>'value' AS income_account_id,
       payload->'ExpenseAccountRef'->>'value' AS expense_account_id,
       payload->'AssetAccountRef'->>'value' AS asset_account_id
FROM raw.qb_items WHERE deleted_at_utc IS NULL;

-- The accounts QBO posts to when a transaction does not name one (an invoice without
-- ARAccountRef goes to the company's A/R account, sales tax to its tax liability account):
-- per realm, the active account of that type with the lowest id.
CREATE VIEW staging.default_accounts AS
SELECT realm_id,
       (array_agg(account_id ORDER BY active DESC, length(account_id), account_id)
            FILTER (WHERE account_type = 'Accounts Receivable'))[1] AS accounts_receivable,
       (array_agg(account_id ORDER BY active DESC, length(account_id), account_id)
            FILTER (WHERE account_type = 'Accounts Payable'))[1] AS accounts_payable,
       (array_agg(account_id ORDER BY active DESC, length(account_id), account_id)
            FILTER (WHERE account_sub_type = 'UndepositedFunds'))[1] AS undeposited_funds,
       (array_agg(account_id ORDER BY active DESC, length(account_id), account_id)
            FILTER (WHERE account_sub_type IN ('GlobalTaxPayable', 'SalesTaxPayable')))[1] AS sales_tax_payable
FROM staging.accounts
GROUP BY realm_id;

-- One row per transaction: the header, typed.
CREATE MATERIALIZED VIEW staging.transactions AS
SELECT t.realm_id,
       t.source_entity,
       t.id AS txn_id,
       p->>'DocNumber' AS doc_number,
       (p->>'TxnDate')::date AS txn_date,
       (p->>'DueDate')::date AS due_date,
       p->'CustomerRef'->>'value' AS customer_id,
       coalesce(p->'VendorRef'->>'value',
                CASE WHEN p->'EntityRef'->>'type' = 'Vendor' THEN p->'EntityRef'->>'value' END) AS vendor_id,
       p->'EntityRef'->>'value' AS payee_id,
       p->'EntityRef'->>'type' AS payee_type,
       p->'ClassRef'->>'value' AS class_id,
       p->'DepartmentRef'->>'value' AS department_id,
       p->'CurrencyRef'->>'value' AS currency,
       coalesce((p->>'ExchangeRate')::numeric, 1) AS exchange_rate,
       -- Transfers and credit card payments carry Amount, everything else TotalAmt.
       coalesce((p->>'TotalAmt')::numeric, (p->>'Amount')::numeric) AS total_amount,
       coalesce((p->>'HomeTotalAmt')::numeric,
                coalesce((p->>'TotalAmt')::numeric, (p->>'Amount')::numeric)
                    * coalesce((p->>'ExchangeRate')::numeric, 1)) AS home_total_amount,
       (p->>'Balance')::numeric AS balance,
       (p->'TxnTaxDetail'->>'TotalTax')::numeric AS total_tax,
       (p->>'UnappliedAmt')::numeric AS unapplied_amount,
       p->'ARAccountRef'->>'value' AS ar_account_id,
       p->'APAccountRef'->>'value' AS ap_account_id,
       p->'DepositToAccountRef'->>'value' AS deposit_to_account_id,
       -- The bank or card money leaves from: an expense's account, a bill payment's check
       -- or card account, a credit card payment's bank account, a transfer's source.
       coalesce(p->'AccountRef'->>'value',
                p->'CheckPayment'->'BankAccountRef'->>'value',
                p->'CreditCardPayment'->'CCAccountRef'->>'value',
                p->'BankAccountRef'->>'value',
                p->'FromAccountRef'->>'value') AS from_account_id,
       -- Where a transfer or a credit card payment puts it.
       coalesce(p->'ToAccountRef'->>'value', p->'CreditCardAccountRef'->>'value') AS to_account_id,
       coalesce(p->>'PaymentType', p->>'PayType') AS payment_type,
       coalesce((p->>'Credit')::boolean, false) AS is_credit,
       coalesce((p->>'Adjustment')::boolean, false) AS is_adjustment,
       p->>'TxnStatus' AS txn_status,
       p->>'PrivateNote' AS private_note,
       (p->'MetaData'->>'CreateTime')::timestamptz AS created_at,
       (p->'MetaData'->>'LastUpdatedTime')::timestamptz AS updated_at
FROM staging.raw_transactions t
-- Detoasted once per row: each `payload->` of a stored (compressed) value would otherwise
-- decompress the whole payload again. `|| '{}'` makes an in-memory copy; OFFSET 0 keeps the
-- planner from inlining it back.
CROSS JOIN LATERAL (SELECT t.payload || '{}'::jsonb AS p OFFSET 0) x
WITH NO DATA;
CREATE UNIQUE INDEX transactions_key ON staging.transactions (realm_id, source_entity, txn_id);
CREATE INDEX transactions_date_idx ON staging.transactions (realm_id, txn_date);

-- One row per transaction line. A bundle (GroupLineDetail) is one row (sub_index 0) and
-- each line inside it another (sub_index 1, 2, ...): the inner lines carry the items and
-- accounts, the bundle row only their sum. Lines are keyed by their position in QBO's
-- `Line` array (line_index, from 1): sub-total and discount lines have no Id.
CREATE MATERIALIZED VIEW staging.transaction_lines AS
SELECT t.realm_id,
       t.source_entity,
       t.id AS txn_id,
       top.idx::integer AS line_index,
       coalesce(x.sub_idx, 0)::integer AS sub_index,
       ln->>'Id' AS line_id,
       (ln->>'LineNum')::integer AS line_num,
       CASE WHEN x.sub_idx IS NOT NULL THEN top.l->>'Id' END AS parent_line_id,
       ln->>'DetailType' AS detail_type,
       ln->>'Description' AS description,
       (ln->>'Amount')::numeric AS amount,
       (ln->>'Amount')::numeric * coalesce((p->>'ExchangeRate')::numeric, 1) AS home_amount,
       coalesce(d->'AccountRef'->>'value', d->'ItemAccountRef'->>'value',
                d->'DiscountAccountRef'->>'value') AS account_id,
       coalesce(d->'ItemRef'->>'value', d->'GroupItemRef'->>'value') AS item_id,
       coalesce(d->'ClassRef'->>'value', p->'ClassRef'->>'value') AS class_id,
       coalesce(d->'DepartmentRef'->>'value', p->'DepartmentRef'->>'value') AS department_id,
       d->'CustomerRef'->>'value' AS customer_id,
       coalesce(d->'Entity'->'EntityRef'->>'value', d->'Entity'->>'value') AS entity_id,
       coalesce(d->'Entity'->>'Type', d->'Entity'->>'type') AS entity_type,
       coalesce((d->>'Qty')::numeric, (d->>'Quantity')::numeric) AS quantity,
       (d->>'UnitPrice')::numeric AS unit_price,
       (d->>'DiscountPercent')::numeric AS discount_percent,
       d->'TaxCodeRef'->>'value' AS tax_code_id,
       d->>'BillableStatus' AS billable_status,
       d->>'PostingType' AS posting_type,
       ln->'LinkedTxn'->0->>'TxnId' AS linked_txn_id,
       ln->'LinkedTxn'->0->>'TxnType' AS linked_txn_type,
       (p->>'TxnDate')::date AS txn_date,
       p->>'DocNumber' AS doc_number,
       p->'CurrencyRef'->>'value' AS currency,
       coalesce((p->>'ExchangeRate')::numeric, 1) AS exchange_rate
FROM staging.raw_transactions t
CROSS JOIN LATERAL (SELECT t.payload || '{}'::jsonb AS p OFFSET 0) h -- detoasted once, as above
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(p->'Line') = 'array' THEN p->'Line' ELSE '[]'::jsonb END
) WITH ORDINALITY AS top(l, idx)
CROSS JOIN LATERAL (
    SELECT top.l AS ln, NULL::bigint AS sub_idx
    UNION ALL
    SELECT c.l, c.idx
    FROM jsonb_array_elements(
        CASE WHEN jsonb_typeof(top.l->'GroupLineDetail'->'Line') = 'array'
             THEN top.l->'GroupLineDetail'->'Line' ELSE '[]'::jsonb END
    ) WITH ORDINALITY AS c(l, idx)
) x
CROSS JOIN LATERAL (SELECT x.ln -> (x.ln->>'DetailType') AS d) dt
WITH NO DATA;
CREATE UNIQUE INDEX transaction_lines_key
    ON staging.transaction_lines (realm_id, source_entity, txn_id, line_index, sub_index);
CREATE INDEX transaction_lines_account_idx ON staging.transaction_lines (realm_id, account_id);

-- The general ledger: every posting of every posting transaction type in one shape, in the
-- spirit of fivetran/dbt_quickbooks' general_ledger. `sign` is +1 for a debit, -1 for a
-- credit. Line postings come from the lines, the other side from the header's total (QBO's
-- own figure), so a transaction whose lines do not add up to its TotalAmt shows as
-- unbalanced instead of being silently forced to balance.
--
--  Invoice        Dr A/R TotalAmt;         Cr each item line's income account; Dr discounts; Cr sales tax
--  SalesReceipt   Dr deposit-to TotalAmt;  Cr income, Dr discounts, Cr sales tax
--  CreditMemo     the invoice's postings reversed
--  RefundReceipt  the sales receipt's postings reversed (Cr the refund's account)
--  Bill           Cr A/P TotalAmt;         Dr each expense line (item lines: the item's
--                                          expense account, its asset account for inventory,
--                                          its income account when it has neither, as QBO does)
--  VendorCredit   the bill's postings reversed
--  Purchase       Cr the bank/card account; Dr each expense line (reversed for a card credit)
--  JournalEntry   each line on its PostingType
--  Deposit        Dr deposit-to TotalAmt;  Cr each DepositLineDetail account; a line that
--                                          deposits a payment credits Undeposited Funds
--  Payment        Dr deposit-to (Undeposited Funds when absent) TotalAmt; Cr A/R TotalAmt
--  BillPayment    Dr A/P TotalAmt;         Cr the check's bank or the card account
--  Transfer       Dr to-account, Cr from-account
--  CreditCardPayment  Dr the card account, Cr the bank account
-- Estimates and purchase orders post nothing.
-- Approximations: tax posts to the realm's sales-tax liability account (QBO posts to each
-- tax agency's account); a deposited payment is taken from Undeposited Funds (QBO takes it
-- from wherever that payment was deposited); an item line without ItemAccountRef uses the
-- item's current accounts; tax on purchases is debited to the tax account (QBO may fold
-- non-recoverable tax into the expense).
CREATE MATERIALIZED VIEW staging.general_ledger AS
WITH line_postings AS (
    SELECT l.realm_id, l.source_entity, l.txn_id,
           'line:' || l.line_index || CASE WHEN l.sub_index > 0 THEN '.' || l.sub_index ELSE '' END AS posting_key,
           l.line_index, l.sub_index, l.line_id,
           CASE
               WHEN l.detail_type = 'SalesItemLineDetail' THEN coalesce(l.account_id, i.income_account_id)
               WHEN l.detail_type = 'ItemBasedExpenseLineDetail' THEN
                   -- QBO posts a purchase of an item without purchase information to the
                   -- item's income account.
                   coalesce(CASE WHEN i.item_type = 'Inventory' THEN i.asset_account_id END,
                            i.expense_account_id, i.income_account_id)
               WHEN l.detail_type IS NULL AND l.source_entity = 'Deposit' THEN da.undeposited_funds
               ELSE l.account_id
           END AS account_id,
           CASE
               WHEN l.source_entity IN ('Invoice', 'SalesReceipt') THEN
                   CASE l.detail_type WHEN 'SalesItemLineDetail' THEN -1 WHEN 'DiscountLineDetail' THEN 1 END
               WHEN l.source_entity IN ('CreditMemo', 'RefundReceipt') THEN
                   CASE l.detail_type WHEN 'SalesItemLineDetail' THEN 1 WHEN 'DiscountLineDetail' THEN -1 END
               WHEN l.source_entity = 'Bill' OR (l.source_entity = 'Purchase' AND NOT t.is_credit) THEN
                   CASE WHEN l.detail_type IN ('ItemBasedExpenseLineDetail', 'AccountBasedExpenseLineDetail') THEN 1 END
               WHEN l.source_entity = 'VendorCredit' OR (l.source_entity = 'Purchase' AND t.is_credit) THEN
                   CASE WHEN l.detail_type IN ('ItemBasedExpenseLineDetail', 'AccountBasedExpenseLineDetail') THEN -1 END
               WHEN l.source_entity = 'JournalEntry' AND l.detail_type = 'JournalEntryLineDetail' THEN
                   CASE l.posting_type WHEN 'Debit' THEN 1 WHEN 'Credit' THEN -1 END
               WHEN l.source_entity = 'Deposit'
                    AND (l.detail_type = 'DepositLineDetail' OR (l.detail_type IS NULL AND l.linked_txn_id IS NOT NULL)) THEN -1
           END AS sign,
           l.amount, l.description, l.class_id, l.department_id,
           coalesce(l.customer_id, CASE WHEN lower(l.entity_type) = 'customer' THEN l.entity_id END, t.customer_id) AS customer_id,
           coalesce(CASE WHEN lower(l.entity_type) = 'vendor' THEN l.entity_id END, t.vendor_id) AS vendor_id
    FROM staging.transaction_lines l
    JOIN staging.transactions t USING (realm_id, source_entity, txn_id)
    LEFT JOIN staging.items i ON i.realm_id = l.realm_id AND i.item_id = l.item_id
    LEFT JOIN staging.default_accounts da ON da.realm_id = l.realm_id
),
header_postings AS (
    SELECT t.realm_id, t.source_entity, t.txn_id, h.posting_key,
           NULL::integer AS line_index, NULL::integer AS sub_index, NULL::text AS line_id,
           h.account_id, h.sign, h.amount, NULL::text AS description,
           t.class_id, t.department_id, t.customer_id, t.vendor_id
    FROM staging.transactions t
    LEFT JOIN staging.default_accounts da ON da.realm_id = t.realm_id
    CROSS JOIN LATERAL (VALUES
        ('total',
         CASE t.source_entity
             WHEN 'Invoice' THEN coalesce(t.ar_account_id, da.accounts_receivable)
             WHEN 'CreditMemo' THEN coalesce(t.ar_account_id, da.accounts_receivable)
             WHEN 'SalesReceipt' THEN coalesce(t.deposit_to_account_id, da.undeposited_funds)
             WHEN 'RefundReceipt' THEN coalesce(t.deposit_to_account_id, t.from_account_id)
             WHEN 'Bill' THEN coalesce(t.ap_account_id, da.accounts_payable)
             WHEN 'VendorCredit' THEN coalesce(t.ap_account_id, da.accounts_payable)
             WHEN 'Purchase' THEN t.from_account_id
             WHEN 'Deposit' THEN t.deposit_to_account_id
             WHEN 'Payment' THEN coalesce(t.deposit_to_account_id, da.undeposited_funds)
             WHEN 'BillPayment' THEN coalesce(t.ap_account_id, da.accounts_payable)
             WHEN 'Transfer' THEN t.to_account_id
             WHEN 'CreditCardPayment' THEN t.to_account_id
         END,
         CASE
             WHEN t.source_entity IN ('Invoice', 'SalesReceipt', 'VendorCredit', 'Deposit', 'Payment',
                                      'BillPayment', 'Transfer', 'CreditCardPayment') THEN 1
             WHEN t.source_entity IN ('CreditMemo', 'RefundReceipt', 'Bill') THEN -1
             WHEN t.source_entity = 'Purchase' THEN CASE WHEN t.is_credit THEN 1 ELSE -1 END
         END,
         t.total_amount),
        ('counter',
         CASE t.source_entity
             WHEN 'Payment' THEN coalesce(t.ar_account_id, da.accounts_receivable)
             WHEN 'BillPayment' THEN t.from_account_id
             WHEN 'Transfer' THEN t.from_account_id
             WHEN 'CreditCardPayment' THEN t.from_account_id
         END,
         CASE WHEN t.source_entity IN ('Payment', 'BillPayment', 'Transfer', 'CreditCardPayment') THEN -1 END,
         t.total_amount),
        ('tax',
         da.sales_tax_payable,
         CASE
             WHEN t.source_entity IN ('Invoice', 'SalesReceipt', 'VendorCredit') THEN -1
             WHEN t.source_entity IN ('CreditMemo', 'RefundReceipt', 'Bill') THEN 1
             WHEN t.source_entity = 'Purchase' THEN CASE WHEN t.is_credit THEN -1 ELSE 1 END
         END,
         t.total_tax)
    ) AS h(posting_key, account_id, sign, amount)
),
postings AS (
    SELECT * FROM line_postings
    UNION ALL
    SELECT * FROM header_postings
)
SELECT p.realm_id,
       t.txn_date,
       p.account_id,
       a.name AS account_name,
       a.account_type,
       a.classification AS account_classification,
       greatest(p.sign * p.amount, 0) AS debit,
       greatest(-p.sign * p.amount, 0) AS credit,
       p.sign * p.amount AS amount,
       p.sign * p.amount * t.exchange_rate AS home_amount,
       t.currency,
       t.exchange_rate,
       p.source_entity,
       p.txn_id AS source_id,
       t.doc_number,
       p.posting_key,
       p.line_index,
       p.sub_index,
       p.line_id,
       p.description,
       p.class_id,
       p.department_id,
       p.customer_id,
       p.vendor_id
FROM postings p
JOIN staging.transactions t USING (realm_id, source_entity, txn_id)
LEFT JOIN staging.accounts a ON a.realm_id = p.realm_id AND a.account_id = p.account_id
WHERE p.sign IS NOT NULL AND p.amount IS NOT NULL AND p.amount <> 0
WITH NO DATA;
CREATE UNIQUE INDEX general_ledger_key
    ON staging.general_ledger (realm_id, source_entity, source_id, posting_key);
CREATE INDEX general_ledger_account_idx ON staging.general_ledger (realm_id, account_id, txn_date);

-- Per-type line tables, as users and dbt packages expect them.
CREATE VIEW staging.invoice_lines AS SELECT * FROM staging.transaction_lines WHERE source_entity = 'Invoice';
CREATE VIEW staging.sales_receipt_lines AS SELECT * FROM staging.transaction_lines WHERE source_entity = 'SalesReceipt';
CREATE VIEW staging.credit_memo_lines AS SELECT * FROM staging.transaction_lines WHERE source_entity = 'CreditMemo';
CREATE VIEW staging.refund_receipt_lines AS SELECT * FROM staging.transaction_lines WHERE source_entity = 'RefundReceipt';
CREATE VIEW staging.estimate_lines AS SELECT * FROM staging.transaction_lines WHERE source_entity = 'Estimate';
CREATE VIEW staging.bill_lines AS SELECT * FROM staging.transaction_lines WHERE source_entity = 'Bill';
CREATE VIEW staging.vendor_credit_lines AS SELECT * FROM staging.transaction_lines WHERE source_entity = 'VendorCredit';
CREATE VIEW staging.purchase_lines AS SELECT * FROM staging.transaction_lines WHERE source_entity = 'Purchase';
CREATE VIEW staging.purchase_order_lines AS SELECT * FROM staging.transaction_lines WHERE source_entity = 'PurchaseOrder';
CREATE VIEW staging.journal_entry_lines AS SELECT * FROM staging.transaction_lines WHERE source_entity = 'JournalEntry';
CREATE VIEW staging.deposit_lines AS SELECT * FROM staging.transaction_lines WHERE source_entity = 'Deposit';
CREATE VIEW staging.payment_lines AS SELECT * FROM staging.transaction_lines WHERE source_entity = 'Payment';
CREATE VIEW staging.bill_payment_lines AS SELECT * FROM staging.transaction_lines WHERE source_entity = 'BillPayment';

COMMENT ON SCHEMA staging IS 'Analysis-ready tables built from the raw zone; run `qbo model refresh` after a load';
COMMENT ON MATERIALIZED VIEW staging.transactions IS 'One row per live transaction (every type), typed header fields';
COMMENT ON MATERIALIZED VIEW staging.transaction_lines IS 'One row per line of every live transaction (bundle members as sub_index > 0)';
COMMENT ON MATERIALIZED VIEW staging.general_ledger IS 'Every posting (debit or credit) of every posting transaction; see the migration for the rules and approximations';
