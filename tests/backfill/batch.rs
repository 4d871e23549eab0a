//! COUNT(*) in batch calls (`QuerySource::fetch_counts`), through the library against the
//! sandbox over HTTP: 30 queries a call, one answer per query in order, a Fault fails only
//! its query, a call QBO refuses or spoils is retried as a whole, and the company's 40 batch
//! calls a minute are waited for, never lost.

use std::sync::Arc;
use std::time::Duration;

use chrono::{Days, NaiveDate};
use qbo::auth::store::MemoryStore;
use qbo::auth::TokenManager;
use qbo::client::{Answer, ClientError, Count, QboClient, QuerySource, RequestCounters};
use qbo::config::{self, QboSettings, RateLimits, RetryPolicy, TokenStoreSpec};
use qbo::sandbox::{Faults, Malformation, Sandbox};
use tokio_util::sync::CancellationToken;

use crate::common::*;

fn client(sb: &Sandbox, limits: RateLimits) -> QboClient {
    let url = |u: String| config::parse_url("sandbox", &u).unwrap();
    let settings = QboSettings {
        client_id: sb.client_id().to_string(),
        client_secret: sb.client_secret().to_string().into(),
        realm_id: sb.realm_id().to_string(),
        api_base_url: url(sb.api_base_url()),
        token_url: url(sb.token_url()),
        authorize_url: url(sb.authorize_url()),
        minor_version: config::MIN_MINOR_VERSION,
        token_store: TokenStoreSpec::Keyring,
        seed_refresh_token: Some(sb.current_refresh_token().into()),
    };
    let tokens = Arc::new(TokenManager::new(&settings, Arc::new(MemoryStore::default())).unwrap());
    let retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        throttle_pause: Duration::from_millis(200),
        ..RetryPolicy::default()
    };
    QboClient::new(&settings, tokens, retry, &limits, CancellationToken::new()).unwrap()
}

/// COUNT(*) of the invoices last updated on each of `days` days from 2024-01-01 (the
/// company's zone), one query a day.
fn daily_counts(days: u64) -> Vec<String> {
    let first = date("2024-01-01");
    let day = |d: NaiveDate| format!("{d}T00:00:00-08:00");
    (0..days)
        .map(|i| {
            let lo = first + Days::new(i);
            format!(
                "SELECT COUNT(*) FROM Invoice WHERE MetaData.LastUpdatedTime >= '{}' AND MetaData.LastUpdatedTime < '{}'",
                day(lo),
                day(lo + Days::new(1))
            )
        })
        .collect()
}

/// What single COUNT(*) requests say, one by one.
async fn single_counts(c: &QboClient, queries: &[String]) -> Vec<u64> {
    let mut counters = RequestCounters::default();
    let mut out = Vec::new();
    for q in queries {
        out.push(c.fetch_count(q, &mut counters).await.unwrap().value.0);
    }
    out
}

fn count(slot: &Result<Answer<Count>, ClientError>) -> u64 {
    let answer = slot.as_ref().expect("a count");
    assert!(answer.value.1.is_some(), "every item carries QBO's time");
    answer.value.0
}

#[tokio::test]
async fn thirty_one_counts_are_two_batch_calls_and_say_what_single_counts_say() {
    let sb = sandbox(small_company()).await;
    let c = client(&sb, RateLimits::default());
    let queries = daily_counts(31);
    let expected = single_counts(&c, &queries).await;
    assert!(
        expected.iter().sum::<u64>() > 0 && expected.contains(&0),
        "{expected:?}"
    );
    let before = sb.stats();

    let mut counters = RequestCounters::default();
    let got = c.fetch_counts(&queries, &mut counters).await.unwrap();
    let counts: Vec<u64> = got.iter().map(count).collect();
    assert_eq!(counts, expected);
    let stats = sb.stats();
    assert_eq!(stats.batch_requests - before.batch_requests, 2);
    assert_eq!(stats.batch_items - before.batch_items, 31);
    assert_eq!(
        stats.count_requests, before.count_requests,
        "no single COUNT was sent"
    );
    assert_eq!(
        (counters.requests, counters.retries),
        (31, 0),
        "QBO meters the items"
    );

    let mut counters = RequestCounters::default();
    assert!(c.fetch_counts(&[], &mut counters).await.unwrap().is_empty());
    assert_eq!(sb.stats().batch_requests, stats.batch_requests);
    sb.shutdown().await;
}

/// A Fault in one item (`batch_item_fault_every`, or the window `fail_window_containing`
/// fails) fails that query alone, with QBO's code; every other count stands.
#[tokio::test]
async fn a_faulted_item_fails_only_its_own_query() {
    let sb = sandbox(small_company()).await;
    let c = client(&sb, RateLimits::default());
    let queries = daily_counts(31);
    let expected = single_counts(&c, &queries).await;

    // Items are numbered across the two calls: the 7th, 14th, 21st and 28th fail.
    sb.set_faults(Faults {
        batch_item_fault_every: 7,
        ..Faults::default()
    });
    let mut counters = RequestCounters::default();
    let got = c.fetch_counts(&queries, &mut counters).await.unwrap();
    assert_eq!(got.len(), 31);
    for (i, slot) in got.iter().enumerate() {
        if (i + 1) % 7 == 0 {
            let e = slot.as_ref().unwrap_err();
            assert!(e.to_string().contains("code 10000"), "{e}");
        } else {
            assert_eq!(count(slot), expected[i], "query {i}");
        }
    }

    // 2024-01-10 12:00 in the company's zone is inside the 10th day's window only.
    sb.set_faults(Faults {
        fail_window_containing: Some("2024-01-10T12:00:00-08:00".into()),
        ..Faults::default()
    });
    let got = c.fetch_counts(&queries, &mut counters).await.unwrap();
    let failed: Vec<usize> = (0..31).filter(|i| got[*i].is_err()).collect();
    assert_eq!(failed, [9]);
    let e = got[9].as_ref().unwrap_err();
    assert!(e.to_string().contains("10000"), "{e}");
    assert!(e.is_retryable(), "a SystemFault may pass on another try");
    for i in (0..31).filter(|i| *i != 9) {
        assert_eq!(count(&got[i]), expected[i], "query {i}");
    }
    assert_eq!(counters.requests, 62);
    sb.shutdown().await;
}

/// A whole call QBO answers with a 5xx is retried; one that keeps answering what qbo does
/// not recognise fails the call after its attempts, never as zeros.
#[tokio::test]
async fn a_failed_call_is_retried_and_a_spoiled_one_is_never_zeros() {
    let sb = sandbox(small_company()).await;
    let c = client(&sb, RateLimits::default());
    let queries = daily_counts(31);
    let expected = single_counts(&c, &queries).await;

    // Requests are numbered together with queries: every third call answers 500 or 503.
    sb.set_faults(Faults {
        server_error_every: 3,
        ..Faults::default()
    });
    let mut counters = RequestCounters::default();
    let got = c.fetch_counts(&queries, &mut counters).await.unwrap();
    assert_eq!(got.iter().map(count).collect::<Vec<_>>(), expected);
    assert!(counters.retries > 0, "{counters:?}");
    assert_eq!(counters.requests, 31 + counters.retries);
    assert!(sb.stats().server_errors > 0);

    for malformation in [Malformation::TruncatedJson, Malformation::Html200] {
        sb.set_faults(Faults {
            malformed_every: 1,
            malformation,
            ..Faults::default()
        });
        let mut counters = RequestCounters::default();
        let err = c.fetch_counts(&queries, &mut counters).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::GaveUp { attempts: 3, last } if matches!(**last, ClientError::Malformed(_))),
            "{malformation:?}: {err:?}"
        );
    }
    sb.shutdown().await;
}

/// The sandbox refuses the 41st batch call of its window with a 429; the client pauses the
/// company and asks again until the window frees, and every count arrives. (The client's own
/// budget is lifted here so that it meets the sandbox's.)
#[tokio::test]
async fn the_41st_batch_call_of_a_window_is_refused_and_the_client_waits_for_the_window() {
    let sb = sandbox(small_company()).await;
    let c = client(
        &sb,
        RateLimits {
            batch_calls_per_minute: 1000,
            ..RateLimits::default()
        },
    );
    // A window a test can wait out; 41 calls on this machine take far less.
    sb.set_faults(Faults {
        rate_window_secs: 5,
        ..Faults::default()
    });
    let queries = vec!["SELECT COUNT(*) FROM Invoice".to_string(); 41 * 30];
    let mut counters = RequestCounters::default();
    let got = c.fetch_counts(&queries, &mut counters).await.unwrap();
    assert!(got.iter().all(|slot| count(slot) == 240));
    let stats = sb.stats();
    let refused = stats
        .request_log
        .iter()
        .filter(|e| e.kind == "batch" && e.status == 429)
        .inspect(|e| assert_eq!(e.fault.as_deref(), Some("batch_per_minute")))
        .count();
    assert!(refused >= 1, "no batch call was refused");
    assert_eq!(stats.batch_requests, 41 + refused as u64);
    assert_eq!(stats.batch_items, 41 * 30, "refused calls carry nothing");
    assert_eq!(counters.requests as usize, (41 + refused) * 30);
    sb.shutdown().await;
}

/// Log lines, kept for the test to read.
#[derive(Clone, Default)]
struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The company's batch calls are shared by its qbo processes like its requests: a process
/// that starts after another spent the minute's batch calls waits for them to age out
/// instead of meeting the 429 of a 41st call. (A current-thread test: the log subscriber
/// set here sees every line the clients log.)
#[tokio::test]
async fn a_new_process_counts_the_batch_calls_other_processes_made_this_minute() {
    let lines = Lines::default();
    let writer = lines.clone();
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .finish(),
    );
    let sb = sandbox(small_company()).await;
    let db = TestDb::unborn().await;
    let store = qbo::store::PgStore::connect_and_migrate(&db.url.clone().into())
        .await
        .unwrap();
    let budget = || qbo::store::throttle::SharedBudget::new(store.pool().clone(), sb.realm_id());
    let limits = || RateLimits {
        batch_calls_per_minute: 2,
        ..RateLimits::default()
    };
    let queries = daily_counts(31);

    let first = client(&sb, limits()).share_budget(budget()).await;
    let mut counters = RequestCounters::default();
    first.fetch_counts(&queries, &mut counters).await.unwrap();
    first.finish().await;
    drop(first);
    assert_eq!(sb.stats().batch_requests, 2);

    let second = client(&sb, limits()).share_budget(budget()).await;
    let waited = async {
        while !lines
            .text()
            .contains("waiting for the company's batch-call budget")
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        r = second.fetch_counts(&queries[..1], &mut counters) => {
            panic!("the second process sent a batch call at once: {r:?}\n{}", lines.text())
        }
        _ = tokio::time::timeout(Duration::from_secs(60), waited) => {}
    }
    assert!(
        lines
            .text()
            .contains("waiting for the company's batch-call budget"),
        "{}",
        lines.text()
    );
    assert_eq!(
        sb.stats().batch_requests,
        2,
        "the second process spent a used budget"
    );
    sb.shutdown().await;
}
