//! The multi-currency company and its ExchangeRate endpoints, over HTTP.

use serde_json::Value;

use super::tests::{access_token, client, get_json};
use super::{Sandbox, SandboxConfig};

async fn multi_currency() -> Sandbox {
    let cfg = SandboxConfig {
        invoices: 120,
        customers: 20,
        items: 10,
        multi_currency: true,
        ..SandboxConfig::default()
    };
    Sandbox::start(cfg).await.expect("sandbox starts")
}

async fn read(sb: &Sandbox, tok: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let url = format!(
        "{}/v3/company/{}/exchangerate",
        sb.api_base_url(),
        sb.realm_id()
    );
    let r = client()
        .get(url)
        .query(params)
        .bearer_auth(tok)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn foreign_invoices_carry_currency_rate_and_home_total() {
    let sb = multi_currency().await;
    let tok = access_token(&sb).await;
    let (st, v) = get_json(&sb, &tok, "SELECT * FROM Invoice MAXRESULTS 200").await;
    assert_eq!(st, 200);
    let invoices = v["QueryResponse"]["Invoice"].as_array().unwrap();
    let foreign: Vec<&Value> = invoices
        .iter()
        .filter(|i| i["CurrencyRef"]["value"] != "USD")
        .collect();
    assert!(foreign.len() > 20, "{} foreign", foreign.len());
    for i in &foreign {
        let rate = i["ExchangeRate"].as_f64().unwrap();
        assert!(rate > 0.5 && rate < 2.0, "{i}");
        let (total, home) = (
            i["TotalAmt"].as_f64().unwrap(),
            i["HomeTotalAmt"].as_f64().unwrap(),
        );
        assert!((home - total * rate).abs() < 0.05 * total.max(1.0), "{i}");
        assert!(i.get("HomeBalance").is_some());
    }
    // Invoices in USD look as in the single-currency company: no rate, no home fields.
    let home = invoices
        .iter()
        .find(|i| i["CurrencyRef"]["value"] == "USD")
        .unwrap();
    assert!(home.get("ExchangeRate").is_none() && home.get("HomeTotalAmt").is_none());

    // A query answers every currency's rate of one AsOfDate; the rate is the invoices'.
    let day = foreign[0]["TxnDate"].as_str().unwrap();
    let q = format!("select * from exchangerate where AsOfDate = '{day}'");
    let (st, v) = get_json(&sb, &tok, &q).await;
    assert_eq!(st, 200, "{v}");
    let rates = v["QueryResponse"]["ExchangeRate"].as_array().unwrap();
    let codes: Vec<&str> = rates
        .iter()
        .map(|r| r["SourceCurrencyCode"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["EUR", "GBP", "CAD"]);
    let code = foreign[0]["CurrencyRef"]["value"].as_str().unwrap();
    let r = rates
        .iter()
        .find(|r| r["SourceCurrencyCode"] == code)
        .unwrap();
    assert_eq!(r["Rate"], foreign[0]["ExchangeRate"]);
    assert_eq!(r["TargetCurrencyCode"], "USD");
    assert_eq!(r["AsOfDate"], day);

    // The read by currency and date says the same.
    let (st, v) = read(
        &sb,
        &tok,
        &[("sourcecurrencycode", code), ("asofdate", day)],
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["ExchangeRate"], *r);
}

#[tokio::test]
async fn exchange_rates_are_strict_about_parameters() {
    let sb = multi_currency().await;
    let tok = access_token(&sb).await;
    for q in [
        "select * from exchangerate where AsOfDate > '2024-01-01'",
        "select * from exchangerate where AsOfDate = '2024-1-1'",
        "select * from exchangerate where Rate = '1.1'",
        "select * from exchangerate where MetaData.LastUpdatedTime >= '2024-01-01T00:00:00Z'",
        "select count(*) from exchangerate",
        "select * from exchangerate where AsOfDate = '2024-01-01' orderby AsOfDate",
    ] {
        let (st, v) = get_json(&sb, &tok, q).await;
        assert_eq!(st, 400, "{q}: {v}");
        assert_eq!(v["Fault"]["type"], "ValidationFault", "{q}");
    }
    let (st, _) = read(&sb, &tok, &[("asofdate", "2024-01-02")]).await;
    assert_eq!(st, 400, "sourcecurrencycode is required");
    let (st, _) = read(
        &sb,
        &tok,
        &[("sourcecurrencycode", "EUR"), ("asofdate", "01/02/2024")],
    )
    .await;
    assert_eq!(st, 400, "a date is yyyy-MM-dd");
    let (st, _) = read(&sb, &tok, &[("sourcecurrencycode", "XYZ")]).await;
    assert_eq!(st, 400, "a currency the company does not use");
    let (st, v) = read(&sb, &tok, &[("sourcecurrencycode", "GBP")]).await;
    assert_eq!(st, 200, "today's rate by default: {v}");
}

#[tokio::test]
async fn a_single_currency_company_has_no_rates() {
    let sb = super::tests::sandbox().await;
    let tok = access_token(&sb).await;
    let (st, v) = get_json(
        &sb,
        &tok,
        "select * from exchangerate where AsOfDate = '2024-01-02'",
    )
    .await;
    assert_eq!(st, 200);
    assert!(v["QueryResponse"].as_object().unwrap().is_empty(), "{v}");
}
