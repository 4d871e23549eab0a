//! Names of referenced records, derivable from an id alone so a reference can carry the
//! `name` QBO puts next to its `value` without rendering the record it points at.
//! The tables deliberately hold unicode, quotes and backslashes.

use super::Rng;

pub const GIVEN: &[&str] = &[
    "José",
    "Zoë",
    "Björn",
    "Amélie",
    "李",
    "Ольга",
    "Søren",
    "Mary",
    "John",
    "Nguyễn",
    "Aoife",
    "😀 Sunny",
];
pub const FAMILY: &[&str] = &[
    "O'Brien",
    "Müller",
    "田中",
    "Smith",
    "García",
    "D'Angelo",
    "Łukasz",
    "Nakamura",
    "Øvergaard",
    "Brown",
];
const COMPANIES: &[&str] = &[
    "\"Acme\" \\ Co",
    "O'Brien Plumbing",
    "東京商事 株式会社",
    "Café Zoë 🎉",
    "Smith & Sons",
    "Ünïcödé Ltd",
    "Back\\slash LLC",
    "Señor Tacos",
];

/// Customer `cid`'s display name, derivable without the customer's record (invoices need it).
pub fn customer_name(seed: u64, cid: u64) -> (String, String, String) {
    let mut r = Rng::new(seed, "Customer.name", cid, 0);
    let given = r.pick(GIVEN).to_string();
    let family = r.pick(FAMILY).to_string();
    // Suffix the Id: QBO requires unique DisplayNames.
    // The first customers carry every awkward company name, so small datasets have them all.
    let display = if let Some(c) = COMPANIES.get(cid.wrapping_sub(1) as usize) {
        format!("{c} {cid}")
    } else if r.chance(30) {
        format!("{} {cid}", r.pick(COMPANIES))
    } else {
        format!("{given} {family} {cid}")
    };
    (given, family, display)
}

const VENDORS: &[&str] = &[
    "Hicks \"Hardware\"",
    "Bob's Burger Joint",
    "Électricité de l'Ouest",
    "北京供应 有限公司",
    "Norton Lumber \\ Building",
    "Tania's Nursery 🌱",
    "PG&E",
    "Lee Advertising",
];

/// Vendor `vid`'s (company, display) name; display names are unique like QBO requires.
pub fn vendor_name(seed: u64, vid: u64) -> (String, String) {
    let mut r = Rng::new(seed, "Vendor.name", vid, 0);
    let company = match VENDORS.get(vid.wrapping_sub(1) as usize) {
        Some(v) => v.to_string(),
        None => r.pick(VENDORS).to_string(),
    };
    let display = format!("{company} {vid}");
    (company, display)
}

/// Employee `eid`'s (given, family, display) names.
pub fn employee_name(seed: u64, eid: u64) -> (String, String, String) {
    let mut r = Rng::new(seed, "Employee.name", eid, 0);
    let given = r.pick(GIVEN).to_string();
    let family = r.pick(FAMILY).to_string();
    let display = format!("{given} {family} {eid}");
    (given, family, display)
}

const ITEM_KINDS: &[&str] = &["Service", "Inventory", "NonInventory"];
const ITEM_WORDS: &[&str] = &[
    "Consulting",
    "Gardening",
    "Pump",
    "Sprinkler Head",
    "Rock Fountain",
    "Design",
    "Installation",
    "Pipe ½\"",
    "Soil – bag",
];

/// Item `iid`'s name, kind and unit price in cents (invoice lines need them).
pub fn item_basics(seed: u64, iid: u64) -> (String, &'static str, i64) {
    let mut r = Rng::new(seed, "Item.basics", iid, 0);
    let name = format!("{} {iid}", r.pick(ITEM_WORDS));
    (name, *r.pick(ITEM_KINDS), 500 + r.below(50_000) as i64)
}

/// `name #id` for list members past the end of a fixed table (names are unique in QBO).
fn listed(table: &[&'static str], id: u64) -> String {
    listed_by(table.len(), |i| table[i], id)
}

/// The name of record `id` in a table of (name, attribute) pairs, with its attribute.
fn listed_pair<T: Copy>(table: &[(&'static str, T)], id: u64) -> (String, T) {
    let i = id.saturating_sub(1) as usize % table.len();
    (listed_by(table.len(), |i| table[i].0, id), table[i].1)
}

/// Record `id` takes the table's `id`-th name; past the table, names repeat with `#id`.
fn listed_by(len: usize, name: impl Fn(usize) -> &'static str, id: u64) -> String {
    let i = id.saturating_sub(1) as usize;
    if i < len {
        name(i).to_string()
    } else {
        format!("{} #{id}", name(i % len))
    }
}

const CLASSES: &[&str] = &[
    "Landscaping",
    "Design – Zoë's crew",
    "Maintenance",
    "Installation \"Pro\"",
    "Overhead",
    "Ventes – Québec",
    "Back\\Office",
    "造园",
];

pub fn class_name(id: u64) -> String {
    listed(CLASSES, id)
}

const DEPARTMENTS: &[&str] = &[
    "Half Moon Bay",
    "Montréal \"HQ\"",
    "Sodo",
    "O'Hare Depot",
    "東京",
];

pub fn department_name(id: u64) -> String {
    listed(DEPARTMENTS, id)
}

/// Terms: (name, due days).
const TERMS: &[(&str, u64)] = &[
    ("Due on receipt", 0),
    ("Net 15", 15),
    ("Net 30", 30),
    ("Net 60", 60),
    ("1% 10 Net 30", 30),
    ("Net 45 – \"special\"", 45),
];

pub fn term(id: u64) -> (String, u64) {
    listed_pair(TERMS, id)
}

/// Payment methods: (name, QBO type).
const PAYMENT_METHODS: &[(&str, &str)] = &[
    ("Cash", "NON_CREDIT_CARD"),
    ("Check", "NON_CREDIT_CARD"),
    ("Visa", "CREDIT_CARD"),
    ("MasterCard", "CREDIT_CARD"),
    ("American Express", "CREDIT_CARD"),
    ("Diners Club", "CREDIT_CARD"),
    ("Chèque \"bancaire\"", "NON_CREDIT_CARD"),
];

pub fn payment_method(id: u64) -> (String, &'static str) {
    listed_pair(PAYMENT_METHODS, id)
}

const CUSTOMER_TYPES: &[&str] = &["Retail", "Wholesale", "Gov't", "Non-profit – \"NGO\""];

pub fn customer_type_name(id: u64) -> String {
    listed(CUSTOMER_TYPES, id)
}

/// Journal codes (French companies): (name, type).
const JOURNAL_CODES: &[(&str, &str)] = &[
    ("VT", "Sales"),
    ("HA", "Purchases"),
    ("BQ", "Bank"),
    ("OD", "Others"),
    ("AN", "Nouveaux"),
];

pub fn journal_code(id: u64) -> (String, &'static str) {
    listed_pair(JOURNAL_CODES, id)
}

/// Currencies besides the home currency (USD): (ISO code, name).
const CURRENCIES: &[(&str, &str)] = &[
    ("EUR", "Euro"),
    ("GBP", "British Pound Sterling"),
    ("CAD", "Canadian Dollar"),
    ("JPY", "Japanese Yen"),
    ("MXN", "Mexican Peso"),
    ("CHF", "Swiss Franc"),
];

pub fn currency(id: u64) -> (String, String) {
    let i = id.saturating_sub(1) as usize;
    match CURRENCIES.get(i) {
        Some((code, name)) => (code.to_string(), name.to_string()),
        // ISO codes are three letters; invent unique ones past the table.
        None => {
            let n = i - CURRENCIES.len();
            let letter = |k: usize| char::from(b'A' + (k % 26) as u8);
            (
                format!("X{}{}", letter(n / 26), letter(n)),
                format!("Test currency {id}"),
            )
        }
    }
}

const TAX_AGENCIES: &[&str] = &[
    "California Department of Tax and Fee Administration",
    "Board of Equalization",
    "Revenu Québec – \"TVQ\"",
];

pub fn tax_agency_name(id: u64) -> String {
    listed(TAX_AGENCIES, id)
}

/// Tax rates: (name, percent).
const TAX_RATES: &[(&str, f64)] = &[
    ("California", 7.25),
    ("Tucson City", 2.0),
    ("Arizona", 5.6),
    ("San Mateo County", 1.25),
    ("Ville de Montréal – TVQ", 9.975),
    ("Zero-rated 'exempt'", 0.0),
];

pub fn tax_rate(id: u64) -> (String, f64) {
    listed_pair(TAX_RATES, id)
}

const TAX_CODES: &[&str] = &[
    "California",
    "Tucson",
    "Arizona+County",
    "Exempt \"resale\"",
    "Out of scope",
];

pub fn tax_code_name(id: u64) -> String {
    listed(TAX_CODES, id)
}
