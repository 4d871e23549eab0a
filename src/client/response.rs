//! Reads QBO's answers: the query envelope, COUNT(*), and the many shapes of a Fault
//! (upper- or lowercase keys, inside HTTP 200, or XML for throttling).

use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;

use super::ClientError;

/// One record as QBO sent it, plus the keys the raw zone needs.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub id: String,
    pub sync_token: String,
    pub last_updated: DateTime<Utc>,
    /// The record's JSON text, untouched.
    pub json: Box<RawValue>,
}

#[derive(Debug, Default)]
pub struct Page {
    pub records: Vec<RawRecord>,
    /// QBO's clock (`time` in the envelope), which we use to tell which records changed
    /// while we paged.
    pub server_time: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct RecordKeys<'a> {
    #[serde(rename = "Id", borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(rename = "SyncToken", default, borrow)]
    sync_token: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "MetaData")]
    meta: Option<MetaKeys<'a>>,
}

#[derive(Deserialize)]
struct MetaKeys<'a> {
    #[serde(rename = "LastUpdatedTime", borrow)]
    last_updated: Option<std::borrow::Cow<'a, str>>,
}

fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

/// Top-level keys, each left unparsed until we know what we need.
pub(super) fn envelope(body: &[u8]) -> Result<HashMap<String, &RawValue>, ClientError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first == Some(b'<') {
        return Err(non_json(body));
    }
    serde_json::from_slice(body).map_err(|e| {
        ClientError::Malformed(format!(
            "response is not a JSON object ({e}): {}",
            snippet(body)
        ))
    })
}

pub(super) fn get_ci<'a>(map: &HashMap<String, &'a RawValue>, key: &str) -> Option<&'a RawValue> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| *v)
}

pub(super) fn server_time(map: &HashMap<String, &RawValue>) -> Option<DateTime<Utc>> {
    // Seen as a string normally; tolerate anything else by ignoring it.
    let raw = get_ci(map, "time")?;
    let s: String = serde_json::from_str(raw.get()).ok()?;
    parse_time(&s).map(|t| t.with_timezone(&Utc))
}

/// The envelope of a query answer and its `QueryResponse` object; a Fault (even in HTTP 200)
/// is an error.
pub(super) type QueryEnvelope<'a> = (HashMap<String, &'a RawValue>, HashMap<String, &'a RawValue>);

pub(super) fn query_response(body: &[u8]) -> Result<QueryEnvelope<'_>, ClientError> {
    let top = envelope(body)?;
    if let Some(fault) = get_ci(&top, "fault") {
        return Err(fault_error(200, fault.get()));
    }
    let qr = get_ci(&top, "QueryResponse").ok_or_else(|| {
        ClientError::Malformed(format!("no QueryResponse in the answer: {}", snippet(body)))
    })?;
    let qr = serde_json::from_str(qr.get())
        .map_err(|e| ClientError::Malformed(format!("QueryResponse is not an object: {e}")))?;
    Ok((top, qr))
}

/// Parses a page of `SELECT *` for `entity` (QBO name).
pub fn parse_page(body: &[u8], entity: &str) -> Result<Page, ClientError> {
    let (top, qr) = query_response(body)?;
    let mut page = Page {
        records: Vec::new(),
        server_time: server_time(&top),
    };
    match qr.get(entity) {
        Some(list) => {
            let items: Vec<&RawValue> = serde_json::from_str(list.get()).map_err(|e| {
                ClientError::Malformed(format!("QueryResponse.{entity} is not a list: {e}"))
            })?;
            page.records.reserve(items.len());
            for item in items {
                page.records.push(parse_record(item, entity)?);
            }
        }
        None => check_empty(&qr, entity)?,
    }
    Ok(page)
}

/// QBO answers a query that matched nothing with `"QueryResponse": {}`, so a missing list is
/// an empty page, but only when nothing else in the envelope says there were rows: a
/// `maxResults` above zero, or a non-empty list under another name (the wrong entity, or a
/// different spelling). Taking those for "no rows" would end a window early and lose its
/// records silently; as an error the request is retried and, if it persists, the chunk fails.
pub(super) fn check_empty(
    qr: &HashMap<String, &RawValue>,
    entity: &str,
) -> Result<(), ClientError> {
    let claimed = qr
        .get("maxResults")
        .map(|v| v.get().parse::<i64>().unwrap_or(1))
        .unwrap_or(0);
    if claimed > 0 {
        return Err(ClientError::Malformed(format!(
            "QueryResponse claims {} results but has no `{entity}` list",
            qr.get("maxResults").map_or("", |v| v.get())
        )));
    }
    let other = qr.iter().find(|(_, v)| {
        serde_json::from_str::<Vec<&RawValue>>(v.get()).is_ok_and(|list| !list.is_empty())
    });
    if let Some((key, _)) = other {
        return Err(ClientError::Malformed(format!(
            "QueryResponse has a `{key}` list but no `{entity}` list"
        )));
    }
    Ok(())
}

/// The object that holds a record's keys: the record itself, or for a RecurringTransaction
/// the template QBO wraps in its type (`{"Invoice": {"Id": ...}}`).
fn record_keys(item: &RawValue) -> Result<RecordKeys<'_>, serde_json::Error> {
    serde_json::from_str::<RecordKeys>(item.get()).or_else(|e| {
        let Ok(wrapper) = serde_json::from_str::<HashMap<String, &RawValue>>(item.get()) else {
            return Err(e);
        };
        match (wrapper.len(), wrapper.into_values().next()) {
            (1, Some(inner)) => serde_json::from_str(inner.get()).map_err(|_| e),
            _ => Err(e),
        }
    })
}

/// The Id of a record, sparse or full, wrapped or not.
pub(super) fn record_id(item: &RawValue) -> Result<String, serde_json::Error> {
    record_keys(item).map(|k| k.id.into_owned())
}

pub(super) fn parse_record(item: &RawValue, entity: &str) -> Result<RawRecord, ClientError> {
    let keys: RecordKeys = record_keys(item)
        .map_err(|e| ClientError::Malformed(format!("{entity} record without a usable Id: {e}")))?;
    let lut = keys.meta.and_then(|m| m.last_updated).ok_or_else(|| {
        ClientError::Malformed(format!(
            "{entity} {} has no MetaData.LastUpdatedTime",
            keys.id
        ))
    })?;
    let last_updated = parse_time(&lut).ok_or_else(|| {
        ClientError::Malformed(format!(
            "{entity} {}: LastUpdatedTime `{lut}` is not RFC 3339",
            keys.id
        ))
    })?;
    Ok(RawRecord {
        id: keys.id.into_owned(),
        sync_token: keys.sync_token.map(|s| s.into_owned()).unwrap_or_default(),
        last_updated: last_updated.with_timezone(&Utc),
        json: item.to_owned(),
    })
}

/// Parses `SELECT COUNT(*)`: `{"QueryResponse":{"totalCount":N}}`.
pub fn parse_count(body: &[u8]) -> Result<(u64, Option<DateTime<Utc>>), ClientError> {
    let top = envelope(body)?;
    if let Some(fault) = get_ci(&top, "fault") {
        return Err(fault_error(200, fault.get()));
    }
    let qr = get_ci(&top, "QueryResponse")
        .ok_or_else(|| ClientError::Malformed(format!("no QueryResponse: {}", snippet(body))))?;
    let qr: HashMap<String, &RawValue> = serde_json::from_str(qr.get())
        .map_err(|e| ClientError::Malformed(format!("QueryResponse is not an object: {e}")))?;
    let n = match qr.get("totalCount") {
        Some(v) => v.get().parse::<u64>().map_err(|_| {
            ClientError::Malformed(format!("totalCount is not a count: {}", v.get()))
        })?,
        // QBO answers `{}` when nothing matches.
        None => 0,
    };
    Ok((n, server_time(&top)))
}

/// Turns an error body (JSON Fault in either case, XML, HTML, or nothing) into an error.
pub fn error_from_body(status: u16, body: &[u8]) -> ClientError {
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    match first {
        Some(b'{') => match envelope(body) {
            Ok(top) => match get_ci(&top, "fault") {
                Some(f) => fault_error(status, f.get()),
                None => ClientError::Fault {
                    status,
                    code: String::new(),
                    kind: String::new(),
                    message: snippet(body),
                    detail: String::new(),
                },
            },
            Err(e) => e,
        },
        Some(b'<') => match non_json(body) {
            ClientError::Malformed(m) => ClientError::Fault {
                status,
                code: String::new(),
                kind: "non-JSON".into(),
                message: m,
                detail: String::new(),
            },
            other => other,
        },
        _ => ClientError::Fault {
            status,
            code: String::new(),
            kind: String::new(),
            message: format!("HTTP {status} with an empty body"),
            detail: String::new(),
        },
    }
}

/// XML or HTML where JSON was asked for: a throttle fault (QBO sends those as XML at times),
/// or something in between us and QBO (a proxy's error page).
fn non_json(body: &[u8]) -> ClientError {
    let text = String::from_utf8_lossy(body);
    if text.contains("003001") || text.contains("ThrottleExceeded") {
        return ClientError::Throttled { retry_after: None };
    }
    ClientError::Malformed(format!(
        "QBO answered XML/HTML instead of JSON: {}",
        snippet(body)
    ))
}

fn field_ci<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn text_ci(v: &Value, key: &str) -> String {
    match field_ci(v, key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

pub fn fault_error(status: u16, fault_json: &str) -> ClientError {
    let fault: Value = serde_json::from_str(fault_json).unwrap_or(Value::Null);
    let kind = text_ci(&fault, "type");
    let first = field_ci(&fault, "error")
        .and_then(|e| e.as_array())
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(Value::Null);
    let code = text_ci(&first, "code");
    let message = text_ci(&first, "message");
    let detail = text_ci(&first, "detail");
    if code == "3001" || message.contains("ThrottleExceeded") || message.contains("003001") {
        return ClientError::Throttled { retry_after: None };
    }
    if code == "3200" || message.contains("AuthenticationFailed") || status == 401 {
        return ClientError::Unauthorized;
    }
    // SystemFault (code 10000 and friends) is QBO's own hiccup, even inside an HTTP 200:
    // worth another attempt, unlike a ValidationFault.
    if status >= 500 || kind.eq_ignore_ascii_case("SystemFault") {
        return ClientError::Server {
            status,
            message: format!("{message} {detail}").trim().to_string(),
        };
    }
    ClientError::Fault {
        status,
        code,
        kind,
        message,
        detail,
    }
}

/// A short, single-line excerpt for error messages.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.len() > 200 {
        format!("{one_line}…")
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_page_and_count() {
        let p = parse_page(
            br#"{"QueryResponse":{},"time":"2024-06-01T10:11:12.123-07:00"}"#,
            "Invoice",
        )
        .unwrap();
        assert!(p.records.is_empty());
        assert_eq!(
            p.server_time.unwrap().to_rfc3339(),
            "2024-06-01T17:11:12.123+00:00"
        );
        assert_eq!(
            parse_count(br#"{"QueryResponse":{"totalCount":42}}"#)
                .unwrap()
                .0,
            42
        );
        assert_eq!(parse_count(br#"{"QueryResponse":{}}"#).unwrap().0, 0);
    }

    #[test]
    fn recurring_templates_are_read_inside_their_wrapper_and_kept_whole() {
        let body = br#"{"QueryResponse":{"RecurringTransaction":[{"Bill":{"Id":"12","SyncToken":"1","MetaData":{"LastUpdatedTime":"2024-03-04T16:00:00-08:00"},"RecurringInfo":{"Name":"Rent"}}}],"maxResults":1}}"#;
        let p = parse_page(body, "RecurringTransaction").unwrap();
        let r = &p.records[0];
        assert_eq!((r.id.as_str(), r.sync_token.as_str()), ("12", "1"));
        assert!(r.json.get().starts_with(r#"{"Bill":{"Id":"12""#));
        let bad = br#"{"QueryResponse":{"RecurringTransaction":[{"Bill":{"Id":"1"},"Invoice":{"Id":"2"}}],"maxResults":1}}"#;
        assert!(parse_page(bad, "RecurringTransaction").is_err());
    }

    #[test]
    fn records_keep_their_exact_text_and_keys() {
        let body = br#"{"QueryResponse":{"Invoice":[{"Id":"7","SyncToken":"3","MetaData":{"LastUpdatedTime":"2024-03-04T16:00:00-08:00"},"X":"\u00e9"}],"maxResults":1},"time":1717}"#;
        let p = parse_page(body, "Invoice").unwrap();
        let r = &p.records[0];
        assert_eq!((r.id.as_str(), r.sync_token.as_str()), ("7", "3"));
        assert_eq!(r.last_updated.to_rfc3339(), "2024-03-05T00:00:00+00:00");
        assert!(r.json.get().contains(r#""X":"\u00e9""#));
        assert!(
            p.server_time.is_none(),
            "a numeric time is ignored, not fatal"
        );
    }

    #[test]
    fn faults_in_every_disguise() {
        let lower = br#"{"fault":{"error":[{"message":"message=AuthenticationFailed; errorCode=003200; statusCode=401","code":"3200"}],"type":"AUTHENTICATION"}}"#;
        assert!(matches!(
            error_from_body(401, lower),
            ClientError::Unauthorized
        ));
        let in_200 = br#"{"Fault":{"Error":[{"Message":"Error parsing query","Detail":"bad","code":"4000"}],"type":"ValidationFault"},"time":"x"}"#;
        assert!(matches!(
            parse_page(in_200, "Invoice"),
            Err(ClientError::Fault { .. })
        ));
        let xml = b"<?xml version=\"1.0\"?><IntuitResponse><Fault><Error code=\"3001\"><Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message></Error></Fault></IntuitResponse>";
        assert!(matches!(
            error_from_body(429, xml),
            ClientError::Throttled { .. }
        ));
        let html = b"<html><body>502 Bad Gateway</body></html>";
        assert!(matches!(
            parse_page(html, "Invoice"),
            Err(ClientError::Malformed(_))
        ));
        assert!(matches!(
            parse_page(b"{\"QueryResponse\":{\"Invoice\":[{\"Id\":", "Invoice"),
            Err(ClientError::Malformed(_))
        ));
        assert!(matches!(
            parse_page(br#"{"QueryResponse":{"maxResults":3}}"#, "Invoice"),
            Err(ClientError::Malformed(_))
        ));
        assert!(matches!(
            parse_page(br#"{"QueryResponse":{"maxResults":"3"}}"#, "Invoice"),
            Err(ClientError::Malformed(_))
        ));
        let wrong_list = br#"{"QueryResponse":{"Customer":[{"Id":"1"}],"startPosition":1}}"#;
        assert!(matches!(
            parse_page(wrong_list, "Invoice"),
            Err(ClientError::Malformed(m)) if m.contains("`Customer` list")
        ));
        for empty in [
            &br#"{"QueryResponse":{"startPosition":1,"maxResults":0},"time":"x"}"#[..],
            br#"{"QueryResponse":{"warnings":[]}}"#,
        ] {
            assert!(parse_page(empty, "Invoice").unwrap().records.is_empty());
        }
    }
}
