//! A generator declared as data: how an entity's keys are derived, how many records it has
//! by default, what it refers to, and how a record renders.

use chrono::Duration;
use serde_json::Value;

use super::{clock, spread_times, EntityGen, FieldDef, GenCtx, Keys, Rng};

/// Which records of a name list are deactivated.
#[derive(Clone, Copy)]
pub enum Inactive {
    /// A random share, in percent.
    Percent(u64),
    /// Decided by id, so small lists reliably have inactive members (and referenced roles
    /// stay active).
    Rule(fn(u64) -> bool),
}

/// How a record's key fields are derived.
#[derive(Clone, Copy)]
pub enum KeyRule {
    /// A transaction: edited up to `max_edits` times; its `TxnDate` falls up to
    /// `backdate_days` before its creation (company-local), never before the data span.
    Txn { max_edits: u64, backdate_days: u64 },
    /// A name list (`Active`).
    List { max_edits: u64, inactive: Inactive },
    /// Neither (Attachable, TaxAgency, the settings objects).
    Plain { max_edits: u64 },
}

/// The most records a derived size gives: a benchmark of 500k invoices should not also
/// generate (and hold) a quarter million payments; `SandboxConfig::counts` asks for more.
pub const DERIVED_MAX: usize = 1_000;

/// How many records an entity has by default, from the three sizes the config names.
#[derive(Clone, Copy, Debug)]
pub enum Size {
    Invoices,
    Customers,
    Items,
    /// One per `n` invoices, at least `min` (0 when there are no invoices).
    PerInvoice {
        n: usize,
        min: usize,
    },
    /// One per `n` customers, at least `min` (0 when there are no customers).
    PerCustomer {
        n: usize,
        min: usize,
    },
    Fixed(usize),
}

impl Size {
    pub fn count(self, invoices: usize, customers: usize, items: usize) -> usize {
        let per = |base: usize, n: usize, min: usize| {
            if base == 0 {
                0
            } else {
                (base / n.max(1)).clamp(min, DERIVED_MAX)
            }
        };
        match self {
            Size::Invoices => invoices,
            Size::Customers => customers,
            Size::Items => items,
            Size::PerInvoice { n, min } => per(invoices, n, min),
            Size::PerCustomer { n, min } => per(customers, n, min),
            Size::Fixed(n) => n,
        }
    }
}

/// One entity's generator, declared as data.
pub struct Spec {
    pub name: &'static str,
    pub fields: &'static [FieldDef],
    pub keys: KeyRule,
    pub size: Size,
    /// Entities this one always refers to, with how many of them must exist.
    pub needs: &'static [(&'static str, u64)],
    pub render: fn(&GenCtx, &Keys, &mut Rng) -> Value,
}

impl EntityGen for Spec {
    fn qbo_name(&self) -> &'static str {
        self.name
    }

    fn fields(&self) -> &'static [FieldDef] {
        self.fields
    }

    fn keys(&self, ctx: &GenCtx, id: u64, of: u64) -> Keys {
        let mut r = Rng::new(ctx.seed, self.name, id, 1);
        let (created_ms, updated_ms) = spread_times(ctx, &mut r, id, of);
        let max_edits = match self.keys {
            KeyRule::Txn { max_edits, .. }
            | KeyRule::List { max_edits, .. }
            | KeyRule::Plain { max_edits } => max_edits,
        };
        let edits = if updated_ms > created_ms {
            1 + r.below(max_edits)
        } else {
            0
        };
        let mut keys = Keys {
            id,
            sync_token: edits,
            created_ms,
            updated_ms,
            txn_date: None,
            active: None,
        };
        match self.keys {
            KeyRule::Txn { backdate_days, .. } => {
                // Often entered a few days after the fact, never before the data span.
                let created_day = clock::local_date(clock::from_millis(created_ms));
                let first_day = clock::local_date(ctx.start);
                let back = Duration::days(r.below(backdate_days) as i64);
                keys.txn_date = Some((created_day - back).max(first_day));
            }
            KeyRule::List { inactive, .. } => {
                keys.active = Some(match inactive {
                    Inactive::Percent(p) => !r.chance(p),
                    Inactive::Rule(rule) => !rule(id),
                });
            }
            KeyRule::Plain { .. } => {}
        }
        keys
    }

    fn render(&self, ctx: &GenCtx, k: &Keys) -> Value {
        let mut r = Rng::new(ctx.seed, self.name, k.id, 2);
        let mut v = (self.render)(ctx, k, &mut r);
        drop_nulls(&mut v);
        if ctx.multi_currency {
            super::currency::apply(self.name, k, &mut v);
        }
        v
    }
}

/// QBO leaves an absent attribute out; it never sends `null` (clients such as
/// python-quickbooks iterate every key they get, and crash on a `null` list or object).
/// Generators write optional fields as `null` for brevity; this removes them, at any depth.
pub fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.retain(|_, x| !x.is_null());
            o.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => {
            a.retain(|x| !x.is_null());
            a.iter_mut().for_each(drop_nulls);
        }
        _ => {}
    }
}
