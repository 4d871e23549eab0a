//! The response parser never panics on any bytes or any JSON, and a well-formed page
//! round-trips: every record's keys, and its exact JSON.

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeZone, Utc};
use proptest::prelude::*;
use qbo::client::response::{error_from_body, parse_count, parse_page};
use serde_json::{json, Value};

use super::{config, tricky_string};

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        tricky_string().prop_map(Value::from),
        prop_oneof![
            Just("QueryResponse"),
            Just("Invoice"),
            Just("Fault"),
            Just("fault")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("QueryResponse".to_string()),
                    Just("Invoice".to_string()),
                    Just("Fault".to_string()),
                    Just("Error".to_string()),
                    Just("maxResults".to_string()),
                    Just("totalCount".to_string()),
                    Just("time".to_string()),
                    Just("Id".to_string()),
                    Just("MetaData".to_string()),
                    Just("LastUpdatedTime".to_string()),
                    "[a-zA-Z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn instant() -> impl Strategy<Value = DateTime<FixedOffset>> {
    (0i64..4_000_000_000, -12i32 * 4..=14 * 4).prop_map(|(secs, quarters)| {
        let offset = FixedOffset::east_opt(quarters * 900).unwrap();
        offset.timestamp_opt(secs, 0).unwrap()
    })
}

fn record() -> impl Strategy<Value = Value> {
    (1u64..10_000_000, 0u32..1000, instant(), any_json()).prop_map(|(id, token, lut, extra)| {
        json!({
            "Id": id.to_string(),
            "SyncToken": token.to_string(),
            "MetaData": {
                "CreateTime": lut.to_rfc3339_opts(SecondsFormat::Secs, false),
                "LastUpdatedTime": lut.to_rfc3339_opts(SecondsFormat::Secs, false),
            },
            "Extra": extra,
        })
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_page(&body, "Invoice");
        let _ = parse_count(&body);
        let _ = error_from_body(500, &body);
    }

    #[test]
    fn any_json_never_panics(v in any_json(), wrap in any::<bool>()) {
        let v = if wrap { json!({ "QueryResponse": v, "time": "x" }) } else { v };
        let body = serde_json::to_vec(&v).unwrap();
        let _ = parse_page(&body, "Invoice");
        let _ = parse_count(&body);
        for status in [200, 400, 401, 429, 500, 503] {
            let _ = error_from_body(status, &body);
        }
    }

    #[test]
    fn well_formed_pages_round_trip(records in prop::collection::vec(record(), 0..8), time in instant()) {
        let body = if records.is_empty() {
            json!({ "QueryResponse": {}, "time": time.to_rfc3339_opts(SecondsFormat::Millis, false) })
        } else {
            json!({
                "QueryResponse": { "Invoice": records, "startPosition": 1, "maxResults": records.len() },
                "time": time.to_rfc3339_opts(SecondsFormat::Millis, false),
            })
        };
        let page = parse_page(&serde_json::to_vec(&body).unwrap(), "Invoice").unwrap();
        prop_assert_eq!(page.server_time, Some(time.with_timezone(&Utc)));
        prop_assert_eq!(page.records.len(), records.len());
        for (got, sent) in page.records.iter().zip(&records) {
            prop_assert_eq!(&got.id, sent["Id"].as_str().unwrap());
            prop_assert_eq!(&got.sync_token, sent["SyncToken"].as_str().unwrap());
            let lut = DateTime::parse_from_rfc3339(sent["MetaData"]["LastUpdatedTime"].as_str().unwrap()).unwrap();
            prop_assert_eq!(got.last_updated, lut.with_timezone(&Utc));
            // The very text QBO sent, not a re-serialisation (which could round floats).
            prop_assert_eq!(got.json.get(), serde_json::to_string(sent).unwrap());
        }
    }

    /// Nothing is "no rows" unless it is one of the shapes QBO uses for it: a
    /// `QueryResponse` holding at most an empty list and counts that claim nothing. Nothing
    /// is a COUNT of 0 unless `QueryResponse` is `{}` or says `totalCount: 0`.
    #[test]
    fn only_recognised_shapes_are_empty(v in any_json()) {
        let body = serde_json::to_vec(&json!({ "QueryResponse": v, "time": "x" })).unwrap();
        let qr = v.as_object();
        if let Ok(page) = parse_page(&body, "Invoice") {
            if page.records.is_empty() {
                let qr = qr.expect("an empty page from a QueryResponse that is not an object");
                for (key, value) in qr {
                    let fine = match key.as_str() {
                        "Invoice" => value.as_array().is_some_and(Vec::is_empty),
                        "startPosition" => value.is_u64(),
                        "maxResults" | "totalCount" => value.as_u64() == Some(0),
                        _ => false,
                    };
                    prop_assert!(fine, "{} read as an empty page", v);
                }
            }
        }
        if let Ok((0, _)) = parse_count(&body) {
            let qr = qr.expect("a count from a QueryResponse that is not an object");
            prop_assert!(
                qr.is_empty() || qr.get("totalCount").and_then(Value::as_u64) == Some(0),
                "{} read as a COUNT of 0", v
            );
        }
    }

    #[test]
    fn counts_round_trip(n in any::<u64>()) {
        let body = serde_json::to_vec(&json!({ "QueryResponse": { "totalCount": n } })).unwrap();
        prop_assert_eq!(parse_count(&body).unwrap().0, n);
    }
}
