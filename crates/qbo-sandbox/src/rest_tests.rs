//! HTTP-level tests of what third-party clients call besides `GET .../query` and CDC: POSTed
//! queries, reads by id, batch, the grammar they write, and client_secret_post.

use serde_json::{json, Value};

use super::tests::{access_token, client, get_json, sandbox};
use super::Sandbox;

fn url(sb: &Sandbox, path: &str) -> String {
    format!("{}/v3/company/{}/{path}", sb.api_base_url(), sb.realm_id())
}

async fn read(sb: &Sandbox, tok: &str, path: &str) -> (u16, Value) {
    let r = client()
        .get(url(sb, path))
        .query(&[("minorversion", "75")])
        .bearer_auth(tok)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn batch(sb: &Sandbox, tok: &str, body: &Value) -> (u16, Value) {
    let r = client()
        .post(url(sb, "batch"))
        .query(&[("minorversion", "75")])
        .bearer_auth(tok)
        .header("Accept", "application/json")
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn a_query_posted_as_application_text_is_answered_like_a_get() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let q = "SELECT * FROM Invoice WHERE Id > '3' ORDERBY Id STARTPOSITION 2 MAXRESULTS 3";
    let post = |ctype: &'static str| {
        client()
            .post(url(&sb, "query"))
            .bearer_auth(&tok)
            .header("Accept", "application/json")
            .header("Content-Type", ctype)
            .body(q)
            .send()
    };
    let r = post("application/text").await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "python-quickbooks' way, without minorversion"
    );
    let posted: Value = r.json().await.unwrap();
    let (st, got) = get_json(&sb, &tok, q).await;
    assert_eq!(st, 200);
    assert_eq!(posted["QueryResponse"], got["QueryResponse"]);
    let r = post("application/json").await.unwrap();
    assert_eq!(r.status(), 400, "a query body must be application/text");
    sb.shutdown().await;
}

#[tokio::test]
async fn grammar_clients_write() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let ids = |v: &Value, e: &str| -> Vec<String> {
        v["QueryResponse"][e]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|r| r["Id"].as_str().unwrap().to_string())
            .collect()
    };
    let (st, v) = get_json(
        &sb,
        &tok,
        "SELECT * FROM Invoice ORDER BY Id DESC MAXRESULTS 2",
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(ids(&v, "Invoice"), ["250", "249"]);
    let (st, v) = get_json(
        &sb,
        &tok,
        "SELECT * FROM Invoice MAXRESULTS 2 STARTPOSITION 3",
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(ids(&v, "Invoice"), ["3", "4"]);
    let (st, v) = get_json(&sb, &tok, "SELECT *, Sku FROM Item MAXRESULTS 1000").await;
    assert_eq!(st, 200, "{v}");
    let (_, all) = get_json(&sb, &tok, "SELECT * FROM Item MAXRESULTS 1000").await;
    assert_eq!(v["QueryResponse"], all["QueryResponse"]);
    let (st, v) = get_json(&sb, &tok, "SELECT * FROM Item MAXRESULTS 1001").await;
    assert_eq!(st, 400, "{v}");
    let e = &v["Fault"]["Error"][0];
    assert_eq!(e["code"], "4001");
    assert_eq!(e["Message"], "Invalid query");
    assert_eq!(
        e["Detail"],
        "QueryValidationError: value 1001 is too large. Max allowed value is 1000"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn read_by_id_companyinfo_preferences_and_610() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let (st, v) = read(&sb, &tok, "invoice/12").await;
    assert_eq!(st, 200, "{v}");
    let invoice = sb.records("Invoice").into_iter().find(|r| r["Id"] == "12");
    // QBO sends only the legacy custom fields unless asked for all of them.
    let legacy = invoice
        .clone()
        .map(|r| super::custom_fields::serve(r, false));
    assert_eq!(Some(&v["Invoice"]), legacy.as_ref());
    let (st, v) = read(&sb, &tok, "invoice/12?include=enhancedAllCustomFields").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(Some(&v["Invoice"]), invoice.as_ref());
    assert!(v["time"].is_string());
    let realm = sb.realm_id().to_string();
    let (st, v) = read(&sb, &tok, &format!("companyinfo/{realm}")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["CompanyInfo"], sb.records("CompanyInfo")[0]);
    let (st, v) = read(&sb, &tok, "preferences").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["Preferences"], sb.records("Preferences")[0]);
    let (st, v) = read(&sb, &tok, "journalentry/1").await;
    assert_eq!((st, v["JournalEntry"]["Id"].clone()), (200, json!("1")));

    sb.delete_record("Invoice", "12");
    for path in [
        "invoice/12",
        "invoice/999999",
        "invoice/abc",
        "companyinfo/1",
    ] {
        let (st, v) = read(&sb, &tok, path).await;
        assert_eq!(st, 400, "{path}: {v}");
        let e = &v["Fault"]["Error"][0];
        assert_eq!(
            (&e["code"], &e["Message"], &v["Fault"]["type"]),
            (
                &json!("610"),
                &json!("Object Not Found"),
                &json!("ValidationFault")
            ),
            "{path}: {v}"
        );
    }
    let (st, v) = read(&sb, &tok, "widget/1").await;
    assert_eq!((st, &v["Fault"]["Error"][0]["code"]), (400, &json!("500")));

    // A "deleted" name is still read by id: inactive, renamed.
    sb.delete_record("Item", "1");
    let (st, v) = read(&sb, &tok, "item/1").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["Item"]["Active"], false);
    assert!(v["Item"]["Name"].as_str().unwrap().ends_with(" (deleted)"));
    sb.shutdown().await;
}

#[tokio::test]
async fn batch_answers_queries_per_item_and_enforces_qbo_limits() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let body = json!({"BatchItemRequest": [
        {"bId": "a", "Query": "SELECT * FROM Customer MAXRESULTS 2"},
        {"bId": "b", "Query": "SELECT * FROM Nope"},
        {"bId": "c", "operation": "create", "Customer": {"DisplayName": "X"}},
        {"bId": "d", "Query": "SELECT COUNT(*) FROM Invoice"},
    ]});
    let (st, v) = batch(&sb, &tok, &body).await;
    assert_eq!(st, 200, "{v}");
    let items = v["BatchItemResponse"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    let (_, direct) = get_json(&sb, &tok, "SELECT * FROM Customer MAXRESULTS 2").await;
    assert_eq!(items[0]["bId"], "a");
    assert_eq!(items[0]["QueryResponse"], direct["QueryResponse"]);
    assert_eq!(items[1]["Fault"]["Error"][0]["code"], "4000", "{v}");
    assert_eq!(items[2]["Fault"]["type"], "ValidationFault", "{v}");
    assert_eq!(items[3]["QueryResponse"]["totalCount"], 250);

    let many: Vec<Value> = (0..31)
        .map(|i| json!({"bId": i.to_string(), "Query": "SELECT * FROM Item"}))
        .collect();
    let (st, v) = batch(&sb, &tok, &json!({ "BatchItemRequest": many })).await;
    assert_eq!(st, 400, "31 items: {v}");
    let (st, v) = batch(&sb, &tok, &json!({ "BatchItemRequest": many[..30] })).await;
    assert_eq!(st, 200, "30 items: {v}");
    // 40 batch calls a minute per company: two went through above, so 38 more do, then 429.
    for i in 0..38 {
        let (st, v) = batch(&sb, &tok, &body).await;
        assert_eq!(st, 200, "batch {i}: {v}");
    }
    let (st, v) = batch(&sb, &tok, &body).await;
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["Fault"]["Error"][0]["code"], "3001");
    sb.shutdown().await;
}

fn counts(queries: &[&str]) -> Value {
    let items: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| json!({"bId": (i + 1).to_string(), "Query": q}))
        .collect();
    json!({ "BatchItemRequest": items })
}

/// Items are metered one by one (`batch_items`); `batch_item_fault_every` counts items across
/// calls and faults only its item; `fail_window_containing` fails only the item whose window
/// holds the instant, as it fails that query on the query endpoint.
#[tokio::test]
async fn batch_items_are_counted_and_fail_one_by_one() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let june = "SELECT COUNT(*) FROM Invoice WHERE MetaData.LastUpdatedTime >= '2024-06-01T00:00:00Z' AND MetaData.LastUpdatedTime < '2024-07-01T00:00:00Z'";
    let may = "SELECT COUNT(*) FROM Invoice WHERE MetaData.LastUpdatedTime >= '2024-05-01T00:00:00Z' AND MetaData.LastUpdatedTime < '2024-06-01T00:00:00Z'";
    let all = "SELECT COUNT(*) FROM Invoice";
    let (_, direct) = get_json(&sb, &tok, may).await;
    let may_count = direct["QueryResponse"]["totalCount"].clone();
    assert!(may_count.as_u64().unwrap() > 0, "{direct}");

    sb.set_faults(super::Faults {
        fail_window_containing: Some("2024-06-15T00:00:00Z".into()),
        ..super::Faults::default()
    });
    let (st, v) = batch(&sb, &tok, &counts(&[may, june, all])).await;
    assert_eq!(st, 200, "{v}");
    let items = &v["BatchItemResponse"];
    assert_eq!(items[0]["QueryResponse"]["totalCount"], may_count, "{v}");
    assert_eq!(items[1]["bId"], "2");
    assert_eq!(items[1]["Fault"]["type"], "SystemFault", "{v}");
    assert!(items[1].get("QueryResponse").is_none(), "{v}");
    assert_eq!(items[2]["QueryResponse"]["totalCount"], 250, "{v}");

    // Items are numbered across calls (the call above held items 1 to 3): with every 3rd
    // failing, the next call's 3rd item (6) and the one after's 3rd (9) fail, nothing else.
    sb.set_faults(super::Faults {
        batch_item_fault_every: 3,
        ..super::Faults::default()
    });
    let faulted = |v: &Value| -> Vec<bool> {
        v["BatchItemResponse"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.get("Fault").is_some())
            .collect()
    };
    let (st, v) = batch(&sb, &tok, &counts(&[all, all, all])).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(faulted(&v), [false, false, true], "{v}");
    let items = &v["BatchItemResponse"];
    assert_eq!(items[0]["QueryResponse"]["totalCount"], 250, "{v}");
    assert_eq!(items[2]["bId"], "3");
    assert_eq!(items[2]["Fault"]["Error"][0]["code"], "10000", "{v}");
    let (st, v) = batch(&sb, &tok, &counts(&[all, all, all, all])).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(faulted(&v), [false, false, true, false], "{v}");

    let stats = sb.stats();
    assert_eq!((stats.batch_requests, stats.batch_items), (3, 10));
    sb.shutdown().await;
}

/// The 40 batch calls a minute are counted over `rate_window_secs`, like the 500: once the
/// 41st call is refused, shortening the window to 1 s frees the company a second later
/// (a fixed minute would still refuse it).
#[tokio::test]
async fn the_batch_limit_uses_the_rate_window() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let body = counts(&["SELECT COUNT(*) FROM Item"]);
    for i in 0..super::rest::BATCH_PER_MINUTE {
        let (st, v) = batch(&sb, &tok, &body).await;
        assert_eq!(st, 200, "batch {i}: {v}");
    }
    let (st, v) = batch(&sb, &tok, &body).await;
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["Fault"]["Error"][0]["code"], "3001");
    sb.set_faults(super::Faults {
        rate_window_secs: 1,
        ..super::Faults::default()
    });
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (st, v) = batch(&sb, &tok, &body).await;
    assert_eq!(st, 200, "a call after the window is answered: {v}");
    assert_eq!(sb.stats().batch_requests, 42);
    sb.shutdown().await;
}

#[tokio::test]
async fn token_endpoint_takes_client_secret_post() {
    let sb = sandbox().await;
    let form = |rt: &str, secret: &str| {
        vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", rt.to_string()),
            ("client_id", sb.client_id().to_string()),
            ("client_secret", secret.to_string()),
        ]
    };
    let post = |f: Vec<(&'static str, String)>| client().post(sb.token_url()).form(&f).send();
    let r = post(form(&sb.current_refresh_token(), "wrong"))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = post(form(&sb.current_refresh_token(), sb.client_secret()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["access_token"].is_string(), "{v}");
    let r = post(form("AB11-not-a-token", sb.client_secret()))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_grant");
    assert!(v["error_description"].is_string(), "{v}");
    sb.shutdown().await;
}

#[tokio::test]
async fn deactivate_keeps_the_name_and_refuses_non_names() {
    let sb = sandbox().await;
    let active = sb
        .records("Vendor")
        .into_iter()
        .find(|r| r["Active"] == true)
        .unwrap();
    let id = active["Id"].as_str().unwrap();
    sb.deactivate_record("Vendor", id).unwrap();
    let now = sb
        .records("Vendor")
        .into_iter()
        .find(|r| r["Id"] == id)
        .unwrap();
    assert_eq!(now["Active"], false);
    assert_eq!(now["DisplayName"], active["DisplayName"]);
    assert_ne!(now["SyncToken"], active["SyncToken"]);
    assert!(
        sb.deactivate_record("Vendor", id).is_err(),
        "already inactive"
    );
    assert!(sb.deactivate_record("Invoice", "1").is_err(), "not a name");
    assert!(
        sb.try_delete_record("Vendor", id).is_err(),
        "inactive already"
    );
    assert!(sb.deleted_ids("Vendor").is_empty());
    sb.shutdown().await;
}

/// Intuit queries credit card payments as `CreditCardPayment` and files them under
/// `CreditCardPaymentTxn`, in query pages, reads by id and CDC alike.
#[tokio::test]
async fn credit_card_payments_are_answered_under_credit_card_payment_txn() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let (st, v) = get_json(&sb, &tok, "SELECT * FROM CreditCardPayment MAXRESULTS 5").await;
    assert_eq!(st, 200, "{v}");
    let page = v["QueryResponse"]["CreditCardPaymentTxn"]
        .as_array()
        .unwrap();
    assert!(!page.is_empty(), "{v}");
    assert!(v["QueryResponse"].get("CreditCardPayment").is_none(), "{v}");
    let id = page[0]["Id"].as_str().unwrap().to_string();
    let (st, v) = read(&sb, &tok, &format!("creditcardpayment/{id}")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["CreditCardPaymentTxn"]["Id"], json!(id));
}
