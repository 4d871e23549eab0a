//! What QBO does that the sandbox would otherwise never do: answers that are odd but still
//! answers (`totalCount` on SELECT pages, more rows than MAXRESULTS, a numeric `time`, one
//! `{}` for a CDC answer without changes), and one that only looks like an answer: a Fault
//! inside `QueryResponse`, at HTTP 200.

use serde_json::{json, Map, Value};

use super::{every, Faults};
use crate::eval::{self, Compiled};
use crate::store::Row;

impl Faults {
    /// The page a query asks for, plus `rows_past_max_results` more: the rows that follow
    /// it, which the next page (at STARTPOSITION + MAXRESULTS) starts with again.
    pub fn page<'a>(&self, rows: &[&'a Row], q: &Compiled) -> Vec<&'a Row> {
        let mut page = eval::page(rows, q);
        if self.rows_past_max_results > 0 && !page.is_empty() {
            let after = usize::try_from(q.start_position.saturating_sub(1))
                .unwrap_or(usize::MAX)
                .saturating_add(page.len());
            let extra = usize::try_from(self.rows_past_max_results).unwrap_or(0);
            page.extend(rows.iter().skip(after).take(extra));
        }
        page
    }

    /// Reshapes answer `n` (a 200 of the query endpoint, or of CDC when `cdc`) as the quirks
    /// say. Returns what shaped it, for the request log.
    pub fn reshape(&self, n: u64, cdc: bool, body: &mut Value) -> Option<&'static str> {
        let mut note = None;
        if self.cdc_empty_as_one_object && cdc && one_empty_object(body) {
            note = Some("cdc_empty_as_one_object");
        }
        if self.total_count_on_pages && !cdc && total_count_on_page(body) {
            note = Some("total_count_on_pages");
        }
        if self.numeric_time {
            if let Some(top) = body.as_object_mut() {
                let ms = chrono::Utc::now().timestamp_millis();
                top.insert("time".into(), json!(ms));
                note = note.or(Some("numeric_time"));
            }
        }
        if every(n, self.fault_in_query_response_every) && fault_inside(body, cdc) {
            note = Some("fault_in_query_response_every");
        }
        note
    }
}

/// The SystemFault QBO puts where the results should be.
fn system_fault() -> Value {
    json!({
        "Error": [{
            "Message": "An application error has occurred while processing your request",
            "Detail": "System Failure Error: An unexpected error occurred while accessing or saving your data.",
            "code": "10000",
        }],
        "type": "SystemFault",
    })
}

/// Replaces what `QueryResponse` holds (each element's, for CDC) with a Fault.
fn fault_inside(body: &mut Value, cdc: bool) -> bool {
    let fault = || Value::Object(Map::from_iter([("Fault".to_string(), system_fault())]));
    if !cdc {
        return match body.get_mut("QueryResponse") {
            Some(qr) => {
                *qr = fault();
                true
            }
            None => false,
        };
    }
    let Some(elements) = body.get_mut("CDCResponse").and_then(Value::as_array_mut) else {
        return false;
    };
    for element in elements {
        if let Some(qrs) = element.get_mut("QueryResponse") {
            *qrs = json!([fault()]);
        }
    }
    true
}

/// `"QueryResponse": [{}, {}, ...]` (no entity changed) becomes `[{}]`.
fn one_empty_object(body: &mut Value) -> bool {
    let Some(elements) = body.get_mut("CDCResponse").and_then(Value::as_array_mut) else {
        return false;
    };
    let mut changed = false;
    for element in elements {
        let Some(qrs) = element
            .get_mut("QueryResponse")
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        let all_empty = qrs
            .iter()
            .all(|qr| qr.as_object().is_some_and(Map::is_empty));
        if all_empty && qrs.len() > 1 {
            qrs.truncate(1);
            changed = true;
        }
    }
    changed
}

/// A SELECT page with rows also says `totalCount`: the rows it holds, as QBO's do.
fn total_count_on_page(body: &mut Value) -> bool {
    let Some(qr) = body.get_mut("QueryResponse").and_then(Value::as_object_mut) else {
        return false;
    };
    let Some(rows) = qr.values().find_map(Value::as_array).map(Vec::len) else {
        return false;
    };
    qr.insert("totalCount".into(), json!(rows));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quirks(f: impl FnOnce(&mut Faults)) -> Faults {
        let mut faults = Faults::default();
        f(&mut faults);
        faults
    }

    fn page() -> Value {
        json!({
            "QueryResponse": { "Invoice": [{ "Id": "1" }, { "Id": "2" }], "startPosition": 1, "maxResults": 2 },
            "time": "2024-01-01T00:00:00.000-08:00",
        })
    }

    fn empty_cdc() -> Value {
        json!({ "CDCResponse": [{ "QueryResponse": [{}, {}, {}] }], "time": "t" })
    }

    #[test]
    fn each_quirk_shapes_what_it_says() {
        let f = quirks(|f| f.total_count_on_pages = true);
        let mut b = page();
        assert_eq!(f.reshape(1, false, &mut b), Some("total_count_on_pages"));
        assert_eq!(b["QueryResponse"]["totalCount"], 2);
        let mut count = json!({ "QueryResponse": { "totalCount": 9 } });
        assert_eq!(
            f.reshape(1, false, &mut count),
            None,
            "a COUNT is left alone"
        );
        assert_eq!(count["QueryResponse"]["totalCount"], 9);

        let f = quirks(|f| f.numeric_time = true);
        let mut b = page();
        f.reshape(1, false, &mut b);
        assert!(b["time"].is_i64());

        let f = quirks(|f| f.cdc_empty_as_one_object = true);
        let mut b = empty_cdc();
        assert_eq!(f.reshape(1, true, &mut b), Some("cdc_empty_as_one_object"));
        assert_eq!(b["CDCResponse"][0]["QueryResponse"], json!([{}]));
        let mut some = json!({ "CDCResponse": [{ "QueryResponse": [{ "Invoice": [] }, {}] }] });
        let before = some.clone();
        assert_eq!(f.reshape(1, true, &mut some), None);
        assert_eq!(
            some, before,
            "an answer with changes keeps one object per entity"
        );
    }

    /// Over HTTP: a page of 10 asked at STARTPOSITION 11 answers rows 11 to 23, and says so.
    #[tokio::test]
    async fn pages_run_past_max_results() {
        use crate::tests::{access_token, get_json, sandbox};
        let sb = sandbox().await;
        let token = access_token(&sb).await;
        let q = "SELECT * FROM Invoice ORDERBY Id STARTPOSITION 11 MAXRESULTS 10";
        let ids = |v: &Value| -> Vec<String> {
            v["QueryResponse"]["Invoice"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["Id"].as_str().unwrap().to_string())
                .collect()
        };
        let (_, plain) = get_json(&sb, &token, q).await;
        let wide = "SELECT * FROM Invoice ORDERBY Id STARTPOSITION 11 MAXRESULTS 13";
        let (_, expected) = get_json(&sb, &token, wide).await;
        sb.set_faults(quirks(|f| {
            f.rows_past_max_results = 3;
            f.total_count_on_pages = true;
        }));
        let (status, got) = get_json(&sb, &token, q).await;
        assert_eq!(status, 200);
        assert_eq!(ids(&got), ids(&expected));
        assert_eq!(ids(&got)[..10], ids(&plain)[..]);
        assert_eq!(got["QueryResponse"]["maxResults"], 13);
        assert_eq!(got["QueryResponse"]["totalCount"], 13);
        let last = "SELECT * FROM Invoice ORDERBY Id STARTPOSITION 245 MAXRESULTS 10";
        let (_, tail) = get_json(&sb, &token, last).await;
        assert_eq!(ids(&tail).len(), 6, "no rows past the last one");
        sb.shutdown().await;
    }

    #[test]
    fn a_fault_inside_query_response_every_nth_answer() {
        let f = quirks(|f| f.fault_in_query_response_every = 3);
        let mut b = page();
        assert_eq!(f.reshape(2, false, &mut b), None);
        assert_eq!(b, page());
        assert_eq!(
            f.reshape(3, false, &mut b),
            Some("fault_in_query_response_every")
        );
        assert_eq!(b["QueryResponse"]["Fault"]["type"], "SystemFault");
        assert_eq!(b["QueryResponse"].as_object().unwrap().len(), 1);
        assert!(b["time"].is_string());
        let mut c = empty_cdc();
        f.reshape(6, true, &mut c);
        assert_eq!(
            c["CDCResponse"][0]["QueryResponse"][0]["Fault"]["type"],
            "SystemFault"
        );
    }
}
