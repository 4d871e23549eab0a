//! Query evaluation: resolve a parsed query against an entity's fields (typing every literal),
//! pick an index to range-scan, filter, sort, and cut a page.

use std::cmp::Ordering;
use std::ops::Bound;

use chrono::NaiveDate;
use serde_json::Value;

use super::clock;
use super::data::{wrapped, FieldDef, FieldKind, GenCtx};
use super::query::{self, Literal, Op, Query};
use super::store::{Row, Table};

/// A typed value: a literal after resolution, or a record's field.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Id(u64),
    Ms(i64),
    Date(NaiveDate),
    Bool(bool),
    Num(f64),
    Str(String),
}

fn cmp(a: &Val, b: &Val) -> Option<Ordering> {
    match (a, b) {
        (Val::Id(x), Val::Id(y)) => Some(x.cmp(y)),
        (Val::Ms(x), Val::Ms(y)) => Some(x.cmp(y)),
        (Val::Date(x), Val::Date(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Num(x), Val::Num(y)) => x.partial_cmp(y),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[derive(Debug)]
pub struct Pred {
    pub field: FieldDef,
    pub op: Op,
    pub vals: Vec<Val>,
}

impl Pred {
    fn matches(&self, v: Option<Val>) -> bool {
        let Some(v) = v else { return false };
        let ord = |i: usize| self.vals.get(i).and_then(|lit| cmp(&v, lit));
        match self.op {
            Op::Eq => ord(0) == Some(Ordering::Equal),
            Op::Lt => ord(0) == Some(Ordering::Less),
            Op::Gt => ord(0) == Some(Ordering::Greater),
            Op::Le => matches!(ord(0), Some(Ordering::Less | Ordering::Equal)),
            Op::Ge => matches!(ord(0), Some(Ordering::Greater | Ordering::Equal)),
            Op::In => (0..self.vals.len()).any(|i| ord(i) == Some(Ordering::Equal)),
            Op::Like => match (&v, self.vals.first()) {
                (Val::Str(text), Some(Val::Str(pat))) => query::like(pat, text),
                _ => false,
            },
        }
    }
}

#[derive(Debug)]
pub struct Compiled {
    pub count: bool,
    pub entity: &'static str,
    pub preds: Vec<Pred>,
    pub order: Option<(FieldDef, bool)>,
    pub start_position: u64,
    pub max_results: u64,
    /// Name lists hide inactive records unless the query names `Active`.
    pub hide_inactive: bool,
    /// `SELECT Id, ...`: only these fields, as a sparse record; `None` for `SELECT *`.
    pub projection: Option<Vec<FieldDef>>,
}

fn typed(field: &FieldDef, lit: &Literal) -> Result<Val, String> {
    let bad = || format!("invalid value {lit:?} for {}", field.path);
    match (field.kind, lit) {
        (FieldKind::Id, Literal::Str(s) | Literal::Num(s)) => {
            s.parse().map(Val::Id).map_err(|_| bad())
        }
        (FieldKind::CreateTime | FieldKind::UpdateTime, Literal::Str(s)) => {
            clock::parse_instant_ms(s).map(Val::Ms).ok_or_else(bad)
        }
        (FieldKind::TxnDate | FieldKind::Date, Literal::Str(s)) => {
            clock::parse_date(s).map(Val::Date).ok_or_else(bad)
        }
        (FieldKind::Active, Literal::Bool(b)) => Ok(Val::Bool(*b)),
        (FieldKind::Active, Literal::Str(s)) => match s.to_ascii_lowercase().as_str() {
            "true" => Ok(Val::Bool(true)),
            "false" => Ok(Val::Bool(false)),
            _ => Err(bad()),
        },
        (FieldKind::Number, Literal::Num(s) | Literal::Str(s)) => s
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(Val::Num)
            .ok_or_else(bad),
        (FieldKind::Str | FieldKind::Ref, Literal::Str(s)) => Ok(Val::Str(s.clone())),
        _ => Err(bad()),
    }
}

/// Resolves names and types against `table`'s entity.
/// Errors become 400 "Invalid query" (QueryValidationError) faults.
pub fn compile(q: &Query, table: &Table) -> Result<Compiled, String> {
    if q.max_results > query::MAX_RESULTS_LIMIT {
        // QBO's words, as a QueryValidationError (4001), not a parse error.
        return Err(format!(
            "value {} is too large. Max allowed value is {}",
            q.max_results,
            query::MAX_RESULTS_LIMIT
        ));
    }
    let mut preds = Vec::new();
    let mut mentions_active = false;
    for c in &q.conds {
        let field = table.field(&c.field).ok_or_else(|| {
            format!(
                "property '{}' is not queryable for entity {}",
                c.field, table.entity.qbo_name
            )
        })?;
        mentions_active |= field.kind == FieldKind::Active;
        let ok_op = match field.kind {
            FieldKind::Active => matches!(c.op, Op::Eq | Op::In),
            FieldKind::Str | FieldKind::Ref => true,
            _ => c.op != Op::Like,
        };
        if !ok_op {
            return Err(format!(
                "operator {:?} is not supported for {}",
                c.op, field.path
            ));
        }
        let vals = c
            .values
            .iter()
            .map(|l| typed(&field, l))
            .collect::<Result<Vec<_>, _>>()?;
        preds.push(Pred {
            field,
            op: c.op,
            vals,
        });
    }
    let order = match &q.order_by {
        None => None,
        Some((name, desc)) => Some((
            table.field(name).ok_or_else(|| {
                format!(
                    "cannot ORDERBY '{name}' for entity {}",
                    table.entity.qbo_name
                )
            })?,
            *desc,
        )),
    };
    let projection = match &q.fields {
        None => None,
        Some(names) => Some(
            names
                .iter()
                .map(|name| {
                    table.field(name).ok_or_else(|| {
                        format!(
                            "property '{name}' is not queryable for entity {}",
                            table.entity.qbo_name
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(Compiled {
        projection,
        count: q.count,
        entity: table.entity.qbo_name,
        preds,
        order,
        start_position: q.start_position,
        max_results: q.max_results,
        hide_inactive: table.entity.hides_inactive() && !mentions_active,
    })
}

/// A record's field value; key fields come from the index, the rest from (lazily rendered) JSON.
fn field_val(
    table: &Table,
    ctx: &GenCtx,
    row: &Row,
    f: &FieldDef,
    doc: &mut Option<Value>,
) -> Option<Val> {
    let k = &row.keys;
    match f.kind {
        FieldKind::Id => return Some(Val::Id(k.id)),
        FieldKind::CreateTime => return Some(Val::Ms(k.created_ms)),
        FieldKind::UpdateTime => return Some(Val::Ms(k.updated_ms)),
        FieldKind::TxnDate => return k.txn_date.map(Val::Date),
        FieldKind::Active => return Some(Val::Bool(k.active.unwrap_or(true))),
        _ => {}
    }
    let doc = doc.get_or_insert_with(|| table.render(ctx, row));
    let mut v: &Value = doc;
    for part in f.path.split('.') {
        v = v.get(part)?;
    }
    match f.kind {
        FieldKind::Number => v.as_f64().map(Val::Num),
        FieldKind::Date => v.as_str().and_then(clock::parse_date).map(Val::Date),
        FieldKind::Ref => v.get("value")?.as_str().map(|s| Val::Str(s.into())),
        _ => v.as_str().map(|s| Val::Str(s.into())),
    }
}

/// Inclusive integer bounds implied by the comparisons on one field (AND = intersection).
fn bounds<T: Copy + Ord>(
    q: &Compiled,
    kind: FieldKind,
    get: impl Fn(&Val) -> Option<T>,
    step: impl Fn(T, bool) -> T,
) -> Option<(Bound<T>, Bound<T>)> {
    let (mut lo, mut hi) = (None::<T>, None::<T>);
    for p in q.preds.iter().filter(|p| p.field.kind == kind) {
        let Some(v) = p.vals.first().and_then(&get) else {
            continue;
        };
        let (l, h) = match p.op {
            Op::Eq => (Some(v), Some(v)),
            Op::Gt => (Some(step(v, true)), None),
            Op::Ge => (Some(v), None),
            Op::Lt => (None, Some(step(v, false))),
            Op::Le => (None, Some(v)),
            Op::In | Op::Like => (None, None),
        };
        lo = lo.max(l);
        hi = match (hi, h) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    if lo.is_none() && hi.is_none() {
        return None;
    }
    let b = |x: Option<T>| x.map_or(Bound::Unbounded, Bound::Included);
    Some((b(lo), b(hi)))
}

fn pair<T: Copy>(b: Bound<T>, id: u64) -> Bound<(T, u64)> {
    match b {
        Bound::Included(v) => Bound::Included((v, id)),
        Bound::Excluded(v) => Bound::Excluded((v, id)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn empty_range<T: Ord>(lo: &Bound<T>, hi: &Bound<T>) -> bool {
    matches!((lo, hi), (Bound::Included(a), Bound::Included(b)) if a > b)
}

/// Every matching row, in the query's order. Rows are borrowed, never cloned.
pub fn select<'a>(table: &'a Table, ctx: &GenCtx, q: &Compiled) -> Vec<&'a Row> {
    let ms = |v: &Val| if let Val::Ms(x) = v { Some(*x) } else { None };
    let date = |v: &Val| if let Val::Date(x) = v { Some(*x) } else { None };
    let id = |v: &Val| if let Val::Id(x) = v { Some(*x) } else { None };
    // Candidate rows from the narrowest index, and the order that index already yields.
    let (candidates, natural): (Box<dyn Iterator<Item = &Row> + '_>, FieldKind) =
        if let Some((lo, hi)) = bounds(
            q,
            FieldKind::UpdateTime,
            ms,
            |x, up| if up { x + 1 } else { x - 1 },
        ) {
            let it: Box<dyn Iterator<Item = &Row>> = if empty_range(&lo, &hi) {
                Box::new(std::iter::empty())
            } else {
                Box::new(
                    table
                        .by_updated
                        .range((pair(lo, 0), pair(hi, u64::MAX)))
                        .map(|(_, r)| &**r),
                )
            };
            (it, FieldKind::UpdateTime)
        } else if let Some((lo, hi)) = bounds(q, FieldKind::TxnDate, date, |d, up| {
            if up {
                d.succ_opt().unwrap_or(d)
            } else {
                d.pred_opt().unwrap_or(d)
            }
        }) {
            let it: Box<dyn Iterator<Item = &Row>> = if empty_range(&lo, &hi) {
                Box::new(std::iter::empty())
            } else {
                Box::new(
                    table
                        .by_txn
                        .range((pair(lo, 0), pair(hi, u64::MAX)))
                        .map(|(_, r)| &**r),
                )
            };
            (it, FieldKind::TxnDate)
        } else {
            let (lo, hi) = bounds(q, FieldKind::Id, id, |x, up| {
                if up {
                    x.saturating_add(1)
                } else {
                    x.saturating_sub(1)
                }
            })
            .unwrap_or((Bound::Unbounded, Bound::Unbounded));
            // `Id < 1` would underflow to 0 above; treat it as the empty range it is.
            let it: Box<dyn Iterator<Item = &Row>> =
                if empty_range(&lo, &hi) || hi == Bound::Included(0) {
                    Box::new(std::iter::empty())
                } else {
                    Box::new(table.rows.range((lo, hi)).map(|(_, r)| &**r))
                };
            (it, FieldKind::Id)
        };
    let mut out: Vec<&Row> = candidates
        .filter(|row| !(q.hide_inactive && row.keys.active == Some(false)))
        .filter(|row| {
            let mut doc = None;
            q.preds
                .iter()
                .all(|p| p.matches(field_val(table, ctx, row, &p.field, &mut doc)))
        })
        .collect();
    let (order_field, desc) = q.order.unwrap_or((
        FieldDef {
            path: "Id",
            kind: FieldKind::Id,
        },
        false,
    ));
    if q.count || (order_field.kind == natural && !desc) {
        return out; // Already in (key, Id) order, or order is irrelevant.
    }
    // Precompute sort keys once; ties break by Id ascending so paging is deterministic.
    let mut keyed: Vec<(Option<Val>, &Row)> = out
        .drain(..)
        .map(|r| (field_val(table, ctx, r, &order_field, &mut None), r))
        .collect();
    keyed.sort_by(|(a, ra), (b, rb)| {
        let o = match (a, b) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => cmp(x, y).unwrap_or(Ordering::Equal),
        };
        let o = if desc { o.reverse() } else { o };
        o.then(ra.keys.id.cmp(&rb.keys.id))
    });
    keyed.into_iter().map(|(_, r)| r).collect()
}

/// A result row as the response carries it: the whole record, or for a projection a sparse
/// one with only the selected fields (where the record has them) plus `domain` and `sparse`.
pub fn output(table: &Table, ctx: &GenCtx, row: &Row, q: &Compiled) -> Value {
    let doc = table.render(ctx, row);
    match &q.projection {
        None => doc,
        Some(fields) => project(&doc, fields),
    }
}

/// The sparse form of `doc`. QBO wraps a RecurringTransaction's template in its type
/// (`{"Invoice": {"Id": ..}}`): such a record is projected inside, keeping the wrapper.
pub fn project(doc: &Value, fields: &[FieldDef]) -> Value {
    if let Some((kind, body)) = wrapped(doc) {
        return serde_json::json!({ kind: project(body, fields) });
    }
    let mut out = serde_json::Map::new();
    for f in fields {
        let parts: Vec<&str> = f.path.split('.').collect();
        if let Some(v) = parts.iter().try_fold(doc, |v, p| v.get(p)) {
            set_path(&mut out, &parts, v.clone());
        }
    }
    out.insert("domain".into(), Value::from("QBO"));
    out.insert("sparse".into(), Value::from(true));
    Value::Object(out)
}

/// Puts `v` at a dotted path, creating the objects on the way; a path through a non-object
/// (two selected fields that disagree on the record's shape) is skipped rather than a panic.
fn set_path(out: &mut serde_json::Map<String, Value>, parts: &[&str], v: Value) {
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut at = out;
    for p in parents {
        let next = at
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
        let Some(obj) = next.as_object_mut() else {
            return;
        };
        at = obj;
    }
    at.insert(last.to_string(), v);
}

/// The page a query asks for (1-based STARTPOSITION).
pub fn page<'a>(rows: &[&'a Row], q: &Compiled) -> Vec<&'a Row> {
    let start = usize::try_from(q.start_position.saturating_sub(1)).unwrap_or(usize::MAX);
    let len = usize::try_from(q.max_results).unwrap_or(usize::MAX);
    rows.iter().skip(start).take(len).copied().collect()
}

/// The instant range `[lo, hi]` (ms, inclusive) a query covers on `LastUpdatedTime`, or on
/// `TxnDate` mapped to company-local days; `None` when it bounds neither.
pub fn window_ms(q: &Compiled) -> Option<(i64, i64)> {
    let ms = |v: &Val| if let Val::Ms(x) = v { Some(*x) } else { None };
    let date = |v: &Val| if let Val::Date(x) = v { Some(*x) } else { None };
    let open = |b: Bound<i64>, dflt: i64| if let Bound::Included(x) = b { x } else { dflt };
    if let Some((lo, hi)) = bounds(
        q,
        FieldKind::UpdateTime,
        ms,
        |x, up| if up { x + 1 } else { x - 1 },
    ) {
        return Some((open(lo, i64::MIN), open(hi, i64::MAX)));
    }
    let (lo, hi) = bounds(q, FieldKind::TxnDate, date, |d, up| {
        if up {
            d.succ_opt().unwrap_or(d)
        } else {
            d.pred_opt().unwrap_or(d)
        }
    })?;
    let day_start = |d: NaiveDate| clock::local_midnight(d).timestamp_millis();
    let lo = if let Bound::Included(d) = lo {
        day_start(d)
    } else {
        i64::MIN
    };
    let hi = match hi {
        Bound::Included(d) => d.succ_opt().map_or(i64::MAX, |n| day_start(n) - 1),
        _ => i64::MAX,
    };
    Some((lo, hi))
}

#[cfg(test)]
#[path = "eval_tests.rs"]
mod tests;
