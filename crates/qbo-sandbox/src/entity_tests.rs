//! HTTP-level tests of what the sandbox serves for every registered entity, and of the
//! query strictness that depends on the entity (TxnDate, Active, entities served whole).

use serde_json::Value;

use super::tests::{access_token, get_json, sandbox};
use qbo_core::entities::ENTITIES;

/// `SELECT COUNT(*)` as a number, asserting the request succeeded.
async fn count(sb: &super::Sandbox, tok: &str, q: &str) -> u64 {
    let (st, v) = get_json(sb, tok, q).await;
    assert_eq!(st, 200, "{q}: {v}");
    v["QueryResponse"]["totalCount"].as_u64().unwrap()
}

#[tokio::test]
async fn every_registered_entity_is_served_and_counted_like_its_records() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    for e in ENTITIES {
        let records = sb.records(e.qbo_name);
        assert!(!records.is_empty(), "{} has records", e.qbo_name);
        let all = if e.name_list {
            " WHERE Active IN (true, false)"
        } else {
            ""
        };
        let q = format!("SELECT COUNT(*) FROM {}{all}", e.qbo_name);
        assert_eq!(count(&sb, &tok, &q).await, records.len() as u64, "{q}");
        let q = format!("SELECT * FROM {}{all} MAXRESULTS 1000", e.qbo_name);
        let (st, v) = get_json(&sb, &tok, &q).await;
        assert_eq!(st, 200, "{q}: {v}");
        let page = v["QueryResponse"][e.list_key].as_array().unwrap();
        // Without include=enhancedAllCustomFields QBO sends the legacy custom fields only.
        let served: Vec<_> = records
            .iter()
            .map(|r| super::custom_fields::serve(r.clone(), false))
            .collect();
        assert_eq!(page, &served, "{q}");
    }
    assert_eq!(sb.records("CompanyInfo").len(), 1);
    assert_eq!(sb.records("Preferences")[0]["Id"], "1");
    sb.shutdown().await;
}

#[tokio::test]
async fn whole_entities_refuse_metadata_filters_but_serve_everything() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    for name in ["CompanyInfo", "Preferences", "RecurringTransaction"] {
        for q in [
            format!("SELECT * FROM {name} WHERE MetaData.LastUpdatedTime >= '2024-01-01'"),
            format!("SELECT COUNT(*) FROM {name} WHERE MetaData.LastUpdatedTime < '2030-01-01'"),
            format!("SELECT * FROM {name} ORDERBY MetaData.LastUpdatedTime"),
        ] {
            let (st, v) = get_json(&sb, &tok, &q).await;
            assert_eq!(st, 400, "{q}: {v}");
        }
    }
    assert_eq!(
        count(&sb, &tok, "SELECT COUNT(*) FROM CompanyInfo").await,
        1
    );
    let (_, v) = get_json(&sb, &tok, "SELECT * FROM CompanyInfo").await;
    assert_eq!(v["QueryResponse"]["CompanyInfo"][0]["Id"], "1");
    let (_, v) = get_json(&sb, &tok, "SELECT * FROM RecurringTransaction").await;
    let templates = v["QueryResponse"]["RecurringTransaction"]
        .as_array()
        .unwrap();
    assert!(!templates.is_empty());
    for t in templates {
        let body = super::record_body(t);
        assert_ne!(body, t, "a template is wrapped in its type: {t}");
        assert!(body["RecurringInfo"].is_object(), "{t}");
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn txn_date_and_active_only_where_the_entity_has_them() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    for q in [
        "SELECT * FROM Vendor WHERE TxnDate >= '2024-01-01'",
        "SELECT * FROM Attachable WHERE TxnDate >= '2024-01-01'",
        "SELECT * FROM Bill WHERE Active = true",
        "SELECT * FROM TaxAgency WHERE Active IN (true, false)",
    ] {
        let (st, v) = get_json(&sb, &tok, q).await;
        assert_eq!(st, 400, "{q}: {v}");
        let detail = v["Fault"]["Error"][0]["Detail"]
            .as_str()
            .unwrap_or_default();
        assert!(detail.contains("not queryable"), "{q}: {v}");
    }
    let dated = count(
        &sb,
        &tok,
        "SELECT COUNT(*) FROM JournalEntry WHERE TxnDate >= '2024-01-01' AND TxnDate <= '2024-12-31'",
    )
    .await;
    assert_eq!(dated, sb.records("JournalEntry").len() as u64);
    // QBO hides inactive names unless the query names Active.
    for name in ["Vendor", "Account", "Term", "TaxCode"] {
        let visible = count(&sb, &tok, &format!("SELECT COUNT(*) FROM {name}")).await;
        let every = sb.records(name);
        let inactive = every
            .iter()
            .filter(|r| r["Active"] == Value::Bool(false))
            .count();
        assert!(inactive > 0, "{name} has inactive members");
        assert_eq!(visible as usize, every.len() - inactive, "{name}");
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn planted_and_touched_recurring_templates_keep_their_wrapper() {
    let sb = sandbox().await;
    let mut t = sb.records("RecurringTransaction")[0].clone();
    let kind = t.as_object().unwrap().keys().next().unwrap().clone();
    t[&kind]["Id"] = Value::from("900");
    let before: u64 = t[&kind]["SyncToken"].as_str().unwrap().parse().unwrap();
    let updated_before = t[&kind]["MetaData"]["LastUpdatedTime"].clone();
    sb.put_record("RecurringTransaction", t);
    sb.touch_record("RecurringTransaction", "900");
    let touched = sb
        .records("RecurringTransaction")
        .into_iter()
        .find(|r| super::record_body(r)["Id"] == "900")
        .unwrap();
    let body = &touched[&kind];
    assert_eq!(body["SyncToken"], (before + 1).to_string(), "{touched}");
    assert_ne!(
        body["MetaData"]["LastUpdatedTime"], updated_before,
        "moved to now"
    );
    assert!(
        touched.get("SyncToken").is_none(),
        "the wrapper stays a wrapper"
    );
    // An unwrapped record without an Id is refused, not guessed at.
    let planted = sb.try_put_record("RecurringTransaction", serde_json::json!({ "Bill": {} }));
    assert!(planted.is_err());
    sb.shutdown().await;
}

/// Where in `v` a `null` sits (a JSON path), if anywhere.
fn find_null(v: &Value, at: &str) -> Option<String> {
    match v {
        Value::Null => Some(at.to_string()),
        Value::Object(o) => o
            .iter()
            .find_map(|(k, x)| find_null(x, &format!("{at}.{k}"))),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| find_null(x, &format!("{at}[{i}]"))),
        _ => None,
    }
}

#[tokio::test]
async fn no_record_of_any_entity_holds_a_null() {
    // QBO leaves absent attributes out; python-quickbooks crashes on a `null` list or object.
    let sb = sandbox().await;
    for e in ENTITIES {
        for r in sb.records(e.qbo_name) {
            if let Some(path) = find_null(&r, e.qbo_name) {
                panic!("{path} is null in {r}");
            }
        }
    }
    sb.shutdown().await;
}
