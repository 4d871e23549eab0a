//! The tie-out: month by month, QBO's own ProfitAndLoss and TrialBalance against the same
//! figures computed from `staging.general_ledger` (the loaded data), account by account.
//!
//! From the ledger (home-currency amounts, debits positive):
//!  - P&L of a month: each income and expense account's postings in the month, in the
//!    report's sign (income as credits, expenses as debits);
//!  - trial balance of a month: balance-sheet accounts as of its last day, income and expense
//!    accounts over the month, and everything income and expense accounts posted before it
//!    added to the company's retained-earnings account (the one of AccountSubType
//!    RetainedEarnings, which every QBO company has): QBO's trial balance shows that
//!    account's line the same way, under its id, with any direct postings to it.
//!
//! On the cash basis (`Method::Cash`) only the P&L is compared, against
//! `staging.general_ledger_cash` (income and expense postings as QBO recognizes them on the
//! cash basis: invoices and bills as payments are applied to them). QBO's cash-basis trial
//! balance restates A/R, A/P and other balance-sheet accounts by rules Intuit does not
//! document, so it is not reproduced.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;
use sqlx::PgPool;

use super::parse::{self, Read, Report};
use super::{pieces, Method, Period, ReportError, ReportName, Request};
use crate::client::{QboClient, RequestCounters};

/// The label of a trial balance's Retained Earnings line, and its key when the company's
/// retained-earnings account is not in staging (then the line differs, as it should: the
/// load is missing an account QBO reports).
pub const RETAINED_EARNINGS: &str = "Retained Earnings";

/// The company's retained-earnings account: its id and name.
type RetainedAccount = Option<(String, String)>;

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
    /// "Accrual" or "Cash", as QBO's accounting_method names it.
    pub accounting_method: &'static str,
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

/// The reports compared on a basis: both on accrual, the P&L alone on cash.
pub fn compared_reports(method: Method) -> &'static [ReportName] {
    match method {
        Method::Accrual => &[ReportName::ProfitAndLoss, ReportName::TrialBalance],
        Method::Cash => &[ReportName::ProfitAndLoss],
    }
}

async fn ledger(
    pool: &PgPool,
    realm_id: &str,
    method: Method,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<Vec<LedgerRow>, ReportError> {
    match method {
        Method::Accrual => accrual_ledger(pool, realm_id, start, end).await,
        Method::Cash => cash_ledger(pool, realm_id, start, end).await,
    }
}

/// The month's income and expense postings on the cash basis (nothing before it: the cash
/// P&L needs none).
async fn cash_ledger(
    pool: &PgPool,
    realm_id: &str,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<Vec<LedgerRow>, ReportError> {
    let rows = sqlx::query!(
        r#"SELECT account_id AS "account_id!",
                  max(account_name) AS account_name,
                  round(coalesce(sum(home_amount), 0) * 100)::bigint AS in_month
           FROM staging.general_ledger_cash
           WHERE realm_id = $1 AND txn_date BETWEEN $2 AND $3 AND account_id IS NOT NULL
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
            profit_and_loss: true,
            in_month: r.in_month.unwrap_or(0),
            before: 0,
        })
        .collect())
}

async fn accrual_ledger(
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

fn staging_tb(rows: &[LedgerRow], re: &RetainedAccount) -> Figures {
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
    let (key, name) = re
        .clone()
        .unwrap_or_else(|| (RETAINED_EARNINGS.into(), RETAINED_EARNINGS.into()));
    out.entry(key).or_insert((name, 0)).1 += retained;
    out.retain(|_, v| v.1 != 0);
    out
}

/// The data rows of a one-column report with an account (a Retained Earnings line without
/// one counts as the company's retained-earnings account).
fn qbo_figures(report: &Report, name: ReportName, re: &RetainedAccount) -> Result<Figures, String> {
    let mut out = Figures::new();
    for row in report
        .rows
        .iter()
        .filter(|r| r.kind == parse::RowKind::Data)
    {
        let key = match (&row.account_id, row.label.as_str()) {
            (Some(id), _) => id.clone(),
            (None, RETAINED_EARNINGS) => re
                .as_ref()
                .map_or_else(|| RETAINED_EARNINGS.to_string(), |r| r.0.clone()),
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
    method: Method,
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
        accounting_method: method.qbo_name(),
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
        re: &RetainedAccount,
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
            Read::Complete(r) => qbo_figures(&r, req.name, re).map_err(shape),
            // A summary report of one month is a row per account: far below QBO's cap.
            Read::TooLarge => Err(shape("QBO says it is too large to display".into())),
        }
    }

    /// Compares every month of `[start, end]` (the first and last may be partial) on the
    /// `method` basis (see `compared_reports`).
    pub async fn run(
        &self,
        start: NaiveDate,
        end: NaiveDate,
        method: Method,
        counters: &mut RequestCounters,
    ) -> Result<Vec<Compared>, ReportError> {
        let accounts = sqlx::query!(
            r#"SELECT account_id AS "account_id!", name, classification, account_sub_type, active AS "active!"
               FROM staging.accounts WHERE realm_id = $1"#,
            self.realm_id
        )
        .fetch_all(self.pool)
        .await
        .map_err(ReportError::Staging)?;
        let revenue: BTreeMap<String, bool> = accounts
            .iter()
            .map(|r| {
                let income = r.classification.as_deref() == Some("Revenue");
                (r.account_id.clone(), income)
            })
            .collect();
        // QBO has one per company; should there be several, the active one first.
        let re: RetainedAccount = accounts
            .iter()
            .filter(|r| r.account_sub_type.as_deref() == Some("RetainedEarnings"))
            .min_by_key(|r| (!r.active, r.account_id.parse::<u64>().unwrap_or(u64::MAX)))
            .map(|r| {
                let name = r.name.clone().unwrap_or_else(|| RETAINED_EARNINGS.into());
                (r.account_id.clone(), name)
            });
        let mut out = Vec::new();
        for month in pieces(start, end, Period::Month) {
            let rows = ledger(self.pool, self.realm_id, method, month.0, month.1).await?;
            for &name in compared_reports(method) {
                let req = Request {
                    name,
                    start: month.0,
                    end: month.1,
                    method,
                };
                let qbo = self.qbo(&req, &re, counters).await?;
                let ours = match name {
                    ReportName::ProfitAndLoss => staging_pl(&rows, &revenue),
                    _ => staging_tb(&rows, &re),
                };
                out.push(compare(month, name.qbo_name(), method, &qbo, &ours));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, profit_and_loss: bool, in_month: i64, before: i64) -> LedgerRow {
        LedgerRow {
            account_id: id.into(),
            name: format!("account {id}"),
            profit_and_loss,
            in_month,
            before,
        }
    }

    #[test]
    fn earlier_income_and_direct_postings_land_on_the_retained_earnings_account() {
        let rows = [
            row("1", true, -500, -10_000), // income: 100.00 earned before the month
            row("7", true, 200, 4_000),    // expense: 40.00 spent before the month
            row("3", false, 1_000, -2_500), // a journal entry straight to retained earnings
            row("35", false, 300, 8_500),  // a bank account
        ];
        let re = Some(("3".to_string(), "Retained Earnings".to_string()));
        let tb = staging_tb(&rows, &re);
        assert_eq!(tb["3"].1, -10_000 + 4_000 + 1_000 - 2_500);
        assert!(!tb.contains_key(RETAINED_EARNINGS), "{tb:?}");
        assert_eq!(tb["1"].1, -500);
        assert_eq!(tb["35"].1, 8_800);

        // Without the account in staging the line keeps its label, so it differs from QBO's.
        let tb = staging_tb(&rows[..2], &None);
        assert_eq!(tb[RETAINED_EARNINGS].1, -6_000);
    }
}
