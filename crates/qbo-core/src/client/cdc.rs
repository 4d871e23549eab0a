//! QBO's change data capture endpoint (`/cdc?entities=..&changedSince=..`) and the id-only
//! query (`SELECT Id FROM ..`) that delete reconciliation lists, for the sync engine.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::response::{self, envelope, get_ci, parse_record, record_id, server_time, snippet};
use super::{Answer, ClientError, QboClient, QuerySource, RawRecord, RequestCounters};

/// QBO answers at most this many objects per CDC call, over all entities together, and does
/// not say when it left some out.
pub const CDC_MAX_OBJECTS: usize = 1000;

/// One change CDC reports.
#[derive(Debug, Clone)]
pub enum CdcChange {
    /// The record's current payload.
    Live(RawRecord),
    /// `status: "Deleted"`: the id, when it was deleted, and the stub QBO sent.
    Deleted {
        id: String,
        deleted_at: DateTime<Utc>,
        stub: Box<RawValue>,
    },
}

#[derive(Debug, Default)]
pub struct CdcPage {
    /// Changes per entity (QBO name); an entity without changes may be missing.
    pub changes: HashMap<String, Vec<CdcChange>>,
    pub server_time: Option<DateTime<Utc>>,
}

impl CdcPage {
    pub fn total(&self) -> usize {
        self.changes.values().map(Vec::len).sum()
    }

    /// At QBO's cap: more may have changed than it sent.
    pub fn maybe_truncated(&self) -> bool {
        self.total() >= CDC_MAX_OBJECTS
    }
}

/// Ids from `SELECT Id FROM ..`, plus QBO's clock.
#[derive(Debug, Default)]
pub struct IdPage {
    pub ids: Vec<String>,
    pub server_time: Option<DateTime<Utc>>,
}

/// What the sync engine needs from QBO beyond the backfill's queries.
pub trait ChangeSource: QuerySource {
    fn fetch_cdc(
        &self,
        entities: &[&str],
        changed_since: DateTime<Utc>,
        counters: &mut RequestCounters,
    ) -> impl std::future::Future<Output = Result<Answer<CdcPage>, ClientError>> + Send;
    fn fetch_ids(
        &self,
        entity_qbo_name: &str,
        query: &str,
        counters: &mut RequestCounters,
    ) -> impl std::future::Future<Output = Result<Answer<IdPage>, ClientError>> + Send;
    /// Every foreign currency's ExchangeRate into the home currency on `day` (one query).
    fn fetch_exchange_rates(
        &self,
        day: chrono::NaiveDate,
        counters: &mut RequestCounters,
    ) -> impl std::future::Future<
        Output = Result<Answer<Vec<super::rates::ExchangeRate>>, ClientError>,
    > + Send;
}

impl ChangeSource for QboClient {
    async fn fetch_cdc(
        &self,
        entities: &[&str],
        changed_since: DateTime<Utc>,
        counters: &mut RequestCounters,
    ) -> Result<Answer<CdcPage>, ClientError> {
        let list = entities.join(",");
        // Always with an offset: without one QBO reads the time in the company's zone.
        let since = changed_since.to_rfc3339_opts(SecondsFormat::Secs, false);
        let mut params = vec![
            ("entities", list.as_str()),
            ("changedSince", since.as_str()),
        ];
        if entities
            .iter()
            .any(|e| crate::entities::has_custom_fields(e))
        {
            params.push(crate::entities::ALL_CUSTOM_FIELDS);
        }
        self.execute_get(&self.cdc_url, &params, counters, |b| parse_cdc(b, entities))
            .await
    }

    async fn fetch_ids(
        &self,
        entity_qbo_name: &str,
        query: &str,
        counters: &mut RequestCounters,
    ) -> Result<Answer<IdPage>, ClientError> {
        self.execute(query, counters, |b| parse_ids(b, entity_qbo_name))
            .await
    }

    async fn fetch_exchange_rates(
        &self,
        day: chrono::NaiveDate,
        counters: &mut RequestCounters,
    ) -> Result<Answer<Vec<super::rates::ExchangeRate>>, ClientError> {
        self.exchange_rates(day, counters).await
    }
}

#[derive(Deserialize)]
struct StubKeys<'a> {
    #[serde(rename = "Id", borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    status: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "MetaData")]
    meta: Option<StubMeta<'a>>,
}

#[derive(Deserialize)]
struct StubMeta<'a> {
    #[serde(rename = "LastUpdatedTime", borrow)]
    last_updated: Option<std::borrow::Cow<'a, str>>,
}

/// Parses `{"CDCResponse":[{"QueryResponse":[{"Invoice":[..]}, {}]}], "time": ..}`. Entities
/// are found by name, not position, and one with no changes may be absent: QBO answers `{}`
/// for it, or a single `[{}]` when none of them changed. Every other shape is an error,
/// never "no changes": the sync would move the watermark past changes it never read.
pub fn parse_cdc(body: &[u8], entities: &[&str]) -> Result<CdcPage, ClientError> {
    let top = envelope(body)?;
    if let Some(fault) = get_ci(&top, "fault") {
        return Err(response::fault_error(200, fault.get()));
    }
    let cdc = get_ci(&top, "CDCResponse").ok_or_else(|| {
        ClientError::Malformed(format!("no CDCResponse in the answer: {}", snippet(body)))
    })?;
    let malformed = |e: serde_json::Error| ClientError::Malformed(format!("CDCResponse: {e}"));
    let outer: Vec<HashMap<String, &RawValue>> =
        serde_json::from_str(cdc.get()).map_err(malformed)?;
    if outer.is_empty() {
        return Err(ClientError::Malformed(
            "CDCResponse is an empty list, not an answer".into(),
        ));
    }
    let mut page = CdcPage {
        changes: HashMap::new(),
        server_time: server_time(&top),
    };
    for element in &outer {
        let qrs = cdc_element(element)?;
        let qrs: Vec<HashMap<String, &RawValue>> =
            serde_json::from_str(qrs.get()).map_err(malformed)?;
        for qr in &qrs {
            let Some((name, items)) = response::entity_list(qr, entities)? else {
                continue;
            };
            let changes = page.changes.entry(name.to_string()).or_default();
            for item in items {
                changes.push(parse_change(item, name)?);
            }
        }
    }
    Ok(page)
}

/// The `QueryResponse` list of one `CDCResponse` element, which holds nothing else.
fn cdc_element<'a>(element: &HashMap<String, &'a RawValue>) -> Result<&'a RawValue, ClientError> {
    if let Some(fault) = get_ci(element, "fault") {
        return Err(response::fault_error(200, fault.get()));
    }
    if let Some(other) = element.keys().find(|k| *k != "QueryResponse") {
        return Err(ClientError::Malformed(format!(
            "a CDCResponse element holds `{other}`, which a CDC answer never has"
        )));
    }
    element.get("QueryResponse").copied().ok_or_else(|| {
        ClientError::Malformed("a CDCResponse element without a QueryResponse".into())
    })
}

fn parse_change(item: &RawValue, entity: &str) -> Result<CdcChange, ClientError> {
    // No Id at the top: a wrapped record (RecurringTransaction), never a delete stub.
    let Ok(keys) = serde_json::from_str::<StubKeys>(item.get()) else {
        return parse_record(item, entity).map(CdcChange::Live);
    };
    if !keys
        .status
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("Deleted"))
    {
        return parse_record(item, entity).map(CdcChange::Live);
    }
    let text = keys.meta.and_then(|m| m.last_updated).ok_or_else(|| {
        ClientError::Malformed(format!(
            "deleted {entity} {} has no MetaData.LastUpdatedTime",
            keys.id
        ))
    })?;
    let deleted_at = DateTime::parse_from_rfc3339(&text).map_err(|_| {
        ClientError::Malformed(format!(
            "deleted {entity} {}: LastUpdatedTime `{text}` is not RFC 3339",
            keys.id
        ))
    })?;
    Ok(CdcChange::Deleted {
        id: keys.id.into_owned(),
        deleted_at: deleted_at.with_timezone(&Utc),
        stub: item.to_owned(),
    })
}

/// Parses a page of `SELECT Id FROM <entity>` (sparse records holding little but their Id).
pub fn parse_ids(body: &[u8], entity: &str) -> Result<IdPage, ClientError> {
    let (top, qr) = response::query_response(body)?;
    let malformed = |e: serde_json::Error| ClientError::Malformed(format!("{entity} ids: {e}"));
    // `{}` is an empty page only if nothing says rows were there: a lost page of ids would
    // end the listing early and make every later id look deleted.
    let ids = match response::entity_list(&qr, &[entity])? {
        // A RecurringTransaction wraps its template in its type: record_id looks inside.
        Some((_, list)) => list
            .into_iter()
            .map(record_id)
            .collect::<Result<_, _>>()
            .map_err(malformed)?,
        None => Vec::new(),
    };
    Ok(IdPage {
        ids,
        server_time: server_time(&top),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdc_changes_deletes_and_missing_entities() {
        let body = br#"{"CDCResponse":[{"QueryResponse":[
            {"Invoice":[{"Id":"1","SyncToken":"2","MetaData":{"LastUpdatedTime":"2026-11-20T10:00:00-08:00"}},
                        {"domain":"QBO","status":"Deleted","Id":"9","MetaData":{"LastUpdatedTime":"2026-11-20T11:00:00-08:00"}}],
             "startPosition":1,"maxResults":2,"totalCount":2},
            {}]}],"time":"2026-11-24T11:00:00.123-08:00"}"#;
        let page = parse_cdc(body, &["Invoice", "Customer"]).unwrap();
        assert_eq!(page.total(), 2);
        assert!(!page.maybe_truncated());
        assert!(!page.changes.contains_key("Customer"));
        let inv = &page.changes["Invoice"];
        assert!(matches!(&inv[0], CdcChange::Live(r) if r.id == "1" && r.sync_token == "2"));
        match &inv[1] {
            CdcChange::Deleted {
                id,
                deleted_at,
                stub,
            } => {
                assert_eq!(id, "9");
                assert_eq!(deleted_at.to_rfc3339(), "2026-11-20T19:00:00+00:00");
                assert!(stub.get().contains("Deleted"));
            }
            other => panic!("{other:?}"),
        }
        assert!(page.server_time.is_some());
    }

    #[test]
    fn one_empty_object_for_many_entities_is_no_changes() {
        let body =
            br#"{"CDCResponse":[{"QueryResponse":[{}]}],"time":"2026-11-24T11:00:00.123-08:00"}"#;
        let page = parse_cdc(body, &["Invoice", "Customer", "Item"]).unwrap();
        assert_eq!(page.total(), 0);
        assert!(page.server_time.is_some());
    }

    /// A Fault, an entity nobody asked for or any other unknown shape is an error: taken for
    /// "no changes", the sync would move the watermark past changes it never read.
    #[test]
    fn unrecognised_cdc_answers_are_errors() {
        let system_fault = r#"{"Error":[{"Message":"An application error has occurred","code":"10000"}],"type":"SystemFault"}"#;
        let in_query_response = format!(
            r#"{{"CDCResponse":[{{"QueryResponse":[{{"Fault":{system_fault}}},{{}}]}}],"time":"x"}}"#
        );
        let e = parse_cdc(in_query_response.as_bytes(), &["Invoice", "Customer"]).unwrap_err();
        assert!(matches!(e, ClientError::Server { status: 200, .. }), "{e}");
        let in_element = format!(r#"{{"CDCResponse":[{{"Fault":{system_fault}}}]}}"#);
        let e = parse_cdc(in_element.as_bytes(), &["Invoice"]).unwrap_err();
        assert!(e.is_retryable(), "{e}");
        for body in [
            &br#"{"CDCResponse":[{"QueryResponse":[{"Item":[{"Id":"1"}]}]}]}"#[..],
            br#"{"CDCResponse":[{"QueryResponse":[{"Invoice":[],"warnings":[]}]}]}"#,
            br#"{"CDCResponse":[{"QueryResponse":[{"maxResults":3}]}]}"#,
            br#"{"CDCResponse":[{"QueryResponse":[{}],"extra":1}]}"#,
            br#"{"CDCResponse":[{}]}"#,
            br#"{"CDCResponse":[]}"#,
            br#"{"time":"x"}"#,
        ] {
            assert!(
                matches!(
                    parse_cdc(body, &["Invoice"]),
                    Err(ClientError::Malformed(_))
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_too_old_changed_since_is_a_fault() {
        let body = br#"{"Fault":{"Error":[{"Message":"Invalid changedSince","Detail":"changedSince must be within the last 30 days","code":"2010"}],"type":"ValidationFault"},"time":"x"}"#;
        assert!(matches!(
            parse_cdc(body, &["Invoice"]),
            Err(ClientError::Fault { code, .. }) if code == "2010"
        ));
    }

    #[test]
    fn id_pages() {
        let body = br#"{"QueryResponse":{"Invoice":[{"Id":"3","domain":"QBO","sparse":true},{"Id":"4"}],"maxResults":2},"time":"2026-11-24T11:00:00-08:00"}"#;
        assert_eq!(parse_ids(body, "Invoice").unwrap().ids, vec!["3", "4"]);
        let wrapped =
            br#"{"QueryResponse":{"RecurringTransaction":[{"Invoice":{"Id":"7","sparse":true}}]}}"#;
        assert_eq!(
            parse_ids(wrapped, "RecurringTransaction").unwrap().ids,
            vec!["7"]
        );
        assert!(parse_ids(br#"{"QueryResponse":{}}"#, "Invoice")
            .unwrap()
            .ids
            .is_empty());
        // A page that promises ids but carries none was lost, not empty.
        assert!(matches!(
            parse_ids(br#"{"QueryResponse":{"maxResults":3}}"#, "Invoice"),
            Err(ClientError::Malformed(_))
        ));
    }
}
