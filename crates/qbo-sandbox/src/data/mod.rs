//! Deterministic record generation, organised per entity family.
//!
//! Records are not kept as JSON: each generator derives a record's key fields (`Keys`) and,
//! on demand, its full JSON from `(seed, entity, id)` alone. The store holds only keys, so
//! 500k invoices cost a few tens of MB, and any page can be rendered independently.
//! References (`CustomerRef`, `AccountRef`, `LinkedTxn`, ...) point at records that exist:
//! a referenced record's name is derivable from its id without rendering it (see `names`).
//! Adding an entity = one `Spec` in its family's file + a line in `SPECS` + a registry entry.

mod banking;
mod chart;
pub mod currency;
mod lines;
mod lists;
mod names;
mod people;
mod purchases;
mod sales;
mod settings;
mod settle;
mod spec;
mod tax;
#[cfg(test)]
mod tests;
mod tracking;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{json, Value};

use super::clock;

#[cfg(test)]
use names::customer_name;
pub use spec::{Inactive, KeyRule, Size, Spec};

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

/// Queryable on every entity that QBO windows by `LastUpdatedTime`.
pub const COMMON_FIELDS: &[FieldDef] = &[
    f("Id", FieldKind::Id),
    f("MetaData.CreateTime", FieldKind::CreateTime),
    f("MetaData.LastUpdatedTime", FieldKind::UpdateTime),
];

/// Queryable on the entities QBO serves only whole (CompanyInfo, Preferences,
/// RecurringTransaction): no `MetaData` filter, by design harsher than a lenient server.
pub const WHOLE_FIELDS: &[FieldDef] = &[f("Id", FieldKind::Id)];

/// How many records of each entity exist (QBO name -> count), so references can point at
/// records that exist.
#[derive(Debug, Clone, Default)]
pub struct Counts(pub BTreeMap<&'static str, u64>);

impl Counts {
    pub fn get(&self, qbo_name: &str) -> u64 {
        self.0.get(qbo_name).copied().unwrap_or(0)
    }
}

/// What every generator can see: the seed, the data span and how many of each entity exist.
#[derive(Debug, Clone)]
pub struct GenCtx {
    pub seed: u64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub counts: Counts,
    /// The multi-currency company (see `currency`); false renders every record in USD.
    pub multi_currency: bool,
}

impl GenCtx {
    pub fn count(&self, qbo_name: &str) -> u64 {
        self.counts.get(qbo_name)
    }

    /// A random existing record of `qbo_name`, or `None` when there are none.
    pub fn pick(&self, r: &mut Rng, qbo_name: &str) -> Option<u64> {
        let n = self.count(qbo_name);
        (n > 0).then(|| 1 + r.below(n))
    }
}

pub trait EntityGen: Send + Sync {
    fn qbo_name(&self) -> &'static str;
    /// Entity-specific queryable fields (in addition to `COMMON_FIELDS`).
    fn fields(&self) -> &'static [FieldDef];
    fn keys(&self, ctx: &GenCtx, id: u64, of: u64) -> Keys;
    fn render(&self, ctx: &GenCtx, keys: &Keys) -> Value;
}

/// Every generator, in registry order.
pub const SPECS: &[&Spec] = &[
    &chart::ACCOUNT,
    &tracking::ATTACHABLE,
    &purchases::BILL,
    &banking::BILL_PAYMENT,
    &tracking::BUDGET,
    &lists::CLASS,
    &lists::COMPANY_CURRENCY,
    &settings::COMPANY_INFO,
    &banking::CREDIT_CARD_PAYMENT,
    &sales::CREDIT_MEMO,
    &people::CUSTOMER,
    &lists::CUSTOMER_TYPE,
    &lists::DEPARTMENT,
    &banking::DEPOSIT,
    &people::EMPLOYEE,
    &sales::ESTIMATE,
    &sales::INVOICE,
    &lists::ITEM,
    &lists::JOURNAL_CODE,
    &banking::JOURNAL_ENTRY,
    &banking::PAYMENT,
    &lists::PAYMENT_METHOD,
    &settings::PREFERENCES,
    &purchases::PURCHASE,
    &purchases::PURCHASE_ORDER,
    &settings::RECURRING_TRANSACTION,
    &sales::REFUND_RECEIPT,
    &sales::SALES_RECEIPT,
    &tax::TAX_AGENCY,
    &tax::TAX_CODE,
    &tax::TAX_RATE,
    &lists::TERM,
    &tracking::TIME_ACTIVITY,
    &banking::TRANSFER,
    &people::VENDOR,
    &purchases::VENDOR_CREDIT,
];

pub fn spec(qbo_name: &str) -> Option<&'static Spec> {
    SPECS.iter().copied().find(|s| s.name == qbo_name)
}

pub fn generators() -> impl Iterator<Item = &'static dyn EntityGen> {
    SPECS.iter().map(|s| *s as &'static dyn EntityGen)
}

/// How many records of each entity a company of this size has: every entity's `Size`,
/// except where `overrides` (QBO name -> count) says otherwise.
pub fn default_counts(
    invoices: usize,
    customers: usize,
    items: usize,
    overrides: &BTreeMap<String, usize>,
) -> Counts {
    Counts(
        SPECS
            .iter()
            .map(|s| {
                let n = overrides
                    .get(s.name)
                    .copied()
                    .unwrap_or_else(|| s.size.count(invoices, customers, items));
                (s.name, n as u64)
            })
            .collect(),
    )
}

/// Checks that every reference a generator makes can point at a record that exists.
pub fn check_counts(counts: &Counts) -> Result<(), String> {
    for s in SPECS.iter().filter(|s| counts.get(s.name) > 0) {
        for &(target, min) in s.needs {
            let have = counts.get(target);
            if have < min {
                return Err(format!(
                    "{} records refer to {target} records, so the sandbox needs at least {min} \
                     {target} (it has {have}); raise {target} or set {} to 0",
                    s.name, s.name
                ));
            }
        }
    }
    Ok(())
}

/// The record's own object: QBO wraps each RecurringTransaction's template in its type
/// (`{"Invoice": {"Id": ..., "RecurringInfo": ...}}`); every other record is itself.
pub fn record_body(v: &Value) -> &Value {
    wrapped(v).map_or(v, |(_, body)| body)
}

pub fn record_body_mut(v: &mut Value) -> &mut Value {
    match wrapped(v).map(|(kind, _)| kind.clone()) {
        Some(kind) => &mut v[kind.as_str()],
        None => v,
    }
}

/// A wrapped template's type name and body: a single object under its type's name, without
/// an Id of its own.
pub fn wrapped(v: &Value) -> Option<(&String, &Value)> {
    let o = v
        .as_object()
        .filter(|o| o.len() == 1 && !o.contains_key("Id"))?;
    o.iter().next().filter(|(_, body)| body.is_object())
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

/// The fields every QBO record starts with.
fn base(k: &Keys) -> Value {
    json!({
        "domain": "QBO", "sparse": false,
        "Id": k.id.to_string(), "SyncToken": k.sync_token.to_string(), "MetaData": meta(k),
    })
}

/// `base(k)` plus `more`'s fields.
fn record(k: &Keys, more: Value) -> Value {
    let mut v = base(k);
    if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), more) {
        obj.extend(extra);
    }
    v
}

fn meta(keys: &Keys) -> Value {
    json!({
        "CreateTime": clock::format_secs(clock::from_millis(keys.created_ms)),
        "LastUpdatedTime": clock::format_secs(clock::from_millis(keys.updated_ms)),
    })
}

/// The record's company-local creation day (for dates that follow it, e.g. `HiredDate`).
fn created_day(k: &Keys) -> NaiveDate {
    clock::local_date(clock::from_millis(k.created_ms))
}

/// Money as a JSON number with two decimals (from integer cents, so no float drift).
fn money(cents: i64) -> Value {
    if cents % 100 == 0 {
        // QBO writes whole amounts without a fraction (`"Balance": 0`).
        return Value::from(cents / 100);
    }
    serde_json::Number::from_f64(cents as f64 / 100.0).map_or(Value::Null, Value::Number)
}

/// `Some(v)` as JSON, `None` as `null`, which `spec::drop_nulls` then leaves out (QBO omits
/// absent attributes; it never sends `null`).
fn opt(v: Option<Value>) -> Value {
    v.unwrap_or(Value::Null)
}
