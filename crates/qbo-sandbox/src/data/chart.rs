//! The chart of accounts. Accounts play roles (the bank account payments land in, accounts
//! payable, income, ...) at the ids QBO's sample company uses for them, so every
//! `AccountRef` a transaction carries names an account of the right type that exists.

use serde_json::{json, Value};

use super::{f, money, record, FieldKind, GenCtx, Inactive, KeyRule, Keys, Rng, Size, Spec};

pub const SERVICES: u64 = 1;
pub const UNDEPOSITED_FUNDS: u64 = 4;
pub const ACCOUNTS_PAYABLE: u64 = 33;
pub const CHECKING: u64 = 35;
pub const SAVINGS: u64 = 36;
pub const VISA: u64 = 41;
pub const MASTERCARD: u64 = 42;
pub const SALES_OF_PRODUCT: u64 = 79;
pub const COST_OF_GOODS_SOLD: u64 = 80;
pub const INVENTORY_ASSET: u64 = 81;
pub const DISCOUNTS_GIVEN: u64 = 86;
/// Expense accounts bills, purchases and journal entries post to.
pub const EXPENSES: &[u64] = &[7, 13, 15, 17, 24, 27];
/// The highest role id: the chart always has at least this many accounts.
pub const MIN_ACCOUNTS: u64 = 91;

/// (id, name, AccountType, AccountSubType) of the accounts that play a role.
const ROLES: &[(u64, &str, &str, &str)] = &[
    (1, "Services", "Income", "ServiceFeeIncome"),
    (
        2,
        "Opening Balance Equity",
        "Equity",
        "OpeningBalanceEquity",
    ),
    // QBO creates it with every company; reports close earlier years' income into it.
    (3, "Retained Earnings", "Equity", "RetainedEarnings"),
    (
        4,
        "Undeposited Funds",
        "Other Current Asset",
        "UndepositedFunds",
    ),
    (7, "Advertising", "Expense", "AdvertisingPromotional"),
    (
        13,
        "Meals and Entertainment",
        "Expense",
        "EntertainmentMeals",
    ),
    (
        15,
        "Office Expenses – \"misc\"",
        "Expense",
        "OfficeGeneralAdministrativeExpenses",
    ),
    (17, "Rent or Lease", "Expense", "RentOrLeaseOfBuildings"),
    (24, "Utilities", "Expense", "Utilities"),
    (27, "Bob's Job Materials", "Expense", "SuppliesMaterials"),
    (
        33,
        "Accounts Payable (A/P)",
        "Accounts Payable",
        "AccountsPayable",
    ),
    (35, "Checking", "Bank", "Checking"),
    (36, "Savings", "Bank", "Savings"),
    (41, "Visa", "Credit Card", "CreditCard"),
    (42, "Mastercard", "Credit Card", "CreditCard"),
    (
        79,
        "Sales of Product Income",
        "Income",
        "SalesOfProductIncome",
    ),
    (
        80,
        "Cost of Goods Sold",
        "Cost of Goods Sold",
        "SuppliesMaterialsCogs",
    ),
    (81, "Inventory Asset", "Other Current Asset", "Inventory"),
    (
        84,
        "Accounts Receivable (A/R)",
        "Accounts Receivable",
        "AccountsReceivable",
    ),
    (86, "Discounts given", "Income", "DiscountsRefundsGiven"),
    (
        89,
        "Board of Equalization Payable",
        "Other Current Liability",
        "GlobalTaxPayable",
    ),
];

/// Accounts without a role: (AccountType, AccountSubType, name stem).
const OTHERS: &[(&str, &str, &str)] = &[
    ("Expense", "OtherMiscellaneousServiceCost", "Miscellaneous"),
    ("Other Current Asset", "PrepaidExpenses", "Prepaid Expenses"),
    ("Fixed Asset", "MachineryAndEquipment", "Équipement"),
    (
        "Other Current Liability",
        "OtherCurrentLiabilities",
        "Accrued 'other'",
    ),
    ("Other Expense", "Depreciation", "Depreciation"),
    ("Other Income", "InterestEarned", "Interest Earned"),
    ("Long Term Liability", "NotesPayable", "Notes Payable"),
];

pub struct Account {
    pub name: String,
    pub kind: &'static str,
    pub sub: &'static str,
}

pub fn account(id: u64) -> Account {
    if let Some((_, name, kind, sub)) = ROLES.iter().find(|a| a.0 == id) {
        return Account {
            name: name.to_string(),
            kind,
            sub,
        };
    }
    let (kind, sub, stem) = OTHERS[id as usize % OTHERS.len()];
    Account {
        name: format!("{stem} {id}"),
        kind,
        sub,
    }
}

pub fn account_ref(id: u64) -> Value {
    json!({ "value": id.to_string(), "name": account(id).name })
}

fn classification(kind: &str) -> &'static str {
    match kind {
        "Bank" | "Accounts Receivable" | "Other Current Asset" | "Fixed Asset" => "Asset",
        "Accounts Payable" | "Credit Card" | "Other Current Liability" | "Long Term Liability" => {
            "Liability"
        }
        "Equity" => "Equity",
        "Income" | "Other Income" => "Revenue",
        _ => "Expense",
    }
}

/// Accounts in a role stay active; a share of the others are deactivated.
fn inactive(id: u64) -> bool {
    !ROLES.iter().any(|a| a.0 == id) && id % 6 == 5
}

pub const ACCOUNT: Spec = Spec {
    name: "Account",
    fields: &[
        f("Name", FieldKind::Str),
        f("FullyQualifiedName", FieldKind::Str),
        f("AccountType", FieldKind::Str),
        f("Classification", FieldKind::Str),
        f("CurrentBalance", FieldKind::Number),
        f("Active", FieldKind::Active),
    ],
    keys: KeyRule::List {
        max_edits: 3,
        inactive: Inactive::Rule(inactive),
    },
    size: Size::Fixed(MIN_ACCOUNTS as usize),
    needs: &[],
    render: render_account,
};

fn render_account(_: &GenCtx, k: &Keys, r: &mut Rng) -> Value {
    let a = account(k.id);
    let balance = match classification(a.kind) {
        "Asset" | "Liability" => r.below(5_000_000) as i64,
        _ => 0,
    };
    // A few accounts are sub-accounts of Utilities, as QBO shows them (`Parent:Child`).
    let parent = (a.kind == "Expense" && k.id > MIN_ACCOUNTS && r.chance(30)).then_some(24);
    let fq = match parent {
        Some(p) => format!("{}:{}", account(p).name, a.name),
        None => a.name.clone(),
    };
    let mut v = record(
        k,
        json!({
            "Name": a.name, "SubAccount": parent.is_some(), "FullyQualifiedName": fq,
            "Active": k.active.unwrap_or(true), "Classification": classification(a.kind),
            "AccountType": a.kind, "AccountSubType": a.sub,
            "CurrentBalance": money(balance), "CurrentBalanceWithSubAccounts": money(balance),
            "CurrencyRef": { "value": "USD", "name": "United States Dollar" },
        }),
    );
    if let Some(p) = parent {
        v["ParentRef"] = json!({ "value": p.to_string() });
    }
    if r.chance(40) {
        v["AcctNum"] = json!(format!("{}", 1000 + k.id * 10));
    }
    if r.chance(30) {
        v["Description"] = json!(format!("{} — used by the \"{}\" team", a.name, a.sub));
    }
    v
}
