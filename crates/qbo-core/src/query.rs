//! Builds statements in QBO's query language. Values are always rendered through
//! [`Literal`], so a quote or backslash inside a value can never change the query.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use std::fmt::Write;

use crate::entities::Entity;

pub const LAST_UPDATED_FIELD: &str = "MetaData.LastUpdatedTime";
pub const TXN_DATE_FIELD: &str = "TxnDate";
pub const ID_FIELD: &str = "Id";
/// QBO answers at most this many rows a page.
pub const MAX_PAGE_SIZE: u32 = 1000;

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    /// Always rendered with an explicit offset: QBO reads offset-less times in the
    /// company's zone, which would silently shift every window.
    Instant(DateTime<Utc>),
    Date(NaiveDate),
    Bool(bool),
}

impl Literal {
    fn render(&self, out: &mut String) {
        match self {
            Literal::Str(s) => push_quoted(out, s),
            Literal::Instant(t) => {
                push_quoted(out, &t.to_rfc3339_opts(SecondsFormat::Secs, false));
            }
            Literal::Date(d) => push_quoted(out, &d.format("%Y-%m-%d").to_string()),
            Literal::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
}

/// Single-quotes `s`, escaping `\` and `'` the way QBO's parser expects.
pub fn push_quoted(out: &mut String, s: &str) {
    out.push('\'');
    for c in s.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Compare(&'static str, Op, Literal),
    In(&'static str, Vec<Literal>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Projection {
    All,
    Count,
    /// `SELECT Id`: sparse records, for listing which records exist.
    Ids,
}

/// One QBO query. QBO's WHERE is AND-only, so conditions simply accumulate.
#[derive(Debug, Clone)]
pub struct Query {
    projection: Projection,
    entity: &'static str,
    conditions: Vec<Condition>,
    order_by: Option<&'static str>,
    start_position: Option<u32>,
    max_results: Option<u32>,
}

impl Query {
    pub fn select(entity: &Entity) -> Self {
        Self::new(entity, Projection::All)
    }

    pub fn count(entity: &Entity) -> Self {
        Self::new(entity, Projection::Count)
    }

    pub fn ids(entity: &Entity) -> Self {
        Self::new(entity, Projection::Ids)
    }

    fn new(entity: &Entity, projection: Projection) -> Self {
        let mut q = Query {
            projection,
            entity: entity.qbo_name,
            conditions: Vec::new(),
            order_by: None,
            start_position: None,
            max_results: None,
        };
        if entity.hides_inactive() {
            // Without this QBO silently drops deactivated names; the raw zone wants them.
            q.conditions.push(Condition::In(
                "Active",
                vec![Literal::Bool(true), Literal::Bool(false)],
            ));
        }
        q
    }

    pub fn filter(mut self, field: &'static str, op: Op, value: Literal) -> Self {
        self.conditions.push(Condition::Compare(field, op, value));
        self
    }

    /// `field IN (values...)`.
    pub fn filter_in(mut self, field: &'static str, values: Vec<Literal>) -> Self {
        self.conditions.push(Condition::In(field, values));
        self
    }

    pub fn order_by(mut self, field: &'static str) -> Self {
        self.order_by = Some(field);
        self
    }

    /// `start` is 1-based, as in QBO.
    pub fn page(mut self, start: u32, size: u32) -> Self {
        self.start_position = Some(start.max(1));
        self.max_results = Some(size.clamp(1, MAX_PAGE_SIZE));
        self
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(160);
        out.push_str(match self.projection {
            Projection::All => "SELECT * FROM ",
            Projection::Count => "SELECT COUNT(*) FROM ",
            Projection::Ids => "SELECT Id FROM ",
        });
        out.push_str(self.entity);
        for (i, cond) in self.conditions.iter().enumerate() {
            out.push_str(if i == 0 { " WHERE " } else { " AND " });
            match cond {
                Condition::Compare(field, op, lit) => {
                    let _ = write!(out, "{field} {} ", op.as_str());
                    lit.render(&mut out);
                }
                Condition::In(field, lits) => {
                    let _ = write!(out, "{field} IN (");
                    for (j, lit) in lits.iter().enumerate() {
                        if j > 0 {
                            out.push_str(", ");
                        }
                        lit.render(&mut out);
                    }
                    out.push(')');
                }
            }
        }
        if let Some(field) = self.order_by {
            let _ = write!(out, " ORDERBY {field}");
        }
        if let Some(start) = self.start_position {
            let _ = write!(out, " STARTPOSITION {start}");
        }
        if let Some(max) = self.max_results {
            let _ = write!(out, " MAXRESULTS {max}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities;

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        let mut s = String::new();
        push_quoted(&mut s, r"O'Brien \ Co' OR 1=1");
        assert_eq!(s, r"'O\'Brien \\ Co\' OR 1=1'");
    }

    #[test]
    fn name_lists_ask_for_inactive_records() {
        let q = Query::count(entities::find("customers").unwrap()).render();
        assert_eq!(
            q,
            "SELECT COUNT(*) FROM Customer WHERE Active IN (true, false)"
        );
    }

    #[test]
    fn window_query_has_explicit_offsets_and_paging() {
        let start = "2024-01-01T00:00:00Z".parse().unwrap();
        let q = Query::select(entities::find("invoices").unwrap())
            .filter(LAST_UPDATED_FIELD, Op::Ge, Literal::Instant(start))
            .order_by(LAST_UPDATED_FIELD)
            .page(1001, 5000)
            .render();
        assert_eq!(
            q,
            "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '2024-01-01T00:00:00+00:00' \
             ORDERBY MetaData.LastUpdatedTime STARTPOSITION 1001 MAXRESULTS 1000"
        );
    }
}
