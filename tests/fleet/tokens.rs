//! `QBO_TOKEN_STORE=postgres`: tokens sealed in ops.oauth_tokens, shared by processes.

use tokio::process::Command;

use crate::common::*;
use crate::companies::import;

/// Two keys (32 bytes each, base64) and a 16-byte one.
const K1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const K2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
const SHORT: &str = "AwMDAwMDAwMDAwMDAwMDAw==";
const OTHER: &str = "4620816365000000";

/// `qbo <args>` with the Postgres store under `key`, and no QBO_REFRESH_TOKEN: the store is
/// the only source of tokens.
fn pg(w: &World, args: &[&str], key: Option<&str>) -> Command {
    let mut cmd = w.qbo(args);
    cmd.env("QBO_TOKEN_STORE", "postgres")
        .env_remove("QBO_REFRESH_TOKEN");
    if let Some(k) = key {
        cmd.env("QBO_TOKEN_KEY", k);
    }
    cmd
}

async fn run(mut cmd: Command) -> Run {
    Run::from(cmd.output().await.expect("run qbo"))
}

fn pg_env(key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("QBO_TOKEN_STORE", "postgres".into()),
        ("QBO_TOKEN_KEY", key.into()),
    ]
}

async fn import_pg(w: &World, realm: &str, token: &str, key: &str) -> Run {
    let env = pg_env(key);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    import(w, realm, token, &env).await
}

/// Every byte of the table's rows, as Postgres prints them.
async fn raw_rows(w: &World) -> String {
    let rows: Vec<String> = sqlx::query_scalar("SELECT t::text FROM ops.oauth_tokens t")
        .fetch_all(&w.db.pool().await)
        .await
        .unwrap();
    rows.join("\n")
}

fn assert_no_token(runs: &[&Run]) {
    for r in runs {
        for text in [&r.stdout, &r.stderr] {
            assert!(
                find_issued_token(text).is_none(),
                "a token was printed: {text}"
            );
        }
    }
}

/// A window QBO holds nothing in: one COUNT(*) request, which needs an access token.
const EMPTY_WINDOW: [&str; 6] = [
    "verify",
    "invoices",
    "--start",
    "2030-01-01",
    "--end",
    "2030-01-02",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_sealed_in_postgres_and_a_wrong_key_or_altered_row_fails_naming_the_realm() {
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();

    // The key is checked at start-up: missing, or the wrong size.
    let r = run(pg(&w, &["auth", "status"], None)).await;
    r.assert_code(2);
    assert!(r.stderr.contains("QBO_TOKEN_KEY"), "{}", r.stderr);
    let r = run(pg(&w, &["auth", "status"], Some(SHORT))).await;
    r.assert_code(2);
    assert!(r.stderr.contains("16 bytes"), "{}", r.stderr);

    let imported = import_pg(&w, &realm, &w.initial_refresh_token, K1).await;
    imported.assert_code(0);
    assert!(
        imported.stdout.contains("postgres ops.oauth_tokens"),
        "{}",
        imported.stdout
    );
    let load = run(pg(
        &w,
        &[
            "backfill",
            "items",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
        ],
        Some(K1),
    ))
    .await;
    load.assert_code(0);
    w.assert_raw_matches_sandbox_entity("Item", "raw.qb_items")
        .await;
    assert!(w.sandbox.stats().refreshes >= 1);
    assert!(!w.token_file().exists(), "the file store was not used");

    // No token, and nothing that reads like one, in the table's bytes.
    let bytes = raw_rows(&w).await;
    assert!(bytes.contains(&realm));
    for secret in [
        w.initial_refresh_token.as_str(),
        w.sandbox.current_refresh_token().as_str(),
    ] {
        assert!(
            !bytes.contains(secret),
            "plaintext token in ops.oauth_tokens"
        );
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(
            !bytes.contains(&hex),
            "plaintext token bytes in ops.oauth_tokens"
        );
    }
    assert!(find_issued_token(&bytes).is_none());
    assert!(
        !bytes.contains("refresh_token") && !bytes.contains("eyJ"),
        "{bytes}"
    );

    let ok = run(pg(&w, &["auth", "status"], Some(K1))).await;
    ok.assert_code(0);

    // Another key: named, not garbage.
    let wrong = run(pg(&w, &["auth", "status"], Some(K2))).await;
    wrong.assert_code(3);
    assert!(
        wrong
            .stderr
            .contains(&format!("the tokens of realm {realm}"))
            && wrong.stderr.contains("sealed with key"),
        "{}",
        wrong.stderr
    );

    // One flipped byte.
    let pool = w.db.pool().await;
    sqlx::query(
        "UPDATE ops.oauth_tokens SET ciphertext = set_byte(ciphertext, 5, get_byte(ciphertext, 5) # 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let flipped = run(pg(&w, &EMPTY_WINDOW, Some(K1))).await;
    flipped.assert_code(3);
    assert!(
        flipped
            .stderr
            .contains(&format!("the tokens of realm {realm}"))
            && flipped.stderr.contains("authentication failed"),
        "{}",
        flipped.stderr
    );
    sqlx::query(
        "UPDATE ops.oauth_tokens SET ciphertext = set_byte(ciphertext, 5, get_byte(ciphertext, 5) # 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    run(pg(&w, &["auth", "status"], Some(K1)))
        .await
        .assert_code(0);

    // The company's row copied onto another realm does not open there.
    sqlx::query(
        "INSERT INTO ops.oauth_tokens (realm_id, key_id, nonce, ciphertext)
         SELECT $1, key_id, nonce, ciphertext FROM ops.oauth_tokens WHERE realm_id = $2",
    )
    .bind(OTHER)
    .bind(&realm)
    .execute(&pool)
    .await
    .unwrap();
    let swapped = run(pg(&w, &["auth", "status", "--realm-id", OTHER], Some(K1))).await;
    swapped.assert_code(3);
    assert!(
        swapped
            .stderr
            .contains(&format!("the tokens of realm {OTHER}"))
            && swapped.stderr.contains("authentication failed"),
        "{}",
        swapped.stderr
    );
    assert_no_token(&[&imported, &load, &ok, &wrong, &flipped, &swapped]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_opens_with_the_previous_one_until_rekey_seals_every_row_again() {
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    import_pg(&w, &realm, &w.initial_refresh_token, K1)
        .await
        .assert_code(0);
    let before = raw_rows(&w).await;

    let mut rotated = pg(&w, &["auth", "status"], Some(K2));
    rotated.env("QBO_TOKEN_KEY_PREVIOUS", K1);
    run(rotated).await.assert_code(0);
    let mut rekey = pg(&w, &["auth", "rekey"], Some(K2));
    rekey.env("QBO_TOKEN_KEY_PREVIOUS", K1);
    let r = run(rekey).await;
    r.assert_code(0);
    assert!(
        r.stdout.contains("sealed 1 companies' tokens again"),
        "{}",
        r.stdout
    );
    assert_ne!(raw_rows(&w).await, before);

    run(pg(&w, &["auth", "status"], Some(K2)))
        .await
        .assert_code(0);
    run(pg(&w, &["auth", "status"], Some(K1)))
        .await
        .assert_code(3);
    // The re-sealed token still works at QBO.
    run(pg(&w, &EMPTY_WINDOW, Some(K2))).await.assert_code(0);
}

/// The runbook's rotation during a rolling deploy: while some processes already seal with
/// the new key and others still with the old one, every process opens every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rolling_key_rotation_old_and_new_key_processes_open_each_others_rows() {
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    import_pg(&w, &realm, &w.initial_refresh_token, K1)
        .await
        .assert_code(0);
    let old_key = |args: &[&str]| {
        // Phase 1 deployed everywhere: K1 seals, K2 (coming) opens.
        let mut c = pg(&w, args, Some(K1));
        c.env("QBO_TOKEN_KEY_NEXT", K2);
        c
    };
    let new_key = |args: &[&str]| {
        // Phase 2, on the processes already restarted: K2 seals, K1 opens.
        let mut c = pg(&w, args, Some(K2));
        c.env("QBO_TOKEN_KEY_PREVIOUS", K1);
        c
    };
    run(old_key(&EMPTY_WINDOW)).await.assert_code(0);
    // A new-key process writes the row (as a refresh or `auth rekey` does): sealed with K2.
    run(new_key(&["auth", "rekey"])).await.assert_code(0);
    // An old-key process not restarted yet still opens it, and its requests work.
    let r = run(old_key(&EMPTY_WINDOW)).await;
    r.assert_code(0);
    run(old_key(&["auth", "status"])).await.assert_code(0);
    run(new_key(&EMPTY_WINDOW)).await.assert_code(0);
    // Phase 4: K2 alone.
    run(new_key(&["auth", "rekey"])).await.assert_code(0);
    run(pg(&w, &EMPTY_WINDOW, Some(K2))).await.assert_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_needing_a_refresh_at_once_make_exactly_one_refresh_call() {
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    w.run(&["migrate"]).await.assert_code(0);
    // An imported token has no access token: every process must refresh before its request.
    import_pg(&w, &realm, &w.initial_refresh_token, K1)
        .await
        .assert_code(0);
    let before = w.sandbox.stats();

    // Hold the company's refresh lock from here, so all 8 are provably waiting for it at
    // once (not merely started together) before any of them may refresh.
    let pool = w.db.pool().await;
    let mut held = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('qbo.oauth_tokens:' || $1, 0))")
        .bind(&realm)
        .execute(&mut *held)
        .await
        .unwrap();
    let children: Vec<_> = (0..8)
        .map(|_| pg(&w, &EMPTY_WINDOW, Some(K1)).spawn().unwrap())
        .collect();
    let mut waiting = 0;
    for _ in 0..6000 {
        waiting = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event = 'advisory'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting == 8 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(waiting, 8, "all 8 processes wait for the refresh lock");
    assert_eq!(w.sandbox.stats().token_requests, before.token_requests);
    held.commit().await.unwrap();

    let mut runs = Vec::new();
    for c in children {
        runs.push(Run::from(c.wait_with_output().await.unwrap()));
    }
    for r in &runs {
        r.assert_code(0);
    }
    let after = w.sandbox.stats();
    assert_eq!(
        after.refreshes - before.refreshes,
        1,
        "exactly one refresh call"
    );
    assert_eq!(after.retired_refresh_token_uses, 0);
    assert_eq!(
        after.unauthorized, 0,
        "every process used the new access token"
    );
    assert!(after.count_requests - before.count_requests >= 8);
    assert_no_token(&runs.iter().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_makes_only_that_company_needs_reauth() {
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    let revoked = format!("AB11{}", "0".repeat(64));
    import_pg(&w, &realm, &revoked, K1).await.assert_code(0);
    let r = run(pg(&w, &EMPTY_WINDOW, Some(K1))).await;
    r.assert_code(3);
    assert!(
        r.stderr.contains(&format!("realm {realm}"))
            && r.stderr.contains("qbo auth import")
            && r.stderr.contains("qbo auth login"),
        "{}",
        r.stderr
    );
    let (status, reason): (String, Option<String>) =
        sqlx::query_as("SELECT status::text, status_reason FROM ops.companies WHERE realm_id = $1")
            .bind(&realm)
            .fetch_one(&w.db.pool().await)
            .await
            .unwrap();
    assert_eq!(status, "needs_reauth");
    assert!(reason.unwrap().contains("invalid_grant"));
    // Skipped, and still a company needing a human: 3.
    let fleet = run(pg(&w, &["verify", "invoices", "--all-companies"], Some(K1))).await;
    fleet.assert_code(3);
    assert!(
        fleet
            .stderr
            .contains(&format!("skipped company {realm}: needs_reauth")),
        "{}",
        fleet.stderr
    );
    // A new token makes it active again, and it loads.
    import_pg(&w, &realm, &w.initial_refresh_token, K1)
        .await
        .assert_code(0);
    run(pg(&w, &EMPTY_WINDOW, Some(K1))).await.assert_code(0);
    assert_no_token(&[&r, &fleet]);
}
