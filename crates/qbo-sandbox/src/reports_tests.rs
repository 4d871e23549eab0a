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

/// Amounts of the data rows of `r` (through every section) in column `col`, keyed by the
/// first cell's id, for rows whose first cell has one.
fn by_id(r: &Value, col: usize) -> std::collections::BTreeMap<String, i64> {
    fn walk(rows: &Value, col: usize, out: &mut std::collections::BTreeMap<String, i64>) {
        for row in rows["Row"].as_array().into_iter().flatten() {
            if let Some(id) = row["ColData"][0]["id"].as_str() {
                *out.entry(id.to_string()).or_default() += money(&row["ColData"][col]);
            }
            walk(&row["Rows"], col, out);
        }
    }
    let mut out = Default::default();
    walk(&r["Rows"], col, &mut out);
    out
}

fn cents_of(v: &Value) -> i64 {
    (v.as_f64().unwrap_or(0.0) * 100.0).round() as i64
}

#[tokio::test]
async fn the_detail_cash_flow_aged_and_listing_reports_agree_with_the_books() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let range = [("start_date", "2024-01-01"), ("end_date", "2024-03-31")];

    // P&L detail: per account, the "Total for" summary is the P&L's amount.
    let (st, pl) = report(&sb, &tok, "ProfitAndLoss", &range).await;
    assert_eq!(st, 200, "{pl}");
    let (st, detail) = report(&sb, &tok, "ProfitAndLossDetail", &range).await;
    assert_eq!(st, 200, "{detail}");
    assert_eq!(detail["Header"]["ReportName"], "ProfitAndLossDetail");
    assert_eq!(detail["Columns"]["Column"][6]["ColTitle"], "Amount");
    let mut totals = std::collections::BTreeMap::new();
    for group in detail["Rows"]["Row"].as_array().unwrap() {
        for account in group["Rows"]["Row"].as_array().into_iter().flatten() {
            let id = account["Header"]["ColData"][0]["id"].as_str().unwrap();
            let rows = account["Rows"]["Row"].as_array().unwrap();
            let sum: i64 = rows.iter().map(|r| money(&r["ColData"][6])).sum();
            let total = money(&account["Summary"]["ColData"][6]);
            assert_eq!(sum, total, "the rows add up to the account's total");
            assert_eq!(
                money(&rows.last().unwrap()["ColData"][7]),
                total,
                "running balance"
            );
            totals.insert(id.to_string(), total);
        }
    }
    let pl_accounts = by_id(&pl, 1);
    assert!(!totals.is_empty());
    assert_eq!(
        totals,
        pl_accounts.into_iter().filter(|(_, c)| *c != 0).collect(),
        "P&L detail per account = P&L"
    );
    assert_eq!(
        summary(&detail, "NetIncome")[5],
        summary(&pl, "NetIncome")[0]
    );

    // CashFlow: the net increase is the change of the bank accounts between the trial
    // balances of the day before and of the end.
    let (st, cf) = report(&sb, &tok, "CashFlow", &range).await;
    assert_eq!(st, 200, "{cf}");
    assert!(
        cf["Header"].get("ReportBasis").is_none(),
        "{}",
        cf["Header"]
    );
    let (_, accounts) = get_json(&sb, &tok, "select * from Account maxresults 1000").await;
    let banks: Vec<String> = accounts["QueryResponse"]["Account"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["AccountType"] == "Bank")
        .map(|a| a["Id"].as_str().unwrap().to_string())
        .collect();
    let cash_at = |tb: &Value| -> i64 {
        let debit = by_id(tb, 1);
        let credit = by_id(tb, 2);
        banks
            .iter()
            .map(|b| debit.get(b).unwrap_or(&0) - credit.get(b).unwrap_or(&0))
            .sum()
    };
    let (_, before) = report(
        &sb,
        &tok,
        "TrialBalance",
        &[("start_date", "2023-12-01"), ("end_date", "2023-12-31")],
    )
    .await;
    let (_, after) = report(&sb, &tok, "TrialBalance", &range).await;
    let increase = summary(&cf, "CashIncrease")[0];
    assert_eq!(increase, cash_at(&after) - cash_at(&before), "{cf}");
    assert_eq!(summary(&cf, "BeginningCash")[0], cash_at(&before));
    assert_eq!(summary(&cf, "EndingCash")[0], cash_at(&after));
    let operating = summary(&cf, "OperatingActivities")[0];
    assert_ne!(operating, 0);

    // AgedReceivables as of a day after every transaction: the open invoice balances, less
    // the open credit memos and the payments' unapplied amounts (QBO ages them negative).
    let (st, ar) = report(
        &sb,
        &tok,
        "AgedReceivables",
        &[("report_date", "2030-01-01")],
    )
    .await;
    assert_eq!(st, 200, "{ar}");
    assert_eq!(ar["Header"]["StartPeriod"], "2030-01-01");
    let titles: Vec<&str> = ar["Columns"]["Column"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ColTitle"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "",
            "Current",
            "1 - 30",
            "31 - 60",
            "61 - 90",
            "91 and over",
            "Total"
        ]
    );
    let sum = |entity: &str, field: &str| -> i64 {
        sb.records(entity).iter().map(|r| cents_of(&r[field])).sum()
    };
    let (invoices, credits, unapplied) = (
        sum("Invoice", "Balance"),
        sum("CreditMemo", "Balance"),
        sum("Payment", "UnappliedAmt"),
    );
    assert!(invoices > 0 && credits > 0 && unapplied > 0);
    let open = invoices - credits - unapplied;
    let grand = summary(&ar, "GrandTotal");
    assert_eq!(grand[5], open, "{ar}");
    assert_eq!(
        grand[4], open,
        "all of it 91 days and more past due by 2030"
    );
    // AgedPayables: the open bills, less the open vendor credits and what bill payments left
    // unapplied, plus the journal entries' credits to A/P (less their debits).
    let (st, ap) = report(&sb, &tok, "AgedPayables", &[("report_date", "2030-01-01")]).await;
    assert_eq!(st, 200, "{ap}");
    let unapplied_bill_payments: i64 = sb
        .records("BillPayment")
        .iter()
        .map(|p| {
            let lines: i64 = p["Line"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| cents_of(&l["Amount"]))
                .sum();
            cents_of(&p["TotalAmt"]) - lines
        })
        .sum();
    let payable = |type_: &str| -> Vec<String> {
        sb.records("Account")
            .iter()
            .filter(|a| a["AccountType"] == type_)
            .map(|a| a["Id"].as_str().unwrap().to_string())
            .collect()
    };
    let ap_accounts = payable("Accounts Payable");
    let journal_ap: i64 = sb
        .records("JournalEntry")
        .iter()
        .flat_map(|je| je["Line"].as_array().unwrap().clone())
        .filter(|l| {
            let account = &l["JournalEntryLineDetail"]["AccountRef"]["value"];
            ap_accounts.iter().any(|a| account == a)
        })
        .map(
            |l| match l["JournalEntryLineDetail"]["PostingType"].as_str() {
                Some("Credit") => cents_of(&l["Amount"]),
                _ => -cents_of(&l["Amount"]),
            },
        )
        .sum();
    assert!(journal_ap > 0, "the company's journal entries credit A/P");
    let vendor_credits = sum("VendorCredit", "Balance");
    assert!(vendor_credits > 0);
    assert_eq!(
        summary(&ap, "GrandTotal")[5],
        sum("Bill", "Balance") - vendor_credits - unapplied_bill_payments + journal_ap,
        "{ap}"
    );

    // A journal entry debiting A/R for a customer is owed by that customer from its date;
    // the customer's row nets it with the rest of what is open with them.
    let ar_account = payable("Accounts Receivable")[0].clone();
    let income = sb
        .records("Account")
        .iter()
        .find(|a| a["AccountType"] == "Income")
        .unwrap()["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let customer = sb.records("Customer")[0].clone();
    let as_of = [("report_date", "2024-02-10")];
    let (_, before) = report(&sb, &tok, "AgedReceivables", &as_of).await;
    sb.put_record(
        "JournalEntry",
        serde_json::json!({
            "Id": "900001", "SyncToken": "0", "TxnDate": "2024-02-01", "domain": "QBO",
            "sparse": false, "Adjustment": false, "TotalAmt": 123.45, "TxnTaxDetail": {},
            "CurrencyRef": { "value": "USD", "name": "United States Dollar" },
            "MetaData": { "CreateTime": "2024-02-01T10:00:00-08:00",
                          "LastUpdatedTime": "2024-02-01T10:00:00-08:00" },
            "Line": [
                { "Id": "0", "Amount": 123.45, "DetailType": "JournalEntryLineDetail",
                  "JournalEntryLineDetail": { "PostingType": "Debit",
                      "AccountRef": { "value": ar_account },
                      "Entity": { "Type": "Customer", "EntityRef": {
                          "value": customer["Id"], "name": customer["DisplayName"] } } } },
                { "Id": "1", "Amount": 123.45, "DetailType": "JournalEntryLineDetail",
                  "JournalEntryLineDetail": { "PostingType": "Credit",
                      "AccountRef": { "value": income } } },
            ],
        }),
    );
    let (_, after) = report(&sb, &tok, "AgedReceivables", &as_of).await;
    let (b, a) = (
        summary(&before, "GrandTotal"),
        summary(&after, "GrandTotal"),
    );
    assert_eq!(a[5] - b[5], 12_345, "{after}");
    assert_eq!(a[1] - b[1], 12_345, "aged from its date: 9 days, 1 - 30");
    let row_of = |r: &Value| -> i64 {
        r["Rows"]["Row"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["ColData"][0]["id"] == customer["Id"])
            .map_or(0, |row| money(&row["ColData"][6]))
    };
    assert_eq!(row_of(&after) - row_of(&before), 12_345);

    // Before any invoice, nothing is open.
    let (_, early) = report(
        &sb,
        &tok,
        "AgedReceivables",
        &[("report_date", "2000-01-01")],
    )
    .await;
    assert_eq!(summary(&early, "GrandTotal")[5], 0);

    // TransactionList: one row per transaction dated in the range.
    let (st, list) = report(&sb, &tok, "TransactionList", &range).await;
    assert_eq!(st, 200, "{list}");
    let in_range = |t: &Value| {
        let d = t["TxnDate"].as_str().unwrap_or("");
        ("2024-01-01"..="2024-03-31").contains(&d)
    };
    let expected: usize = [
        "Invoice",
        "SalesReceipt",
        "CreditMemo",
        "RefundReceipt",
        "Bill",
        "VendorCredit",
        "Purchase",
        "JournalEntry",
        "Deposit",
        "Payment",
        "BillPayment",
        "Transfer",
        "CreditCardPayment",
    ]
    .iter()
    .map(|k| sb.records(k).iter().filter(|t| in_range(t)).count())
    .sum();
    let rows = list["Rows"]["Row"].as_array().unwrap();
    assert_eq!(rows.len(), expected);
    assert!(expected > 0);
    assert_eq!(rows[0]["ColData"].as_array().unwrap().len(), 9);
}

#[tokio::test]
async fn each_report_refuses_the_parameters_it_does_not_take() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    for (name, params, needle) in [
        (
            "AgedReceivables",
            vec![("start_date", "2024-01-01")],
            "start_date",
        ),
        (
            "AgedPayables",
            vec![("report_date", "2024-02-30")],
            "report_date",
        ),
        ("AgedPayables", vec![("aging_period", "15")], "aging_period"),
        (
            "CashFlow",
            vec![("accounting_method", "Cash")],
            "accounting_method",
        ),
        (
            "TransactionList",
            vec![("report_date", "2024-01-01")],
            "report_date",
        ),
        (
            "TransactionList",
            vec![("summarize_column_by", "Month")],
            "summarize_column_by",
        ),
        (
            "ProfitAndLossDetail",
            vec![("summarize_column_by", "Month")],
            "summarize_column_by",
        ),
        (
            "ProfitAndLoss",
            vec![("report_date", "2024-01-01")],
            "report_date",
        ),
        (
            "ProfitAndLoss",
            vec![("no_such_thing", "1")],
            "no_such_thing",
        ),
    ] {
        let (st, body) = report(&sb, &tok, name, &params).await;
        assert_eq!(st, 400, "{name} {params:?}: {body}");
        assert_eq!(body["Fault"]["type"], "ValidationFault", "{body}");
        let detail = body["Fault"]["Error"][0]["Detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{name} {params:?}: {detail}");
    }
}

#[tokio::test]
async fn the_cash_basis_p_and_l_recognizes_an_invoice_when_and_as_far_as_it_is_paid() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let income_of = |month: (&'static str, &'static str), method: &'static str| {
        let sb = &sb;
        let tok = tok.clone();
        async move {
            let (st, pl) = report(
                sb,
                &tok,
                "ProfitAndLoss",
                &[
                    ("start_date", month.0),
                    ("end_date", month.1),
                    ("accounting_method", method),
                ],
            )
            .await;
            assert_eq!(st, 200, "{pl}");
            assert_eq!(pl["Header"]["ReportBasis"], method);
            summary(&pl, "Income")[0]
        }
    };
    let feb = ("2024-02-01", "2024-02-29");
    let mar = ("2024-03-01", "2024-03-31");
    let (cash_feb, cash_mar, accrual_feb) = (
        income_of(feb, "Cash").await,
        income_of(mar, "Cash").await,
        income_of(feb, "Accrual").await,
    );
    assert_ne!(cash_feb, accrual_feb, "the bases differ");

    // A new invoice of 1000.00 of income on Feb 10, unpaid: accrual only.
    let invoices = sb.records("Invoice");
    let template = invoices
        .iter()
        .find(|r| r["Line"][0]["SalesItemLineDetail"]["ItemAccountRef"]["value"].is_string())
        .unwrap();
    let next_id = |recs: &[Value]| {
        recs.iter()
            .map(|r| r["Id"].as_str().unwrap().parse::<u64>().unwrap())
            .max()
            .unwrap()
            + 1000
    };
    let inv_id = next_id(&invoices).to_string();
    let mut inv = template.clone();
    let mut line = template["Line"][0].clone();
    line["Amount"] = serde_json::json!(1000.0);
    inv["Id"] = serde_json::json!(inv_id);
    inv["TxnDate"] = serde_json::json!("2024-02-10");
    inv["Line"] = serde_json::json!([line]);
    inv["TotalAmt"] = serde_json::json!(1000.0);
    inv["Balance"] = serde_json::json!(1000.0);
    inv["LinkedTxn"] = serde_json::json!([]);
    inv.as_object_mut().unwrap().remove("TxnTaxDetail");
    sb.put_record("Invoice", inv.clone());
    assert_eq!(income_of(feb, "Accrual").await, accrual_feb + 100_000);
    assert_eq!(
        income_of(feb, "Cash").await,
        cash_feb,
        "unpaid: no cash income"
    );

    // Half of it paid on Mar 5: 500.00 of cash income in March, none in February.
    let payments = sb.records("Payment");
    let mut pay = payments[0].clone();
    pay["Id"] = serde_json::json!(next_id(&payments).to_string());
    pay["TxnDate"] = serde_json::json!("2024-03-05");
    pay["TotalAmt"] = serde_json::json!(500.0);
    pay["UnappliedAmt"] = serde_json::json!(0);
    pay["Line"] = serde_json::json!([{ "Amount": 500.0,
        "LinkedTxn": [{ "TxnId": inv_id, "TxnType": "Invoice" }] }]);
    sb.put_record("Payment", pay);
    assert_eq!(income_of(mar, "Cash").await, cash_mar + 50_000);
    assert_eq!(income_of(feb, "Cash").await, cash_feb);

    // A credit memo of 200.00 on Feb 12, applied to nothing, to the same income account: less
    // income on its own date on both bases (QBO shows it as negative cash-basis income).
    let mut memo = inv.clone();
    memo["Id"] = serde_json::json!("990001");
    memo["TxnDate"] = serde_json::json!("2024-02-12");
    memo["Line"][0]["Amount"] = serde_json::json!(200.0);
    memo["TotalAmt"] = serde_json::json!(200.0);
    memo["Balance"] = serde_json::json!(200.0);
    sb.put_record("CreditMemo", memo);
    assert_eq!(income_of(feb, "Cash").await, cash_feb - 20_000);
    assert_eq!(
        income_of(feb, "Accrual").await,
        accrual_feb + 100_000 - 20_000
    );

    // The other bases are still refused.
    let (st, body) = report(&sb, &tok, "BalanceSheet", &[("accounting_method", "Cash")]).await;
    assert_eq!(st, 400, "{body}");
}
