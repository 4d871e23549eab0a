//! Answers shaped like QBO's but broken the ways real answers break: a body cut short, an
//! HTML page from something in between, an envelope that lost its list, a Fault inside a
//! 200, fields the client has never heard of (in records, where they are data, or in
//! `QueryResponse`, where they are not), a `time` that is a number.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::envelope;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Malformation {
    #[default]
    None,
    /// HTTP 200 with a correct Content-Length, but the JSON stops halfway.
    TruncatedJson,
    /// HTTP 200 whose body is an HTML page (a captive portal, a misrouted proxy).
    Html200,
    /// HTTP 502 with a proxy's HTML error page.
    Html502,
    /// `QueryResponse` keeps `startPosition` and `maxResults` but loses the entity's list.
    EnvelopeWithoutEntity,
    /// A page that had rows answers `"QueryResponse": {}`, exactly like an empty result:
    /// no client can tell, so only comparing with COUNT(*) catches it.
    EmptyEnvelope,
    /// HTTP 200 whose body is a ValidationFault: a fault that no retry can fix.
    ValidationFaultIn200,
    /// Extra fields in the envelope and in every record: a client keeps them as they came.
    UnknownFields,
    /// A key in `QueryResponse` that no query answer has (`nextPageToken`): not an answer
    /// a client can recognise, so never data and never "no rows".
    UnknownQueryResponseKey,
    /// `time` as epoch milliseconds instead of a timestamp string.
    NumericTime,
}

/// A whole response that replaces the JSON answer.
#[derive(Debug, Clone)]
pub struct RawBody {
    pub status: u16,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json;charset=UTF-8";

fn html(status: u16) -> RawBody {
    let page = format!(
        "<!DOCTYPE html>\n<html><head><title>{status} Bad Gateway</title></head>\n\
         <body><h1>Bad Gateway</h1><p>The proxy server received an invalid response from an \
         upstream server.</p></body></html>\n"
    );
    RawBody {
        status,
        content_type: HTML,
        bytes: page.into_bytes(),
    }
}

impl Malformation {
    /// Spoils a 200 JSON answer: edits `body` in place, or returns a whole replacement.
    pub fn apply(self, body: &mut Value) -> Option<RawBody> {
        match self {
            Malformation::None => None,
            Malformation::TruncatedJson => {
                let bytes = serde_json::to_vec(body).unwrap_or_default();
                Some(RawBody {
                    status: 200,
                    content_type: JSON,
                    bytes: bytes[..bytes.len() / 2].to_vec(),
                })
            }
            Malformation::Html200 => Some(html(200)),
            Malformation::Html502 => Some(html(502)),
            Malformation::EnvelopeWithoutEntity => {
                if let Some(qr) = body.get_mut("QueryResponse").and_then(Value::as_object_mut) {
                    qr.retain(|_, v| !v.is_array());
                }
                None
            }
            Malformation::EmptyEnvelope => {
                if let Some(qr) = body.get_mut("QueryResponse").and_then(Value::as_object_mut) {
                    if qr.values().any(Value::is_array) {
                        qr.clear();
                    }
                }
                None
            }
            Malformation::ValidationFaultIn200 => {
                let time = body.get("time").and_then(Value::as_str).unwrap_or_default();
                *body = envelope::fault(
                    "ValidationFault",
                    "4001",
                    "Invalid query",
                    "QueryValidationError: the sandbox was told to reject this one",
                    time,
                );
                None
            }
            Malformation::UnknownFields => {
                add_unknown_fields(body);
                None
            }
            Malformation::UnknownQueryResponseKey => {
                if let Some(qr) = body.get_mut("QueryResponse").and_then(Value::as_object_mut) {
                    qr.insert("nextPageToken".into(), json!("opaque-token"));
                }
                None
            }
            Malformation::NumericTime => {
                if let Some(top) = body.as_object_mut() {
                    top.insert("time".into(), json!(chrono::Utc::now().timestamp_millis()));
                }
                None
            }
        }
    }
}

fn add_unknown_fields(body: &mut Value) {
    let Some(top) = body.as_object_mut() else {
        return;
    };
    top.insert("warnings".into(), json!(null));
    let Some(qr) = top.get_mut("QueryResponse").and_then(Value::as_object_mut) else {
        return;
    };
    for list in qr.values_mut().filter_map(Value::as_array_mut) {
        for record in list.iter_mut().filter_map(Value::as_object_mut) {
            record.insert(
                "FutureField".into(),
                json!({ "AddedIn": "minorversion 99", "Values": [1, 2.5, null, "ü"] }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Value {
        json!({
            "QueryResponse": { "Invoice": [{ "Id": "1" }], "startPosition": 1, "maxResults": 1 },
            "time": "2024-01-01T00:00:00.000-08:00",
        })
    }

    #[test]
    fn each_malformation_breaks_what_it_says() {
        let mut b = page();
        let raw = Malformation::TruncatedJson.apply(&mut b).unwrap();
        assert!(serde_json::from_slice::<Value>(&raw.bytes).is_err());
        assert_eq!(raw.status, 200);

        let mut b = page();
        assert!(Malformation::EnvelopeWithoutEntity.apply(&mut b).is_none());
        assert_eq!(
            b["QueryResponse"],
            json!({ "startPosition": 1, "maxResults": 1 })
        );

        let mut b = page();
        Malformation::EmptyEnvelope.apply(&mut b);
        assert_eq!(b["QueryResponse"], json!({}));
        let mut count = json!({ "QueryResponse": { "totalCount": 3 } });
        Malformation::EmptyEnvelope.apply(&mut count);
        assert_eq!(
            count["QueryResponse"]["totalCount"], 3,
            "counts are left alone"
        );

        let mut b = page();
        Malformation::UnknownFields.apply(&mut b);
        assert_eq!(
            b["QueryResponse"]["Invoice"][0]["FutureField"]["AddedIn"],
            "minorversion 99"
        );

        let mut b = page();
        Malformation::UnknownQueryResponseKey.apply(&mut b);
        assert_eq!(b["QueryResponse"]["nextPageToken"], "opaque-token");

        let mut b = page();
        Malformation::NumericTime.apply(&mut b);
        assert!(b["time"].is_i64());

        let mut b = page();
        Malformation::ValidationFaultIn200.apply(&mut b);
        assert_eq!(b["Fault"]["type"], "ValidationFault");

        let raw = Malformation::Html502.apply(&mut page()).unwrap();
        assert_eq!((raw.status, raw.content_type), (502, HTML));
    }
}
