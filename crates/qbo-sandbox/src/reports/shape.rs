//! QBO's report JSON: `Header` (ReportName, ReportBasis, StartPeriod, EndPeriod,
//! SummarizeColumnsBy, Currency, Option), `Columns.Column` (ColTitle, ColType, MetaData),
//! and `Rows.Row`: sections (`Header`, nested `Rows`, `Summary`, `type: Section`, `group`)
//! and data rows (`ColData`, `type: Data`). Money is a string with two decimals. Past its
//! cell cap QBO cuts a report short with a 200 and a data row reading "Unable to display
//! more data. Please reduce the date range.": no error, and the cut sections never reach
//! their `Summary` (see `cap`).

use chrono::NaiveDate;
use serde_json::{json, Value};

use super::params::{title, Params};

/// QBO's own text for a report cut at its cell cap.
pub const TOO_LARGE: &str = "Unable to display more data. Please reduce the date range.";

pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

/// A data cell: QBO leaves a zero blank in a data row.
pub fn cell(cents: i64) -> Value {
    if cents == 0 {
        json!({ "value": "" })
    } else {
        json!({ "value": money(cents) })
    }
}

pub fn text(s: &str) -> Value {
    json!({ "value": s })
}

pub fn header(name: &str, p: &Params, time: &str, no_data: bool) -> Value {
    json!({
        "Time": time,
        "ReportName": name,
        "ReportBasis": p.method.name(),
        "StartPeriod": p.start.to_string(),
        "EndPeriod": p.end.to_string(),
        "SummarizeColumnsBy": p.columns.name(),
        "Currency": "USD",
        "Option": [
            { "Name": "AccountingStandard", "Value": "GAAP" },
            { "Name": "NoReportData", "Value": no_data.to_string() },
        ],
    })
}

/// The header of a report that takes no accounting basis (no `ReportBasis`), with `options`
/// before QBO's NoReportData.
pub fn header_without_basis(
    name: &str,
    p: &Params,
    time: &str,
    no_data: bool,
    options: &[(&str, String)],
) -> Value {
    let mut h = header(name, p, time, no_data);
    if let Some(o) = h.as_object_mut() {
        o.remove("ReportBasis");
    }
    let mut opts: Vec<Value> = options
        .iter()
        .map(|(k, v)| json!({ "Name": k, "Value": v }))
        .collect();
    opts.push(json!({ "Name": "NoReportData", "Value": no_data.to_string() }));
    h["Option"] = Value::Array(opts);
    h
}

/// Columns of fixed titles, types and keys (the detail and listing reports).
pub fn fixed_columns(cols: &[(&str, &str, &str)]) -> Value {
    let cols: Vec<Value> = cols
        .iter()
        .map(|(title, kind, key)| {
            json!({ "ColTitle": title, "ColType": kind, "MetaData": [{ "Name": "ColKey", "Value": key }] })
        })
        .collect();
    json!({ "Column": cols })
}

/// The account column, one money column per period, and a Total column after several.
pub fn money_columns(p: &Params, periods: &[(NaiveDate, NaiveDate)]) -> Value {
    let mut cols = vec![json!({
        "ColTitle": "", "ColType": "Account",
        "MetaData": [{ "Name": "ColKey", "Value": "account" }],
    })];
    for &period in periods {
        let t = title(p.columns, period);
        cols.push(json!({
            "ColTitle": t, "ColType": "Money",
            "MetaData": [
                { "Name": "StartDate", "Value": period.0.to_string() },
                { "Name": "EndDate", "Value": period.1.to_string() },
                { "Name": "ColKey", "Value": if periods.len() == 1 { "total".to_string() } else { t.clone() } },
            ],
        }));
    }
    if periods.len() > 1 {
        cols.push(json!({
            "ColTitle": "Total", "ColType": "Money",
            "MetaData": [{ "Name": "ColKey", "Value": "total" }],
        }));
    }
    json!({ "Column": cols })
}

pub fn data_row(cells: Vec<Value>) -> Value {
    json!({ "ColData": cells, "type": "Data" })
}

/// `label` and the amounts, as a section's or a data row's cells.
pub fn amounts(label: Value, values: &[i64], blank_zero: bool) -> Vec<Value> {
    std::iter::once(label)
        .chain(
            values
                .iter()
                .map(|&v| if blank_zero { cell(v) } else { text(&money(v)) }),
        )
        .collect()
}

pub fn blank_header(label: &str, width: usize) -> Value {
    let mut cells = vec![text(label)];
    cells.resize(width, text(""));
    json!({ "ColData": cells })
}

pub fn section(group: &str, header: Option<Value>, rows: Vec<Value>, summary: Vec<Value>) -> Value {
    let mut s = json!({ "Summary": { "ColData": summary }, "type": "Section", "group": group });
    if let Some(h) = header {
        s["Header"] = h;
        s["Rows"] = json!({ "Row": rows });
    }
    s
}

pub fn report(header: Value, columns: Value, rows: Vec<Value>) -> Value {
    json!({ "Header": header, "Columns": columns, "Rows": { "Row": rows } })
}

/// Cuts `report` at `max_cells` cells (every ColData entry counts) the way QBO does: the
/// rows that fit stay, then one data row says the report is too large, and every section
/// still open loses its Summary. A report within the cap is left as it is. True if cut.
pub fn cap(report: &mut Value, max_cells: u64) -> bool {
    let width = report["Columns"]["Column"]
        .as_array()
        .map_or(1, Vec::len)
        .max(1);
    let mut budget = i64::try_from(max_cells).unwrap_or(i64::MAX);
    match report["Rows"]["Row"].as_array_mut() {
        Some(rows) => cut(rows, &mut budget, width),
        None => false,
    }
}

fn cells(v: &Value) -> i64 {
    v["ColData"].as_array().map_or(0, |c| c.len() as i64)
}

fn notice(width: usize) -> Value {
    let mut row = blank_header(TOO_LARGE, width);
    row["type"] = json!("Data");
    row
}

fn cut(rows: &mut Vec<Value>, budget: &mut i64, width: usize) -> bool {
    for i in 0..rows.len() {
        let row = &mut rows[i];
        *budget -= cells(row) + cells(&row["Header"]);
        if *budget < 0 {
            rows.truncate(i);
            rows.push(notice(width));
            return true;
        }
        let inner = row
            .get_mut("Rows")
            .and_then(|r| r.get_mut("Row"))
            .and_then(Value::as_array_mut);
        let inner_cut = match inner {
            Some(inner) => cut(inner, budget, width),
            None => false,
        };
        if !inner_cut {
            *budget -= cells(&row["Summary"]);
        }
        if inner_cut || *budget < 0 {
            if let Some(obj) = row.as_object_mut() {
                obj.remove("Summary");
            }
            let keep_section = row.get("Rows").is_some();
            rows.truncate(if keep_section { i + 1 } else { i });
            if !inner_cut {
                rows.push(notice(width));
            }
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_has_two_decimals_and_a_sign() {
        assert_eq!(money(0), "0.00");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(-123456), "-1234.56");
    }

    #[test]
    fn a_report_past_its_cap_is_cut_with_qbos_notice_and_open_sections_lose_their_summary() {
        let rows: Vec<Value> = (0..10)
            .map(|i| data_row(vec![text(&format!("a{i}")), cell(100)]))
            .collect();
        let s = section(
            "Income",
            Some(blank_header("Income", 2)),
            rows,
            vec![text("Total"), cell(1000)],
        );
        let mut r = report(json!({}), json!({ "Column": [{}, {}] }), vec![s.clone()]);
        assert!(!cap(&mut r.clone(), 1000));
        assert!(cap(&mut r, 10));
        let text = r.to_string();
        assert!(text.contains(TOO_LARGE));
        assert!(r["Rows"]["Row"][0].get("Summary").is_none());
        let kept = r["Rows"]["Row"][0]["Rows"]["Row"].as_array().unwrap().len();
        assert_eq!(
            kept, 5,
            "header 2 cells + 4 rows of 2 fit in 10, then the notice"
        );
    }
}
