//! The tie-out: month by month, QBO's own ProfitAndLoss and TrialBalance against the same
//! figures computed from `staging.general_ledger` (the loaded data), account by account.
//!
//! From the ledger (home-currency amounts, debits positive):
//!  - P&L of a month: each income and expense account's postings in the month, in the
//!    report's sign (income as credits, expenses as debits);
//!  - trial balance of a month: balance-sheet accounts as of its last day, income and expense
//!    accounts over the month, and everything income and expense accounts posted before it
//!    as one Retained Earnings line (QBO's trial balance shows it the same way).
//!
//! The staging ledger is accrual-based, so only the accrual reports are compared.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;
use sqlx::PgPool;

use super::parse::{self, Read, Report};
use super::{pieces, Method, Period, ReportError, ReportName, Request};
use crate::client::{QboClient, RequestCounters};

/// The key of a trial balance's Retained Earnings line, which carries no account id.
pub const RETAINED_EARNINGS: &str = "Retained Earnings";

/// One account of one report of one month where QBO and the ledger disagree.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub month_start: NaiveDate,
    pub report: &'static str,
    pub account_id: String,
    pub account_name: String,
    pub qbo_cents: i64,
    pub staging_cents: i64,
}

/// One report of one month.
#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    pub month_start: NaiveDate,
    pub month_end: NaiveDate,
    pub report: &'static str,
    pub accounts: usize,
    pub differences: Vec<Difference>,
}

/// Per account: (name, cents) as a report shows them.
type Figures = BTreeMap<String, (String, i64)>;

struct LedgerRow {
    account_id: String,
    name: String,
    profit_and_loss: bool,
    in_month: i64,
    before: i64,
}

async fn ledger(
    pool: &PgPool,
    realm_id: &str,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<Vec<LedgerRow>, ReportError> {
    let rows = sqlx::query!(
        r#"SELECT account_id AS "account_id!",
                  max(account_name) AS account_name,
                  bool_or(account_classification IN ('Revenue', 'Expense')) AS profit_and_loss,
                  round(coalesce(sum(home_amount) FILTER (WHERE txn_date >= $2), 0) * 100)::bigint AS in_month,
                  round(coalesce(sum(home_amount) FILTER (WHERE txn_date < $2), 0) * 100)::bigint AS before
           FROM staging.general_ledger
           WHERE realm_id = $1 AND txn_date <= $3 AND account_id IS NOT NULL
           GROUP BY account_id"#,
        realm_id,
        start,
        end,
    )
    .fetch_all(pool)
    .await
    .map_err(ReportError::Staging)?;
    Ok(rows
        .into_iter()
        .map(|r| LedgerRow {
            account_id: r.account_id,
            name: r.account_name.unwrap_or_default(),
            profit_and_loss: r.profit_and_loss.unwrap_or(false),
            in_month: r.in_month.unwrap_or(0),
            before: r.before.unwrap_or(0),
        })
        .collect())
}

fn staging_pl(rows: &[LedgerRow], revenue: &BTreeMap<String, bool>) -> Figures {
    rows.iter()
        .filter(|r| r.profit_and_loss && r.in_month != 0)
        .map(|r| {
            let income = revenue.get(&r.account_id).copied().unwrap_or(false);
            let shown = if income { -r.in_month } else { r.in_month };
            (r.account_id.clone(), (r.name.clone(), shown))
        })
        .collect()
}

fn staging_tb(rows: &[LedgerRow]) -> Figures {
    let mut out = Figures::new();
    let mut retained = 0;
    for r in rows {
        let balance = if r.profit_and_loss {
            retained += r.before;
            r.in_month
        } else {
            r.in_month + r.before
        };
        if balance != 0 {
            out.insert(r.account_id.clone(), (r.name.clone(), balance));
        }
    }
    if retained != 0 {
        out.insert(
            RETAINED_EARNINGS.into(),
            (RETAINED_EARNINGS.into(), retained),
        );
    }
    out
}

/// The data rows of a one-column report with an account (or the Retained Earnings line).
fn qbo_figures(report: &Report, name: ReportName) -> Result<Figures, String> {
    let mut out = Figures::new();
    for row in report
        .rows
        .iter()
        .filter(|r| r.kind == parse::RowKind::Data)
    {
        let key = match (&row.account_id, row.label.as_str()) {
            (Some(id), _) => id.clone(),
            (None, RETAINED_EARNINGS) => RETAINED_EARNINGS.to_string(),
            (None, other) => return Err(format!("a data row without an account: {other:?}")),
        };
        let cell = |i: usize| -> Result<i64, String> {
            Ok(Report::cents(row.values.get(i).map_or("", String::as_str))?.unwrap_or(0))
        };
        let cents = match name {
            ReportName::TrialBalance => cell(0)? - cell(1)?,
            _ => cell(0)?,
        };
        if cents != 0 {
            out.entry(key).or_insert((row.label.clone(), 0)).1 += cents;
        }
    }
    Ok(out)
}

fn compare(
    month: (NaiveDate, NaiveDate),
    report: &'static str,
    qbo: &Figures,
    ours: &Figures,
) -> Compared {
    let mut differences = Vec::new();
    let keys: std::collections::BTreeSet<&String> = qbo.keys().chain(ours.keys()).collect();
    for k in &keys {
        let (q, s) = (qbo.get(*k), ours.get(*k));
        let (qc, sc) = (q.map_or(0, |x| x.1), s.map_or(0, |x| x.1));
        if qc != sc {
            differences.push(Difference {
                month_start: month.0,
                report,
                account_id: (*k).clone(),
                account_name: q.or(s).map(|x| x.0.clone()).unwrap_or_default(),
                qbo_cents: qc,
                staging_cents: sc,
            });
        }
    }
    Compared {
        month_start: month.0,
        month_end: month.1,
        report,
        accounts: keys.len(),
        differences,
    }
}

pub struct TieOut<'a> {
    pub client: &'a QboClient,
    pub pool: &'a PgPool,
    pub realm_id: &'a str,
}

impl TieOut<'_> {
    async fn qbo(
        &self,
        req: &Request,
        counters: &mut RequestCounters,
    ) -> Result<Figures, ReportError> {
        let params = req.params();
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = self
            .client
            .fetch_report(req.name.qbo_name(), &params, counters, |v| {
                parse::read(v, req).map(drop)
            })
            .await
            .map_err(|source| ReportError::Qbo {
                report: req.name.qbo_name(),
                start: req.start,
                end: req.end,
                source,
            })?;
        let shape = |why: String| ReportError::Shape(req.params_text(), why);
        match parse::read(&answer.value, req).map_err(shape)? {
            Read::Complete(r) => qbo_figures(&r, req.name).map_err(shape),
            // A summary report of one month is a row per account: far below QBO's cap.
            Read::TooLarge => Err(shape("QBO says it is too large to display".into())),
        }
    }

    /// Compares every month of `[start, end]` (the first and last may be partial).
    pub async fn run(
        &self,
        start: NaiveDate,
        end: NaiveDate,
        counters: &mut RequestCounters,
    ) -> Result<Vec<Compared>, ReportError> {
        let revenue: BTreeMap<String, bool> = sqlx::query!(
            r#"SELECT account_id AS "account_id!", classification FROM staging.accounts WHERE realm_id = $1"#,
            self.realm_id
        )
        .fetch_all(self.pool)
        .await
        .map_err(ReportError::Staging)?
        .into_iter()
        .map(|r| (r.account_id, r.classification.as_deref() == Some("Revenue")))
        .collect();
        let mut out = Vec::new();
        for month in pieces(start, end, Period::Month) {
            let rows = ledger(self.pool, self.realm_id, month.0, month.1).await?;
            for name in [ReportName::ProfitAndLoss, ReportName::TrialBalance] {
                let req = Request {
                    name,
                    start: month.0,
                    end: month.1,
                    method: Method::Accrual,
                };
                let qbo = self.qbo(&req, counters).await?;
                let ours = match name {
                    ReportName::ProfitAndLoss => staging_pl(&rows, &revenue),
                    _ => staging_tb(&rows),
                };
                out.push(compare(month, name.qbo_name(), &qbo, &ours));
            }
        }
        Ok(out)
    }
}
