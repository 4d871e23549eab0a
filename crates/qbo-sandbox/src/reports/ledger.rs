//! The sandbox company's books: every posting its live transactions make, computed here in
//! Rust from the records as the API serves them, so the reports the sandbox answers are an
//! independent check of qbo's own SQL ledger (`staging.general_ledger`). The posting rules
//! are QBO's (and the same as that SQL's, which documents them and their approximations):
//! sales credit income, purchases debit expenses, each against A/R, A/P, a bank or a card.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::Value;

use super::super::data::{currency, record_body};
use super::super::store::{self, Store};

/// The transaction types that post, in the order QBO's reports list them.
pub const POSTING_TYPES: &[&str] = &[
    "Invoice",
    "SalesReceipt",
    "CreditMemo",
    "RefundReceipt",
    "Bill",
    "VendorCredit",
    "Purchase",
    "JournalEntry",
    "Deposit",
    "Payment",
    "BillPayment",
    "Transfer",
    "CreditCardPayment",
];

/// Where an account sits in the statements, from its `Classification`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Asset,
    Liability,
    Equity,
    Revenue,
    Expense,
}

impl Class {
    fn parse(s: &str) -> Option<Class> {
        Some(match s {
            "Asset" => Class::Asset,
            "Liability" => Class::Liability,
            "Equity" => Class::Equity,
            "Revenue" => Class::Revenue,
            "Expense" => Class::Expense,
            _ => return None,
        })
    }

    /// Income and expense accounts close into retained earnings each year.
    pub fn is_profit_and_loss(self) -> bool {
        matches!(self, Class::Revenue | Class::Expense)
    }
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: u64,
    pub name: String,
    pub account_type: String,
    pub sub_type: String,
    pub class: Class,
    pub active: bool,
}

/// One debit (positive cents) or credit (negative cents) to one account.
#[derive(Debug, Clone)]
pub struct Posting {
    pub date: NaiveDate,
    pub account: u64,
    pub cents: i64,
    pub txn_type: &'static str,
    pub txn_id: String,
    pub doc_number: Option<String>,
    pub memo: Option<String>,
    /// The transaction's index in `Books::txns`.
    pub txn: usize,
    /// Posted by one of the transaction's lines (not its header: total, A/R, A/P, bank, tax).
    pub line: bool,
}

/// A live transaction of a posting type, as the listing reports show it.
#[derive(Debug, Clone)]
pub struct Txn {
    pub kind: &'static str,
    pub id: String,
    pub date: NaiveDate,
    pub doc_number: Option<String>,
    /// The customer, vendor or other name it is with: (id, name).
    pub name: Option<(String, String)>,
    pub memo: Option<String>,
    /// `TotalAmt` (a transfer's `Amount`) in home currency: `HomeTotalAmt`, else the total
    /// at the transaction's `ExchangeRate`.
    pub total: i64,
    /// `TotalAmt` (a transfer's `Amount`) in the transaction's own currency.
    pub amount: i64,
}

pub struct Books {
    pub accounts: BTreeMap<u64, Account>,
    /// In date order, then as the transactions come.
    pub postings: Vec<Posting>,
    /// Every live transaction that posts, in the order of `POSTING_TYPES`, then as stored.
    pub txns: Vec<Txn>,
}

/// Amounts in whole cents: the report's figures must add up exactly.
pub fn cents(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_f64().map(|f| (f * 100.0).round() as i64),
        Value::String(s) => s.parse::<f64>().ok().map(|f| (f * 100.0).round() as i64),
        _ => None,
    }
}

fn ref_id(v: &Value) -> Option<u64> {
    v.get("value")?.as_str()?.parse().ok()
}

/// An item's type and its income, expense and asset accounts.
type ItemAccounts = (String, Option<u64>, Option<u64>, Option<u64>);

struct Items {
    accounts: BTreeMap<u64, ItemAccounts>,
}

/// The accounts QBO posts to when a transaction names none: per kind, the first active one.
struct Defaults {
    receivable: Option<u64>,
    payable: Option<u64>,
    undeposited: Option<u64>,
    sales_tax: Option<u64>,
}

impl Defaults {
    fn of(accounts: &BTreeMap<u64, Account>) -> Defaults {
        let first = |pick: &dyn Fn(&Account) -> bool| {
            let mut found: Vec<&Account> = accounts.values().filter(|a| pick(a)).collect();
            found.sort_by_key(|a| (!a.active, a.id));
            found.first().map(|a| a.id)
        };
        Defaults {
            receivable: first(&|a| a.account_type == "Accounts Receivable"),
            payable: first(&|a| a.account_type == "Accounts Payable"),
            undeposited: first(&|a| a.sub_type == "UndepositedFunds"),
            sales_tax: first(&|a| {
                a.sub_type == "GlobalTaxPayable" || a.sub_type == "SalesTaxPayable"
            }),
        }
    }
}

pub fn live_records(store: &Store, qbo_name: &str) -> Vec<Value> {
    let Some(t) = store.read(qbo_name) else {
        return Vec::new();
    };
    let rows: Vec<_> = t.rows.values().cloned().collect();
    let gen = t.gen;
    drop(t);
    rows.iter()
        .map(|r| record_body(&store::render(gen, &store.ctx, r)).clone())
        .collect()
}

impl Books {
    pub fn of(store: &Store) -> Books {
        let accounts: BTreeMap<u64, Account> = live_records(store, "Account")
            .iter()
            .filter_map(|a| {
                Some(Account {
                    id: a["Id"].as_str()?.parse().ok()?,
                    name: a["Name"].as_str()?.to_string(),
                    account_type: a["AccountType"].as_str().unwrap_or_default().to_string(),
                    sub_type: a["AccountSubType"].as_str().unwrap_or_default().to_string(),
                    class: Class::parse(a["Classification"].as_str()?)?,
                    active: a["Active"].as_bool().unwrap_or(true),
                })
            })
            .map(|a| (a.id, a))
            .collect();
        let items = Items {
            accounts: live_records(store, "Item")
                .iter()
                .filter_map(|i| {
                    Some((
                        i["Id"].as_str()?.parse().ok()?,
                        (
                            i["Type"].as_str().unwrap_or_default().to_string(),
                            ref_id(&i["IncomeAccountRef"]),
                            ref_id(&i["ExpenseAccountRef"]),
                            ref_id(&i["AssetAccountRef"]),
                        ),
                    ))
                })
                .collect(),
        };
        let defaults = Defaults::of(&accounts);
        let mut postings = Vec::new();
        let mut txns = Vec::new();
        for &kind in POSTING_TYPES {
            for txn in live_records(store, kind) {
                let Some(date) = txn["TxnDate"].as_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                let name = ["CustomerRef", "VendorRef", "EntityRef"]
                    .iter()
                    .find_map(|k| {
                        let r = &txn[*k];
                        Some((
                            r["value"].as_str()?.to_string(),
                            r["name"].as_str().unwrap_or_default().to_string(),
                        ))
                    });
                txns.push(Txn {
                    kind,
                    id: txn["Id"].as_str().unwrap_or_default().to_string(),
                    date,
                    doc_number: txn["DocNumber"].as_str().map(str::to_string),
                    name,
                    memo: txn["PrivateNote"].as_str().map(str::to_string),
                    total: cents(&txn["HomeTotalAmt"])
                        .or_else(|| {
                            cents(&txn["TotalAmt"])
                                .or_else(|| cents(&txn["Amount"]))
                                .map(|c| currency::home_cents(c, rate_e4(&txn["ExchangeRate"])))
                        })
                        .unwrap_or(0),
                    amount: cents(&txn["TotalAmt"])
                        .or_else(|| cents(&txn["Amount"]))
                        .unwrap_or(0),
                });
                post(kind, &txn, txns.len() - 1, &items, &defaults, &mut postings);
            }
        }
        postings.retain(|p| accounts.contains_key(&p.account));
        postings.sort_by_key(|p| p.date);
        Books {
            accounts,
            postings,
            txns,
        }
    }

    /// The account QBO closes earlier years' income into (every QBO company has one, of
    /// AccountSubType RetainedEarnings): the active one with the lowest id.
    pub fn retained_earnings(&self) -> Option<&Account> {
        self.accounts
            .values()
            .filter(|a| a.sub_type == "RetainedEarnings")
            .min_by_key(|a| (!a.active, a.id))
    }
}

/// A transaction's lines, bundle members included (a bundle's own line posts nothing).
fn lines(txn: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for l in txn["Line"].as_array().into_iter().flatten() {
        out.push(l);
        out.extend(
            l["GroupLineDetail"]["Line"]
                .as_array()
                .into_iter()
                .flatten(),
        );
    }
    out
}

fn post(
    kind: &'static str,
    txn: &Value,
    index: usize,
    items: &Items,
    d: &Defaults,
    out: &mut Vec<Posting>,
) {
    let Some(date) = txn["TxnDate"].as_str().and_then(|s| s.parse().ok()) else {
        return;
    };
    let credit = txn["Credit"].as_bool().unwrap_or(false);
    // Reports are in home currency: each posting of a foreign-currency transaction is its
    // amount x the transaction's ExchangeRate, rounded to the cent (see data::currency).
    let rate = rate_e4(&txn["ExchangeRate"]);
    let home = |amount: Option<i64>| amount.map(|c| currency::home_cents(c, rate));
    // What the lines and the tax post, signed: a foreign total that QBO sends no
    // HomeTotalAmt for is booked as their sum.
    let posted = std::cell::Cell::new(0);
    let mut push =
        |account: Option<u64>, sign: i64, amount: Option<i64>, memo: Option<&str>, line: bool| {
            if let Some(amount) = amount {
                posted.set(posted.get() + sign * amount);
            }
            if let (Some(account), Some(amount)) = (account, amount) {
                if amount != 0 && sign != 0 {
                    out.push(Posting {
                        date,
                        account,
                        cents: sign * amount,
                        txn_type: kind,
                        txn_id: txn["Id"].as_str().unwrap_or_default().to_string(),
                        doc_number: txn["DocNumber"].as_str().map(str::to_string),
                        memo: memo.map(str::to_string),
                        txn: index,
                        line,
                    });
                }
            }
        };
    for l in lines(txn) {
        let detail_type = l["DetailType"].as_str();
        let dt = detail_type.map_or(&Value::Null, |t| &l[t]);
        let named = ref_id(&dt["AccountRef"])
            .or_else(|| ref_id(&dt["ItemAccountRef"]))
            .or_else(|| ref_id(&dt["DiscountAccountRef"]));
        let item = ref_id(&dt["ItemRef"]).and_then(|i| items.accounts.get(&i));
        let account = match detail_type {
            Some("SalesItemLineDetail") => named.or_else(|| item.and_then(|i| i.1)),
            Some("ItemBasedExpenseLineDetail") => item.and_then(|(t, income, expense, asset)| {
                (t == "Inventory")
                    .then_some(*asset)
                    .flatten()
                    .or(*expense)
                    .or(*income)
            }),
            None if kind == "Deposit" => d.undeposited,
            _ => named,
        };
        let expense_line = matches!(
            detail_type,
            Some("ItemBasedExpenseLineDetail" | "AccountBasedExpenseLineDetail")
        );
        let sign = match (kind, detail_type) {
            ("Invoice" | "SalesReceipt", Some("SalesItemLineDetail")) => Some(-1),
            ("Invoice" | "SalesReceipt", Some("DiscountLineDetail")) => Some(1),
            ("CreditMemo" | "RefundReceipt", Some("SalesItemLineDetail")) => Some(1),
            ("CreditMemo" | "RefundReceipt", Some("DiscountLineDetail")) => Some(-1),
            ("Bill", _) if expense_line => Some(1),
            ("Purchase", _) if expense_line => Some(if credit { -1 } else { 1 }),
            ("VendorCredit", _) if expense_line => Some(-1),
            ("JournalEntry", Some("JournalEntryLineDetail")) => match dt["PostingType"].as_str() {
                Some("Debit") => Some(1),
                Some("Credit") => Some(-1),
                _ => None,
            },
            ("Deposit", Some("DepositLineDetail")) => Some(-1),
            ("Deposit", None) if l["LinkedTxn"].get(0).is_some() => Some(-1),
            _ => None,
        };
        if let Some(sign) = sign {
            push(
                account,
                sign,
                home(cents(&l["Amount"])),
                l["Description"].as_str(),
                true,
            );
        }
    }
    let tax_sign = match kind {
        "Invoice" | "SalesReceipt" | "VendorCredit" => -1,
        "CreditMemo" | "RefundReceipt" | "Bill" => 1,
        "Purchase" if credit => -1,
        "Purchase" => 1,
        _ => 0,
    };
    push(
        d.sales_tax,
        tax_sign,
        home(cents(&txn["TxnTaxDetail"]["TotalTax"])),
        None,
        false,
    );
    let total_amt = cents(&txn["TotalAmt"]).or_else(|| cents(&txn["Amount"]));
    let balances_lines = matches!(
        kind,
        "Invoice"
            | "SalesReceipt"
            | "CreditMemo"
            | "RefundReceipt"
            | "Bill"
            | "VendorCredit"
            | "Purchase"
            | "Deposit"
    );
    let ar = ref_id(&txn["ARAccountRef"]).or(d.receivable);
    let ap = ref_id(&txn["APAccountRef"]).or(d.payable);
    let deposit_to = ref_id(&txn["DepositToAccountRef"]);
    let from = ref_id(&txn["AccountRef"])
        .or_else(|| ref_id(&txn["CheckPayment"]["BankAccountRef"]))
        .or_else(|| ref_id(&txn["CreditCardPayment"]["CCAccountRef"]))
        .or_else(|| ref_id(&txn["BankAccountRef"]))
        .or_else(|| ref_id(&txn["FromAccountRef"]));
    let to = ref_id(&txn["ToAccountRef"]).or_else(|| ref_id(&txn["CreditCardAccountRef"]));
    let (account, sign) = match kind {
        "Invoice" => (ar, 1),
        "CreditMemo" => (ar, -1),
        "SalesReceipt" => (deposit_to.or(d.undeposited), 1),
        "RefundReceipt" => (deposit_to.or(from), -1),
        "Bill" => (ap, -1),
        "VendorCredit" => (ap, 1),
        "Purchase" => (from, if credit { 1 } else { -1 }),
        "Deposit" => (deposit_to, 1),
        "Payment" => (deposit_to.or(d.undeposited), 1),
        "BillPayment" => (ap, 1),
        "Transfer" | "CreditCardPayment" => (to, 1),
        _ => (None, 0),
    };
    let total = match cents(&txn["HomeTotalAmt"]) {
        Some(home_total) => Some(home_total),
        None if rate != ONE && balances_lines && sign != 0 => Some(-posted.get() * sign),
        None => home(total_amt),
    };
    push(account, sign, total, None, false);
    let counter = match kind {
        "Payment" => ar,
        "BillPayment" | "Transfer" | "CreditCardPayment" => from,
        _ => None,
    };
    push(counter, -1, total, None, false);
}

/// A rate of 1, in ten-thousandths.
const ONE: i64 = 10_000;

/// A transaction's ExchangeRate in ten-thousandths of a home unit (1 when it has none).
pub fn rate_e4(v: &Value) -> i64 {
    v.as_f64().map_or(ONE, |r| (r * 10_000.0).round() as i64)
}

/// A payment's application to an invoice or a bill: (document type, its id, cents applied in
/// the document's currency, date).
type Application = (&'static str, String, i64, NaiveDate);

fn applications(store: &Store) -> Vec<Application> {
    let mut out = Vec::new();
    for (kind, document) in [("Payment", "Invoice"), ("BillPayment", "Bill")] {
        for pay in live_records(store, kind) {
            let Some(date) = pay["TxnDate"].as_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            for line in pay["Line"].as_array().into_iter().flatten() {
                for link in line["LinkedTxn"].as_array().into_iter().flatten() {
                    if link["TxnType"] != document {
                        continue;
                    }
                    if let (Some(id), Some(c)) = (link["TxnId"].as_str(), cents(&line["Amount"])) {
                        out.push((document, id.to_string(), c, date));
                    }
                }
            }
        }
    }
    out
}

impl Books {
    /// The books on the cash basis, for the income statement: an invoice's (bill's) income
    /// and expense postings are recognized when and as far as payments (bill payments) are
    /// applied to it, on the payment's date, in proportion of the amount applied to its
    /// total, both in the document's currency (a payment is in its customer's currency), each
    /// home-currency posting rounded to the cent. Every other transaction posts as on the
    /// accrual basis, on its own date: sales receipts, refunds, expenses (a card charge
    /// counts as paid), deposits, journal entries (Intuit: one that touches an income or
    /// expense account shows on both bases), and credit memos and vendor credits (QBO shows
    /// a credit memo as negative income on its date on a cash-basis P&L, applied or not).
    /// Only income and expense accounts are restated: balance-sheet postings are dropped, so
    /// these books serve ProfitAndLoss and ProfitAndLossDetail only.
    pub fn cash_basis(&self, store: &Store) -> Books {
        let mut paid: BTreeMap<(&str, &str), Vec<(i64, NaiveDate)>> = BTreeMap::new();
        let applied = applications(store);
        for (doc, id, c, date) in &applied {
            paid.entry((doc, id.as_str()))
                .or_default()
                .push((*c, *date));
        }
        let mut postings = Vec::new();
        for p in &self.postings {
            let pl = self
                .accounts
                .get(&p.account)
                .is_some_and(|a| a.class.is_profit_and_loss());
            if !pl {
                continue;
            }
            match p.txn_type {
                "Invoice" | "Bill" => {
                    let total = self.txns.get(p.txn).map_or(0, |t| t.amount);
                    if total == 0 {
                        continue;
                    }
                    let pays = paid.get(&(p.txn_type, p.txn_id.as_str()));
                    for (amount, date) in pays.into_iter().flatten() {
                        let share = i128::from(p.cents) * i128::from(*amount);
                        let cents = (share as f64 / total as f64).round() as i64;
                        if cents != 0 {
                            postings.push(Posting {
                                date: *date,
                                cents,
                                ..p.clone()
                            });
                        }
                    }
                }
                _ => postings.push(p.clone()),
            }
        }
        postings.sort_by_key(|p| p.date);
        Books {
            accounts: self.accounts.clone(),
            postings,
            txns: self.txns.clone(),
        }
    }
}
