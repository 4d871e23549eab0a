//! Deterministic record generation, organised per entity.
//!
//! Records are not kept as JSON: each generator derives a record's key fields (`Keys`) and,
//! on demand, its full JSON from `(seed, entity, id)` alone. The store holds only keys, so
//! 500k invoices cost a few tens of MB, and any page can be rendered independently.
//! Adding an entity = one `EntityGen` impl + a line in `generators()` + an `entities` entry.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{json, Value};

use super::clock;

/// The fields the store indexes and filters on without rendering JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Keys {
    pub id: u64,
    pub sync_token: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub txn_date: Option<NaiveDate>,
    pub active: Option<bool>,
}

/// How a queryable field compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Id,
    CreateTime,
    UpdateTime,
    TxnDate,
    Active,
    /// A date held in the JSON (e.g. `DueDate`).
    Date,
    Number,
    Str,
    /// A `{value, name}` reference, compared by `value`.
    Ref,
}

#[derive(Debug, Clone, Copy)]
pub struct FieldDef {
    /// Canonical dotted path into the record JSON.
    pub path: &'static str,
    pub kind: FieldKind,
}

const fn f(path: &'static str, kind: FieldKind) -> FieldDef {
    FieldDef { path, kind }
}

/// Queryable on every entity.
pub const COMMON_FIELDS: &[FieldDef] = &[
    f("Id", FieldKind::Id),
    f("MetaData.CreateTime", FieldKind::CreateTime),
    f("MetaData.LastUpdatedTime", FieldKind::UpdateTime),
];

/// What every generator can see: the seed, the data span and how many of each entity exist
/// (so references point at records that exist).
#[derive(Debug, Clone)]
pub struct GenCtx {
    pub seed: u64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub customers: u64,
    pub items: u64,
}

pub trait EntityGen: Send + Sync {
    fn qbo_name(&self) -> &'static str;
    /// Entity-specific queryable fields (in addition to `COMMON_FIELDS`).
    fn fields(&self) -> &'static [FieldDef];
    fn keys(&self, ctx: &GenCtx, id: u64, of: u64) -> Keys;
    fn render(&self, ctx: &GenCtx, keys: &Keys) -> Value;
}

pub fn generators() -> [&'static dyn EntityGen; 3] {
    [&InvoiceGen, &CustomerGen, &ItemGen]
}

/// SplitMix64: tiny, fast, and stable forever (unlike `StdRng`, whose algorithm may change),
/// which is what "same seed => same records" needs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, entity: &str, id: u64, salt: u64) -> Rng {
        let mut h = seed ^ 0x243F_6A88_85A3_08D3;
        for b in entity.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
        }
        let mut r = Rng(h ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.rotate_left(32));
        r.next();
        r
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

const DAY_MS: i64 = 86_400_000;

/// Create/update instants for record `id` of `of`: creation times rise with Id like in QBO,
/// most records are edited later, and some land exactly on a UTC or company-local midnight
/// or share a timestamp with others, to exercise window boundaries and tie-breaking.
fn spread_times(ctx: &GenCtx, rng: &mut Rng, id: u64, of: u64) -> (i64, i64) {
    let (start, end) = (ctx.start.timestamp_millis(), ctx.end.timestamp_millis());
    let span = (end - start).max(1);
    let slot = span / of.max(1) as i64;
    let secs = |ms: i64| ms - ms.rem_euclid(1000);
    let created = secs(
        (start + slot * (id.saturating_sub(1) as i64) + rng.below(slot.max(1) as u64) as i64)
            .min(end),
    );
    let later = |rng: &mut Rng, max_ms: i64| {
        created + rng.below(((end - created).min(max_ms)).max(0) as u64 + 1) as i64
    };
    let updated = match rng.below(100) {
        0..=29 => created,
        30..=84 => secs(later(rng, 30 * DAY_MS)),
        85..=89 => {
            // Exactly on a UTC midnight (e.g. 2024-03-04T16:00:00-08:00).
            let m = later(rng, 10 * DAY_MS).div_euclid(DAY_MS) * DAY_MS + DAY_MS;
            if m <= end {
                m
            } else {
                created
            }
        }
        90..=94 => {
            // Exactly on a company-local midnight.
            let t = clock::from_millis(later(rng, 10 * DAY_MS));
            let m =
                clock::local_midnight(clock::local_date(t) + Duration::days(1)).timestamp_millis();
            if m <= end {
                m
            } else {
                created
            }
        }
        _ => {
            // On the hour: several records share one timestamp.
            let h = later(rng, 5 * DAY_MS);
            (h - h.rem_euclid(3_600_000)).max(created)
        }
    };
    (created, updated)
}

fn meta(keys: &Keys) -> Value {
    json!({
        "CreateTime": clock::format_secs(clock::from_millis(keys.created_ms)),
        "LastUpdatedTime": clock::format_secs(clock::from_millis(keys.updated_ms)),
    })
}

/// Money as a JSON number with two decimals (from integer cents, so no float drift).
fn money(cents: i64) -> Value {
    if cents % 100 == 0 {
        // QBO writes whole amounts without a fraction (`"Balance": 0`).
        return Value::from(cents / 100);
    }
    serde_json::Number::from_f64(cents as f64 / 100.0).map_or(Value::Null, Value::Number)
}

const GIVEN: &[&str] = &[
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
const FAMILY: &[&str] = &[
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

/// Keys of a name-list record: a few edits if it was ever updated, and some deactivated
/// (`inactive` percent of them).
fn name_list_keys(
    ctx: &GenCtx,
    entity: &'static str,
    id: u64,
    of: u64,
    max_edits: u64,
    inactive: u64,
) -> Keys {
    let mut r = Rng::new(ctx.seed, entity, id, 1);
    let (created_ms, updated_ms) = spread_times(ctx, &mut r, id, of);
    let edits = if updated_ms > created_ms {
        1 + r.below(max_edits)
    } else {
        0
    };
    Keys {
        id,
        sync_token: edits,
        created_ms,
        updated_ms,
        txn_date: None,
        active: Some(!r.chance(inactive)),
    }
}

pub struct CustomerGen;

impl EntityGen for CustomerGen {
    fn qbo_name(&self) -> &'static str {
        "Customer"
    }

    fn fields(&self) -> &'static [FieldDef] {
        const FIELDS: &[FieldDef] = &[
            f("DisplayName", FieldKind::Str),
            f("GivenName", FieldKind::Str),
            f("FamilyName", FieldKind::Str),
            f("CompanyName", FieldKind::Str),
            f("FullyQualifiedName", FieldKind::Str),
            f("Balance", FieldKind::Number),
            f("Active", FieldKind::Active),
        ];
        FIELDS
    }

    fn keys(&self, ctx: &GenCtx, id: u64, of: u64) -> Keys {
        name_list_keys(ctx, self.qbo_name(), id, of, 4, 12)
    }

    fn render(&self, ctx: &GenCtx, k: &Keys) -> Value {
        let mut r = Rng::new(ctx.seed, self.qbo_name(), k.id, 2);
        let (given, family, display) = customer_name(ctx.seed, k.id);
        let balance = if r.chance(40) {
            r.below(500_000) as i64
        } else {
            0
        };
        let email = if r.chance(75) {
            json!({ "Address": format!("customer{}@example.com", k.id) })
        } else {
            Value::Null
        };
        let company = display
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .trim_end()
            .to_string();
        json!({
            "domain": "QBO", "sparse": false,
            "Id": k.id.to_string(), "SyncToken": k.sync_token.to_string(), "MetaData": meta(k),
            "GivenName": given, "FamilyName": family, "CompanyName": company,
            "DisplayName": display, "FullyQualifiedName": display, "PrintOnCheckName": display,
            "Active": k.active.unwrap_or(true), "Taxable": r.chance(50), "Job": false,
            "BillWithParent": false, "Balance": money(balance), "BalanceWithJobs": money(balance),
            "CurrencyRef": { "value": "USD", "name": "United States Dollar" },
            "PreferredDeliveryMethod": *r.pick(&["Print", "Email", "None"]),
            "PrimaryEmailAddr": email,
            "BillAddr": { "Id": (1000 + k.id).to_string(), "Line1": format!("{} Main St.", 1 + r.below(999)), "City": *r.pick(&["Half Moon Bay", "Bayshore", "Sodo", "São Paulo"]), "CountrySubDivisionCode": "CA", "PostalCode": "94213" },
            "Notes": if r.chance(20) { json!("Prefers \"quoted\" notes \\ with backslashes") } else { Value::Null },
        })
    }
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

pub struct ItemGen;

impl EntityGen for ItemGen {
    fn qbo_name(&self) -> &'static str {
        "Item"
    }

    fn fields(&self) -> &'static [FieldDef] {
        const FIELDS: &[FieldDef] = &[
            f("Name", FieldKind::Str),
            f("FullyQualifiedName", FieldKind::Str),
            f("Sku", FieldKind::Str),
            f("Type", FieldKind::Str),
            f("UnitPrice", FieldKind::Number),
            f("Active", FieldKind::Active),
        ];
        FIELDS
    }

    fn keys(&self, ctx: &GenCtx, id: u64, of: u64) -> Keys {
        name_list_keys(ctx, self.qbo_name(), id, of, 3, 15)
    }

    fn render(&self, ctx: &GenCtx, k: &Keys) -> Value {
        let mut r = Rng::new(ctx.seed, self.qbo_name(), k.id, 2);
        let (name, kind, price) = item_basics(ctx.seed, k.id);
        let mut v = json!({
            "domain": "QBO", "sparse": false,
            "Id": k.id.to_string(), "SyncToken": k.sync_token.to_string(), "MetaData": meta(k),
            "Name": name, "FullyQualifiedName": name, "Active": k.active.unwrap_or(true),
            "Type": kind, "Taxable": r.chance(50), "UnitPrice": money(price),
            "Sku": if r.chance(60) { json!(format!("SKU-{:05}", k.id)) } else { Value::Null },
            "Description": if r.chance(50) { json!(format!("{name} — deluxe")) } else { Value::Null },
            "IncomeAccountRef": { "value": "79", "name": "Sales of Product Income" },
            "PurchaseCost": money(price / 2), "TrackQtyOnHand": kind == "Inventory",
        });
        if kind != "Service" {
            v["ExpenseAccountRef"] = json!({ "value": "80", "name": "Cost of Goods Sold" });
        }
        if kind == "Inventory" {
            v["AssetAccountRef"] = json!({ "value": "81", "name": "Inventory Asset" });
            v["QtyOnHand"] = json!(r.below(500));
            v["InvStartDate"] =
                json!(clock::local_date(clock::from_millis(k.created_ms)).to_string());
        }
        v
    }
}

pub struct InvoiceGen;

impl EntityGen for InvoiceGen {
    fn qbo_name(&self) -> &'static str {
        "Invoice"
    }

    fn fields(&self) -> &'static [FieldDef] {
        const FIELDS: &[FieldDef] = &[
            f("TxnDate", FieldKind::TxnDate),
            f("DueDate", FieldKind::Date),
            f("DocNumber", FieldKind::Str),
            f("CustomerRef", FieldKind::Ref),
            f("TotalAmt", FieldKind::Number),
            f("Balance", FieldKind::Number),
        ];
        FIELDS
    }

    fn keys(&self, ctx: &GenCtx, id: u64, of: u64) -> Keys {
        let mut r = Rng::new(ctx.seed, self.qbo_name(), id, 1);
        let (created_ms, updated_ms) = spread_times(ctx, &mut r, id, of);
        let edits = if updated_ms > created_ms {
            1 + r.below(5)
        } else {
            0
        };
        // Invoices are often entered a few days after the sale, never before the data span.
        let created_day = clock::local_date(clock::from_millis(created_ms));
        let first_day = clock::local_date(ctx.start);
        let txn = (created_day - Duration::days(r.below(4) as i64)).max(first_day);
        Keys {
            id,
            sync_token: edits,
            created_ms,
            updated_ms,
            txn_date: Some(txn),
            active: None,
        }
    }

    fn render(&self, ctx: &GenCtx, k: &Keys) -> Value {
        let mut r = Rng::new(ctx.seed, self.qbo_name(), k.id, 2);
        let cid = 1 + r.below(ctx.customers.max(1));
        let (_, _, cname) = customer_name(ctx.seed, cid);
        let mut lines = Vec::new();
        let mut total = 0i64;
        for n in 1..=(1 + r.below(5)) {
            let iid = 1 + r.below(ctx.items.max(1));
            let (iname, _, price) = item_basics(ctx.seed, iid);
            let qty = 1 + r.below(10) as i64;
            total += price * qty;
            lines.push(json!({
                "Id": n.to_string(), "LineNum": n, "Amount": money(price * qty),
                "Description": if r.chance(70) { json!(format!("{iname} × {qty}")) } else { Value::Null },
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {
                    "ItemRef": { "value": iid.to_string(), "name": iname },
                    "UnitPrice": money(price), "Qty": qty,
                    "ItemAccountRef": { "value": "79", "name": "Sales of Product Income" },
                    "TaxCodeRef": { "value": "NON" },
                },
            }));
        }
        lines.push(json!({ "Amount": money(total), "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {} }));
        let balance = match r.below(3) {
            0 => 0,
            1 => total,
            _ => total / 2,
        };
        let txn = k.txn_date.unwrap_or_default();
        let custom = if r.chance(50) {
            json!([{ "DefinitionId": "1", "Name": "Crew #", "Type": "StringType", "StringValue": format!("{}", 100 + r.below(50)) }])
        } else {
            json!([])
        };
        json!({
            "domain": "QBO", "sparse": false,
            "Id": k.id.to_string(), "SyncToken": k.sync_token.to_string(), "MetaData": meta(k),
            "CustomField": custom, "DocNumber": format!("{}", 1000 + k.id),
            "TxnDate": txn.to_string(), "DueDate": (txn + Duration::days(30)).to_string(),
            "CurrencyRef": { "value": "USD", "name": "United States Dollar" },
            "LinkedTxn": [], "Line": lines,
            "TxnTaxDetail": { "TotalTax": 0 },
            "CustomerRef": { "value": cid.to_string(), "name": cname },
            "CustomerMemo": if r.chance(30) { json!({ "value": "Thank you for your business — merci!" }) } else { Value::Null },
            "BillEmail": if r.chance(70) { json!({ "Address": format!("customer{cid}@example.com") }) } else { Value::Null },
            "ShipAddr": Value::Null,
            "TotalAmt": money(total), "Balance": money(balance),
            "ApplyTaxAfterDiscount": false, "PrintStatus": "NeedToPrint",
            "EmailStatus": *r.pick(&["NotSet", "NeedToSend", "EmailSent"]),
            "DeliveryInfo": Value::Null,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> GenCtx {
        GenCtx {
            seed: 7,
            start: clock::local_midnight(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()),
            end: clock::local_midnight(NaiveDate::from_ymd_opt(2024, 7, 1).unwrap())
                - Duration::seconds(1),
            customers: 50,
            items: 20,
        }
    }

    #[test]
    fn deterministic_and_in_span() {
        let c = ctx();
        for g in generators() {
            for id in 1..=300 {
                let k = g.keys(&c, id, 300);
                assert_eq!(k, g.keys(&c, id, 300));
                assert_eq!(g.render(&c, &k), g.render(&c, &k));
                assert!(k.created_ms <= k.updated_ms);
                assert!(
                    k.created_ms >= c.start.timestamp_millis()
                        && k.updated_ms <= c.end.timestamp_millis()
                );
                assert_eq!(k.updated_ms % 1000, 0);
            }
        }
    }

    #[test]
    fn boundary_records_exist() {
        let c = ctx();
        let keys: Vec<Keys> = (1..=500).map(|id| InvoiceGen.keys(&c, id, 500)).collect();
        assert!(
            keys.iter().any(|k| k.updated_ms % DAY_MS == 0),
            "a UTC-midnight record"
        );
        let shown: Vec<String> = keys
            .iter()
            .map(|k| clock::format_secs(clock::from_millis(k.updated_ms)))
            .collect();
        assert!(
            shown.iter().any(|s| s.contains("T00:00:00-0")),
            "a local-midnight record"
        );
        assert!(shown
            .iter()
            .any(|s| s.contains("T16:00:00-08:00") || s.contains("T17:00:00-07:00")));
    }

    #[test]
    fn invoice_shape() {
        let c = ctx();
        let v = InvoiceGen.render(&c, &InvoiceGen.keys(&c, 3, 10));
        let lines = v["Line"].as_array().unwrap();
        assert_eq!(lines.last().unwrap()["DetailType"], "SubTotalLineDetail");
        let cid: u64 = v["CustomerRef"]["value"].as_str().unwrap().parse().unwrap();
        assert!((1..=50).contains(&cid));
        assert_eq!(v["CustomerRef"]["name"], customer_name(7, cid).2.as_str());
        assert_eq!(v["Id"], "3");
    }
}
