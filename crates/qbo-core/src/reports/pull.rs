//! Loading reports: every piece of the range asked for in turn, a piece QBO finds too large
//! split and asked for again, each answer checked (`parse`) and stored (`store::reports`).

use std::collections::VecDeque;

use chrono::NaiveDate;
use serde::Serialize;

use super::parse::{self, Read};
use super::{pieces, split, Method, Period, ReportError, ReportName, Request};
use crate::client::{QboClient, RequestCounters};
use crate::store::reports::{self as stored, Piece};
use crate::store::PgStore;

type Range = (NaiveDate, NaiveDate);

/// What loading one report over the range did.
#[derive(Debug, Clone, Serialize)]
pub struct Pulled {
    pub report: &'static str,
    /// Pieces stored (after splitting).
    pub pieces: usize,
    /// Pieces QBO answered were too large, each replaced by its split.
    pub splits: usize,
    pub rows: usize,
    pub cells: usize,
    pub requests: u32,
    pub retries: u32,
}

pub struct Job<'a> {
    pub client: &'a QboClient,
    pub store: &'a PgStore,
    pub realm_id: &'a str,
    pub method: Method,
    pub period: Period,
}

impl Job<'_> {
    /// Loads `name` over `[start, end]`. Stops at the first piece that fails; the pieces
    /// stored before it stay (loading again replaces them).
    pub async fn pull(
        &self,
        name: ReportName,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<Pulled, ReportError> {
        let mut counters = RequestCounters::default();
        let mut out = Pulled {
            report: name.qbo_name(),
            pieces: 0,
            splits: 0,
            rows: 0,
            cells: 0,
            requests: 0,
            retries: 0,
        };
        let mut todo: VecDeque<(Range, Option<Range>)> = pieces(start, end, self.period)
            .into_iter()
            .map(|p| (p, None))
            .collect();
        let result = async {
            while let Some(((from, to), split_from)) = todo.pop_front() {
                let req = Request::new(name, from, to, self.method);
                match self.one(&req, split_from, &mut counters).await? {
                    Some((rows, cells)) => {
                        out.pieces += 1;
                        out.rows += rows;
                        out.cells += cells;
                    }
                    None if name.is_as_of() => {
                        return Err(ReportError::AsOfTooLarge {
                            report: name.qbo_name(),
                            day: to,
                        })
                    }
                    None => {
                        let parts = split(from, to).ok_or(ReportError::DayTooLarge {
                            report: name.qbo_name(),
                            day: from,
                        })?;
                        tracing::info!(report = name.qbo_name(), %from, %to, parts = parts.len(),
                            "QBO says the report is too large; asking for it in smaller pieces");
                        out.splits += 1;
                        for p in parts.into_iter().rev() {
                            todo.push_front((p, Some((from, to))));
                        }
                    }
                }
            }
            Ok(())
        }
        .await;
        out.requests = counters.requests;
        out.retries = counters.retries;
        result.map(|()| out)
    }

    /// Asks for one piece and stores it: Some((rows, cells)), or None when QBO found it too
    /// large.
    async fn one(
        &self,
        req: &Request,
        split_from: Option<(NaiveDate, NaiveDate)>,
        counters: &mut RequestCounters,
    ) -> Result<Option<(usize, usize)>, ReportError> {
        let params = req.params();
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let qbo_err = |source| ReportError::Qbo {
            report: req.name.qbo_name(),
            start: req.start,
            end: req.end,
            source,
        };
        let answer = self
            .client
            .fetch_report(req.name.qbo_name(), &params, counters, |v| {
                parse::read(v, req).map(drop)
            })
            .await
            .map_err(qbo_err)?;
        let report = match parse::read(&answer.value, req) {
            Ok(Read::Complete(r)) => r,
            Ok(Read::TooLarge) => return Ok(None),
            Err(why) => return Err(ReportError::Shape(req.params_text(), why)),
        };
        let piece = Piece {
            realm_id: self.realm_id,
            request: req,
            split_from,
            payload: &answer.value,
            intuit_tid: answer.intuit_tid.as_deref(),
            report: &report,
        };
        let cells = stored::save(self.store.pool(), &piece)
            .await
            .map_err(|source| ReportError::Store {
                report: req.name.qbo_name(),
                start: req.start,
                end: req.end,
                source,
            })?;
        Ok(Some((report.rows.len(), cells)))
    }
}
