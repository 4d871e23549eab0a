//! A sandbox serving several companies, over HTTP: each realm has its own data, tokens that
//! work only for it, its own limits and its own counters.

use serde_json::Value;

use super::tests::{access_token, client, get, get_json};
use super::*;

async fn two_companies() -> (Sandbox, Sandbox) {
    let cfg = SandboxConfig {
        companies: 2,
        invoices: 40,
        customers: 10,
        items: 5,
        ..SandboxConfig::default()
    };
    let a = Sandbox::start(cfg).await.expect("sandbox starts");
    let ids = a.realm_ids();
    assert_eq!(ids, ["9130350000000001", "9130350000000002"]);
    let b = a.for_realm(&ids[1]).expect("second company");
    (a, b)
}

const Q: &str = "SELECT COUNT(*) FROM Item";

async fn refresh_json(sb: &Sandbox, token: &str) -> (u16, Value) {
    let r = client()
        .post(sb.token_url())
        .basic_auth(sb.client_id(), Some(sb.client_secret()))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn each_company_has_its_own_deterministic_data() {
    let (a, b) = two_companies().await;
    assert_eq!(a.records("Invoice").len(), b.records("Invoice").len());
    assert_ne!(a.records("Invoice"), b.records("Invoice"), "data differs");
    assert_ne!(a.seed(), b.seed());
    // Same config, same companies; the first company is exactly today's single company.
    let (a2, b2) = two_companies().await;
    assert_eq!(b.records("Invoice"), b2.records("Invoice"));
    let single = Sandbox::start(SandboxConfig {
        invoices: 40,
        customers: 10,
        items: 5,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    assert_eq!(single.realm_ids(), [single.realm_id()]);
    assert_eq!(a2.records("Invoice"), single.records("Invoice"));
    // Edits land in one company only.
    let id = record_body(&b.records("Invoice")[0])["Id"]
        .as_str()
        .unwrap()
        .to_string();
    b.delete_record("Invoice", &id);
    assert_eq!(b.deleted_ids("Invoice"), vec![id.clone()]);
    assert!(a.deleted_ids("Invoice").is_empty());
    // And over HTTP, each realm's URL serves its own company.
    let (ta, tb) = (access_token(&a).await, access_token(&b).await);
    let sql = format!("SELECT * FROM Invoice WHERE Id = '{id}'");
    let (_, va) = get_json(&a, &ta, &sql).await;
    let (_, vb) = get_json(&b, &tb, &sql).await;
    assert_eq!(va["QueryResponse"]["Invoice"].as_array().unwrap().len(), 1);
    assert!(vb["QueryResponse"].get("Invoice").is_none(), "{vb}");
    assert!(Sandbox::start(SandboxConfig {
        companies: 0,
        ..SandboxConfig::default()
    })
    .await
    .is_err());
}

#[tokio::test]
async fn tokens_work_only_for_their_company() {
    let (a, b) = two_companies().await;
    let (ra, rb) = (a.current_refresh_token(), b.current_refresh_token());
    assert_ne!(ra, rb);
    let (ta, tb) = (access_token(&a).await, access_token(&b).await);
    // An access token on another company's URL: QBO's 403 AuthorizationFault.
    let r = get(&b, &ta, Q, true).await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["Fault"]["type"], "AuthorizationFault", "{v}");
    assert_eq!(get(&a, &tb, Q, true).await.status(), 403);
    assert_eq!(get(&a, &ta, Q, true).await.status(), 200);
    assert_eq!(get(&b, &tb, Q, true).await.status(), 200);
    // A refresh token refreshes into its own company only.
    let (status, v) = refresh_json(&b, &b.current_refresh_token()).await;
    assert_eq!(status, 200);
    let fresh_b = v["access_token"].as_str().unwrap();
    assert_eq!(get(&a, fresh_b, Q, true).await.status(), 403);
    assert_eq!(get(&b, fresh_b, Q, true).await.status(), 200);
    // Rotation is per company: B's retired token is refused, A's latest still works.
    let (status, v) = refresh_json(&b, &rb).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(refresh_json(&a, &a.current_refresh_token()).await.0, 200);

    let sa = a.realm_stats();
    let sb = b.realm_stats();
    assert_eq!((sa.refreshes, sb.refreshes), (2, 2));
    assert_eq!((sa.invalid_grants, sb.invalid_grants), (0, 1));
    assert_eq!((sa.retired_token_uses, sb.retired_token_uses), (0, 1));
    assert_eq!((sa.forbidden, sb.forbidden), (2, 1));
    assert_eq!((sa.requests, sb.requests), (3, 3));
    let all = a.stats();
    assert_eq!(all.realms[a.realm_id()], sa);
    assert_eq!(all.realms[b.realm_id()], sb);
    assert_eq!(all.refreshes, 4);
    assert_eq!(all.invalid_grants, 1);
    // The request log names each request's company, token grants included.
    let named = |kind: &str, realm: &Sandbox, status: u16| {
        all.request_log.iter().any(|e| {
            e.kind == kind && e.realm.as_deref() == Some(realm.realm_id()) && e.status == status
        })
    };
    assert!(named("token", &b, 400) && named("token", &a, 200));
    assert!(named("count", &a, 403) && named("count", &b, 200));
}

#[tokio::test]
async fn revoking_one_company_leaves_the_others_connected() {
    let (a, b) = two_companies().await;
    let (ta, tb) = (access_token(&a).await, access_token(&b).await);
    let rb = b.current_refresh_token();
    b.revoke_tokens();
    assert_eq!(get(&b, &tb, Q, true).await.status(), 401);
    let (status, v) = refresh_json(&b, &rb).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(get(&a, &ta, Q, true).await.status(), 200);
    assert_eq!(refresh_json(&a, &a.current_refresh_token()).await.0, 200);
    let s = b.realm_stats();
    assert_eq!(
        (s.revocations, s.invalid_grants, s.retired_token_uses),
        (1, 1, 0)
    );
    assert_eq!(s.unauthorized, 1);
    // Connecting the company again (a new consent) works.
    assert_eq!(refresh_json(&b, &b.current_refresh_token()).await.0, 200);
}

#[tokio::test]
async fn the_app_revokes_a_connection_at_intuits_endpoint() {
    let (a, b) = two_companies().await;
    let (ta, tb) = (access_token(&a).await, access_token(&b).await);
    let url = format!("{}/oauth2/v1/tokens/revoke", a.api_base_url());
    let revoke = |token: String, secret: &str| {
        client()
            .post(&url)
            .basic_auth(a.client_id(), Some(secret))
            .header("Accept", "application/json")
            .json(&serde_json::json!({ "token": token }))
            .send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    let rb = b.current_refresh_token();
    assert_eq!(status(revoke(rb.clone(), "wrong").await.unwrap()), 401);
    assert_eq!(
        status(revoke("AB11nope".into(), a.client_secret()).await.unwrap()),
        400
    );
    assert_eq!(
        get(&b, &tb, Q, true).await.status(),
        200,
        "nothing revoked yet"
    );
    assert_eq!(
        status(revoke(rb.clone(), a.client_secret()).await.unwrap()),
        200
    );
    assert_eq!(get(&b, &tb, Q, true).await.status(), 401);
    assert_eq!(refresh_json(&b, &rb).await.0, 400);
    assert_eq!(get(&a, &ta, Q, true).await.status(), 200);
    // An access token identifies its connection too.
    assert_eq!(
        status(revoke(ta.clone(), a.client_secret()).await.unwrap()),
        200
    );
    assert_eq!(get(&a, &ta, Q, true).await.status(), 401);
    assert_eq!(
        (a.realm_stats().revocations, b.realm_stats().revocations),
        (1, 1)
    );
}

#[tokio::test]
async fn limits_are_per_company() {
    let (a, b) = two_companies().await;
    let (ta, tb) = (access_token(&a).await, access_token(&b).await);
    a.set_faults(Faults {
        max_requests_per_minute: 3,
        ..Faults::default()
    });
    for _ in 0..3 {
        assert_eq!(get(&a, &ta, Q, true).await.status(), 200);
    }
    assert_eq!(get(&a, &ta, Q, true).await.status(), 429);
    for _ in 0..3 {
        assert_eq!(
            get(&b, &tb, Q, true).await.status(),
            200,
            "B has its own 500"
        );
    }
    assert_eq!(get(&b, &tb, Q, true).await.status(), 429);
    assert_eq!(a.realm_stats().throttled, 1);
    assert_eq!(a.realm_stats().peak_requests_per_minute, 4);

    // In flight: hold A's two seats and a third A request, and one B request; released,
    // A's third is over its 2 and B's is not (each level is taken on arrival).
    let held = Faults {
        max_concurrent: 2,
        max_requests_per_minute: 0,
        hang_from_request: 1,
        ..Faults::default()
    };
    a.set_faults(held.clone());
    let send = |sb: &Sandbox, tok: &str| {
        let (sb, tok) = (sb.clone(), tok.to_string());
        tokio::spawn(async move { get(&sb, &tok, Q, true).await.status().as_u16() })
    };
    let mut a_reqs = Vec::new();
    for k in 1..=3 {
        a_reqs.push(send(&a, &ta));
        wait_until(|| a.stats().hung == k).await;
    }
    let b_req = send(&b, &tb);
    wait_until(|| a.stats().hung == 4).await;
    a.set_faults(Faults {
        hang_from_request: 0,
        ..held
    });
    let mut a_statuses = Vec::new();
    for r in a_reqs {
        a_statuses.push(r.await.unwrap());
    }
    assert_eq!(a_statuses, [200, 200, 429]);
    assert_eq!(
        b_req.await.unwrap(),
        200,
        "A at its limit does not throttle B"
    );
    assert_eq!(a.realm_stats().peak_in_flight, 3);
    assert_eq!(b.realm_stats().peak_in_flight, 1);
    assert_eq!(a.stats().max_in_flight, 4);
}

#[tokio::test]
async fn batch_limit_is_per_company() {
    let (a, b) = two_companies().await;
    let (ta, tb) = (access_token(&a).await, access_token(&b).await);
    a.set_faults(Faults {
        max_requests_per_minute: 0,
        ..Faults::default()
    });
    let batch = |sb: &Sandbox, tok: &str| {
        let url = format!("{}/v3/company/{}/batch", sb.api_base_url(), sb.realm_id());
        let body = serde_json::json!({"BatchItemRequest": [{"bId": "1", "Query": Q}]});
        let req = client()
            .post(url)
            .bearer_auth(tok)
            .header("Accept", "application/json")
            .json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    for _ in 0..rest::BATCH_PER_MINUTE {
        assert_eq!(batch(&a, &ta).await, 200);
    }
    assert_eq!(batch(&a, &ta).await, 429);
    assert_eq!(batch(&b, &tb).await, 200, "B has its own 40 a minute");
}

#[tokio::test]
async fn the_consent_picks_a_company() {
    let (a, b) = two_companies().await;
    let authorize = |realm: Option<&str>| {
        let mut q = vec![
            ("client_id", a.client_id().to_string()),
            ("response_type", "code".into()),
            ("scope", "com.intuit.quickbooks.accounting".into()),
            ("redirect_uri", "http://localhost:9999/cb".into()),
            ("state", "xyz".into()),
        ];
        if let Some(r) = realm {
            q.push(("realmId", r.to_string()));
        }
        client().get(a.authorize_url()).query(&q).send()
    };
    let redirect = |r: reqwest::Response| {
        assert_eq!(r.status(), 302);
        let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
        (q["realmId"].clone(), q["code"].clone())
    };
    let (realm, _) = redirect(authorize(None).await.unwrap());
    assert_eq!(realm, a.realm_id(), "no pick: the first company");
    let (realm, code) = redirect(authorize(Some(b.realm_id())).await.unwrap());
    assert_eq!(realm, b.realm_id());
    assert_eq!(authorize(Some("123")).await.unwrap().status(), 400);
    let v: Value = client()
        .post(a.token_url())
        .basic_auth(a.client_id(), Some(a.client_secret()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://localhost:9999/cb"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tok = v["access_token"].as_str().unwrap();
    assert_eq!(get(&b, tok, Q, true).await.status(), 200);
    assert_eq!(get(&a, tok, Q, true).await.status(), 403);
    let (status, _) = refresh_json(&b, v["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(b.realm_stats().refreshes, 1);
}

#[tokio::test]
async fn control_api_lists_and_revokes_companies() {
    let (a, b) = two_companies().await;
    let base = format!("{}/__sandbox", a.api_base_url());
    let list: Vec<Value> = client()
        .get(format!("{base}/realms"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["realm_id"], b.realm_id());
    let rb = list[1]["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(rb, b.current_refresh_token());
    let r = client()
        .post(format!("{base}/realms/{}/revoke", b.realm_id()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(refresh_json(&b, &rb).await.0, 400);
    let r = client()
        .post(format!("{base}/realms/42/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Record endpoints take ?realm=.
    let recs = |realm: &str| {
        client()
            .get(format!("{base}/records/Invoice"))
            .query(&[("realm", realm)])
            .send()
    };
    let got: Value = recs(b.realm_id()).await.unwrap().json().await.unwrap();
    assert_eq!(got, Value::Array(b.records("Invoice")));
    assert_eq!(recs("42").await.unwrap().status(), 404);
    let stats: Stats = client()
        .get(format!("{base}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats.realms.len(), 2);
    assert_eq!(stats.realms[b.realm_id()].revocations, 1);
}

/// Polls a condition the sandbox reaches on its own (no timing assumed: the wait is bounded
/// only to fail rather than hang forever).
async fn wait_until(cond: impl Fn() -> bool) {
    for _ in 0..6000 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 60 s");
}
