//! `/metrics`: Prometheus text that a strict parser accepts, whose fleet counters equal what
//! `qbo report` says (they are computed from the same tables), whose process counters see the
//! 429s the sandbox injected, and that never shows a secret.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use qbo::sandbox::Faults;
use tokio::time::Instant;

use crate::common::*;
use crate::harness::Served;

const SERVE_TOKEN: &str = "s3rve-t0ken-for-metrics-0123456789";
const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Labels,
    value: f64,
}

/// The Prometheus text format (0.0.4), strictly: HELP and TYPE once per family and before
/// its samples, each family's samples together, names and labels well formed, values
/// numbers, no series twice, histograms with cumulative buckets ending in +Inf = _count.
/// Every name must start with `qbo_`.
fn parse(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, ()> = HashMap::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut finished_families: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    assert!(text.ends_with('\n'), "the text ends with a newline");
    for (n, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            match kw {
                "HELP" => {
                    assert!(valid_name(name), "{at}");
                    assert!(helps.insert(name.into(), ()).is_none(), "HELP twice: {at}");
                }
                "TYPE" => {
                    assert!(valid_name(name), "{at}");
                    let t = parts.next().unwrap_or("");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                        "{at}"
                    );
                    assert!(
                        types.insert(name.into(), t.into()).is_none(),
                        "TYPE twice: {at}"
                    );
                    assert!(
                        !samples.iter().any(|s| family_of(&s.name, &types) == name),
                        "TYPE after samples: {at}"
                    );
                    if let Some(prev) = current.replace(name.to_string()) {
                        finished_families.push(prev);
                    }
                }
                _ => {}
            }
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "{at}");
        let (name, labels, rest) = split_sample(line, &at);
        assert!(valid_name(&name), "{at}");
        assert!(name.starts_with("qbo_"), "not prefixed qbo_: {at}");
        let family = family_of(&name, &types);
        assert!(types.contains_key(&family), "sample without TYPE: {at}");
        assert!(
            !finished_families.contains(&family),
            "family {family} interleaved: {at}"
        );
        let mut fields = rest.split_whitespace();
        let value = parse_value(fields.next().unwrap_or(""), &at);
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .unwrap_or_else(|_| panic!("timestamp: {at}"));
        }
        assert!(fields.next().is_none(), "{at}");
        assert!(
            seen.insert((name.clone(), labels.clone())),
            "series twice: {at}"
        );
        if types[&family] == "counter" {
            assert!(value >= 0.0, "negative counter: {at}");
        }
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    check_histograms(&samples, &types);
    samples
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to: its own name, or a histogram's without the suffix.
fn family_of(name: &str, types: &HashMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).is_some_and(|t| t == "histogram") {
                return base.to_string();
            }
        }
    }
    name.to_string()
}

fn split_sample(line: &str, at: &str) -> (String, Labels, String) {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value: {at}"));
    let name = line[..name_end].to_string();
    let mut labels = Labels::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            // A label name, `="`, an escaped value, `"`, then `,` or `}`.
            let start = chars.peek().map(|(i, _)| *i).unwrap();
            if body[start..].starts_with('}') {
                chars.next();
                break;
            }
            let eq = body[start..]
                .find("=\"")
                .unwrap_or_else(|| panic!("label: {at}"));
            let key = &body[start..start + eq];
            assert!(
                valid_name(key) && !key.contains(':'),
                "label name {key:?}: {at}"
            );
            for _ in 0..eq + 2 {
                chars.next();
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next().unwrap_or_else(|| panic!("open value: {at}"));
                match c {
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?}: {at}"),
                    },
                    '"' => break,
                    '\n' => panic!("raw newline: {at}"),
                    c => value.push(c),
                }
            }
            assert!(
                labels.insert(key.to_string(), value).is_none(),
                "label twice: {at}"
            );
            match chars.next().map(|(_, c)| c) {
                Some(',') => {}
                Some('}') => break,
                other => panic!("after a label {other:?}: {at}"),
            }
        }
        let consumed = chars.peek().map(|(i, _)| *i).unwrap_or(body.len());
        rest = &body[consumed..];
    }
    assert!(rest.starts_with(' '), "no space before the value: {at}");
    (name, labels, rest.to_string())
}

fn parse_value(v: &str, at: &str) -> f64 {
    match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().unwrap_or_else(|_| panic!("value {v:?}: {at}")),
    }
}

fn check_histograms(samples: &[Sample], types: &HashMap<String, String>) {
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for s in samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let mut labels = s.labels.clone();
            let le = labels.remove("le").expect("a bucket has le");
            series
                .entry(labels)
                .or_default()
                .push((parse_value(&le, "le"), s.value));
        }
        for (labels, buckets) in series {
            assert!(
                buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{family}{labels:?}: buckets sorted and cumulative"
            );
            let last = buckets.last().unwrap();
            assert_eq!(last.0, f64::INFINITY, "{family}{labels:?} ends at +Inf");
            let count = value(samples, &format!("{family}_count"), &labels);
            assert_eq!(last.1, count, "{family}{labels:?}: +Inf = _count");
            assert!(
                samples
                    .iter()
                    .any(|s| s.name == format!("{family}_sum") && s.labels == labels),
                "{family}{labels:?} has _sum"
            );
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The value of exactly one series.
#[track_caller]
fn value(samples: &[Sample], name: &str, labels: &Labels) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && &s.labels == labels)
        .collect();
    assert_eq!(found.len(), 1, "{name}{labels:?} in {samples:#?}");
    found[0].value
}

/// Sum of a metric over the series whose labels include `having`.
fn sum(samples: &[Sample], name: &str, having: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            having
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(served: &Served) -> (String, Vec<Sample>) {
    let resp = served
        .req(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = resp.text().await.unwrap();
    let samples = parse(&text);
    (text, samples)
}

/// `qbo report --all-runs --format json`: every report row.
async fn report_rows(w: &World, env: &[(&str, Option<&str>)]) -> Vec<serde_json::Value> {
    let r = w
        .run_with(&["report", "--all-runs", "--format", "json"], env)
        .await;
    r.assert_code(0);
    serde_json::from_str(&r.stdout).unwrap()
}

/// `qbo report --all-runs`'s cost lines: each backfill run's requests (its windows' and its
/// own), summed per entity.
async fn report_requests(w: &World, env: &[(&str, Option<&str>)]) -> BTreeMap<String, f64> {
    let r = w.run_with(&["report", "--all-runs"], env).await;
    r.assert_code(0);
    let mut out = BTreeMap::new();
    for line in r.stdout.lines().filter(|l| l.starts_with("run ")) {
        // run 1a2b3c4d invoices: requests 7 (minimum 2, 3.5x)
        let entity = line
            .split_whitespace()
            .nth(2)
            .unwrap()
            .trim_end_matches(':');
        let n: f64 = line
            .split("requests ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        *out.entry(entity.to_string()).or_default() += n;
    }
    out
}

/// Every counter and window state of the report rows, against the same figures in /metrics.
fn assert_matches_report(samples: &[Sample], rows: &[serde_json::Value]) {
    let mut by_entity: BTreeMap<(String, String, String), [i64; 6]> = BTreeMap::new();
    let mut by_state: BTreeMap<(String, String, String, String), i64> = BTreeMap::new();
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap().to_string();
        let key = (s("realm_id"), s("entity"), s("kind"));
        let e = by_entity.entry(key.clone()).or_default();
        for (i, f) in [
            "row_count",
            "inserted",
            "updated",
            "skipped",
            "deleted",
            "retries",
        ]
        .iter()
        .enumerate()
        {
            e[i] += r[*f].as_i64().unwrap();
        }
        *by_state
            .entry((key.0, key.1, key.2, s("status")))
            .or_default() += 1;
    }
    assert!(!by_entity.is_empty(), "the report has rows");
    for ((realm, entity, kind), sums) in &by_entity {
        let l = labels(&[("realm", realm), ("entity", entity), ("kind", kind)]);
        for (i, name) in [
            "qbo_rows_loaded_total",
            "qbo_rows_inserted_total",
            "qbo_rows_updated_total",
            "qbo_rows_skipped_total",
            "qbo_rows_deleted_total",
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(value(samples, name, &l), sums[i] as f64, "{name}{l:?}");
        }
    }
    for ((realm, entity, kind, status), n) in &by_state {
        let l = labels(&[
            ("realm", realm),
            ("entity", entity),
            ("kind", kind),
            ("status", status),
        ]);
        assert_eq!(value(samples, "qbo_windows", &l), *n as f64, "{l:?}");
    }
    assert_eq!(
        sum(samples, "qbo_windows", &[]),
        rows.len() as f64,
        "no window state the report does not show"
    );
    // Every finished window is in the duration histogram of its company and kind.
    let finished = rows
        .iter()
        .filter(|r| ["success", "error"].contains(&r["status"].as_str().unwrap()))
        .count();
    assert_eq!(
        sum(samples, "qbo_window_duration_seconds_count", &[]),
        finished as f64
    );
}

/// The fleet's figures without the ones that move with the clock or the process.
fn fleet_part(samples: &[Sample]) -> Vec<Sample> {
    samples
        .iter()
        .filter(|s| {
            !s.name.starts_with("qbo_process_")
                && !s.name.starts_with("qbo_metrics_scrape")
                && !s.name.starts_with("qbo_refresh_token_expires")
                && !s.name.starts_with("qbo_sync_watermark_lag")
                // The workers publish their reads to ops.app_reads a little after sending.
                && s.name != "qbo_app_month_reads"
        })
        .cloned()
        .collect()
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!s.is_empty());
        assert!(!text.contains(s), "a secret is in /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_match_the_report_count_429s_and_show_no_secret() {
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    for entity in ["invoices", "customers"] {
        w.run(&[
            "backfill",
            entity,
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--chunk-days",
            "15",
            "--page-size",
            "20",
            "--enqueue",
        ])
        .await
        .assert_code(0);
    }
    // Every 5th query answers 429: the workers pause (20 ms here) and send it again.
    w.faults(Faults {
        throttle_every: 5,
        ..Faults::default()
    });
    let env = [("QBO_SERVE_TOKEN", Some(SERVE_TOKEN))];
    let worker = Served::start_with(&w, &["--workers", "2"], &env).await;
    let api_only = Served::start_with(&w, &["--workers", "0"], &env).await;

    // Unauthenticated scrapes are refused like every other route.
    let anon = reqwest::get(worker.url("/metrics")).await.unwrap();
    assert_eq!(anon.status().as_u16(), 401);

    // Until the queue is empty and both runs succeeded (as /metrics itself says).
    let deadline = Instant::now() + Duration::from_secs(300);
    let (text, samples) = loop {
        let (text, samples) = scrape(&worker).await;
        let queued = sum(&samples, "qbo_queue_windows", &[("realm", &realm)]);
        let succeeded = sum(
            &samples,
            "qbo_runs",
            &[("realm", &realm), ("status", "success")],
        );
        if queued == 0.0 && succeeded == 2.0 {
            break (text, samples);
        }
        assert!(
            Instant::now() < deadline,
            "the workers did not finish: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        value(&samples, "qbo_metrics_postgres_up", &Labels::new()),
        1.0
    );

    // The fleet's counters are the report's.
    let rows = report_rows(&w, &[]).await;
    assert_matches_report(&samples, &rows);
    let requests = report_requests(&w, &[]).await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    for (entity, n) in &requests {
        let l = labels(&[("realm", &realm), ("entity", entity), ("kind", "backfill")]);
        assert_eq!(value(&samples, "qbo_requests_total", &l), *n, "{entity}");
    }

    // This process sent every request of the fleet (planning asked QBO nothing) and saw
    // every 429 the sandbox answered.
    let stats = w.realm_stats(&realm);
    assert!(stats.throttled > 0, "the sandbox throttled");
    let throttled = value(
        &samples,
        "qbo_process_throttled_total",
        &labels(&[("realm", &realm)]),
    );
    assert_eq!(throttled, stats.throttled as f64);
    assert_eq!(
        sum(
            &samples,
            "qbo_process_requests_total",
            &[("realm", &realm), ("outcome", "throttled")]
        ),
        stats.throttled as f64
    );
    assert_eq!(
        sum(
            &samples,
            "qbo_process_retries_total",
            &[("realm", &realm), ("reason", "throttled")]
        ),
        stats.throttled as f64
    );
    assert_eq!(
        sum(&samples, "qbo_process_requests_total", &[("realm", &realm)]),
        sum(&samples, "qbo_requests_total", &[("realm", &realm)]),
        "this process's requests are the fleet's"
    );
    assert_eq!(
        sum(&samples, "qbo_process_retries_total", &[("realm", &realm)]),
        sum(&samples, "qbo_retries_total", &[("realm", &realm)]),
    );

    // The file store's refresh token (the sandbox's lasts 101 days).
    let expires = value(
        &samples,
        "qbo_refresh_token_expires_in_seconds",
        &labels(&[("realm", &realm)]),
    );
    assert!(expires > 8_000_000.0 && expires <= 8_726_400.0, "{expires}");

    // An API-only instance on the same database tells the fleet's figures alike, and
    // counted no request of its own.
    let (other_text, other) = scrape(&api_only).await;
    assert_eq!(fleet_part(&other), fleet_part(&samples));
    assert_eq!(sum(&other, "qbo_process_requests_total", &[]), 0.0);

    let secrets = [
        w.initial_refresh_token.clone(),
        w.refresh_token(&realm),
        w.sandbox.client_secret().to_string(),
        SERVE_TOKEN.to_string(),
    ];
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secret(&text, &secrets);
    assert_no_secret(&other_text, &secrets);
    assert_eq!(worker.terminate().await, Some(0));
    assert_eq!(api_only.terminate().await, Some(0));
}

/// With `QBO_TOKEN_STORE=postgres`, any instance reads the refresh token's expiry from
/// ops.oauth_tokens (no key needed), and a backfill run by the CLI is counted alike: the
/// figures come from Postgres, not from whoever loaded them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_token_store_tells_every_instance_the_refresh_token_expiry() {
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    let env = [
        ("QBO_TOKEN_STORE", Some("postgres")),
        ("QBO_TOKEN_KEY", Some(KEY)),
    ];
    w.run_with(
        &[
            "backfill",
            "customers",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
        ],
        &env,
    )
    .await
    .assert_code(0);
    let served = Served::start_with(
        &w,
        &["--workers", "0"],
        &[
            ("QBO_TOKEN_STORE", Some("postgres")),
            ("QBO_TOKEN_KEY", None),
            ("QBO_SERVE_TOKEN", Some(SERVE_TOKEN)),
        ],
    )
    .await;
    let (text, samples) = scrape(&served).await;
    let expires = value(
        &samples,
        "qbo_refresh_token_expires_in_seconds",
        &labels(&[("realm", &realm)]),
    );
    assert!(expires > 8_000_000.0 && expires <= 8_726_400.0, "{expires}");
    assert_matches_report(&samples, &report_rows(&w, &env).await);
    assert_eq!(sum(&samples, "qbo_process_requests_total", &[]), 0.0);
    assert_no_secret(
        &text,
        &[
            &w.initial_refresh_token,
            &w.refresh_token(&realm),
            w.sandbox.client_secret(),
            SERVE_TOKEN,
            KEY,
        ],
    );
    assert_eq!(served.terminate().await, Some(0));
}
