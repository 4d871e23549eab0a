//! QBO's ExchangeRate entity: the rate of a foreign currency into the home currency on a
//! date. It has no Id (a rate is keyed by its currency and `AsOfDate`) and two ways in:
//! `GET .../exchangerate?sourcecurrencycode=EUR[&asofdate=YYYY-MM-DD]` (one rate; the date
//! defaults to today) and the query `SELECT * FROM ExchangeRate WHERE AsOfDate = 'D'` (every
//! currency's rate that day; `SourceCurrencyCode = 'X'` narrows it). Strict as QBO: any other
//! filter, operator, projection or ordering is a QueryValidationError, a missing or bad
//! parameter a ValidationFault. A single-currency company has no rates.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::NaiveDate;
use serde_json::{json, Value};

use super::data::currency;
use super::gate::{self, Kind, Reply, Req};
use super::query::{Literal, Op, Query};
use super::{clock, envelope, Inner};

/// The company's home currency (the target of every rate).
const HOME: &str = "USD";

/// One rate, as QBO renders it.
fn record(code: &str, day: NaiveDate, rate_e4: i64) -> Value {
    json!({
        "SourceCurrencyCode": code,
        "TargetCurrencyCode": HOME,
        "Rate": currency::rate_value(rate_e4),
        "AsOfDate": day.to_string(),
        "SyncToken": "0",
        "domain": "QBO",
        "sparse": false,
        "MetaData": { "LastUpdatedTime": clock::format_secs(clock::local_midnight(day)) },
    })
}

fn rate_of(req: &Req<'_>, code: &str, day: NaiveDate) -> Option<Value> {
    if !req.realm.store.ctx.multi_currency {
        return None;
    }
    currency::rate_e4(code, day).map(|r| record(code, day, r))
}

fn today(req: &Req<'_>) -> NaiveDate {
    clock::local_date(req.inner.now())
}

fn param_fault(detail: &str, time: &str) -> Value {
    envelope::fault(
        "ValidationFault",
        "2010",
        "Invalid Request Parameter",
        detail,
        time,
    )
}

/// `GET .../exchangerate?sourcecurrencycode=EUR&asofdate=2024-01-31`.
pub async fn read(
    State(inner): State<Arc<Inner>>,
    Path(realm): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = gate::params(raw);
    gate::serve(
        &inner,
        &realm,
        &headers,
        &params,
        Kind::Read,
        Some("exchangerate"),
        read_answer,
    )
    .await
}

fn read_answer(req: &Req<'_>, time: &str) -> Reply {
    let Some(code) = req.params.get("sourcecurrencycode") else {
        return req.bad(envelope::fault(
            "ValidationFault",
            "2020",
            "Required param missing, need to supply the required value for the API",
            "Required parameter sourcecurrencycode is missing in the request",
            time,
        ));
    };
    let day = match req.params.get("asofdate") {
        None => today(req),
        Some(s) => match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            Ok(d) if s.len() == 10 => d,
            _ => {
                return req.bad(param_fault(
                    &format!("asofdate must be a date as yyyy-MM-dd, not {s:?}"),
                    time,
                ))
            }
        },
    };
    match rate_of(req, code, day) {
        Some(rate) => req.ok(json!({ "ExchangeRate": rate, "time": time })),
        None => req.bad(super::rest::object_not_found(time)),
    }
}

/// Answers a parsed `SELECT * FROM ExchangeRate ...`.
pub fn query_answer(req: &Req<'_>, q: &Query, time: &str) -> Reply {
    let invalid = |why: &str| req.bad(envelope::invalid_query(why, time));
    if q.count || q.fields.is_some() {
        return invalid("ExchangeRate queries must select *");
    }
    if q.order_by.is_some() {
        return invalid("ORDERBY is not supported for ExchangeRate");
    }
    let (mut day, mut code) = (None, None);
    for c in &q.conds {
        let value = match (c.op, c.values.as_slice()) {
            (Op::Eq, [Literal::Str(s)]) => s,
            _ => {
                return invalid(&format!(
                    "ExchangeRate can only be filtered by AsOfDate = 'yyyy-MM-dd' and \
                     SourceCurrencyCode = 'XXX' ({} is not supported)",
                    c.field
                ))
            }
        };
        if c.field.eq_ignore_ascii_case("AsOfDate") && day.is_none() {
            match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
                Ok(d) if value.len() == 10 => day = Some(d),
                _ => return invalid(&format!("AsOfDate must be yyyy-MM-dd, not {value:?}")),
            }
        } else if c.field.eq_ignore_ascii_case("SourceCurrencyCode") && code.is_none() {
            code = Some(value.as_str());
        } else {
            return invalid(&format!(
                "property {} is not queryable (or named twice) on ExchangeRate",
                c.field
            ));
        }
    }
    let day = day.unwrap_or_else(|| today(req));
    let rates: Vec<Value> = currency::FOREIGN_CODES
        .iter()
        .filter(|c| code.is_none_or(|want| want == **c))
        .filter_map(|c| rate_of(req, c, day))
        .skip(q.start_position.saturating_sub(1) as usize)
        .take(q.max_results as usize)
        .collect();
    req.ok(envelope::page(
        "ExchangeRate",
        rates,
        q.start_position,
        time,
    ))
}
