use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::common::*;

/// A realm the sandbox does not serve: a company with no tokens anywhere.
const OTHER: &str = "4620816365000000";
const PAUSED: &str = "4620816365000001";

async fn status_of(w: &World, realm: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT status::text, status_reason FROM ops.companies WHERE realm_id = $1")
        .bind(realm)
        .fetch_one(&w.db.pool().await)
        .await
        .unwrap()
}

/// `qbo auth import --realm-id R` with `token` on stdin.
pub async fn import(w: &World, realm: &str, token: &str, env: &[(&str, &str)]) -> Run {
    let mut cmd = w.qbo(&["auth", "import", "--realm-id", realm]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdin(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(token.as_bytes()).await.unwrap();
    drop(stdin);
    Run::from(child.wait_with_output().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn companies_are_added_once_listed_paused_resumed_and_removed_without_their_data() {
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();

    let r = w
        .run(&["companies", "add", "--realm-id", &realm, "--name", "Acme"])
        .await;
    r.assert_code(0);
    assert!(
        r.stdout.contains(&format!("added company {realm} (Acme)")),
        "{}",
        r.stdout
    );
    // Idempotent: the second add changes nothing and says so.
    let r = w.run(&["companies", "add", "--realm-id", &realm]).await;
    r.assert_code(0);
    assert!(r.stdout.contains("was already added"), "{}", r.stdout);
    // The same realm cannot also be a sandbox company.
    let r = w
        .run(&[
            "companies",
            "add",
            "--realm-id",
            &realm,
            "--environment",
            "sandbox",
        ])
        .await;
    r.assert_code(2);
    assert!(
        r.stderr.contains("already a production company"),
        "{}",
        r.stderr
    );
    // Bad input is refused before the database is touched.
    w.run(&["companies", "add", "--realm-id", "acme"])
        .await
        .assert_code(2);
    let r = w.run(&["companies", "pause", "--realm-id", OTHER]).await;
    r.assert_code(2);
    assert!(
        r.stderr.contains("qbo companies add --realm-id"),
        "{}",
        r.stderr
    );

    // Loading company_info names the company after its CompanyInfo.
    w.backfill("company_info", "2024-01-01", "2024-03-31", &[])
        .await
        .assert_code(0);
    w.backfill("invoices", "2024-01-01", "2024-03-31", &[])
        .await
        .assert_code(0);
    let company_name = w.sandbox.records("CompanyInfo")[0]["CompanyName"]
        .as_str()
        .unwrap()
        .to_string();
    let r = w.run(&["companies", "list", "--format", "json"]).await;
    r.assert_code(0);
    let list: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(list[0]["realm_id"], realm.as_str());
    assert_eq!(list[0]["display_name"], company_name.as_str());
    assert_eq!(list[0]["environment"], "production");
    assert_eq!(list[0]["status"], "active");

    let r = w
        .run(&[
            "companies",
            "pause",
            "--realm-id",
            &realm,
            "--reason",
            "month end",
        ])
        .await;
    r.assert_code(0);
    assert_eq!(
        status_of(&w, &realm).await,
        ("paused".into(), Some("month end".into()))
    );
    let r = w.run(&["companies", "list"]).await;
    r.assert_code(0);
    assert!(
        r.stdout.contains("paused") && r.stdout.contains("month end"),
        "{}",
        r.stdout
    );
    w.run(&["companies", "resume", "--realm-id", &realm])
        .await
        .assert_code(0);
    assert_eq!(status_of(&w, &realm).await, ("active".into(), None));

    let raw_before = w.raw_versions("raw.qb_invoices").await;
    let r = w.run(&["companies", "remove", "--realm-id", &realm]).await;
    r.assert_code(0);
    assert!(r.stdout.contains("KEPT its"), "{}", r.stdout);
    assert_eq!(w.raw_versions("raw.qb_invoices").await, raw_before);
    assert!(!raw_before.is_empty());
    let r = w.run(&["companies", "list"]).await;
    assert!(r.stdout.contains("no companies yet"), "{}", r.stdout);
    // The tokens stayed: the company loads again once added back.
    w.run(&["companies", "add", "--realm-id", &realm])
        .await
        .assert_code(0);
    w.run(&["verify", "invoices"]).await.assert_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_import_adds_the_company_and_reactivates_one_that_needed_it() {
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    let r = import(&w, &realm, &w.initial_refresh_token, &[]).await;
    r.assert_code(0);
    assert!(
        r.stdout.contains(&format!("added company {realm}")),
        "{}",
        r.stdout
    );
    assert_eq!(status_of(&w, &realm).await, ("active".into(), None));

    sqlx::query("UPDATE ops.companies SET status = 'needs_reauth' WHERE realm_id = $1")
        .bind(&realm)
        .execute(&w.db.pool().await)
        .await
        .unwrap();
    let r = import(&w, &realm, &w.initial_refresh_token, &[]).await;
    r.assert_code(0);
    assert!(r.stdout.contains("active again"), "{}", r.stdout);
    assert_eq!(status_of(&w, &realm).await, ("active".into(), None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_report_all_companies_skip_paused_ones_and_go_on_past_a_company_without_tokens()
{
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    w.backfill("invoices", "2024-01-01", "2024-03-31", &[])
        .await
        .assert_code(0);
    for r in [&realm, OTHER, PAUSED] {
        w.run(&["companies", "add", "--realm-id", r])
            .await
            .assert_code(0);
    }
    w.run(&[
        "companies",
        "pause",
        "--realm-id",
        PAUSED,
        "--reason",
        "left",
    ])
    .await
    .assert_code(0);

    // QBO_REALM_ID names one company; --all-companies works on every active one.
    let r = w.run(&["verify", "invoices", "--all-companies"]).await;
    // OTHER has no refresh token anywhere: it needs a human (3), the others are verified.
    r.assert_code(3);
    assert!(
        r.stderr
            .contains(&format!("skipped company {PAUSED}: paused")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("company {OTHER} is now needs_reauth")),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains(&format!("company {realm}:")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("invoices: "), "{}", r.stdout);
    assert!(!r.stdout.contains("MISMATCH"), "{}", r.stdout);
    assert_eq!(status_of(&w, OTHER).await.0, "needs_reauth");
    assert_eq!(status_of(&w, &realm).await.0, "active");

    // Now both are skipped and the healthy company passes; the needs_reauth one still needs
    // a human (3) every night until someone gives it a token.
    let r = w.run(&["verify", "invoices", "--all-companies"]).await;
    r.assert_code(3);
    assert!(!r.stdout.contains("MISMATCH"), "{}", r.stdout);
    assert!(
        r.stderr
            .contains(&format!("skipped company {OTHER}: needs_reauth")),
        "{}",
        r.stderr
    );

    let r = w
        .run(&["report", "--all-companies", "--format", "json"])
        .await;
    r.assert_code(3);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|c| c["realm_id"] == realm.as_str()));
    assert!(
        r.stderr.contains(&format!("skipped company {PAUSED}")),
        "{}",
        r.stderr
    );
    let r = w.run(&["report", "--all-companies"]).await;
    r.assert_code(3);
    assert!(
        r.stdout.contains(&format!("company {realm}:")),
        "{}",
        r.stdout
    );
}

/// Paused companies are skipped on purpose (exit 0 with the line); a needs_reauth one needs a
/// human (3) even when nothing else failed; no active company at all is an error, saying how
/// to add or resume one - for backfill, verify and report alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_companies_exit_codes_say_what_was_skipped() {
    let w = World::new(small_company()).await;
    let enqueue = [
        "backfill",
        "invoices",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-31",
        "--all-companies",
        "--enqueue",
    ];
    let commands: [&[&str]; 3] = [
        &enqueue,
        &["verify", "invoices", "--all-companies"],
        &["report", "--all-companies"],
    ];
    // No company at all.
    for args in commands {
        let r = w.run(args).await;
        r.assert_code(1);
        assert!(r.stderr.contains("no active"), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("qbo companies add"), "{}", r.stderr);
    }
    let realm = w.sandbox.realm_id().to_string();
    for r in [&realm, OTHER, PAUSED] {
        w.run(&["companies", "add", "--realm-id", r])
            .await
            .assert_code(0);
    }
    w.run(&["companies", "pause", "--realm-id", PAUSED])
        .await
        .assert_code(0);
    w.run(&["companies", "pause", "--realm-id", OTHER])
        .await
        .assert_code(0);
    // Only paused ones skipped: 0, with the line.
    let r = w.run(&enqueue).await;
    r.assert_code(0);
    assert!(
        r.stderr
            .contains(&format!("skipped company {PAUSED}: paused")),
        "{}",
        r.stderr
    );
    // A needs_reauth one skipped: 3 from every path.
    sqlx::query("UPDATE ops.companies SET status = 'needs_reauth' WHERE realm_id = $1")
        .bind(OTHER)
        .execute(&w.db.pool().await)
        .await
        .unwrap();
    for args in commands {
        let r = w.run(args).await;
        r.assert_code(3);
        assert!(
            r.stderr
                .contains(&format!("skipped company {OTHER}: needs_reauth")),
            "{args:?}: {}",
            r.stderr
        );
    }
    // Nothing active: an error, 3 because one of them needs a human.
    w.run(&["companies", "pause", "--realm-id", &realm])
        .await
        .assert_code(0);
    for args in commands {
        let r = w.run(args).await;
        r.assert_code(3);
        assert!(r.stderr.contains("no active"), "{args:?}: {}", r.stderr);
    }
}
