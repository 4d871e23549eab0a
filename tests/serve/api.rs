//! The JSON API over real HTTP: a backfill started by POST and watched to success by the
//! process's own workers, a failed window retried, a running run cancelled, and the error
//! answers (401, 400, 404, 409).

use std::time::Duration;

use qbo::sandbox::Faults;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::common::*;
use crate::harness::Served;

const TOKEN: &str = "api-test-serve-token-0123456789";

fn with_token() -> [(&'static str, Option<&'static str>); 1] {
    [("QBO_SERVE_TOKEN", Some(TOKEN))]
}

/// Polls `GET /api/runs/{id}` until `done` says so (a generous safety net, never a
/// timing assumption); returns the last answer.
async fn wait_for_run(
    s: &Served,
    run_id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (code, body) = s.get_json(&format!("/api/runs/{run_id}")).await;
        assert_eq!(code, 200, "{body}");
        if done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} never got {what}: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn status(run: &Value) -> &str {
    run["run"]["status"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_started_by_post_is_loaded_by_the_workers_and_matches_the_sandbox() {
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    let s = Served::start_with(&w, &["--workers", "2"], &with_token()).await;

    let (code, started) = s
        .post_json(
            "/api/backfills",
            json!({"entity": "all", "start": "2024-01-01", "end": "2024-03-31",
                   "realm_id": realm, "window_pages": 2, "page_size": 50}),
        )
        .await;
    assert_eq!(code, 202, "{started}");
    let runs = started["runs"].as_array().unwrap();
    assert_eq!(runs.len(), qbo::entities::ENTITIES.len(), "{started}");
    assert_eq!(started["invocations"].as_array().unwrap().len(), 1);

    for run in runs {
        let id = run["run_id"].as_str().unwrap();
        let done = wait_for_run(&s, id, "success", |r| status(r) == "success").await;
        let windows = done["windows"].as_array().unwrap();
        assert!(!windows.is_empty(), "{done}");
        for window in windows {
            assert_eq!(window["status"], "success", "{window}");
            assert_eq!(window["realm_id"], realm.as_str());
        }
        assert_eq!(done["run"]["queued"], true);
        assert_eq!(done["run"]["windows"]["success"], windows.len());
    }
    w.assert_raw_matches_sandbox().await;

    // The list, newest first, filtered like the CLI's flags; a prefix names a run.
    let (code, listed) = s
        .get_json(&format!(
            "/api/runs?realm_id={realm}&entity=invoices&kind=backfill&status=success"
        ))
        .await;
    assert_eq!(code, 200, "{listed}");
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let invoices = listed[0]["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        listed[0]["rows"].as_i64().unwrap(),
        w.sandbox_versions("Invoice").len() as i64
    );
    let (code, one) = s.get_json(&format!("/api/runs/{}", &invoices[..8])).await;
    assert_eq!(code, 200, "{one}");
    assert_eq!(one["run"]["run_id"], invoices.as_str());

    let (code, companies) = s.get_json("/api/companies").await;
    assert_eq!(code, 200, "{companies}");
    let company = &companies.as_array().unwrap()[0];
    assert_eq!(company["realm_id"], realm.as_str());
    assert_eq!(company["status"], "active");
    assert_eq!(company["queued"], 0);
    assert_eq!(company["failed"], 0);

    // A finished run: nothing to cancel, resume or retry.
    for action in ["cancel", "resume", "retry-failed"] {
        let (code, body) = s
            .post_json(&format!("/api/runs/{invoices}/{action}"), json!({}))
            .await;
        assert_eq!(code, 409, "{action}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(&invoices),
            "{body}"
        );
    }

    // Pause and resume, as `qbo companies`.
    let (code, paused) = s
        .post_json(
            &format!("/api/companies/{realm}/pause"),
            json!({"reason": "audit"}),
        )
        .await;
    assert_eq!(
        (code, paused["status"].as_str()),
        (200, Some("paused")),
        "{paused}"
    );
    assert_eq!(paused["status_reason"], "audit");
    let (code, resumed) = s
        .post_json(&format!("/api/companies/{realm}/resume"), json!(null))
        .await;
    assert_eq!(
        (code, resumed["status"].as_str()),
        (200, Some("active")),
        "{resumed}"
    );
    assert_eq!(s.terminate().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_answer_json_with_the_cli_messages_and_status_codes() {
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    let s = Served::start_with(&w, &["--workers", "0"], &with_token()).await;

    // No token, or a wrong one: 401, and the token is never echoed.
    let bare = reqwest::get(s.url("/api/runs")).await.unwrap();
    assert_eq!(bare.status().as_u16(), 401);
    let bare = reqwest::Client::new()
        .post(s.url("/api/backfills"))
        .bearer_auth("wrong")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status().as_u16(), 401);
    assert!(!bare.text().await.unwrap().contains(TOKEN));

    let body = |entity: &str, start: &str, end: &str| json!({"entity": entity, "start": start, "end": end, "realm_id": realm});
    let bad = [
        (
            body("invoices", "2024-13-01", "2024-12-31"),
            "is not a date",
        ),
        (
            body("invoicez", "2024-01-01", "2024-12-31"),
            "unknown entity `invoicez`",
        ),
        (body("invoices", "2024-03-01", "2024-01-01"), "is before"),
        (
            json!({"entity": "customers", "start": "2024-01-01", "end": "2024-01-31",
                   "realm_id": realm, "window_field": "txn-date"}),
            "has no TxnDate",
        ),
        (
            json!({"entity": "invoices", "start": "2024-01-01", "end": "2024-01-31",
                   "realm_id": realm, "chunk_days": 0}),
            "chunk_days must be between 1 and 3660",
        ),
        (
            json!({"entity": "invoices", "start": "2024-01-01", "end": "2024-01-31"}),
            "realm_id",
        ),
        (
            json!({"entity": "invoices", "start": "2024-01-01", "end": "2024-01-31",
                   "realm_id": realm, "chunk_dayz": 3}),
            "chunk_dayz",
        ),
    ];
    for (request, says) in bad {
        let (code, answer) = s.post_json("/api/backfills", request.clone()).await;
        assert_eq!(code, 400, "{request} -> {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(says), "{request}: {message}");
    }
    // Nothing was planned by a refused request.
    let (code, runs) = s.get_json("/api/runs").await;
    assert_eq!(
        (code, runs.as_array().map(Vec::len)),
        (200, Some(0)),
        "{runs}"
    );

    for (path, says) in [
        ("/api/runs?status=finished", "unknown run status `finished`"),
        ("/api/runs?entity=nope", "unknown entity `nope`"),
        ("/api/runs?limit=0", "limit must be"),
        ("/api/runs/zz", "not a run id"),
    ] {
        let (code, answer) = s.get_json(path).await;
        assert_eq!(code, 400, "{path}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(says),
            "{path}: {answer}"
        );
    }
    let unknown = "0b8a8f3e-1111-4222-8333-444455556666";
    let (code, answer) = s.get_json(&format!("/api/runs/{unknown}")).await;
    assert_eq!(code, 404, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("does not exist"));
    let (code, answer) = s
        .post_json(&format!("/api/runs/{unknown}/cancel"), json!({}))
        .await;
    assert_eq!(code, 404, "{answer}");
    let (code, answer) = s.get_json("/api/runs/abcdef12").await;
    assert_eq!(code, 404, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("no run id starts with abcdef12"));
    let (code, answer) = s.post_json("/api/companies/424242/pause", json!({})).await;
    assert_eq!(code, 404, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("qbo companies add"),
        "{answer}"
    );
    let (code, answer) = s
        .post_json("/api/companies/not-a-realm/resume", json!({}))
        .await;
    assert_eq!(code, 400, "{answer}");

    // Accepted with no worker in this process: the run waits, queued, for any worker.
    let (code, started) = s
        .post_json(
            "/api/backfills",
            body("invoices", "2024-01-01", "2024-01-31"),
        )
        .await;
    assert_eq!(code, 202, "{started}");
    let run_id = started["runs"][0]["run_id"].as_str().unwrap();
    let (_, run) = s.get_json(&format!("/api/runs/{run_id}")).await;
    assert_eq!(run["run"]["queued"], true, "{run}");
    assert_eq!(run["windows"][0]["status"], "pending", "{run}");
    // Resume hands its unfinished windows to the workers (it is queued already).
    let (code, resumed) = s
        .post_json(&format!("/api/runs/{run_id}/resume"), json!({}))
        .await;
    assert_eq!(
        (code, resumed["windows"].as_i64()),
        (200, Some(1)),
        "{resumed}"
    );
    // Nothing failed yet, so nothing to retry.
    let (code, answer) = s
        .post_json(&format!("/api/runs/{run_id}/retry-failed"), json!({}))
        .await;
    assert_eq!(code, 409, "{answer}");

    // Sync now: a queued request for the workers; asking again while it waits returns it.
    let (code, queued) = s
        .post_json(
            "/api/syncs",
            json!({"entity": "invoices", "realm_id": realm, "since": "2024-01-01"}),
        )
        .await;
    assert_eq!(code, 202, "{queued}");
    let request = queued["requests"][0]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, again) = s
        .post_json(
            "/api/syncs",
            json!({"entity": "invoices", "realm_id": realm}),
        )
        .await;
    assert_eq!(code, 202, "{again}");
    assert_eq!(again["requests"][0]["request_id"], request.as_str());
    assert_eq!(again["requests"][0]["existing"], true);
    let (code, state) = s.get_json(&format!("/api/syncs/{request}")).await;
    assert_eq!(
        (code, state["status"].as_str()),
        (200, Some("queued")),
        "{state}"
    );
    for (request, code_wanted, says) in [
        (
            json!({"entity": "nope", "realm_id": realm}),
            400,
            "unknown entity",
        ),
        (
            json!({"realm_id": realm, "since": "yesterday"}),
            400,
            "is not a date",
        ),
        (
            json!({"realm_id": "424242"}),
            404,
            "no company with realm id 424242",
        ),
        (json!({"entity": "all"}), 400, "realm_id"),
    ] {
        let (code, answer) = s.post_json("/api/syncs", request.clone()).await;
        assert_eq!(code, code_wanted, "{request} -> {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(says),
            "{request}: {answer}"
        );
    }
    assert_eq!(s.terminate().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_window_is_retried_by_post_and_the_workers_finish_the_run() {
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    // Every request for the window holding mid-February fails: that window ends `error`.
    w.faults(Faults {
        fail_window_containing: Some("2024-02-14T12:00:00Z".into()),
        ..Faults::default()
    });
    let s = Served::start_with(&w, &["--workers", "2"], &with_token()).await;
    let (code, started) = s
        .post_json(
            "/api/backfills",
            json!({"entity": "invoices", "start": "2024-01-01", "end": "2024-03-31",
                   "realm_id": realm, "chunk_days": 30}),
        )
        .await;
    assert_eq!(code, 202, "{started}");
    let run_id = started["runs"][0]["run_id"].as_str().unwrap().to_string();
    let partial = wait_for_run(&s, &run_id, "partial", |r| status(r) == "partial").await;
    let failed: Vec<&Value> = partial["windows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "error")
        .collect();
    assert_eq!(failed.len(), 1, "{partial:#}");
    assert!(failed[0]["error_message"].as_str().is_some(), "{partial:#}");
    assert_eq!(partial["run"]["windows"]["error"], 1);

    // Nothing is unfinished, so nothing to resume; the failed window can be retried.
    let (code, answer) = s
        .post_json(&format!("/api/runs/{run_id}/resume"), json!({}))
        .await;
    assert_eq!(code, 409, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("retry-failed"),
        "{answer}"
    );

    w.faults(Faults::default());
    let (code, retried) = s
        .post_json(&format!("/api/runs/{run_id}/retry-failed"), json!({}))
        .await;
    assert_eq!(code, 200, "{retried}");
    assert_eq!(retried["windows"], 1, "{retried}");
    let done = wait_for_run(&s, &run_id, "success", |r| status(r) == "success").await;
    let retried_window = done["windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["chunk_index"] == failed[0]["chunk_index"])
        .unwrap();
    assert!(
        retried_window["attempts"].as_i64().unwrap() >= 2,
        "{done:#}"
    );
    assert_eq!(
        w.raw_versions("raw.qb_invoices").await,
        w.sandbox_versions("Invoice")
    );

    // Sync now: the request is run by a worker slot of this process, from the watermark
    // the successful backfill left.
    let (code, queued) = s
        .post_json(
            "/api/syncs",
            json!({"entity": "invoices", "realm_id": realm}),
        )
        .await;
    assert_eq!(code, 202, "{queued}");
    let request = queued["requests"][0]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (code, state) = s.get_json(&format!("/api/syncs/{request}")).await;
        assert_eq!(code, 200, "{state}");
        match state["status"].as_str().unwrap() {
            "success" => break,
            "queued" | "running" => {}
            other => panic!("the sync ended {other}: {state:#}"),
        }
        assert!(Instant::now() < deadline, "the sync never ran: {state:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.terminate().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_run_stops_its_windows_for_good() {
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    // Every query hangs until released: the run's windows stay running under their leases.
    w.faults(Faults {
        hang_from_request: 1,
        ..Faults::default()
    });
    // One worker slot: once the cancelled run's engine lets go, it is free for the next run.
    let s = Served::start_with(&w, &["--workers", "1"], &with_token()).await;
    let (code, started) = s
        .post_json(
            "/api/backfills",
            json!({"entity": "invoices", "start": "2024-01-01", "end": "2024-03-31",
                   "realm_id": realm, "chunk_days": 30}),
        )
        .await;
    assert_eq!(code, 202, "{started}");
    let run_id = started["runs"][0]["run_id"].as_str().unwrap().to_string();
    wait_for_run(&s, &run_id, "a window being loaded", |r| {
        r["run"]["windows"]["running"].as_i64() > Some(0)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(300);
    while w.sandbox.stats().hung == 0 {
        assert!(Instant::now() < deadline, "no request reached the sandbox");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (code, cancelled) = s
        .post_json(&format!("/api/runs/{run_id}/cancel"), json!({}))
        .await;
    assert_eq!(code, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["leased"].as_i64().unwrap() >= 1, "{cancelled}");
    // The hung requests answer now; their windows' writes find the lease gone.
    w.faults(Faults::default());

    // The one slot moves on: a new run is loaded to the end.
    let (code, next) = s
        .post_json(
            "/api/backfills",
            json!({"entity": "customers", "start": "2024-01-01", "end": "2024-03-31",
                   "realm_id": realm}),
        )
        .await;
    assert_eq!(code, 202, "{next}");
    let next_id = next["runs"][0]["run_id"].as_str().unwrap();
    wait_for_run(&s, next_id, "success", |r| status(r) == "success").await;

    let (_, after) = s.get_json(&format!("/api/runs/{run_id}")).await;
    assert_eq!(status(&after), "cancelled", "{after:#}");
    for window in after["windows"].as_array().unwrap() {
        assert_eq!(window["status"], "cancelled", "{after:#}");
        assert_eq!(window["row_count"], 0, "{after:#}");
    }
    assert!(w.raw_versions("raw.qb_invoices").await.is_empty());
    for action in ["cancel", "resume", "retry-failed"] {
        let (code, answer) = s
            .post_json(&format!("/api/runs/{run_id}/{action}"), json!({}))
            .await;
        assert_eq!(code, 409, "{action}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("cancelled"),
            "{answer}"
        );
    }
    let (_, listed) = s.get_json("/api/runs?status=cancelled").await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // The CLI: the report shows it, --resume and --retry-failed refuse it.
    let report = w.run(&["report", "invoices"]).await;
    report.assert_code(0);
    assert!(report.stdout.contains("cancelled"), "{}", report.stdout);
    let resume = w.run(&["backfill", "invoices", "--resume"]).await;
    resume.assert_code(2);
    assert!(resume.stderr.contains("was cancelled"), "{}", resume.stderr);
    let retry = w
        .run(&[
            "backfill",
            "invoices",
            "--retry-failed",
            "--run",
            &run_id[..8],
        ])
        .await;
    retry.assert_code(2);
    assert!(retry.stderr.contains("was cancelled"), "{}", retry.stderr);
    assert_eq!(s.terminate().await, Some(0));
}
