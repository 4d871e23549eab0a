-- Home-currency amounts for multi-currency companies, and the exchange rates they fall back on.
--
-- The rule (README, "Analysis-ready tables"): a transaction's amounts are in its currency
-- (CurrencyRef); its exchange rate is
--   1. its own ExchangeRate when it has one (what QBO booked it at), else
--   2. 1 when it is in the home currency (Preferences CurrencyPrefs.HomeCurrency), has no
--      CurrencyRef, or the company's preferences are not loaded, else
--   3. the loaded rate (raw.qb_exchange_rates, `qbo exchange-rates`) for its currency into
--      the home currency on its TxnDate, or the latest one before it; else NULL (unknown:
--      the home amounts are NULL rather than wrong).
-- A home amount is amount x rate rounded to the cent, line by line and posting by posting,
-- as QBO books them; a total is QBO's HomeTotalAmt when it sends one, and for a form whose
-- total is its lines plus tax, the sum of their home amounts (see `booked` below), so the
-- ledger balances in home currency as QBO's does.

-- Exchange rates as QBO serves them (the ExchangeRate entity has no Id: a rate is keyed by
-- its currencies and date).
CREATE TABLE raw.qb_exchange_rates (
    realm_id          text        NOT NULL,
    source_currency   text        NOT NULL,
    target_currency   text        NOT NULL,
    as_of_date        date        NOT NULL,
    rate              numeric     NOT NULL,
    payload           jsonb       NOT NULL,
    last_updated_utc  timestamptz,
    ingested_at_utc   timestamptz NOT NULL DEFAULT now(),
    request_payload   jsonb       NOT NULL,
    intuit_tid        text,
    PRIMARY KEY (realm_id, source_currency, target_currency, as_of_date)
);
COMMENT ON TABLE raw.qb_exchange_rates IS 'QBO ExchangeRate records (one per currency pair and AsOfDate), loaded by `qbo exchange-rates`';
COMMENT ON COLUMN raw.qb_exchange_rates.payload IS 'The record exactly as QBO returned it';

CREATE VIEW staging.exchange_rates AS
SELECT realm_id, source_currency, target_currency, as_of_date, rate
FROM raw.qb_exchange_rates;

-- Each realm's home currency and whether multicurrency is on, from its Preferences.
CREATE VIEW staging.home_currency AS
SELECT realm_id,
       payload->'CurrencyPrefs'->'HomeCurrency'->>'value' AS home_currency,
       coalesce((payload->'CurrencyPrefs'->>'MultiCurrencyEnabled')::boolean, false) AS multi_currency
FROM raw.qb_preferences
WHERE deleted_at_utc IS NULL;

-- The three materialized views are rebuilt with the rule (their per-type views with them).
DROP MATERIALIZED VIEW staging.general_ledger;
DROP MATERIALIZED VIEW staging.transaction_lines CASCADE;
DROP MATERIALIZED VIEW staging.transactions;

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
       c.currency,
       hc.home_currency,
       r.exchange_rate,
       r.exchange_rate_source,
       -- Transfers and credit card payments carry Amount, everything else TotalAmt.
       coalesce((p->>'TotalAmt')::numeric, (p->>'Amount')::numeric) AS total_amount,
       coalesce((p->>'HomeTotalAmt')::numeric,
                round(coalesce((p->>'TotalAmt')::numeric, (p->>'Amount')::numeric) * r.exchange_rate, 2)
       ) AS home_total_amount,
       p ? 'HomeTotalAmt' AS home_total_from_qbo,
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
CROSS JOIN LATERAL (SELECT p->'CurrencyRef'->>'value' AS currency, (p->>'TxnDate')::date AS txn_date) c
LEFT JOIN staging.home_currency hc ON hc.realm_id = t.realm_id
-- The rate rule (the scalar subquery runs only for a foreign-currency transaction that
-- carries no ExchangeRate, which QBO does not normally send).
CROSS JOIN LATERAL (
    SELECT CASE
               WHEN p ? 'ExchangeRate' THEN (p->>'ExchangeRate')::numeric
               WHEN c.currency IS NULL OR hc.home_currency IS NULL OR c.currency = hc.home_currency THEN 1
               ELSE (SELECT er.rate FROM staging.exchange_rates er
                     WHERE er.realm_id = t.realm_id AND er.source_currency = c.currency
                       AND er.target_currency = hc.home_currency AND er.as_of_date <= c.txn_date
                     ORDER BY er.as_of_date DESC LIMIT 1)
           END AS exchange_rate,
           CASE
               WHEN p ? 'ExchangeRate' THEN 'transaction'
               WHEN c.currency IS NULL OR hc.home_currency IS NULL OR c.currency = hc.home_currency THEN 'home'
               WHEN EXISTS (SELECT 1 FROM staging.exchange_rates er
                            WHERE er.realm_id = t.realm_id AND er.source_currency = c.currency
                              AND er.target_currency = hc.home_currency AND er.as_of_date <= c.txn_date)
                   THEN 'loaded'
           END AS exchange_rate_source
) r
WITH NO DATA;
CREATE UNIQUE INDEX transactions_key ON staging.transactions (realm_id, source_entity, txn_id);
CREATE INDEX transactions_date_idx ON staging.transactions (realm_id, txn_date);

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
       round((ln->>'Amount')::numeric * tx.exchange_rate, 2) AS home_amount,
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
       tx.currency,
       tx.exchange_rate
FROM staging.raw_transactions t
JOIN staging.transactions tx
    ON tx.realm_id = t.realm_id AND tx.source_entity = t.source_entity AND tx.txn_id = t.id
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
           l.amount, l.home_amount, l.description, l.class_id, l.department_id,
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
           h.account_id, h.sign, h.amount, h.home_amount, NULL::text AS description,
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
         t.total_amount,
         t.home_total_amount),
        ('counter',
         CASE t.source_entity
             WHEN 'Payment' THEN coalesce(t.ar_account_id, da.accounts_receivable)
             WHEN 'BillPayment' THEN t.from_account_id
             WHEN 'Transfer' THEN t.from_account_id
             WHEN 'CreditCardPayment' THEN t.from_account_id
         END,
         CASE WHEN t.source_entity IN ('Payment', 'BillPayment', 'Transfer', 'CreditCardPayment') THEN -1 END,
         t.total_amount,
         t.home_total_amount),
        ('tax',
         da.sales_tax_payable,
         CASE
             WHEN t.source_entity IN ('Invoice', 'SalesReceipt', 'VendorCredit') THEN -1
             WHEN t.source_entity IN ('CreditMemo', 'RefundReceipt', 'Bill') THEN 1
             WHEN t.source_entity = 'Purchase' THEN CASE WHEN t.is_credit THEN -1 ELSE 1 END
         END,
         t.total_tax,
         round(t.total_tax * t.exchange_rate, 2))
    ) AS h(posting_key, account_id, sign, amount, home_amount)
),
postings AS (
    SELECT * FROM line_postings
    UNION ALL
    SELECT * FROM header_postings
),
-- A foreign-currency total QBO sent no HomeTotalAmt for, on a form whose total is the sum
-- of its lines and tax: QBO books it as the sum of what they post in home currency (each
-- rounded to the cent), not as TotalAmt x ExchangeRate rounded once.
booked AS (
    SELECT p.realm_id, p.source_entity, p.txn_id, sum(p.sign * p.home_amount) AS home_amount
    FROM postings p
    JOIN staging.transactions t USING (realm_id, source_entity, txn_id)
    WHERE t.exchange_rate <> 1 AND NOT t.home_total_from_qbo
      AND t.source_entity IN ('Invoice', 'SalesReceipt', 'CreditMemo', 'RefundReceipt', 'Bill',
                              'VendorCredit', 'Purchase', 'Deposit')
      AND p.posting_key <> 'total' AND p.sign IS NOT NULL AND p.home_amount IS NOT NULL
    GROUP BY 1, 2, 3
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
       CASE WHEN b.home_amount IS NOT NULL AND p.posting_key = 'total' THEN -b.home_amount
            ELSE p.sign * p.home_amount END AS home_amount,
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
LEFT JOIN booked b USING (realm_id, source_entity, txn_id)
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


COMMENT ON MATERIALIZED VIEW staging.transactions IS 'One row per live transaction (every type), typed header fields; exchange_rate per the home-currency rule';
COMMENT ON MATERIALIZED VIEW staging.transaction_lines IS 'One row per line of every live transaction (bundle members as sub_index > 0); amount in the transaction currency, home_amount in the home currency';
COMMENT ON MATERIALIZED VIEW staging.general_ledger IS 'Every posting (debit or credit) of every posting transaction, in transaction and home currency; see the migrations for the rules and approximations';
