//! `SELECT COUNT(*)` in batches: QBO's `POST .../batch` carries up to 30 queries a call and
//! answers each in its own slot. A company may make 40 batch calls a minute besides its 500
//! requests (a call also takes one of those, and a place among the 10 in flight: see
//! `RealmLimiter::acquire_batch`); QBO meters the queries a call carries one by one, so each
//! counts as a request in `RequestCounters` (a batch is counted by its items, not its calls).
//!
//! A query QBO answered with a Fault fails only its own slot. An answer qbo does not
//! recognise (an item missing, one it did not ask for, a count that is not a count) fails
//! the whole call, which is retried like any request: never a zero.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::response::{self, count_in, envelope, fault_fields, get_ci, server_time, snippet};
use super::{Answer, Call, ClientError, Count, QboClient, RequestCounters};

/// Intuit: "The maximum number of payloads in a single batch request is 30."
pub const BATCH_MAX_ITEMS: usize = 30;

#[derive(Serialize)]
struct BatchRequest<'a> {
    #[serde(rename = "BatchItemRequest")]
    items: Vec<BatchItemRequest<'a>>,
}

#[derive(Serialize)]
struct BatchItemRequest<'a> {
    #[serde(rename = "bId")]
    bid: String,
    #[serde(rename = "Query")]
    query: &'a str,
}

/// One answer per query, in order.
type Counts = Vec<Result<Answer<Count>, ClientError>>;

impl QboClient {
    /// `fetch_counts` for the real client: ceil(n / 30) batch calls, sent concurrently through
    /// the company's limiter. Each call's requests and retries are added to `counters`, even
    /// when another call fails.
    pub(super) async fn count_in_batches(
        &self,
        queries: &[String],
        counters: &mut RequestCounters,
    ) -> Result<Counts, ClientError> {
        let calls = queries.chunks(BATCH_MAX_ITEMS).map(|chunk| async move {
            let mut spent = RequestCounters::default();
            let answers = self.count_batch(chunk, &mut spent).await;
            (answers, spent)
        });
        let mut out = Vec::with_capacity(queries.len());
        let mut failed = None;
        for (answers, spent) in futures_util::future::join_all(calls).await {
            counters.requests += spent.requests;
            counters.retries += spent.retries;
            match answers {
                Ok(answers) => out.extend(answers),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// One batch call of at most 30 COUNT(*) queries, retried as a whole.
    async fn count_batch(
        &self,
        queries: &[String],
        counters: &mut RequestCounters,
    ) -> Result<Counts, ClientError> {
        debug_assert!(queries.len() <= BATCH_MAX_ITEMS);
        let body = request_body(queries);
        let items = u32::try_from(queries.len()).unwrap_or(u32::MAX);
        let answer = self
            .execute_call(Call::Batch { body: &body, items }, counters, |b| {
                parse_batch_counts(b, queries.len())
            })
            .await?;
        let tid = answer.intuit_tid;
        Ok(answer
            .value
            .into_iter()
            .map(|slot| {
                slot.map(|value| Answer {
                    value,
                    intuit_tid: tid.clone(),
                })
            })
            .collect())
    }
}

/// `{"BatchItemRequest":[{"bId":"1","Query":...},...]}`: the bIds are the queries' 1-based
/// positions, so each answer finds its query whatever order QBO answers in.
fn request_body(queries: &[String]) -> Vec<u8> {
    let items = queries
        .iter()
        .enumerate()
        .map(|(i, query)| BatchItemRequest {
            bid: (i + 1).to_string(),
            query,
        })
        .collect();
    serde_json::to_vec(&BatchRequest { items }).expect("strings always serialize")
}

/// Reads a batch answer to `n` COUNT(*) queries sent with bIds "1" to "n": one slot per
/// query, in order, each its count (with the envelope's `time`) or its Fault. The outer
/// error is for an answer that is not one qbo recognises, or a Fault of the whole call.
pub(super) fn parse_batch_counts(
    body: &[u8],
    n: usize,
) -> Result<Vec<Result<Count, ClientError>>, ClientError> {
    let top = envelope(body)?;
    if let Some(fault) = get_ci(&top, "fault") {
        return Err(response::fault_error(200, fault.get()));
    }
    let list = top.get("BatchItemResponse").ok_or_else(|| {
        ClientError::Malformed(format!(
            "no BatchItemResponse in the batch answer: {}",
            snippet(body)
        ))
    })?;
    let items: Vec<HashMap<String, &RawValue>> = serde_json::from_str(list.get()).map_err(|e| {
        ClientError::Malformed(format!("BatchItemResponse is not a list of objects: {e}"))
    })?;
    let time = server_time(&top);
    let mut slots: Vec<Option<Result<Count, ClientError>>> = (0..n).map(|_| None).collect();
    for item in &items {
        let slot = slot_of(item, n)?;
        if slots[slot].is_some() {
            return Err(ClientError::Malformed(format!(
                "the batch answer has bId {} twice",
                slot + 1
            )));
        }
        slots[slot] = Some(item_count(item, body)?.map(|count| (count, time)));
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(i, slot)| {
            slot.ok_or_else(|| {
                ClientError::Malformed(format!(
                    "the batch answer has no item for bId {} of {n}",
                    i + 1
                ))
            })
        })
        .collect()
}

/// The 0-based position an item answers: its `bId` must be one qbo sent ("1" to "n").
fn slot_of(item: &HashMap<String, &RawValue>, n: usize) -> Result<usize, ClientError> {
    let raw = item
        .get("bId")
        .ok_or_else(|| ClientError::Malformed("a batch item without bId".into()))?;
    let bid: String = serde_json::from_str(raw.get()).map_err(|_| {
        ClientError::Malformed(format!("a batch item's bId is not a string: {}", raw.get()))
    })?;
    bid.parse::<usize>()
        .ok()
        .filter(|k| (1..=n).contains(k) && k.to_string() == bid)
        .map(|k| k - 1)
        .ok_or_else(|| {
            ClientError::Malformed(format!(
                "the batch answer has bId {bid:?}, which qbo did not send (it sent 1 to {n})"
            ))
        })
}

/// One item: `{"bId", "QueryResponse": {"totalCount": N} | {}}` is its count; `{"bId",
/// "Fault"}` (or a Fault inside its QueryResponse) is its own error. Anything else is an
/// answer qbo does not recognise: an error of the whole call.
fn item_count(
    item: &HashMap<String, &RawValue>,
    body: &[u8],
) -> Result<Result<u64, ClientError>, ClientError> {
    if let Some(key) = item
        .keys()
        .find(|k| !matches!(k.as_str(), "bId" | "QueryResponse" | "Fault"))
    {
        return Err(ClientError::Malformed(format!(
            "a batch item holds `{key}`, which is neither QueryResponse nor Fault: {}",
            snippet(body)
        )));
    }
    match (item.get("QueryResponse"), item.get("Fault")) {
        (Some(qr), None) => {
            let qr: HashMap<String, &RawValue> = serde_json::from_str(qr.get()).map_err(|e| {
                ClientError::Malformed(format!(
                    "a batch item's QueryResponse is not an object: {e}"
                ))
            })?;
            if let Some(fault) = get_ci(&qr, "fault") {
                return Ok(Err(item_fault(fault)?));
            }
            if let Some(key) = qr.keys().find(|k| *k != "totalCount") {
                return Err(ClientError::Malformed(format!(
                    "a batch COUNT(*) answer holds `{key}` besides totalCount: {}",
                    snippet(body)
                )));
            }
            count_in(&qr, body).map(Ok)
        }
        (None, Some(fault)) => Ok(Err(item_fault(fault)?)),
        (Some(_), Some(_)) => Err(ClientError::Malformed(format!(
            "a batch item holds both a QueryResponse and a Fault: {}",
            snippet(body)
        ))),
        (None, None) => Err(ClientError::Malformed(format!(
            "a batch item holds neither a QueryResponse nor a Fault: {}",
            snippet(body)
        ))),
    }
}

/// The error of an item QBO answered with a Fault, naming its code and message.
fn item_fault(fault: &RawValue) -> Result<ClientError, ClientError> {
    let fault: Value = serde_json::from_str(fault.get())
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            ClientError::Malformed(format!(
                "a batch item's Fault is not an object: {}",
                fault.get()
            ))
        })?;
    let f = fault_fields(&fault);
    Ok(ClientError::BatchItemFault {
        code: f.code,
        kind: f.kind,
        message: f.message,
        detail: f.detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIME: &str = r#""time":"2024-06-01T10:11:12.123-07:00""#;

    fn parse(items: &str, n: usize) -> Result<Vec<Result<Count, ClientError>>, ClientError> {
        let body = format!(r#"{{"BatchItemResponse":{items},{TIME}}}"#);
        parse_batch_counts(body.as_bytes(), n)
    }

    fn malformed(items: &str, n: usize) -> String {
        match parse(items, n) {
            Err(ClientError::Malformed(m)) => m,
            other => panic!("{items}: expected a malformed answer, got {other:?}"),
        }
    }

    #[test]
    fn counts_come_back_in_query_order_with_the_envelopes_time() {
        let got = parse(
            r#"[{"bId":"2","QueryResponse":{}},{"bId":"1","QueryResponse":{"totalCount":12}}]"#,
            2,
        )
        .unwrap();
        let counts: Vec<u64> = got.iter().map(|r| r.as_ref().unwrap().0).collect();
        assert_eq!(counts, [12, 0], "`{{}}` is zero, as for a single COUNT");
        for r in &got {
            assert_eq!(
                r.as_ref().unwrap().1.unwrap().to_rfc3339(),
                "2024-06-01T17:11:12.123+00:00"
            );
        }
    }

    #[test]
    fn a_faulted_item_fails_alone_and_names_qbos_code_and_message() {
        let got = parse(
            r#"[{"bId":"1","QueryResponse":{"totalCount":3}},
                {"bId":"2","Fault":{"Error":[{"Message":"Invalid query","Detail":"QueryValidationError: x","code":"4001"}],"type":"ValidationFault"}},
                {"bId":"3","QueryResponse":{"Fault":{"Error":[{"Message":"An application error","code":"10000"}],"type":"SystemFault"}}}]"#,
            3,
        )
        .unwrap();
        assert_eq!(got[0].as_ref().unwrap().0, 3);
        let e = got[1].as_ref().unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("4001") && text.contains("Invalid query"),
            "{text}"
        );
        assert!(
            !e.is_retryable(),
            "a ValidationFault will not pass on another try"
        );
        let e = got[2].as_ref().unwrap_err();
        assert!(e.to_string().contains("10000"), "{e}");
        assert!(e.is_retryable(), "a SystemFault may");
    }

    #[test]
    fn answers_qbo_would_not_give_are_errors_of_the_whole_call_never_zeros() {
        let ok = r#"{"bId":"1","QueryResponse":{"totalCount":1}}"#;
        for (items, n, says) in [
            (r#"[]"#.to_string(), 1, "no item for bId 1"),
            (format!("[{ok}]"), 2, "no item for bId 2"),
            (format!("[{ok},{ok}]"), 2, "bId 1 twice"),
            (
                r#"[{"QueryResponse":{"totalCount":1}}]"#.into(),
                1,
                "without bId",
            ),
            (
                r#"[{"bId":1,"QueryResponse":{"totalCount":1}}]"#.into(),
                1,
                "not a string",
            ),
            (
                r#"[{"bId":"7","QueryResponse":{"totalCount":1}}]"#.into(),
                1,
                "did not send",
            ),
            (
                r#"[{"bId":"01","QueryResponse":{"totalCount":1}}]"#.into(),
                1,
                "did not send",
            ),
            (r#"[{"bId":"1"}]"#.into(), 1, "neither"),
            (
                r#"[{"bId":"1","QueryResponse":{"totalCount":1},"Fault":{}}]"#.into(),
                1,
                "both",
            ),
            (r#"[{"bId":"1","Invoice":[]}]"#.into(), 1, "holds `Invoice`"),
            (
                r#"[{"bId":"1","QueryResponse":{"totalCount":1,"maxResults":1}}]"#.into(),
                1,
                "besides totalCount",
            ),
            (
                r#"[{"bId":"1","QueryResponse":{"Invoice":[]}}]"#.into(),
                1,
                "besides totalCount",
            ),
            (
                r#"[{"bId":"1","QueryResponse":{"totalCount":-1}}]"#.into(),
                1,
                "not a count",
            ),
            (
                r#"[{"bId":"1","QueryResponse":{"totalCount":1.5}}]"#.into(),
                1,
                "not a count",
            ),
            (
                r#"[{"bId":"1","QueryResponse":{"totalCount":"3"}}]"#.into(),
                1,
                "not a count",
            ),
            (
                r#"[{"bId":"1","QueryResponse":{"totalCount":null}}]"#.into(),
                1,
                "not a count",
            ),
            (
                r#"[{"bId":"1","QueryResponse":[]}]"#.into(),
                1,
                "not an object",
            ),
            (r#"[{"bId":"1","Fault":"boom"}]"#.into(), 1, "not an object"),
            (r#"{"bId":"1"}"#.into(), 1, "not a list"),
        ] {
            let m = malformed(&items, n);
            assert!(m.contains(says), "{items}: `{m}` does not say `{says}`");
        }
        let none = parse_batch_counts(br#"{"time":"x"}"#, 1).unwrap_err();
        assert!(
            matches!(none, ClientError::Malformed(ref m) if m.contains("no BatchItemResponse")),
            "{none:?}"
        );
        assert!(matches!(
            parse_batch_counts(b"<html>proxy</html>", 1),
            Err(ClientError::Malformed(_))
        ));
        assert!(parse_batch_counts(br#"{"BatchItemResponse":[{"bId":"1","Que"#, 1).is_err());
    }

    #[test]
    fn a_fault_of_the_whole_call_is_the_calls_error() {
        let body = br#"{"Fault":{"Error":[{"Message":"An application error","code":"10000"}],"type":"SystemFault"},"time":"x"}"#;
        let e = parse_batch_counts(body, 1).unwrap_err();
        assert!(e.is_retryable(), "{e:?}");
        let throttled = br#"{"Fault":{"Error":[{"Message":"message=ThrottleExceeded; errorCode=003001; statusCode=429","code":"3001"}],"type":"SERVICE"}}"#;
        assert!(matches!(
            parse_batch_counts(throttled, 1),
            Err(ClientError::Throttled { .. })
        ));
    }

    #[test]
    fn the_request_names_each_query_by_its_position() {
        let body = request_body(&[
            "SELECT COUNT(*) FROM Invoice".into(),
            "SELECT COUNT(*) FROM Bill".into(),
        ]);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"BatchItemRequest": [
                {"bId": "1", "Query": "SELECT COUNT(*) FROM Invoice"},
                {"bId": "2", "Query": "SELECT COUNT(*) FROM Bill"},
            ]})
        );
    }
}
