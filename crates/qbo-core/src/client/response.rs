//! Reads QBO's answers: the query envelope, COUNT(*), and the many shapes of a Fault
//! (upper- or lowercase keys, inside HTTP 200, or XML for throttling).

use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;

use super::ClientError;
use crate::entities;

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

/// QBO's clock, from the envelope's `time` string. QBO has also sent it as a number, whose
/// unit it never documented; read wrongly, it could put a watermark in the future and skip
/// changes, so it is ignored, as is any other shape: callers fall back to our clock minus
/// the allowed skew.
pub(super) fn server_time(map: &HashMap<String, &RawValue>) -> Option<DateTime<Utc>> {
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
    if let Some((_, items)) = entity_list(&qr, &[entity])? {
        page.records.reserve(items.len());
        for item in items {
            page.records.push(parse_record(item, entity)?);
        }
    }
    Ok(page)
}

/// What a `QueryResponse` may hold besides the entity's list, as Intuit documents it:
/// `startPosition`, `maxResults` (the number of records in the answer) and `totalCount` (the
/// answer to COUNT(*), and on some SELECT pages too). Each is a count.
const COUNT_KEYS: [&str; 3] = ["startPosition", "maxResults", "totalCount"];

/// Checks that a `QueryResponse` object holds nothing but the lists of `entities` and the
/// count keys, and returns the one list it holds, if any. A Fault inside it is that fault's
/// error; any other key is malformed. Taking an unknown shape for "no rows" would end a
/// window early or read a COUNT as 0 and lose records silently; as an error the request is
/// retried and, if it persists, the window fails.
///
/// QBO answers a query that matched nothing with `"QueryResponse": {}`, so a missing list is
/// an empty answer, but only when no count key claims rows (`maxResults` or `totalCount`
/// above zero).
pub(super) fn entity_list<'a, 'n>(
    qr: &HashMap<String, &'a RawValue>,
    entities: &[&'n str],
) -> Result<Option<(&'n str, Vec<&'a RawValue>)>, ClientError> {
    check_keys(qr, entities)?;
    // QBO files some entities under another key (CreditCardPayment as CreditCardPaymentTxn);
    // either key is that entity's list, reported by the name it was asked for.
    let mut lists = entities
        .iter()
        .flat_map(|name| answer_keys(name).filter_map(|k| qr.get(k).map(|list| (*name, *list))));
    let Some((name, list)) = lists.next() else {
        if let Some((key, n)) = claimed_rows(qr) {
            return Err(ClientError::Malformed(format!(
                "QueryResponse claims {n} results but has no `{}` list (by {key})",
                entities.join("`/`")
            )));
        }
        return Ok(None);
    };
    if let Some((other, _)) = lists.next() {
        return Err(ClientError::Malformed(format!(
            "QueryResponse has both a `{name}` and a `{other}` list"
        )));
    }
    serde_json::from_str(list.get())
        .map(|items| Some((name, items)))
        .map_err(|e| ClientError::Malformed(format!("QueryResponse.{name} is not a list: {e}")))
}

/// The keys an answer may file `qbo_name`'s records under: the one QBO uses (CreditCardPayment
/// as CreditCardPaymentTxn) and, where that differs, the entity's own name.
fn answer_keys(qbo_name: &str) -> impl Iterator<Item = &str> {
    let key = entities::list_key(qbo_name);
    std::iter::once(key).chain((key != qbo_name).then_some(qbo_name))
}

/// Every key of `qr` is one of `lists` or a count key holding a count; a Fault is its error.
fn check_keys(qr: &HashMap<String, &RawValue>, lists: &[&str]) -> Result<(), ClientError> {
    if let Some(fault) = get_ci(qr, "fault") {
        return Err(fault_error(200, fault.get()));
    }
    for (key, value) in qr {
        if lists.iter().any(|name| answer_keys(name).any(|k| k == key)) {
            continue;
        }
        if !COUNT_KEYS.contains(&key.as_str()) {
            return Err(ClientError::Malformed(format!(
                "QueryResponse holds `{key}`, which is neither {} nor a count: {}",
                match lists {
                    [] => "a COUNT(*) answer".to_string(),
                    _ => format!("the `{}` list", lists.join("`/`")),
                },
                snippet(value.get().as_bytes())
            )));
        }
        if value.get().parse::<u64>().is_err() {
            return Err(ClientError::Malformed(format!(
                "QueryResponse.{key} is not a count: {}",
                snippet(value.get().as_bytes())
            )));
        }
    }
    Ok(())
}

/// The first count key that says there were rows, with its value.
fn claimed_rows<'k>(qr: &'k HashMap<String, &RawValue>) -> Option<(&'k str, u64)> {
    ["maxResults", "totalCount"].into_iter().find_map(|key| {
        let (k, v) = qr.get_key_value(key)?;
        let n = v.get().parse::<u64>().ok()?;
        (n > 0).then_some((k.as_str(), n))
    })
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

/// Parses `SELECT COUNT(*)`: `{"QueryResponse":{"totalCount":N}}`. The count is 0 only when
/// `totalCount` says so or `QueryResponse` is exactly `{}` (QBO's answer when nothing
/// matched); any other shape is an error, never 0.
pub fn parse_count(body: &[u8]) -> Result<(u64, Option<DateTime<Utc>>), ClientError> {
    let (top, qr) = query_response(body)?;
    Ok((count_in(&qr, body)?, server_time(&top)))
}

/// The count a COUNT(*)'s `QueryResponse` object holds (`whole` is the answer, quoted in
/// errors): `totalCount`, or 0 for exactly `{}`. A Fault inside is its error; any other
/// shape is malformed.
pub(super) fn count_in(qr: &HashMap<String, &RawValue>, whole: &[u8]) -> Result<u64, ClientError> {
    check_keys(qr, &[])?;
    match qr.get("totalCount") {
        Some(v) => Ok(v
            .get()
            .parse::<u64>()
            .expect("check_keys let only counts through")),
        None if qr.is_empty() => Ok(0),
        None => Err(ClientError::Malformed(format!(
            "a COUNT(*) answer without totalCount: {}",
            snippet(whole)
        ))),
    }
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

/// A Fault's `type` and its first error's `code`, `Message` and `Detail` (either case; empty
/// when absent).
pub(super) struct FaultFields {
    pub kind: String,
    pub code: String,
    pub message: String,
    pub detail: String,
}

pub(super) fn fault_fields(fault: &Value) -> FaultFields {
    let first = field_ci(fault, "error")
        .and_then(|e| e.as_array())
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(Value::Null);
    FaultFields {
        kind: text_ci(fault, "type"),
        code: text_ci(&first, "code"),
        message: text_ci(&first, "message"),
        detail: text_ci(&first, "detail"),
    }
}

pub fn fault_error(status: u16, fault_json: &str) -> ClientError {
    let fault: Value = serde_json::from_str(fault_json).unwrap_or(Value::Null);
    let FaultFields {
        kind,
        code,
        message,
        detail,
    } = fault_fields(&fault);
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

    /// QBO answers `SELECT * FROM CreditCardPayment` under `CreditCardPaymentTxn`: read as
    /// an unknown key, every credit card payment would fail its window (or, with a lenient
    /// parser, be silently missing).
    #[test]
    fn credit_card_payments_are_read_under_the_key_qbo_answers_them_with() {
        let body = br#"{"QueryResponse":{"CreditCardPaymentTxn":[{"Id":"5","SyncToken":"0","MetaData":{"LastUpdatedTime":"2024-03-04T16:00:00-08:00"}}],"startPosition":1,"maxResults":1}}"#;
        let p = parse_page(body, "CreditCardPayment").unwrap();
        assert_eq!(p.records.len(), 1);
        assert_eq!(p.records[0].id, "5");
        let both = br#"{"QueryResponse":{"CreditCardPaymentTxn":[],"CreditCardPayment":[],"maxResults":0}}"#;
        assert!(parse_page(both, "CreditCardPayment").is_err());
        let other = br#"{"QueryResponse":{"CreditCardPaymentTxn":[],"maxResults":0}}"#;
        assert!(parse_page(other, "Invoice").is_err());
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
            Err(ClientError::Malformed(m)) if m.contains("holds `Customer`")
        ));
        for empty in [
            &br#"{"QueryResponse":{"startPosition":1,"maxResults":0},"time":"x"}"#[..],
            br#"{"QueryResponse":{"Invoice":[],"totalCount":0}}"#,
            br#"{"QueryResponse":{}}"#,
        ] {
            assert!(parse_page(empty, "Invoice").unwrap().records.is_empty());
        }
    }

    /// Only a shape qbo recognises is data or "nothing": a Fault inside `QueryResponse`, a
    /// key no query answer has, or a COUNT without `totalCount` is an error, never an empty
    /// page or a count of 0.
    #[test]
    fn unrecognised_query_responses_are_errors() {
        let system = br#"{"QueryResponse":{"Fault":{"Error":[{"Message":"An application error has occurred","Detail":"System Failure Error","code":"10000"}],"type":"SystemFault"}},"time":"2024-06-01T10:11:12.123-07:00"}"#;
        let page = parse_page(system, "Invoice").unwrap_err();
        assert!(
            matches!(page, ClientError::Server { status: 200, .. }),
            "{page}"
        );
        assert!(page.is_retryable());
        assert!(parse_count(system).unwrap_err().is_retryable());
        let validation = br#"{"QueryResponse":{"Invoice":[],"Fault":{"Error":[{"Message":"Invalid query","code":"4001"}],"type":"ValidationFault"}}}"#;
        assert!(matches!(
            parse_page(validation, "Invoice"),
            Err(ClientError::Fault { code, .. }) if code == "4001"
        ));
        for (body, says) in [
            (
                &br#"{"QueryResponse":{"warnings":[]}}"#[..],
                "holds `warnings`",
            ),
            (
                br#"{"QueryResponse":{"nextPageToken":"x","Invoice":[]}}"#,
                "holds `nextPageToken`",
            ),
            (
                br#"{"QueryResponse":{"totalCount":"7"}}"#,
                "totalCount is not a count",
            ),
            (
                br#"{"QueryResponse":{"startPosition":-1}}"#,
                "startPosition is not a count",
            ),
            (br#"{"QueryResponse":{"totalCount":2}}"#, "claims 2 results"),
            (br#"{"QueryResponse":{"Invoice":{}}}"#, "is not a list"),
        ] {
            match parse_page(body, "Invoice") {
                Err(e @ ClientError::Malformed(_)) => {
                    assert!(e.to_string().contains(says), "{e} should say {says}");
                    assert!(e.is_retryable());
                }
                other => panic!("{other:?}"),
            }
        }
        for body in [
            &br#"{"QueryResponse":{"maxResults":0}}"#[..],
            br#"{"QueryResponse":{"Invoice":[]}}"#,
            br#"{"QueryResponse":{"totalCount":3,"Error":"x"}}"#,
            br#"{"QueryResponse":[]}"#,
            br#"{"time":"2024-06-01T10:11:12.123-07:00"}"#,
        ] {
            assert!(
                matches!(parse_count(body), Err(ClientError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            parse_count(br#"{"QueryResponse":{"totalCount":0}}"#)
                .unwrap()
                .0,
            0
        );
    }

    /// QBO's quirks that are still answers: `totalCount` on a SELECT page, more rows than
    /// MAXRESULTS, a numeric `time`.
    #[test]
    fn quirks_that_are_still_answers() {
        let body = br#"{"QueryResponse":{"Invoice":[{"Id":"1","MetaData":{"LastUpdatedTime":"2024-03-04T16:00:00-08:00"}},{"Id":"2","MetaData":{"LastUpdatedTime":"2024-03-04T16:00:00-08:00"}}],"startPosition":1,"maxResults":2,"totalCount":2},"time":1717000000000}"#;
        let page = parse_page(body, "Invoice").unwrap();
        assert_eq!(page.records.len(), 2);
        assert_eq!(page.server_time, None, "a numeric time is not trusted");
        let count =
            br#"{"QueryResponse":{"totalCount":5,"startPosition":1,"maxResults":5},"time":17}"#;
        assert_eq!(parse_count(count).unwrap(), (5, None));
    }
}
