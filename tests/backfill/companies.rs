//! One sandbox serving two companies, as a fleet sees QBO: each company's backfill loads that
//! company's data into its own realm's rows, is counted against that company's limits only,
//! and a company whose connection is revoked fails alone.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_companies_load_apart_and_a_revoked_one_fails_alone() {
    let w = World::new(small_companies(2)).await;
    let ids = w.realm_ids();
    let (a, b) = (ids[0].as_str(), ids[1].as_str());
    assert_ne!(
        w.sandbox_versions_of(a, "Invoice"),
        w.sandbox_versions_of(b, "Invoice"),
        "the companies hold different data"
    );

    w.run_for(
        b,
        &[
            "backfill",
            "all",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
        ],
    )
    .await
    .assert_code(0);
    w.assert_realm_raw_matches_sandbox(b).await;
    assert!(
        w.raw_versions_of(a, qbo::entities::by_qbo_name("Invoice").unwrap().table)
            .await
            .is_empty(),
        "nothing of A was loaded"
    );
    let sb = w.realm_stats(b);
    assert!(sb.requests > 0);
    assert_eq!(w.realm_stats(a).requests, 0, "B's run asked nothing of A");
    assert!(sb.peak_requests_per_minute <= 500, "{sb:?}");
    assert!(sb.peak_in_flight <= 10, "{sb:?}");
    assert_eq!((sb.invalid_grants, sb.retired_token_uses), (0, 0), "{sb:?}");
    assert!(sb.refreshes >= 1);
    assert_eq!(w.sandbox.stats().realms.len(), 2);

    // A's connection is revoked: its backfill fails as needing a new login, B's data stays.
    w.revoke(a);
    let run = w
        .run_for(
            a,
            &[
                "backfill",
                "invoices",
                "--start",
                "2024-01-01",
                "--end",
                "2024-03-31",
            ],
        )
        .await;
    run.assert_code(3);
    assert!(run.stderr.contains("invalid_grant"), "{}", run.stderr);
    assert_eq!(w.realm_stats(a).invalid_grants, 1);
    w.assert_realm_raw_matches_sandbox(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_company_imported_lands_its_own_data() {
    let w = World::new(small_companies(3)).await;
    w.import_all_companies().await;
    for realm in w.realm_ids() {
        w.run(&[
            "backfill",
            "customers",
            "--realm-id",
            &realm,
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
        ])
        .await
        .assert_code(0);
    }
    let customers = qbo::entities::by_qbo_name("Customer").unwrap().table;
    for realm in w.realm_ids() {
        assert_eq!(
            w.raw_versions_of(&realm, customers).await,
            w.sandbox_versions_of(&realm, "Customer"),
            "{realm}"
        );
        let s = w.realm_stats(&realm);
        assert_eq!((s.refreshes, s.invalid_grants), (1, 0), "{realm}: {s:?}");
    }
}
