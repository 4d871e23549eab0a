//! Malformed answers: each either fails its chunk with an error that names the problem,
//! after the complete pages before it were committed and nothing of the broken one, or is
//! handled correctly (unknown fields in records are kept as they came, a numeric `time` is
//! ignored).
//!
//! An envelope without the entity's list: QBO answers a query that matched nothing with
//! `"QueryResponse": {}`, so a missing list is an empty page only when nothing else claims
//! rows. With `maxResults` above zero (what the sandbox sends here) or another non-empty
//! list, qbo calls the answer malformed and retries it; reading it as "no more rows" would
//! end the window early and silently lose the rest of it.

use qbo::sandbox::{Faults, Malformation};

use crate::common::*;

const PAGE: i64 = 10;

fn one_chunk(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec![
        "backfill",
        "invoices",
        "--start",
        "2024-01-01",
        "--end",
        "2024-03-31",
        "--chunk-days",
        "91",
        "--page-size",
        "10",
    ];
    args.extend_from_slice(extra);
    args
}

struct ChunkRow {
    status: String,
    pages: i32,
    error: Option<String>,
    retries: i32,
}

async fn the_chunk(w: &World) -> ChunkRow {
    let pool = w.db.pool().await;
    let (status, pages, error, retries) = sqlx::query_as(
        "SELECT status, pages, error_message, retries FROM ops.backfill_report
         ORDER BY started_at DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    ChunkRow {
        status,
        pages,
        error,
        retries,
    }
}

async fn raw_rows(w: &World) -> i64 {
    let pool = w.db.pool().await;
    sqlx::query_scalar("SELECT count(*) FROM raw.qb_invoices")
        .fetch_one(&pool)
        .await
        .unwrap()
}

/// The 4th request (the 3rd page) is broken and no retry is allowed: the chunk ends
/// `error` naming the problem, with pages 1 and 2 committed and nothing of page 3. Then
/// the same fault every 3rd request is retried past (when `retryable`), and the data ends exact.
async fn broken_page(faults: Faults, says: &str, retryable: bool) {
    let w = World::new(small_company()).await;
    w.faults(Faults {
        malformed_every: 4,
        ..faults.clone()
    });
    let run = w.run(&one_chunk(&["--max-attempts", "1"])).await;
    run.assert_code(1);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(run.stdout.contains("--retry-failed"), "{}", run.stdout);
    let chunk = the_chunk(&w).await;
    assert_eq!(chunk.status, "error");
    let error = chunk.error.unwrap_or_default();
    assert!(error.contains(says), "`{error}` should say `{says}`");
    assert_eq!(
        chunk.pages, 2,
        "the pages before the broken one were committed"
    );
    assert_eq!(raw_rows(&w).await, 2 * PAGE, "nothing of the broken page");

    w.faults(Faults {
        malformed_every: 3,
        ..faults
    });
    let retry = w
        .run(&[
            "backfill",
            "invoices",
            "--retry-failed",
            "--max-attempts",
            "4",
        ])
        .await;
    assert!(!retry.stderr.contains("panicked"), "{}", retry.stderr);
    let chunk = the_chunk(&w).await;
    if retryable {
        retry.assert_code(0);
        assert_eq!(chunk.status, "success");
        assert!(chunk.retries > 0, "the broken answers were retried");
        w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
            .await;
    } else {
        retry.assert_code(1);
        assert_eq!(chunk.status, "error");
        assert_eq!(chunk.retries, 0, "a fault no retry can fix is not retried");
        assert!(chunk.error.unwrap_or_default().contains(says));
    }
}

fn malformed(m: Malformation) -> Faults {
    Faults {
        malformation: m,
        ..Faults::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_json_fails_the_chunk_cleanly() {
    broken_page(
        malformed(Malformation::TruncatedJson),
        "malformed QBO response: response is not a JSON object",
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_page_with_200_fails_the_chunk_cleanly() {
    broken_page(
        malformed(Malformation::Html200),
        "QBO answered XML/HTML instead of JSON: <!DOCTYPE html>",
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_page_with_502_fails_the_chunk_cleanly() {
    broken_page(
        malformed(Malformation::Html502),
        "QBO server error (HTTP 502): QBO answered XML/HTML instead of JSON",
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_without_the_entity_list_is_not_taken_for_the_end() {
    broken_page(
        malformed(Malformation::EnvelopeWithoutEntity),
        "QueryResponse claims 10 results but has no `Invoice` list",
        true,
    )
    .await;
}

/// A key no query answer has (`nextPageToken`) in `QueryResponse`: qbo cannot tell what the
/// answer means, so it is neither data nor "no more rows".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_in_query_response_is_not_an_answer() {
    broken_page(
        malformed(Malformation::UnknownQueryResponseKey),
        "QueryResponse holds `nextPageToken`",
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_fault_inside_200_fails_at_once() {
    broken_page(
        malformed(Malformation::ValidationFaultIn200),
        "QBO fault (HTTP 200, code 4001, ValidationFault): Invalid query",
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_fault_inside_200_is_retried() {
    // `fault_in_200_every` numbers requests like `malformed_every`.
    let w = World::new(small_company()).await;
    w.faults(Faults {
        fault_in_200_every: 4,
        ..Faults::default()
    });
    let run = w.run(&one_chunk(&["--max-attempts", "1"])).await;
    run.assert_code(1);
    let chunk = the_chunk(&w).await;
    assert_eq!((chunk.status.as_str(), chunk.pages), ("error", 2));
    let error = chunk.error.unwrap_or_default();
    assert!(error.contains("QBO server error (HTTP 200)"), "{error}");
    assert_eq!(raw_rows(&w).await, 2 * PAGE);
    w.faults(Faults {
        fault_in_200_every: 3,
        ..Faults::default()
    });
    w.run(&["backfill", "invoices", "--retry-failed"])
        .await
        .assert_code(0);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_kept_and_a_numeric_time_is_tolerated() {
    let w = World::new(small_company()).await;
    w.faults(Faults {
        malformed_every: 1,
        ..malformed(Malformation::UnknownFields)
    });
    w.run(&one_chunk(&[])).await.assert_code(0);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
    let pool = w.db.pool().await;
    let (rows, kept): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE payload->'FutureField' =
             '{\"AddedIn\": \"minorversion 99\", \"Values\": [1, 2.5, null, \"ü\"]}'::jsonb)
         FROM raw.qb_invoices",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (rows, kept),
        (240, 240),
        "unknown fields are stored as they came"
    );

    w.faults(Faults {
        malformed_every: 1,
        ..malformed(Malformation::NumericTime)
    });
    let run = w
        .run(&[
            "backfill",
            "customers",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--page-size",
            "7",
        ])
        .await;
    run.assert_code(0);
    w.assert_raw_matches_sandbox_entity("Customer", "raw.qb_customers")
        .await;
}

/// QBO answering `"QueryResponse": {}` for a page that has rows looks exactly like the end
/// of the results; only COUNT(*) can tell. Whether it hits the first page (a one-page pass)
/// or a later one, the window is read again, and never ends `success` short of its count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_comes_back_empty_is_caught_by_the_count() {
    let w = World::new(small_company()).await;
    // Request 1 is COUNT(*), request 2 the first page: it comes back empty, once.
    w.faults(Faults {
        malformed_every: 2,
        ..malformed(Malformation::EmptyEnvelope)
    });
    let run = w
        .backfill(
            "invoices",
            "2024-01-01",
            "2024-03-31",
            &["--chunk-days", "91"],
        )
        .await;
    run.assert_code(0);
    assert!(w.sandbox.stats().malformed > 0);
    let chunk = the_chunk(&w).await;
    assert_eq!(chunk.status, "success");
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;

    // Every 4th answer empty, and no way to get past it: the chunk fails, saying why.
    let w = World::new(small_company()).await;
    w.faults(Faults {
        malformed_every: 4,
        ..malformed(Malformation::EmptyEnvelope)
    });
    let run = w.run(&one_chunk(&[])).await;
    run.assert_code(1);
    let chunk = the_chunk(&w).await;
    assert_eq!(chunk.status, "error");
    let error = chunk.error.unwrap_or_default();
    assert!(error.contains("COUNT(*)"), "{error}");
    w.faults(Faults::default());
    w.run(&["backfill", "invoices", "--retry-failed"])
        .await
        .assert_code(0);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
}
