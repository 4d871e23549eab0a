//! HTTP-level tests of the reports endpoint: QBO's shape, books that add up, QBO's faults
//! for bad parameters, and the cut QBO makes past its cell cap.

use serde_json::Value;

use super::tests::{access_token, client, get_json, sandbox};
use super::{Faults, Sandbox};

async fn report(sb: &Sandbox, tok: &str, name: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let r = client()
        .get(format!(
            "{}/v3/company/{}/reports/{name}",
            sb.api_base_url(),
            sb.realm_id()
        ))
        .query(params)
        .query(&[("minorversion", "75")])
        .bearer_auth(tok)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn money(v: &Value) -> i64 {
    let s = v["value"].as_str().unwrap();
    if s.is_empty() {
        return 0;
    }
    (s.parse::<f64>().unwrap() * 100.0).round() as i64
}

/// The summary cells of the top-level section of `group`.
fn summary(r: &Value, group: &str) -> Vec<i64> {
    let s = r["Rows"]["Row"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["group"] == group)
        .unwrap_or_else(|| panic!("no {group} section"));
    s["Summary"]["ColData"].as_array().unwrap()[1..]
        .iter()
        .map(money)
        .collect()
}

#[tokio::test]
async fn reports_are_qbos_shape_and_the_books_add_up() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let range = [("start_date", "2024-01-01"), ("end_date", "2024-03-31")];

    let (st, pl) = report(
        &sb,
        &tok,
        "ProfitAndLoss",
        &[range[0], range[1], ("summarize_column_by", "Month")],
    )
    .await;
    assert_eq!(st, 200, "{pl}");
    assert_eq!(pl["Header"]["ReportName"], "ProfitAndLoss");
    assert_eq!(pl["Header"]["ReportBasis"], "Accrual");
    assert_eq!(pl["Header"]["StartPeriod"], "2024-01-01");
    assert_eq!(pl["Header"]["Currency"], "USD");
    let titles: Vec<&str> = pl["Columns"]["Column"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ColTitle"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["", "Jan 2024", "Feb 2024", "Mar 2024", "Total"]);
    let net = summary(&pl, "NetIncome");
    assert_eq!(
        net[0] + net[1] + net[2],
        net[3],
        "months add up to the total"
    );
    let income = summary(&pl, "Income");
    assert!(income[3] > 0, "the company sold something");

    // Net income of the quarter is the balance sheet's Net Income row at its end.
    let (st, bs) = report(&sb, &tok, "BalanceSheet", &range).await;
    assert_eq!(st, 200, "{bs}");
    let assets = summary(&bs, "TotalAssets");
    let le = summary(&bs, "TotalLiabilitiesAndEquity");
    assert_eq!(assets, le, "the balance sheet balances");
    let equity = bs.to_string();
    assert!(equity.contains("Net Income"), "{equity}");

    let (st, tb) = report(&sb, &tok, "TrialBalance", &range).await;
    assert_eq!(st, 200, "{tb}");
    let total = summary(&tb, "GrandTotal");
    assert_eq!(total[0], total[1], "debits equal credits");
    assert!(total[0] > 0);

    let (st, gl) = report(
        &sb,
        &tok,
        "GeneralLedger",
        &[("start_date", "2024-01-01"), ("end_date", "2024-01-31")],
    )
    .await;
    assert_eq!(st, 200, "{gl}");
    let first = &gl["Rows"]["Row"][0];
    assert!(first["Header"]["ColData"][0]["id"].is_string(), "{first}");
    assert_eq!(
        first["Rows"]["Row"][0]["ColData"][0]["value"],
        "Beginning Balance"
    );
    assert!(first["Summary"]["ColData"][0]["value"]
        .as_str()
        .unwrap()
        .starts_with("Total for "));
}

/// The data row of `r` whose label is `label`, searched through every section.
fn find_row<'a>(r: &'a Value, label: &str) -> Option<&'a Value> {
    fn walk<'a>(rows: &'a Value, label: &str) -> Option<&'a Value> {
        rows["Row"].as_array()?.iter().find_map(|row| {
            if row["ColData"][0]["value"] == label {
                Some(row)
            } else {
                walk(&row["Rows"], label)
            }
        })
    }
    walk(&r["Rows"], label)
}

#[tokio::test]
async fn retained_earnings_is_the_companys_account_on_the_trial_balance_and_balance_sheet() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let (st, v) = get_json(&sb, &tok, "select * from Account maxresults 1000").await;
    assert_eq!(st, 200, "{v}");
    let re: Vec<&Value> = v["QueryResponse"]["Account"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["AccountSubType"] == "RetainedEarnings")
        .collect();
    assert_eq!(re.len(), 1, "every QBO company has one: {re:?}");
    assert_eq!(re[0]["AccountType"], "Equity");
    assert_eq!(re[0]["Classification"], "Equity");
    let id = re[0]["Id"].as_str().unwrap();

    // April's trial balance closes January to March's income into that account's line.
    let (st, tb) = report(
        &sb,
        &tok,
        "TrialBalance",
        &[("start_date", "2024-04-01"), ("end_date", "2024-04-30")],
    )
    .await;
    assert_eq!(st, 200, "{tb}");
    let row = find_row(&tb, "Retained Earnings").unwrap_or_else(|| panic!("{tb}"));
    assert_eq!(row["ColData"][0]["id"], id, "{row}");
    let (d, c) = (money(&row["ColData"][1]), money(&row["ColData"][2]));
    assert!(d != 0 || c != 0, "earlier months earned something: {row}");

    // A year later the balance sheet shows 2024's income on the same account's line.
    let (st, bs) = report(
        &sb,
        &tok,
        "BalanceSheet",
        &[("start_date", "2025-01-01"), ("end_date", "2025-03-31")],
    )
    .await;
    assert_eq!(st, 200, "{bs}");
    let row = find_row(&bs, "Retained Earnings").unwrap_or_else(|| panic!("{bs}"));
    assert_eq!(row["ColData"][0]["id"], id, "{row}");
    assert_ne!(money(&row["ColData"][1]), 0, "{row}");
    assert_eq!(
        summary(&bs, "TotalAssets"),
        summary(&bs, "TotalLiabilitiesAndEquity"),
        "the balance sheet balances"
    );
}

#[tokio::test]
async fn bad_parameters_are_qbo_validation_faults() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    for (name, params, needle) in [
        (
            "ProfitAndLoss",
            vec![("start_date", "2024-13-01")],
            "start_date",
        ),
        (
            "ProfitAndLoss",
            vec![("start_date", "2024-3-1")],
            "start_date",
        ),
        (
            "ProfitAndLoss",
            vec![("start_date", "2024-03-01"), ("end_date", "2024-01-01")],
            "before start_date",
        ),
        (
            "ProfitAndLoss",
            vec![("accounting_method", "Modified")],
            "accounting_method",
        ),
        (
            "ProfitAndLoss",
            vec![("summarize_column_by", "Fortnight")],
            "summarize_column_by",
        ),
        (
            "TrialBalance",
            vec![("summarize_column_by", "Month")],
            "summarize_column_by",
        ),
        ("ProfitAndLoss", vec![("customer", "3")], "customer"),
        ("NoSuchReport", vec![], "not supported"),
    ] {
        let (st, body) = report(&sb, &tok, name, &params).await;
        assert_eq!(st, 400, "{name} {params:?}: {body}");
        assert_eq!(body["Fault"]["type"], "ValidationFault", "{body}");
        let detail = body["Fault"]["Error"][0]["Detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{name} {params:?}: {detail}");
    }
}

#[tokio::test]
async fn a_report_past_the_cell_cap_is_cut_like_qbo_cuts_it() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let range = [("start_date", "2024-01-01"), ("end_date", "2024-01-31")];
    let (_, whole) = report(&sb, &tok, "GeneralLedger", &range).await;
    assert!(!whole.to_string().contains("Unable to display more data"));
    sb.set_faults(Faults {
        report_max_cells: 300,
        ..Faults::default()
    });
    let (st, cut) = report(&sb, &tok, "GeneralLedger", &range).await;
    assert_eq!(st, 200, "QBO answers a 200, not an error");
    let text = cut.to_string();
    assert!(
        text.contains("Unable to display more data. Please reduce the date range."),
        "{text}"
    );
    assert!(text.len() < whole.to_string().len());
    let log = sb.stats().request_log;
    assert_eq!(
        log.last().unwrap().fault.as_deref(),
        Some("report_max_cells")
    );
    assert_eq!(sb.stats().report_requests, 2);
}
