//! QBO's ExchangeRate entity, read by query one `AsOfDate` at a time (the only filter QBO
//! documents besides `SourceCurrencyCode`; a rate has no Id and no LastUpdatedTime filter,
//! so the entity cannot be windowed like the others).

use chrono::NaiveDate;
use serde_json::Value;

use super::{response, Answer, ClientError, QboClient, RequestCounters};

/// One rate as QBO sent it: `Rate` units of `target` buy one `source` on `as_of`.
#[derive(Debug, Clone)]
pub struct ExchangeRate {
    pub source: String,
    pub target: String,
    pub as_of: NaiveDate,
    /// `Rate` as QBO wrote it (decimal text, so nothing is lost on the way to numeric).
    pub rate: String,
    pub last_updated: Option<String>,
    pub json: Value,
}

/// The query for every currency's rate on `day`.
pub fn query_for(day: NaiveDate) -> String {
    format!("SELECT * FROM ExchangeRate WHERE AsOfDate = '{day}'")
}

impl QboClient {
    /// Every foreign currency's rate into the home currency on `day`. A company uses far
    /// fewer than QBO's 1000-a-page currencies, so one page is the whole answer.
    pub async fn exchange_rates(
        &self,
        day: NaiveDate,
        counters: &mut RequestCounters,
    ) -> Result<Answer<Vec<ExchangeRate>>, ClientError> {
        self.execute(&query_for(day), counters, |body| parse(body, day))
            .await
    }
}

fn malformed(why: String) -> ClientError {
    ClientError::Malformed(why)
}

/// `{"QueryResponse": {"ExchangeRate": [...], ...}}`, or `{}` when there are none.
pub fn parse(body: &[u8], day: NaiveDate) -> Result<Vec<ExchangeRate>, ClientError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        malformed(format!(
            "an ExchangeRate answer is not JSON ({e}): {}",
            response::snippet(body)
        ))
    })?;
    if let Some(fault) = v.get("Fault").or_else(|| v.get("fault")) {
        return Err(response::fault_error(200, &fault.to_string()));
    }
    let qr = v
        .get("QueryResponse")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed(format!("no QueryResponse: {}", response::snippet(body))))?;
    let items = match qr.get("ExchangeRate") {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(malformed("ExchangeRate is not a list".into())),
    };
    items.iter().map(|r| rate_of(r, day)).collect()
}

fn rate_of(r: &Value, day: NaiveDate) -> Result<ExchangeRate, ClientError> {
    let text = |k: &str| {
        r.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| malformed(format!("an ExchangeRate without {k}: {r}")))
    };
    let as_of: NaiveDate = text("AsOfDate")?.parse().map_err(|e| {
        malformed(format!(
            "an ExchangeRate's AsOfDate is not a date ({e}): {r}"
        ))
    })?;
    if as_of != day {
        return Err(malformed(format!(
            "asked for the rates of {day}, QBO answered one of {as_of}"
        )));
    }
    let rate = match r.get("Rate") {
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(malformed(format!(
                "an ExchangeRate without a numeric Rate: {r}"
            )))
        }
    };
    Ok(ExchangeRate {
        source: text("SourceCurrencyCode")?,
        target: text("TargetCurrencyCode")?,
        as_of,
        rate,
        last_updated: r["MetaData"]["LastUpdatedTime"]
            .as_str()
            .map(str::to_string),
        json: r.clone(),
    })
}
