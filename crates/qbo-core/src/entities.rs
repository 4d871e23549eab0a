//! The registry of QBO entities the tool knows. Every other module asks this table;
//! nothing else names an entity, so adding one is a line here plus its migration.

use std::fmt;
use std::str::FromStr;

/// How a backfill cuts an entity's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windowing {
    /// Date windows on `MetaData.LastUpdatedTime` (or `TxnDate` where the entity has it).
    LastUpdated,
    /// QBO does not filter the entity by `LastUpdatedTime` (settings and other small,
    /// singleton-like objects): every load reads it whole, in one chunk.
    Whole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entity {
    /// Name on the command line and in reports, e.g. `journal_entries`.
    pub cli_name: &'static str,
    /// Name in the QBO query language, e.g. `JournalEntry`.
    pub qbo_name: &'static str,
    /// The key QBO files the entity's records under in its answers (query pages, CDC, reads
    /// by id). It is `qbo_name` except where Intuit named them apart: `CreditCardPayment` is
    /// queried as such and answered as `CreditCardPaymentTxn`.
    pub list_key: &'static str,
    /// Raw-zone table, schema-qualified.
    pub table: &'static str,
    /// A transaction with a `TxnDate`, so `--window-field txn-date` is allowed.
    pub txn_date: bool,
    /// A name list with `Active`: QBO hides `Active = false` records unless the query names
    /// `Active`, so every query we send says `Active IN (true, false)`.
    pub name_list: bool,
    pub windowing: Windowing,
    /// Whether QBO's change data capture endpoint serves it (Intuit lists five that it
    /// does not: JournalCode, TaxAgency, TaxCode, TaxRate, TimeActivity).
    pub cdc: bool,
    /// Nearly every company in use has records of it (a chart of accounts, customers,
    /// invoices, ...). A first backfill then reads a page before counting: for a company
    /// with a few hundred of them that one page is the whole load, and the COUNT(*) that
    /// an empty entity needs is spent only where the page comes back empty.
    pub common: bool,
}

impl Entity {
    pub fn has_txn_date(&self) -> bool {
        self.txn_date
    }

    pub fn hides_inactive(&self) -> bool {
        self.name_list
    }

    pub fn is_whole(&self) -> bool {
        self.windowing == Windowing::Whole
    }

    /// How the entity is windowed, in words for `--help`, `qbo entities` and reports.
    pub fn windowing_label(&self) -> &'static str {
        match (self.windowing, self.txn_date) {
            (Windowing::Whole, _) => "whole (no windows)",
            (Windowing::LastUpdated, true) => "last-updated or txn-date",
            (Windowing::LastUpdated, false) => "last-updated",
        }
    }

    const fn new(cli_name: &'static str, qbo_name: &'static str, table: &'static str) -> Self {
        Entity {
            cli_name,
            qbo_name,
            list_key: qbo_name,
            table,
            txn_date: false,
            name_list: false,
            windowing: Windowing::LastUpdated,
            cdc: true,
            common: false,
        }
    }

    const fn common(mut self) -> Self {
        self.common = true;
        self
    }

    const fn txn(mut self) -> Self {
        self.txn_date = true;
        self
    }

    const fn list(mut self) -> Self {
        self.name_list = true;
        self
    }

    const fn whole(mut self) -> Self {
        self.windowing = Windowing::Whole;
        self
    }

    const fn answered_as(mut self, list_key: &'static str) -> Self {
        self.list_key = list_key;
        self
    }

    const fn no_cdc(mut self) -> Self {
        self.cdc = false;
        self
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cli_name)
    }
}

use Entity as E;

/// Every entity QBO's query endpoint serves, one line each.
pub const ENTITIES: &[Entity] = &[
    E::new("accounts", "Account", "raw.qb_accounts")
        .common()
        .list(),
    E::new("attachables", "Attachable", "raw.qb_attachables"),
    E::new("bills", "Bill", "raw.qb_bills").common().txn(),
    E::new("bill_payments", "BillPayment", "raw.qb_bill_payments")
        .common()
        .txn(),
    E::new("budgets", "Budget", "raw.qb_budgets").list(),
    E::new("classes", "Class", "raw.qb_classes").list(),
    E::new(
        "company_currencies",
        "CompanyCurrency",
        "raw.qb_company_currencies",
    )
    .list(),
    E::new("company_info", "CompanyInfo", "raw.qb_company_info").whole(),
    E::new(
        "credit_card_payments",
        "CreditCardPayment",
        "raw.qb_credit_card_payments",
    )
    .answered_as("CreditCardPaymentTxn")
    .txn(),
    E::new("credit_memos", "CreditMemo", "raw.qb_credit_memos").txn(),
    E::new("customers", "Customer", "raw.qb_customers")
        .common()
        .list(),
    E::new("customer_types", "CustomerType", "raw.qb_customer_types").list(),
    E::new("departments", "Department", "raw.qb_departments").list(),
    E::new("deposits", "Deposit", "raw.qb_deposits")
        .common()
        .txn(),
    E::new("employees", "Employee", "raw.qb_employees")
        .common()
        .list(),
    E::new("estimates", "Estimate", "raw.qb_estimates").txn(),
    E::new("invoices", "Invoice", "raw.qb_invoices")
        .common()
        .txn(),
    E::new("items", "Item", "raw.qb_items").common().list(),
    E::new("journal_codes", "JournalCode", "raw.qb_journal_codes")
        .list()
        .no_cdc(),
    E::new("journal_entries", "JournalEntry", "raw.qb_journal_entries")
        .common()
        .txn(),
    E::new("payments", "Payment", "raw.qb_payments")
        .common()
        .txn(),
    E::new("payment_methods", "PaymentMethod", "raw.qb_payment_methods")
        .common()
        .list(),
    E::new("preferences", "Preferences", "raw.qb_preferences").whole(),
    E::new("purchases", "Purchase", "raw.qb_purchases")
        .common()
        .txn(),
    E::new("purchase_orders", "PurchaseOrder", "raw.qb_purchase_orders").txn(),
    E::new(
        "recurring_transactions",
        "RecurringTransaction",
        "raw.qb_recurring_transactions",
    )
    .whole(),
    E::new("refund_receipts", "RefundReceipt", "raw.qb_refund_receipts").txn(),
    E::new("sales_receipts", "SalesReceipt", "raw.qb_sales_receipts")
        .common()
        .txn(),
    E::new("tax_agencies", "TaxAgency", "raw.qb_tax_agencies").no_cdc(),
    E::new("tax_codes", "TaxCode", "raw.qb_tax_codes")
        .list()
        .no_cdc(),
    E::new("tax_rates", "TaxRate", "raw.qb_tax_rates")
        .list()
        .no_cdc(),
    E::new("terms", "Term", "raw.qb_terms").common().list(),
    E::new("time_activities", "TimeActivity", "raw.qb_time_activities")
        .txn()
        .no_cdc(),
    E::new("transfers", "Transfer", "raw.qb_transfers").txn(),
    E::new("vendors", "Vendor", "raw.qb_vendors")
        .common()
        .list(),
    E::new("vendor_credits", "VendorCredit", "raw.qb_vendor_credits").txn(),
];

/// QBO's ExchangeRate (multi-currency companies), kept out of `ENTITIES` on purpose: a rate
/// has no Id and QBO filters it only by `AsOfDate =` (no LastUpdatedTime), so neither the
/// backfill's windows nor sync apply. `qbo exchange-rates` loads it, a query a day, into
/// its table; `qbo entities` lists it after the others. (CLI name, QBO name, table.)
pub const EXCHANGE_RATES: (&str, &str, &str) =
    ("exchange_rates", "ExchangeRate", "raw.qb_exchange_rates");

#[derive(Debug, thiserror::Error)]
#[error("unknown entity `{0}`; run `qbo entities` for the list (e.g. invoices, customers, journal_entries), or use `all`")]
pub struct UnknownEntity(pub String);

pub fn cli_names() -> Vec<&'static str> {
    ENTITIES.iter().map(|e| e.cli_name).collect()
}

/// Looks an entity up by its CLI name (`journal_entries`) or its QBO name (`JournalEntry`).
pub fn find(name: &str) -> Option<&'static Entity> {
    ENTITIES
        .iter()
        .find(|e| e.cli_name.eq_ignore_ascii_case(name) || e.qbo_name.eq_ignore_ascii_case(name))
}

pub fn by_qbo_name(name: &str) -> Option<&'static Entity> {
    ENTITIES.iter().find(|e| e.qbo_name == name)
}

/// The entities whose records carry `CustomField`: the sales and purchase forms QBO's legacy
/// custom fields live on, and the names and forms QBO Advanced's enhanced fields attach to.
const WITH_CUSTOM_FIELDS: &[&str] = &[
    "Bill",
    "CreditMemo",
    "Customer",
    "Estimate",
    "Invoice",
    "Purchase",
    "PurchaseOrder",
    "RefundReceipt",
    "SalesReceipt",
    "Vendor",
    "VendorCredit",
];

/// QBO sends only a form's first three (legacy, String) custom fields unless a read asks for
/// all of them with this parameter; reads of entities with custom fields always send it.
pub const ALL_CUSTOM_FIELDS: (&str, &str) = ("include", "enhancedAllCustomFields");

/// Whether reads of `qbo_name` must ask for all custom fields (see `ALL_CUSTOM_FIELDS`).
pub fn has_custom_fields(qbo_name: &str) -> bool {
    WITH_CUSTOM_FIELDS.contains(&qbo_name)
}

/// The key QBO answers `qbo_name`'s records under (see `Entity::list_key`).
pub fn list_key(qbo_name: &str) -> &str {
    by_qbo_name(qbo_name).map_or(qbo_name, |e| e.list_key)
}

/// What the user asked to load: one entity or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    One(&'static Entity),
    All,
}

impl Selection {
    pub fn entities(&self) -> Vec<&'static Entity> {
        match self {
            Selection::One(e) => vec![*e],
            Selection::All => ENTITIES.iter().collect(),
        }
    }
}

impl FromStr for Selection {
    type Err = UnknownEntity;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(Selection::All);
        }
        find(s)
            .map(Selection::One)
            .ok_or_else(|| UnknownEntity(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_entity_is_named_once_and_its_table_follows_the_convention() {
        let mut seen = HashSet::new();
        for e in ENTITIES {
            assert!(seen.insert(e.cli_name), "{} twice", e.cli_name);
            assert!(seen.insert(e.qbo_name), "{} twice", e.qbo_name);
            assert_eq!(e.table, format!("raw.qb_{}", e.cli_name));
            assert!(
                !(e.is_whole() && e.txn_date),
                "{} is whole and windowed",
                e.cli_name
            );
        }
        assert!(ENTITIES.len() >= 36);
    }

    #[test]
    fn lookups_take_either_name() {
        assert_eq!(find("JournalEntry").unwrap().cli_name, "journal_entries");
        assert_eq!(find("journal_entries").unwrap().qbo_name, "JournalEntry");
        assert!("nope".parse::<Selection>().is_err());
        assert_eq!("ALL".parse::<Selection>().unwrap(), Selection::All);
    }
}
