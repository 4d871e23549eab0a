//! `raw.qb_reports` and `raw.qb_report_cells`: one report request, stored whole and
//! flattened, in one transaction. The request's parameters are its key, so loading the same
//! piece again replaces the piece (payload and cells) instead of adding a copy, and a stored
//! piece of the same report and basis that overlaps it (another --period's, or the wider
//! piece a split replaces) is removed with its cells.

use serde_json::Value;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::StoreError;
use crate::reports::parse::Report;
use crate::reports::Request;

/// A stored piece of a range, and the wider piece it was split from.
pub struct Piece<'a> {
    pub realm_id: &'a str,
    pub request: &'a Request,
    pub split_from: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    pub payload: &'a Value,
    pub intuit_tid: Option<&'a str>,
    pub report: &'a Report,
    /// The report run whose window this piece is.
    pub run_id: Uuid,
}

/// The cells of a report as column arrays, for one `UNNEST` insert.
#[derive(Default)]
struct Cells {
    row_index: Vec<i32>,
    column_index: Vec<i32>,
    row_kind: Vec<String>,
    section_path: Vec<String>,
    group: Vec<Option<String>>,
    label: Vec<String>,
    account_id: Vec<Option<String>>,
    key: Vec<Option<String>>,
    title: Vec<Option<String>>,
    kind: Vec<Option<String>>,
    start: Vec<Option<chrono::NaiveDate>>,
    end: Vec<Option<chrono::NaiveDate>>,
    value: Vec<String>,
    amount: Vec<Option<String>>,
}

impl Cells {
    fn of(report: &Report) -> Result<Cells, String> {
        let mut c = Cells::default();
        for (r, row) in report.rows.iter().enumerate() {
            for (i, value) in row.values.iter().enumerate() {
                let col = report.columns.get(i + 1).cloned().unwrap_or_default();
                let money = col.kind.as_deref() == Some("Money");
                let amount = if money {
                    Report::cents(value)?.map(|_| value.clone())
                } else {
                    None
                };
                c.row_index.push(r as i32 + 1);
                c.column_index.push(i as i32 + 1);
                c.row_kind.push(row.kind.as_str().to_string());
                // Postgres arrays cannot nest in UNNEST; the path travels as JSON text.
                c.section_path
                    .push(serde_json::to_string(&row.section_path).unwrap_or_else(|_| "[]".into()));
                c.group.push(row.group.clone());
                c.label.push(row.label.clone());
                c.account_id.push(row.account_id.clone());
                c.key.push(col.key);
                c.title.push(col.title);
                c.kind.push(col.kind);
                c.start.push(col.start);
                c.end.push(col.end);
                c.value.push(value.clone());
                c.amount.push(amount);
            }
        }
        Ok(c)
    }
}

/// Stores one piece in `tx`, replacing an earlier load of the same request. Returns the
/// cells written. The caller commits (with the window's success, so that a window is
/// `success` exactly when its piece is stored).
pub async fn save(tx: &mut Transaction<'_, Postgres>, p: &Piece<'_>) -> Result<usize, StoreError> {
    let cells = Cells::of(p.report)
        .map_err(|e| StoreError::Db(sqlx::Error::Decode(format!("a report amount: {e}").into())))?;
    let req = p.request;
    let params: serde_json::Map<String, Value> = req
        .params()
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v)))
        .collect();
    // At most one stored piece covers a day of a report (per basis): pieces of another
    // --period, or the piece a split replaces, go, so summing pieces never counts twice.
    sqlx::query!(
        "DELETE FROM raw.qb_reports
         WHERE realm_id = $1 AND report_name = $2 AND accounting_method = $3
           AND params_hash <> md5($4)
           AND daterange(period_start, period_end, '[]') && daterange($5, $6, '[]')",
        p.realm_id,
        req.name.qbo_name(),
        req.basis_text(),
        req.params_text(),
        req.start,
        req.end,
    )
    .execute(&mut **tx)
    .await?;
    let hash = sqlx::query_scalar!(
        r#"INSERT INTO raw.qb_reports AS r
               (realm_id, report_name, params_hash, params_text, params, period_start, period_end,
                accounting_method, split_from_start, split_from_end, payload, intuit_tid, run_id)
           VALUES ($1, $2, md5($3), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (realm_id, report_name, params_hash) DO UPDATE SET
               payload = EXCLUDED.payload, intuit_tid = EXCLUDED.intuit_tid,
               run_id = EXCLUDED.run_id,
               split_from_start = EXCLUDED.split_from_start, split_from_end = EXCLUDED.split_from_end,
               loaded_at_utc = now()
           RETURNING params_hash AS "hash!""#,
        p.realm_id,
        req.name.qbo_name(),
        req.params_text(),
        Value::Object(params),
        req.start,
        req.end,
        req.basis_text(),
        p.split_from.map(|s| s.0),
        p.split_from.map(|s| s.1),
        p.payload,
        p.intuit_tid,
        p.run_id,
    )
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query!(
        "DELETE FROM raw.qb_report_cells WHERE realm_id = $1 AND report_name = $2 AND params_hash = $3",
        p.realm_id,
        req.name.qbo_name(),
        hash,
    )
    .execute(&mut **tx)
    .await?;
    let n = cells.value.len();
    sqlx::query!(
        r#"INSERT INTO raw.qb_report_cells
               (realm_id, report_name, params_hash, row_index, column_index, row_kind, section_path,
                section_group, label, account_id, column_key, column_title, column_type,
                column_start, column_end, value, amount)
           SELECT $1, $2, $3, c.row_index, c.column_index, c.row_kind,
                  ARRAY(SELECT jsonb_array_elements_text(c.path::jsonb)),
                  c.grp, c.label, c.account_id, c.col_key, c.col_title, c.col_type,
                  c.col_start, c.col_end, c.value, c.amount::numeric
           FROM UNNEST($4::int[], $5::int[], $6::text[], $7::text[], $8::text[], $9::text[],
                       $10::text[], $11::text[], $12::text[], $13::text[], $14::date[], $15::date[],
                       $16::text[], $17::text[])
                AS c(row_index, column_index, row_kind, path, grp, label, account_id, col_key,
                     col_title, col_type, col_start, col_end, value, amount)"#,
        p.realm_id,
        req.name.qbo_name(),
        hash,
        &cells.row_index,
        &cells.column_index,
        &cells.row_kind,
        &cells.section_path,
        &cells.group as &[Option<String>],
        &cells.label,
        &cells.account_id as &[Option<String>],
        &cells.key as &[Option<String>],
        &cells.title as &[Option<String>],
        &cells.kind as &[Option<String>],
        &cells.start as &[Option<chrono::NaiveDate>],
        &cells.end as &[Option<chrono::NaiveDate>],
        &cells.value,
        &cells.amount as &[Option<String>],
    )
    .execute(&mut **tx)
    .await?;
    Ok(n)
}
