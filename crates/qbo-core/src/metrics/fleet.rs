//! The metric families of one scrape, written from a `Snapshot` of Postgres (a
//! `prometheus_client` collector: the text encoder writes them after this process's own).

use std::collections::BTreeMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::snapshot::{Snapshot, WindowGroup, DURATION_BUCKETS};

#[derive(Debug)]
pub(super) struct PostgresDown;

impl Collector for PostgresDown {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let up = ConstGauge::new(0i64);
        up.encode(encoder.encode_descriptor(
            "qbo_metrics_postgres_up",
            POSTGRES_UP_HELP,
            None,
            up.metric_type(),
        )?)
    }
}

const POSTGRES_UP_HELP: &str =
    "1 when this scrape read the fleet's figures from Postgres, 0 when Postgres did not answer";

/// The fleet's figures of one scrape.
#[derive(Debug)]
pub(super) struct Fleet {
    pub snap: Snapshot,
    /// How long reading them took.
    pub seconds: f64,
}

/// Writes one family: a descriptor, then one sample per label set.
fn family<L, V>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: impl IntoIterator<Item = (L, V)>,
) -> Result<(), std::fmt::Error>
where
    L: prometheus_client::encoding::EncodeLabelSet,
    V: SampleValue,
{
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?, metric_type)?;
    }
    Ok(())
}

/// A sum over windows: its name, help and which figure.
type RowSum = (&'static str, &'static str, fn(&WindowGroup) -> i64);

/// A sample's value as a counter or a gauge.
trait SampleValue {
    fn encode(self, e: MetricEncoder, t: MetricType) -> Result<(), std::fmt::Error>;
}

impl SampleValue for i64 {
    fn encode(self, e: MetricEncoder, t: MetricType) -> Result<(), std::fmt::Error> {
        match t {
            MetricType::Counter => ConstCounter::new(u64::try_from(self).unwrap_or(0)).encode(e),
            _ => ConstGauge::new(self).encode(e),
        }
    }
}

impl SampleValue for f64 {
    fn encode(self, e: MetricEncoder, _: MetricType) -> Result<(), std::fmt::Error> {
        ConstGauge::new(self).encode(e)
    }
}

/// States a window waits or is held in: the queue's depth.
const QUEUE_STATES: [&str; 3] = ["pending", "running", "paged"];

impl Collector for Fleet {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.snap;
        let up = ConstGauge::new(1i64);
        up.encode(enc.encode_descriptor(
            "qbo_metrics_postgres_up",
            POSTGRES_UP_HELP,
            None,
            up.metric_type(),
        )?)?;
        let scrape = ConstGauge::new(self.seconds);
        scrape.encode(enc.encode_descriptor(
            "qbo_metrics_scrape_seconds",
            "How long this scrape took to read the fleet's figures from Postgres",
            None,
            scrape.metric_type(),
        )?)?;

        let by_entity = s.by_entity();
        let entity_labels = |(realm, entity, kind): &(String, String, String)| {
            [
                ("realm", realm.clone()),
                ("entity", entity.clone()),
                ("kind", kind.clone()),
            ]
        };
        let sums: [RowSum; 5] = [
            (
                "qbo_rows_loaded",
                "Records read from QBO and written to the raw zone, summed over every window of every run in ops.backfill_report (qbo report's LOADED)",
                |w| w.rows_loaded,
            ),
            ("qbo_rows_inserted", "Of the records loaded, those new to the raw zone (qbo report's INSERTED)", |w| w.inserted),
            ("qbo_rows_updated", "Of the records loaded, those that changed a raw row (qbo report's UPDATED)", |w| w.updated),
            ("qbo_rows_skipped", "Of the records loaded, those the raw zone already held unchanged (qbo report's SKIPPED)", |w| w.skipped),
            ("qbo_rows_deleted", "Raw rows marked deleted by syncs (qbo report's DELETED)", |w| w.deleted),
        ];
        for (name, help, f) in sums {
            family(
                &mut enc,
                name,
                help,
                MetricType::Counter,
                by_entity.iter().map(|(k, (w, _))| (entity_labels(k), f(w))),
            )?;
        }
        family(
            &mut enc,
            "qbo_requests",
            "Requests sent to QBO by every qbo process (a batch call counts its queries): the windows' REQUESTS of qbo report plus each run's own (planning COUNTs, sweeps)",
            MetricType::Counter,
            by_entity
                .iter()
                .map(|(k, (w, r))| (entity_labels(k), w.requests + r.requests)),
        )?;
        family(
            &mut enc,
            "qbo_retries",
            "Of those requests, the ones that were sent again (429s, 5xx, transport errors, rejected tokens)",
            MetricType::Counter,
            by_entity
                .iter()
                .map(|(k, (w, r))| (entity_labels(k), w.retries + r.retries)),
        )?;
        family(
            &mut enc,
            "qbo_windows",
            "Report rows (a backfill's windows, a sync's steps) by state, of every run",
            MetricType::Gauge,
            s.windows.iter().map(|((realm, entity, kind, status), w)| {
                (
                    [
                        ("realm", realm.clone()),
                        ("entity", entity.clone()),
                        ("kind", kind.clone()),
                        ("status", status.clone()),
                    ],
                    w.windows,
                )
            }),
        )?;
        let mut queue: BTreeMap<(String, &str), i64> = BTreeMap::new();
        for ((realm, _, _, status), w) in &s.windows {
            for state in QUEUE_STATES {
                let n = queue.entry((realm.clone(), state)).or_default();
                if status == state {
                    *n += w.windows;
                }
            }
        }
        family(
            &mut enc,
            "qbo_queue_windows",
            "Windows not settled yet, by company and state: pending (waiting for a worker), running (held under a lease), paged (waiting for its run's sweep)",
            MetricType::Gauge,
            queue.into_iter().map(|((realm, status), n)| {
                ([("realm", realm), ("status", status.to_string())], n)
            }),
        )?;
        let mut runs: BTreeMap<(String, String, String), i64> = BTreeMap::new();
        for ((realm, _, kind, status), r) in &s.runs {
            *runs
                .entry((realm.clone(), kind.clone(), status.clone()))
                .or_default() += r.runs;
        }
        family(
            &mut enc,
            "qbo_runs",
            "Runs by company, kind (backfill, sync) and state",
            MetricType::Gauge,
            runs.into_iter().map(|((realm, kind, status), n)| {
                ([("realm", realm), ("kind", kind), ("status", status)], n)
            }),
        )?;

        let mut hist = enc.encode_descriptor(
            "qbo_window_duration_seconds",
            "How long finished windows (success or error) took, claim to settlement of their last attempt, by company and kind",
            None,
            MetricType::Histogram,
        )?;
        for ((realm, kind), d) in &s.durations {
            let labels = [("realm", realm.clone()), ("kind", kind.clone())];
            let buckets: Vec<(f64, u64)> = DURATION_BUCKETS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(d.buckets.iter().copied())
                .collect();
            hist.encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(d.sum, d.count, &buckets, None)?;
        }

        family(
            &mut enc,
            "qbo_company_status",
            "1 for each company of qbo companies, labelled with its status (active, needs_reauth, paused)",
            MetricType::Gauge,
            s.companies.iter().map(|(realm, status)| {
                ([("realm", realm.clone()), ("status", status.clone())], 1i64)
            }),
        )?;
        family(
            &mut enc,
            "qbo_refresh_token_expires_in_seconds",
            "Seconds until the company's refresh token expires (negative: expired); none until QBO has issued one to qbo",
            MetricType::Gauge,
            s.token_expiry
                .iter()
                .map(|(realm, secs)| ([("realm", realm.clone())], *secs)),
        )?;
        family(
            &mut enc,
            "qbo_sync_watermark_lag_seconds",
            "Seconds between the company's sync watermark for the entity (every change before it is in the raw zone) and now",
            MetricType::Gauge,
            s.watermark_lag.iter().map(|((realm, entity), lag)| {
                ([("realm", realm.clone()), ("entity", entity.clone())], *lag)
            }),
        )?;
        let reads = ConstGauge::new(s.month_reads);
        reads.encode(enc.encode_descriptor(
            "qbo_app_month_reads",
            "The app's QBO requests this calendar month (UTC), every process and company together (see QBO_MONTHLY_READ_CAP)",
            None,
            reads.metric_type(),
        )?)?;
        Ok(())
    }
}
