//! Reading a QBO report's JSON: checking that it is the report asked for, in the shape QBO
//! documents, and flattening its rows into cells. Anything else is an error, never data: a
//! report whose rows we cannot read would otherwise load as an empty or partial one.
//!
//! QBO cuts a report past 400,000 cells without an error: the answer is a 200 whose last row
//! reads "Unable to display more data. Please reduce the date range." Such an answer is
//! `Read::TooLarge`, never stored; the caller asks again for smaller pieces.

use chrono::NaiveDate;
use serde_json::Value;

use super::Request;

/// The start of QBO's notice in a report cut at its cell cap.
pub const TOO_LARGE: &str = "Unable to display more data";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    Data,
    Summary,
}

impl RowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Data => "data",
            RowKind::Summary => "summary",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Column {
    pub key: Option<String>,
    pub title: Option<String>,
    pub kind: Option<String>,
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
}

/// One report row (data row or section summary) with its values, one per column after the
/// first (the label).
#[derive(Debug, Clone)]
pub struct Row {
    pub kind: RowKind,
    pub section_path: Vec<String>,
    pub group: Option<String>,
    pub label: String,
    pub account_id: Option<String>,
    pub values: Vec<String>,
}

#[derive(Debug)]
pub struct Report {
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
}

#[derive(Debug)]
pub enum Read {
    Complete(Report),
    TooLarge,
}

impl Report {
    /// `values[i]` as cents, for a Money column; None for a blank cell.
    pub fn cents(value: &str) -> Result<Option<i64>, String> {
        if value.is_empty() {
            return Ok(None);
        }
        let (neg, digits) = match value.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, value),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let ok = !whole.is_empty()
            && whole.bytes().all(|b| b.is_ascii_digit())
            && frac.len() <= 2
            && frac.bytes().all(|b| b.is_ascii_digit());
        if !ok {
            return Err(format!("{value:?} is not an amount"));
        }
        let frac = format!("{frac:0<2}");
        let c: i64 = whole
            .parse::<i64>()
            .ok()
            .and_then(|w| w.checked_mul(100))
            .and_then(|w| w.checked_add(frac.parse::<i64>().ok()?))
            .ok_or_else(|| format!("{value:?} is out of range"))?;
        Ok(Some(if neg { -c } else { c }))
    }
}

fn text<'a>(v: &'a Value, key: &str) -> Result<&'a str, String> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{key} is missing or not text"))
}

/// Checks the header against the request: the report, its range and its basis.
fn check_header(v: &Value, req: &Request) -> Result<(), String> {
    let h = v.get("Header").ok_or("no Header")?;
    let name = text(h, "ReportName")?;
    if name != req.name.qbo_name() {
        return Err(format!("ReportName is {name}, not {}", req.name.qbo_name()));
    }
    for (key, want) in [("StartPeriod", req.start), ("EndPeriod", req.end)] {
        let got = text(h, key)?;
        if got != want.to_string() {
            return Err(format!("{key} is {got}, not the {want} asked for"));
        }
    }
    if !req.name.takes_basis() {
        return Ok(());
    }
    let basis = text(h, "ReportBasis")?;
    if !basis.eq_ignore_ascii_case(req.method.qbo_name()) {
        return Err(format!(
            "ReportBasis is {basis}, not {}",
            req.method.qbo_name()
        ));
    }
    Ok(())
}

fn columns(v: &Value) -> Result<Vec<Column>, String> {
    let cols = v
        .get("Columns")
        .and_then(|c| c.get("Column"))
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or("Columns.Column is missing or empty")?;
    cols.iter()
        .map(|c| {
            let meta = |name: &str| {
                c.get("MetaData")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|m| m.get("Name").and_then(Value::as_str) == Some(name))
                    .and_then(|m| m.get("Value"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let date = |name: &str| -> Result<Option<NaiveDate>, String> {
                meta(name)
                    .map(|d| {
                        d.parse()
                            .map_err(|_| format!("column {name} {d:?} is not a date"))
                    })
                    .transpose()
            };
            Ok(Column {
                key: meta("ColKey"),
                title: c
                    .get("ColTitle")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                kind: Some(text(c, "ColType")?.to_string()),
                start: date("StartDate")?,
                end: date("EndDate")?,
            })
        })
        .collect()
}

/// Whether QBO cut this report short (its notice in any row's first cell).
pub fn is_too_large(v: &Value) -> bool {
    fn walk(rows: &Value) -> bool {
        rows.get("Row")
            .and_then(Value::as_array)
            .is_some_and(|rows| {
                rows.iter().any(|r| {
                    let first = |k: &str| {
                        let cells = if k.is_empty() {
                            r.get("ColData")
                        } else {
                            r.get(k).and_then(|x| x.get("ColData"))
                        };
                        cells
                            .and_then(|c| c.get(0))
                            .and_then(|c| c.get("value"))
                            .and_then(Value::as_str)
                            .is_some_and(|s| s.contains(TOO_LARGE))
                    };
                    first("") || first("Header") || r.get("Rows").is_some_and(walk)
                })
            })
    }
    v.get("Rows").is_some_and(walk)
}

/// Checks `v` is the report `req` asked for and flattens it.
pub fn read(v: &Value, req: &Request) -> Result<Read, String> {
    check_header(v, req)?;
    let columns = columns(v)?;
    if is_too_large(v) {
        return Ok(Read::TooLarge);
    }
    let rows = v.get("Rows").ok_or("no Rows")?;
    let mut out = Vec::new();
    flatten(rows, &mut Vec::new(), &mut None, columns.len(), &mut out)?;
    Ok(Read::Complete(Report { columns, rows: out }))
}

/// The label cell and the other cells of `cells`, which must be as wide as the columns.
fn cells(cells: &Value, width: usize) -> Result<(String, Option<String>, Vec<String>), String> {
    let cells = cells.as_array().ok_or("ColData is not a list")?;
    if cells.len() != width {
        return Err(format!(
            "a row has {} cells for {width} columns",
            cells.len()
        ));
    }
    let value = |c: &Value| -> Result<String, String> {
        Ok(c.get("value")
            .and_then(Value::as_str)
            .ok_or("a cell has no text value")?
            .to_string())
    };
    let label = value(&cells[0])?;
    let id = cells[0]
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let values = cells[1..].iter().map(value).collect::<Result<_, _>>()?;
    Ok((label, id, values))
}

/// `inherited` is the id of the nearest section header that has one (the account of a
/// GeneralLedger or ProfitAndLossDetail section): a row whose own first cell has no id
/// carries it.
fn flatten(
    rows: &Value,
    path: &mut Vec<String>,
    inherited: &mut Option<String>,
    width: usize,
    out: &mut Vec<Row>,
) -> Result<(), String> {
    let obj = rows.as_object().ok_or("Rows is not an object")?;
    if obj.keys().any(|k| k != "Row") {
        return Err("Rows holds something besides Row".into());
    }
    let Some(list) = obj.get("Row") else {
        // QBO answers a report with nothing in it with `"Rows": {}`.
        return Ok(());
    };
    for r in list.as_array().ok_or("Rows.Row is not a list")? {
        let kind = r.get("type").and_then(Value::as_str);
        let group = r.get("group").and_then(Value::as_str).map(str::to_string);
        if let Some(data) = r.get("ColData") {
            if kind.is_some_and(|k| k != "Data") || r.get("Rows").is_some() {
                return Err(format!("a row with ColData is of type {kind:?}"));
            }
            let (label, account_id, values) = cells(data, width)?;
            let account_id = account_id.or_else(|| inherited.clone());
            out.push(Row {
                kind: RowKind::Data,
                section_path: path.clone(),
                group,
                label,
                account_id,
                values,
            });
            continue;
        }
        if kind.is_some_and(|k| k != "Section")
            || (r.get("Summary").is_none() && r.get("Rows").is_none())
        {
            return Err(format!(
                "a row that is neither data nor a section (type {kind:?})"
            ));
        }
        let header = match r.get("Header").and_then(|h| h.get("ColData")) {
            Some(h) => Some(cells(h, width)?),
            None => None,
        };
        let outer = inherited.clone();
        if let Some((h, id, _)) = &header {
            path.push(h.clone());
            if id.is_some() {
                *inherited = id.clone();
            }
        }
        if let Some(inner) = r.get("Rows") {
            flatten(inner, path, inherited, width, out)?;
        }
        if header.is_some() {
            path.pop();
        }
        if let Some(summary) = r.get("Summary") {
            let (label, account_id, values) = cells(
                summary.get("ColData").ok_or("a Summary without ColData")?,
                width,
            )?;
            let account_id = account_id.or_else(|| inherited.clone());
            out.push(Row {
                kind: RowKind::Summary,
                section_path: path.clone(),
                group,
                label,
                account_id,
                values,
            });
        }
        *inherited = outer;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_read_exactly_and_anything_else_is_refused() {
        assert_eq!(Report::cents("1234.56"), Ok(Some(123456)));
        assert_eq!(Report::cents("-0.5"), Ok(Some(-50)));
        assert_eq!(Report::cents("12"), Ok(Some(1200)));
        assert_eq!(Report::cents(""), Ok(None));
        assert!(Report::cents("1,234.00").is_err());
        assert!(Report::cents("12.345").is_err());
        assert!(Report::cents("abc").is_err());
    }
}
