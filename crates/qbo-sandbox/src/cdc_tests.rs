//! Change data capture, deletes and query projections, over real HTTP.

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use super::tests::{access_token, client, get, get_json, sandbox};
use super::*;

fn ago(d: Duration) -> String {
    clock::format_secs(Utc::now() - d)
}

async fn cdc(
    sb: &Sandbox,
    token: &str,
    entities: &str,
    since: &str,
    json: bool,
) -> reqwest::Response {
    let url = format!("{}/v3/company/{}/cdc", sb.api_base_url(), sb.realm_id());
    let mut req = client()
        .get(url)
        .query(&[
            ("entities", entities),
            ("changedSince", since),
            ("minorversion", "75"),
        ])
        .bearer_auth(token);
    if json {
        req = req.header("Accept", "application/json");
    }
    req.send().await.unwrap()
}

async fn cdc_json(sb: &Sandbox, token: &str, entities: &str, since: &str) -> (u16, Value) {
    let r = cdc(sb, token, entities, since, true).await;
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The per-entity elements of a CDC answer, in order.
fn responses(v: &Value) -> &Vec<Value> {
    v["CDCResponse"][0]["QueryResponse"]
        .as_array()
        .unwrap_or_else(|| panic!("no CDCResponse[0].QueryResponse array in {v}"))
}

fn objects<'a>(v: &'a Value, slot: usize, entity: &str) -> &'a Vec<Value> {
    responses(v)[slot][entity]
        .as_array()
        .unwrap_or_else(|| panic!("no {entity} array at {slot} in {v}"))
}

fn record(sb: &Sandbox, entity: &str, id: &str) -> Value {
    sb.records(entity)
        .into_iter()
        .find(|r| r["Id"] == id)
        .unwrap_or_else(|| panic!("{entity} {id} exists"))
}

/// A copy of an existing record under a new Id, last updated now.
fn fresh(sb: &Sandbox, entity: &str, template_id: &str, id: &str) -> Value {
    let mut r = record(sb, entity, template_id);
    let now = clock::format_secs(Utc::now());
    r["Id"] = json!(id);
    r["SyncToken"] = json!("0");
    r["MetaData"] = json!({ "CreateTime": now, "LastUpdatedTime": now });
    r
}

#[tokio::test]
async fn reports_edits_and_deletes_since_a_time_in_request_order() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let since = ago(Duration::hours(1));
    // The generated company was last edited long ago: nothing changed in the last hour.
    let (status, v) = cdc_json(&sb, &tok, "Invoice,Customer", &since).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(responses(&v), &vec![json!({}), json!({})]);

    sb.touch_record("Invoice", "5");
    sb.delete_record("Invoice", "7");
    let before = record(&sb, "Customer", "3");
    assert_eq!(
        before["Active"], true,
        "the test deletes an active customer"
    );
    sb.delete_record("Customer", "3");
    let (status, v) = cdc_json(&sb, &tok, "Customer,Item,Invoice", &since).await;
    assert_eq!(status, 200, "{v}");
    let rs = responses(&v);
    assert_eq!(rs.len(), 3, "one element per requested entity: {v}");
    assert_eq!(rs[1], json!({}), "Item had no changes");
    // QBO never deletes a name: "deleting" Customer 3 made it inactive, renamed it, and CDC
    // reports the change in full, like any edit.
    let customer = &objects(&v, 0, "Customer")[0];
    assert_eq!(customer, &record(&sb, "Customer", "3"));
    assert!(customer.get("status").is_none(), "{customer}");
    assert_eq!(customer["Active"], false);
    let token = |r: &Value| r["SyncToken"].as_str().unwrap().parse::<u64>().unwrap();
    assert_eq!(token(customer), token(&before) + 1, "{customer}");
    for name in ["DisplayName", "FullyQualifiedName"] {
        assert!(
            customer[name].as_str().unwrap().ends_with(" (deleted)"),
            "{name}: {customer}"
        );
    }
    let invoices = objects(&v, 2, "Invoice");
    assert_eq!(invoices.len(), 2, "{v}");
    assert_eq!(rs[2]["totalCount"], 2);
    assert_eq!(rs[2]["maxResults"], 2);
    assert_eq!(rs[2]["startPosition"], 1);
    let edited = invoices.iter().find(|o| o["Id"] == "5").unwrap();
    assert_eq!(
        edited,
        &record(&sb, "Invoice", "5"),
        "an edit is the full payload"
    );
    assert!(edited.get("status").is_none());
    let gone = invoices.iter().find(|o| o["Id"] == "7").unwrap();
    assert_eq!(gone["status"], "Deleted");
    assert_eq!(gone.as_object().unwrap().len(), 4, "minimal shape: {gone}");
    let deleted_at = gone["MetaData"]["LastUpdatedTime"].as_str().unwrap();
    assert!(
        clock::parse_instant_ms(deleted_at).unwrap() >= clock::parse_instant_ms(&since).unwrap()
    );
    let time = v["time"].as_str().unwrap();
    assert!(
        time.ends_with("-08:00") || time.ends_with("-07:00"),
        "{time}"
    );

    // The deleted records are gone from queries and counts, and listed as tombstones.
    assert_eq!(sb.deleted_ids("Invoice"), vec!["7"]);
    assert!(
        sb.deleted_ids("Customer").is_empty(),
        "names are never deleted"
    );
    assert!(sb.deleted_ids("Item").is_empty());
    let (_, c) = get_json(&sb, &tok, "SELECT COUNT(*) FROM Invoice").await;
    assert_eq!(c["QueryResponse"]["totalCount"], 249);
    let (_, q) = get_json(
        &sb,
        &tok,
        "SELECT * FROM Invoice WHERE Id IN ('6', '7', '8')",
    )
    .await;
    let ids: Vec<&Value> = q["QueryResponse"]["Invoice"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["Id"])
        .collect();
    assert_eq!(ids, vec!["6", "8"]);
    assert!(sb.records("Invoice").iter().all(|r| r["Id"] != "7"));

    // changedSince is inclusive: the deletion instant itself still shows it, a second later not.
    let (_, v) = cdc_json(&sb, &tok, "Customer", deleted_at).await;
    assert_eq!(objects(&v, 0, "Customer")[0]["Id"], "3");
    let later = clock::format_secs(
        clock::from_millis(clock::parse_instant_ms(deleted_at).unwrap()) + Duration::seconds(1),
    );
    let (_, v) = cdc_json(&sb, &tok, "Customer", &later).await;
    assert_eq!(responses(&v), &vec![json!({})]);

    let s = sb.stats();
    assert_eq!(s.cdc_requests, 4);
    assert_eq!(s.deletes, 2);
    assert_eq!(s.request_log.iter().filter(|e| e.kind == "cdc").count(), 4);
    let logged = s.request_log.iter().find(|e| e.kind == "cdc").unwrap();
    assert_eq!(
        logged.query.as_deref(),
        Some(format!("entities=Invoice,Customer changedSince={since}").as_str())
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn recreated_is_live_and_created_then_deleted_is_deleted() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let since = ago(Duration::minutes(5));
    sb.delete_record("Invoice", "9");
    assert_eq!(sb.deleted_ids("Invoice"), vec!["9"]);
    let again = fresh(&sb, "Invoice", "10", "9");
    sb.put_record("Invoice", again.clone());
    assert!(
        sb.deleted_ids("Invoice").is_empty(),
        "re-creating clears the tombstone"
    );
    let planted = fresh(&sb, "Invoice", "10", "5000");
    sb.put_record("Invoice", planted);
    sb.delete_record("Invoice", "5000");
    let (status, v) = cdc_json(&sb, &tok, "Invoice", &since).await;
    assert_eq!(status, 200, "{v}");
    let mut objs = objects(&v, 0, "Invoice").clone();
    objs.sort_by_key(|o| o["Id"].as_str().unwrap().len());
    assert_eq!(objs.len(), 2, "{v}");
    assert_eq!(objs[0], again, "the newest event wins: live again");
    assert_eq!(objs[1]["Id"], "5000");
    assert_eq!(objs[1]["status"], "Deleted");

    // Deactivating a name is a change like any other: CDC reports what queries hide.
    let mut inactive = record(&sb, "Customer", "2");
    let now = clock::format_secs(Utc::now());
    inactive["Active"] = json!(false);
    inactive["MetaData"]["LastUpdatedTime"] = json!(now);
    sb.put_record("Customer", inactive.clone());
    let (_, v) = cdc_json(&sb, &tok, "Customer", &since).await;
    assert_eq!(objects(&v, 0, "Customer"), &vec![inactive]);
    let (_, q) = get_json(&sb, &tok, "SELECT * FROM Customer WHERE Id = '2'").await;
    assert_eq!(q["QueryResponse"], json!({}));
    let (_, q) = get_json(&sb, &tok, "SELECT * FROM Invoice WHERE Id = '9'").await;
    assert_eq!(q["QueryResponse"]["Invoice"][0], again);

    // Deleting what is not there is a bug in the caller, not a silent no-op.
    assert!(sb.try_delete_record("Invoice", "5000").is_err());
    assert!(sb.try_delete_record("Invoice", "abc").is_err());
    assert!(sb.try_delete_record("Widget", "1").is_err());
    assert_eq!(sb.stats().deletes, 2);
    sb.shutdown().await;
}

async fn fault_of(sb: &Sandbox, tok: &str, entities: &str, since: &str) -> (String, String) {
    let (status, v) = cdc_json(sb, tok, entities, since).await;
    assert_eq!(status, 400, "{entities} {since}: {v}");
    assert_eq!(v["Fault"]["type"], "ValidationFault", "{v}");
    assert!(v["time"].is_string());
    let e = &v["Fault"]["Error"][0];
    (
        e["code"].as_str().unwrap().to_string(),
        e["Detail"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn rejects_old_or_bad_change_times_and_unserved_entities() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let recent = ago(Duration::days(29));
    let (code, detail) = fault_of(&sb, &tok, "Invoice", &ago(Duration::days(31))).await;
    assert_eq!(code, "2010");
    assert!(
        detail.contains("changedSince must be within the last 30 days"),
        "{detail}"
    );
    for bad in ["", "yesterday", "2026-13-01", "2026-11-20 10:00:00 +01:00"] {
        assert_eq!(
            fault_of(&sb, &tok, "Invoice", bad).await.0,
            "2010",
            "{bad:?}"
        );
    }
    for entities in [
        "Widget",
        "Invoice,Widget",
        "TaxCode",
        "TimeActivity",
        "Invoice,JournalCode",
        "",
        "Invoice,,Customer",
        "Invoice,Invoice",
        "invoices",
    ] {
        let (code, detail) = fault_of(&sb, &tok, entities, &recent).await;
        assert_eq!(code, "2030", "{entities:?}: {detail}");
    }
    let (_, detail) = fault_of(&sb, &tok, "TaxRate", &recent).await;
    assert!(
        detail.contains("not supported by change data capture"),
        "{detail}"
    );
    // Within the horizon, date or date-time, with or without an offset.
    let today = clock::local_date(Utc::now()).to_string();
    for since in [recent.as_str(), today.as_str(), &recent[..19]] {
        let (status, v) = cdc_json(&sb, &tok, "Invoice,Customer", since).await;
        assert_eq!(status, 200, "{since}: {v}");
    }
    // Without an offset, changedSince is company-local time: the edit's own local wall-clock
    // time finds it (read as UTC it would be hours in the future and find nothing).
    sb.touch_record("Invoice", "12");
    let edited = record(&sb, "Invoice", "12")["MetaData"]["LastUpdatedTime"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, v) = cdc_json(&sb, &tok, "Invoice", &edited[..19]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(objects(&v, 0, "Invoice")[0]["Id"], "12", "{edited}");
    // A served entity with nothing changed is an empty element.
    let (status, v) = cdc_json(&sb, &tok, "Vendor", &recent).await;
    assert_eq!((status, responses(&v)), (200, &vec![json!({})]));
    // A missing minorversion is served as 75 here too.
    let url = format!(
        "{}/v3/company/{}/cdc?entities=Invoice&changedSince={}",
        sb.api_base_url(),
        sb.realm_id(),
        today
    );
    let r = client()
        .get(url)
        .bearer_auth(&tok)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sb.shutdown().await;
}

#[tokio::test]
async fn caps_at_1000_objects_chosen_neither_oldest_nor_newest_first() {
    let today = clock::local_date(Utc::now());
    let cfg = SandboxConfig {
        invoices: 1500,
        customers: 30,
        items: 10,
        data_start: today - Duration::days(10),
        data_end: today - Duration::days(2),
        ..SandboxConfig::default()
    };
    let sb = Sandbox::start(cfg).await.unwrap();
    let tok = access_token(&sb).await;
    let since = ago(Duration::days(20));
    let (status, v) = cdc_json(&sb, &tok, "Invoice", &since).await;
    assert_eq!(status, 200);
    let got = objects(&v, 0, "Invoice");
    assert_eq!(got.len(), 1000);
    assert_eq!(
        responses(&v)[0]["totalCount"],
        1000,
        "nothing says truncated"
    );
    let ids: BTreeSet<String> = got
        .iter()
        .map(|o| o["Id"].as_str().unwrap().into())
        .collect();
    assert_eq!(ids.len(), 1000);

    let mut all = sb.records("Invoice");
    assert_eq!(all.len(), 1500);
    let updated = |r: &Value| {
        clock::parse_instant_ms(r["MetaData"]["LastUpdatedTime"].as_str().unwrap()).unwrap()
    };
    all.sort_by_key(|r| {
        (
            updated(r),
            r["Id"].as_str().unwrap().parse::<u64>().unwrap(),
        )
    });
    let id_set = |rs: &[Value]| -> BTreeSet<String> {
        rs.iter()
            .map(|r| r["Id"].as_str().unwrap().into())
            .collect()
    };
    assert_ne!(ids, id_set(&all[..1000]), "not the oldest 1000");
    assert_ne!(ids, id_set(&all[500..]), "not the newest 1000");
    let by_id: BTreeSet<String> = (1..=1000).map(|i: u32| i.to_string()).collect();
    assert_ne!(ids, by_id, "not the lowest Ids");
    // Every object is a real changed record, as the query endpoint would serialise it (this
    // request has no include=enhancedAllCustomFields: legacy custom fields only).
    for o in got.iter().take(20) {
        let r = all.iter().find(|r| r["Id"] == o["Id"]).unwrap();
        assert_eq!(o, &super::custom_fields::serve(r.clone(), false));
    }
    // Stable: the same question gets the same 1000.
    let (_, again) = cdc_json(&sb, &tok, "Invoice", &since).await;
    assert_eq!(objects(&again, 0, "Invoice"), got);

    // The cap is for the whole response, all entities together.
    let (_, both) = cdc_json(&sb, &tok, "Customer,Invoice", &since).await;
    let customers = objects(&both, 0, "Customer").len();
    let invoices = objects(&both, 1, "Invoice").len();
    assert_eq!(customers + invoices, 1000);
    assert!(customers > 0 && customers <= 30, "{customers}");
    // Under the cap, everything comes back.
    let (_, few) = cdc_json(&sb, &tok, "Customer,Item", &since).await;
    assert_eq!(objects(&few, 0, "Customer").len(), 30);
    assert_eq!(objects(&few, 1, "Item").len(), 10);
    sb.shutdown().await;
}

#[tokio::test]
async fn xml_unless_json_is_accepted() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    sb.touch_record("Invoice", "4");
    sb.delete_record("Invoice", "6");
    let r = cdc(&sb, &tok, "Invoice,Item", &ago(Duration::hours(1)), false).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/xml"));
    let x = r.text().await.unwrap();
    assert!(x.contains("<IntuitResponse"), "{x}");
    assert!(x.contains("<CDCResponse><QueryResponse"), "{x}");
    assert!(
        x.contains(r#"<Invoice domain="QBO" sparse="false">"#),
        "{x}"
    );
    assert!(
        x.contains(r#"<Invoice domain="QBO" status="Deleted"><Id>6</Id>"#),
        "{x}"
    );
    assert!(
        x.contains("<QueryResponse></QueryResponse>"),
        "empty Item: {x}"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn same_gate_as_queries_auth_and_faults() {
    let sb = sandbox().await;
    let since = ago(Duration::hours(1));
    let r = cdc(&sb, "not-a-token", "Invoice", &since, true).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    assert!(r.headers().contains_key("intuit_tid"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["fault"]["error"][0]["code"], "3200");
    assert_eq!(sb.stats().unauthorized, 1);

    let tok = access_token(&sb).await;
    sb.set_faults(Faults {
        throttle_every: 3,
        throttle_retry_after_secs: Some(7),
        ..sb.faults()
    });
    // Query and CDC requests are numbered together (the 401 above was the first): the third
    // API call is throttled, and it is a CDC one.
    let (status, _) = get_json(&sb, &tok, "SELECT * FROM Item MAXRESULTS 1").await;
    assert_eq!(status, 200);
    let r = cdc(&sb, &tok, "Invoice", &since, true).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    sb.set_faults(Faults {
        server_error_every: 1,
        ..Faults::default()
    });
    let r = cdc(&sb, &tok, "Invoice", &since, true).await;
    assert!(r.status().is_server_error());
    let one = |f: fn(&mut Faults)| {
        let mut faults = Faults::default();
        f(&mut faults);
        sb.set_faults(faults);
    };
    one(|f| f.drop_every = 1);
    let r = cdc(&sb, &tok, "Invoice", &since, true).await;
    assert!(r.bytes().await.is_err(), "the connection is cut mid-body");
    one(|f| f.fault_in_200_every = 1);
    let (status, v) = cdc_json(&sb, &tok, "Invoice", &since).await;
    assert_eq!(status, 200);
    assert!(
        v["Fault"].is_object() && v.get("CDCResponse").is_none(),
        "{v}"
    );
    one(|f| f.expire_access_every = 1);
    assert_eq!(cdc(&sb, &tok, "Invoice", &since, true).await.status(), 401);
    sb.set_faults(Faults::default());
    assert_eq!(
        cdc(&sb, &tok, "Invoice", &since, true).await.status(),
        401,
        "that access token stays expired"
    );
    let s = sb.stats();
    assert_eq!(
        (s.throttled, s.server_errors, s.dropped, s.unauthorized),
        (1, 1, 1, 3)
    );
    assert_eq!((s.cdc_requests, s.query_requests), (7, 1));
    let notes: Vec<_> = s
        .request_log
        .iter()
        .filter(|e| e.kind == "cdc")
        .map(|e| (e.status, e.fault.as_deref()))
        .collect();
    assert_eq!(
        notes,
        vec![
            (401, None),
            (429, Some("throttle_every")),
            (500, Some("server_error_every")),
            (200, Some("drop_every")),
            (200, Some("fault_in_200_every")),
            (401, Some("expire_access_every")),
            (401, None),
        ]
    );
    let tok = access_token(&sb).await;
    let url = format!(
        "{}/v3/company/123/cdc?entities=Invoice&changedSince=2026-01-01&minorversion=75",
        sb.api_base_url()
    );
    let r = client().get(url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 403, "another realm");
    sb.shutdown().await;
}

#[tokio::test]
async fn projections_return_sparse_records() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    sb.delete_record("Invoice", "2");
    let (status, v) = get_json(
        &sb,
        &tok,
        "SELECT Id FROM Invoice WHERE Id < '5' ORDERBY Id DESC",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["QueryResponse"]["Invoice"],
        json!([
            {"Id": "4", "domain": "QBO", "sparse": true},
            {"Id": "3", "domain": "QBO", "sparse": true},
            {"Id": "1", "domain": "QBO", "sparse": true},
        ])
    );
    let (_, v) = get_json(
        &sb,
        &tok,
        "select Id, Metadata.LastUpdatedTime from Customer where Active in (true, false) \
         startposition 3 maxresults 2",
    )
    .await;
    let page = v["QueryResponse"]["Customer"].as_array().unwrap();
    assert_eq!(page.len(), 2);
    for (r, id) in page.iter().zip(["3", "4"]) {
        let full = record(&sb, "Customer", id);
        assert_eq!(
            r,
            &json!({"Id": id, "MetaData": {"LastUpdatedTime": full["MetaData"]["LastUpdatedTime"]},
                    "domain": "QBO", "sparse": true})
        );
    }
    for bad in [
        "SELECT Foo FROM Invoice",
        "SELECT Id, Nope.Field FROM Invoice",
        "SELECT DisplayName FROM Invoice",
    ] {
        let (status, v) = get_json(&sb, &tok, bad).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["Fault"]["type"], "ValidationFault");
    }
    let (status, v) = get_json(&sb, &tok, "SELECT Id, FROM Invoice").await;
    assert_eq!(
        (status, &v["Fault"]["Error"][0]["code"]),
        (400, &json!("4000"))
    );
    let x = get(&sb, &tok, "SELECT Id FROM Item MAXRESULTS 1", false)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        x.contains(r#"<Item domain="QBO" sparse="true"><Id>1</Id></Item>"#),
        "{x}"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn control_api_deletes_and_lists_tombstones() {
    let sb = sandbox().await;
    let base = sb.api_base_url();
    let post = |path: String| client().post(format!("{base}{path}")).send();
    let r = post("/__sandbox/delete/Invoice/3".into()).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = post("/__sandbox/delete/Invoice/3".into()).await.unwrap();
    assert_eq!(r.status(), 404, "already deleted");
    let r = post("/__sandbox/delete/Widget/3".into()).await.unwrap();
    assert_eq!(r.status(), 404);
    let ids: Vec<String> = client()
        .get(format!("{base}/__sandbox/deleted/Invoice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids, vec!["3"]);
    let r = client()
        .get(format!("{base}/__sandbox/deleted/Widget"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let stats: Value = client()
        .get(format!("{base}/__sandbox/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["deletes"], 1);
    assert_eq!(sb.deleted_ids("Invoice"), vec!["3"]);
    sb.shutdown().await;
}
