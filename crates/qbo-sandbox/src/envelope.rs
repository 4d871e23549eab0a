//! Response bodies as QBO shapes them: the QueryResponse envelope, the Fault family, and the
//! XML rendering used when the client does not ask for JSON.

use serde_json::{json, Map, Value};

pub fn page(entity: &str, records: Vec<Value>, start: u64, time: &str) -> Value {
    if records.is_empty() {
        // QBO sends an empty object, not an empty array, when nothing matched.
        return json!({ "QueryResponse": {}, "time": time });
    }
    let n = records.len();
    json!({
        "QueryResponse": { entity: records, "startPosition": start, "maxResults": n },
        "time": time,
    })
}

pub fn count(total: u64, time: &str) -> Value {
    json!({ "QueryResponse": { "totalCount": total }, "time": time })
}

/// The capitalised Fault family (`ValidationFault`, `SERVICE`, `SystemFault`, ...).
pub fn fault(kind: &str, code: &str, message: &str, detail: &str, time: &str) -> Value {
    json!({
        "Fault": { "Error": [{ "Message": message, "Detail": detail, "code": code }], "type": kind },
        "time": time,
    })
}

pub fn parse_error(detail: &str, time: &str) -> Value {
    fault(
        "ValidationFault",
        "4000",
        "Error parsing query",
        &format!("QueryParserError: {detail}"),
        time,
    )
}

pub fn invalid_query(detail: &str, time: &str) -> Value {
    fault(
        "ValidationFault",
        "4001",
        "Invalid query",
        &format!("QueryValidationError: {detail}"),
        time,
    )
}

pub fn throttle(time: &str) -> Value {
    fault(
        "SERVICE",
        "3001",
        "message=ThrottleExceeded; errorCode=003001; statusCode=429",
        "The request limit was reached.",
        time,
    )
}

pub fn system_error(status: u16, time: &str) -> Value {
    let detail = if status == 503 {
        "Service Unavailable: the service is temporarily unable to handle the request."
    } else {
        "System Failure Error: An unexpected error occurred while accessing or saving your data."
    };
    fault(
        "SystemFault",
        "10000",
        "An application error has occurred while processing your request",
        detail,
        time,
    )
}

/// QBO's 401 uses a lowercase `fault` object, unlike every other fault.
pub fn auth_failed(time: &str) -> Value {
    json!({
        "fault": {
            "error": [{
                "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                "detail": "Token expired or invalid: the access token is missing, unknown or expired.",
                "code": "3200",
            }],
            "type": "AUTHENTICATION",
        },
        "time": time,
    })
}

pub fn forbidden(time: &str) -> Value {
    fault(
        "AuthorizationFault",
        "003100",
        "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
        "The token is not authorized for this company (realm).",
        time,
    )
}

/// JSON keys that QBO's XML carries as attributes rather than child elements.
const ATTRIBUTES: &[&str] = &[
    "domain",
    "sparse",
    "status",
    "startPosition",
    "maxResults",
    "totalCount",
    "code",
    "type",
    "bId",
];

/// Renders an envelope (`{X: ..., "time": t}`) as `<IntuitResponse time=t><X>...</X></IntuitResponse>`.
pub fn to_xml(envelope: &Value) -> String {
    let mut out = String::from(r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#);
    out.push_str(r#"<IntuitResponse xmlns="http://schema.intuit.com/finance/v3""#);
    if let Some(t) = envelope.get("time").and_then(Value::as_str) {
        out.push_str(&format!(r#" time="{}""#, escape(t)));
    }
    out.push('>');
    if let Some(obj) = envelope.as_object() {
        for (k, v) in obj.iter().filter(|(k, _)| *k != "time") {
            element(&mut out, k, v);
        }
    }
    out.push_str("</IntuitResponse>");
    out
}

fn element(out: &mut String, name: &str, v: &Value) {
    // The lowercase 401 fault is capitalised in XML like every other fault.
    let name = match name {
        "fault" => "Fault",
        "error" => "Error",
        "message" => "Message",
        "detail" => "Detail",
        other => other,
    };
    match v {
        Value::Null => {}
        Value::Array(items) => items.iter().for_each(|item| element(out, name, item)),
        // QBO references (`{"value": "9", "name": "Design"}`) are `<ItemRef name="Design">9</ItemRef>`.
        Value::Object(map) if is_reference(map) => {
            out.push('<');
            out.push_str(name);
            for (k, v) in map.iter().filter(|(k, _)| *k != "value") {
                out.push_str(&format!(r#" {k}="{}""#, escape(&text(v))));
            }
            out.push('>');
            out.push_str(&escape(&text(&map["value"])));
            out.push_str(&format!("</{name}>"));
        }
        Value::Object(map) => {
            out.push('<');
            out.push_str(name);
            attributes(out, map);
            out.push('>');
            for (k, child) in map.iter().filter(|(k, c)| !is_attribute(k, c)) {
                element(out, k, child);
            }
            out.push_str(&format!("</{name}>"));
        }
        scalar => out.push_str(&format!("<{name}>{}</{name}>", escape(&text(scalar)))),
    }
}

fn is_reference(map: &Map<String, Value>) -> bool {
    map.get("value")
        .is_some_and(|v| !v.is_object() && !v.is_array())
        && map.iter().all(|(k, v)| {
            matches!(k.as_str(), "value" | "name" | "type") && !v.is_object() && !v.is_array()
        })
}

fn is_attribute(k: &str, v: &Value) -> bool {
    ATTRIBUTES.contains(&k) && !v.is_object() && !v.is_array()
}

fn attributes(out: &mut String, map: &Map<String, Value>) {
    for (k, v) in map.iter().filter(|(k, v)| is_attribute(k, v)) {
        out.push_str(&format!(r#" {k}="{}""#, escape(&text(v))));
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_page_and_fault() {
        let rec = json!({"Id": "1", "CustomerRef": {"value": "7", "name": "A&B"}, "domain": "QBO", "sparse": false, "DisplayName": "O'Brien <&> \"Co\"", "Line": [{"Amount": 1}, {"Amount": 2}], "Memo": null});
        let x = to_xml(&page("Customer", vec![rec], 1, "T"));
        assert!(
            x.contains(r#"<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="T">"#),
            "{x}"
        );
        assert!(x.contains(r#"<QueryResponse maxResults="1" startPosition="1"><Customer domain="QBO" sparse="false">"#), "{x}");
        assert!(
            x.contains("<DisplayName>O&apos;Brien &lt;&amp;&gt; &quot;Co&quot;</DisplayName>"),
            "{x}"
        );
        assert!(
            x.contains("<Line><Amount>1</Amount></Line><Line><Amount>2</Amount></Line>"),
            "{x}"
        );
        assert!(!x.contains("Memo"));
        assert!(
            x.contains(r#"<CustomerRef name="A&amp;B">7</CustomerRef>"#),
            "{x}"
        );
        let f = to_xml(&throttle("T"));
        assert!(
            f.contains(r#"<Fault type="SERVICE"><Error code="3001"><Detail>"#),
            "{f}"
        );
        assert!(to_xml(&auth_failed("T"))
            .contains(r#"<Fault type="AUTHENTICATION"><Error code="3200">"#));
        let batch = json!({"BatchItemResponse": [{"bId": "b1", "QueryResponse": {}}], "time": "T"});
        assert!(
            to_xml(&batch)
                .contains(r#"<BatchItemResponse bId="b1"><QueryResponse></QueryResponse>"#),
            "{}",
            to_xml(&batch)
        );
    }

    #[test]
    fn empty_page_is_empty_object() {
        assert_eq!(
            page("Invoice", vec![], 1, "T"),
            json!({"QueryResponse": {}, "time": "T"})
        );
        assert_eq!(count(7, "T")["QueryResponse"]["totalCount"], 7);
    }
}
