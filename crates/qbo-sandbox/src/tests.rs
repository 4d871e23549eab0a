//! HTTP-level tests: a real sandbox on a random port, driven with reqwest.

use serde_json::{json, Value};

use super::*;

pub(super) async fn sandbox() -> Sandbox {
    let cfg = SandboxConfig {
        invoices: 250,
        customers: 30,
        items: 10,
        ..SandboxConfig::default()
    };
    Sandbox::start(cfg).await.expect("sandbox starts")
}

pub(super) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn refresh(sb: &Sandbox, token: &str) -> reqwest::Response {
    client()
        .post(sb.token_url())
        .basic_auth(sb.client_id(), Some(sb.client_secret()))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap()
}

pub(super) async fn access_token(sb: &Sandbox) -> String {
    let v: Value = refresh(sb, &sb.current_refresh_token())
        .await
        .json()
        .await
        .unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

pub(super) async fn get(sb: &Sandbox, token: &str, q: &str, json: bool) -> reqwest::Response {
    let url = format!("{}/v3/company/{}/query", sb.api_base_url(), sb.realm_id());
    let mut req = client()
        .get(url)
        .query(&[("query", q), ("minorversion", "75")])
        .bearer_auth(token);
    if json {
        req = req.header("Accept", "application/json");
    }
    req.send().await.unwrap()
}

pub(super) async fn get_json(sb: &Sandbox, token: &str, q: &str) -> (u16, Value) {
    let r = get(sb, token, q, true).await;
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn json_or_xml_by_accept_with_unique_tids() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let a = get(&sb, &tok, "SELECT * FROM Invoice MAXRESULTS 2", true).await;
    assert_eq!(a.status(), 200);
    assert!(a.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let tid_a = a.headers()["intuit_tid"].clone();
    let v: Value = a.json().await.unwrap();
    assert_eq!(v["QueryResponse"]["Invoice"].as_array().unwrap().len(), 2);
    assert_eq!(v["QueryResponse"]["startPosition"], 1);
    assert_eq!(v["QueryResponse"]["maxResults"], 2);
    let time = v["time"].as_str().unwrap();
    assert!(
        time.len() == 29 && (time.ends_with("-07:00") || time.ends_with("-08:00")),
        "{time}"
    );
    let b = get(&sb, &tok, "SELECT * FROM Invoice MAXRESULTS 2", false).await;
    assert_ne!(b.headers()["intuit_tid"], tid_a);
    assert!(b.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/xml"));
    let x = b.text().await.unwrap();
    assert!(
        x.contains("<IntuitResponse") && x.contains(r#"<Invoice domain="QBO" sparse="false">"#),
        "{x}"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn auth_failures() {
    let sb = sandbox().await;
    let r = get(&sb, "not-a-token", "SELECT * FROM Invoice", true).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["fault"]["error"][0]["code"], "3200");
    assert_eq!(v["fault"]["type"], "AUTHENTICATION");
    let url = format!(
        "{}/v3/company/123/query?query=SELECT%20*%20FROM%20Item&minorversion=75",
        sb.api_base_url()
    );
    let tok = access_token(&sb).await;
    let r = client().get(url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let url = format!(
        "{}/v3/company/{}/query?query=SELECT%20*%20FROM%20Item",
        sb.api_base_url(),
        sb.realm_id()
    );
    let r = client()
        .get(&url)
        .bearer_auth(&tok)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    // QBO's rule since 2025-08-01: a missing or old minorversion is served as 75.
    assert_eq!(r.status(), 200, "a missing minorversion is served as 75");
    for (minor, status) in [("4", 200), ("abc", 400)] {
        let r = client()
            .get(format!("{url}&minorversion={minor}"))
            .bearer_auth(&tok)
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "minorversion={minor}");
    }
    assert_eq!(sb.stats().unauthorized, 1);
}

#[tokio::test]
async fn refresh_rotation_and_retired_tokens() {
    let sb = sandbox().await;
    let first = sb.current_refresh_token();
    let r = refresh(&sb, &first).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 3600);
    assert_eq!(v["x_refresh_token_expires_in"], 8_726_400);
    let second = v["refresh_token"].as_str().unwrap();
    assert_ne!(second, first);
    assert_eq!(sb.current_refresh_token(), second);
    let r = refresh(&sb, &first).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "invalid_grant", "error_description": "Incorrect or invalid refresh token"})
    );
    let r = client()
        .post(sb.token_url())
        .basic_auth(sb.client_id(), Some("wrong"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", second)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "invalid_client"})
    );
    let s = sb.stats();
    assert_eq!(
        (s.refreshes, s.retired_refresh_token_uses, s.token_requests),
        (1, 1, 3)
    );
}

#[tokio::test]
async fn authorization_code_flow() {
    let sb = sandbox().await;
    let r = client()
        .get(sb.authorize_url())
        .query(&[
            ("client_id", sb.client_id()),
            ("response_type", "code"),
            ("scope", "com.intuit.quickbooks.accounting"),
            ("redirect_uri", "http://localhost:9999/cb"),
            ("state", "xyz"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert_eq!(
        (q["state"].as_str(), q["realmId"].as_str()),
        ("xyz", sb.realm_id())
    );
    let exchange = |code: String| {
        client()
            .post(sb.token_url())
            .basic_auth(sb.client_id(), Some(sb.client_secret()))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://localhost:9999/cb"),
            ])
            .send()
    };
    assert_eq!(exchange(q["code"].clone()).await.unwrap().status(), 200);
    assert_eq!(
        exchange(q["code"].clone()).await.unwrap().status(),
        400,
        "a code works once"
    );
}

#[tokio::test]
async fn count_and_empty_page_envelopes_and_parse_errors() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let (st, v) = get_json(&sb, &tok, "SELECT COUNT(*) FROM Invoice").await;
    assert_eq!(st, 200);
    assert_eq!(v["QueryResponse"], json!({"totalCount": 250}));
    let (_, v) = get_json(
        &sb,
        &tok,
        "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime < '2000-01-01'",
    )
    .await;
    assert_eq!(v["QueryResponse"], json!({}));
    assert!(v["time"].is_string());
    let (st, v) = get_json(
        &sb,
        &tok,
        "SELECT * FROM Invoice WHERE Id = '1' OR Id = '2'",
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(v["Fault"]["type"], "ValidationFault");
    assert_eq!(v["Fault"]["Error"][0]["code"], "4000");
    assert!(v["Fault"]["Error"][0]["Detail"]
        .as_str()
        .unwrap()
        .starts_with("QueryParserError:"));
    let (st, _) = get_json(
        &sb,
        &tok,
        "SELECT * FROM Customer WHERE DisplayName = 'open",
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = get_json(&sb, &tok, "SELECT * FROM Invoice MAXRESULTS 1001").await;
    assert_eq!(st, 400);
    let s = sb.stats();
    assert_eq!((s.query_requests, s.count_requests), (5, 1));
    assert_eq!(s.request_log.last().unwrap().status, 400);
}

#[tokio::test]
async fn throttle_every_with_retry_after_json_and_xml() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    sb.set_faults(Faults {
        throttle_every: 2,
        throttle_retry_after_secs: Some(7),
        ..Faults::default()
    });
    assert_eq!(
        get(&sb, &tok, "SELECT COUNT(*) FROM Item", true)
            .await
            .status(),
        200
    );
    let r = get(&sb, &tok, "SELECT COUNT(*) FROM Item", true).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["Fault"]["Error"][0]["code"], "3001");
    assert_eq!(v["Fault"]["type"], "SERVICE");
    sb.set_faults(Faults {
        throttle_every: 1,
        throttle_as_xml: true,
        ..Faults::default()
    });
    let r = get(&sb, &tok, "SELECT COUNT(*) FROM Item", true).await;
    assert_eq!(r.status(), 429);
    assert!(r.text().await.unwrap().contains(r#"<Error code="3001">"#));
    assert_eq!(sb.stats().throttled, 2);
}

#[tokio::test]
async fn rate_and_concurrency_limits() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    sb.set_faults(Faults {
        max_requests_per_minute: 3,
        ..Faults::default()
    });
    for _ in 0..3 {
        assert_eq!(
            get(&sb, &tok, "SELECT COUNT(*) FROM Item", true)
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        get(&sb, &tok, "SELECT COUNT(*) FROM Item", true)
            .await
            .status(),
        429
    );
    sb.set_faults(Faults {
        max_requests_per_minute: 0,
        max_concurrent: 2,
        latency_ms: 800,
        ..Faults::default()
    });
    let reqs = (0..5).map(|_| {
        let (sb, tok) = (sb.clone(), tok.clone());
        async move { get(&sb, &tok, "SELECT COUNT(*) FROM Item", true).await }
    });
    let statuses: Vec<u16> = futures_join(reqs)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "{statuses:?}"
    );
    assert!(sb.stats().max_in_flight >= 3);
}

/// Runs futures concurrently without pulling in futures-util.
async fn futures_join<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn drop_server_error_fault_in_200_and_expiry() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    sb.set_faults(Faults {
        drop_every: 1,
        ..Faults::default()
    });
    let r = get(&sb, &tok, "SELECT * FROM Invoice MAXRESULTS 50", true).await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "body must be cut short");
    sb.set_faults(Faults {
        server_error_every: 1,
        ..Faults::default()
    });
    assert_eq!(
        get(&sb, &tok, "SELECT * FROM Item", true).await.status(),
        500
    );
    assert_eq!(
        get(&sb, &tok, "SELECT * FROM Item", true).await.status(),
        503
    );
    sb.set_faults(Faults {
        fault_in_200_every: 1,
        ..Faults::default()
    });
    let (st, v) = get_json(&sb, &tok, "SELECT * FROM Item").await;
    assert_eq!(st, 200);
    assert!(v.get("Fault").is_some() && v.get("QueryResponse").is_none());
    sb.set_faults(Faults {
        expire_access_every: 1,
        ..Faults::default()
    });
    assert_eq!(
        get(&sb, &tok, "SELECT * FROM Item", true).await.status(),
        401
    );
    sb.set_faults(Faults::default());
    assert_eq!(
        get(&sb, &tok, "SELECT * FROM Item", true).await.status(),
        401,
        "stays expired"
    );
    let tok = access_token(&sb).await;
    assert_eq!(
        get(&sb, &tok, "SELECT * FROM Item", true).await.status(),
        200
    );
    let s = sb.stats();
    assert_eq!((s.dropped, s.server_errors, s.unauthorized), (1, 2, 2));
}

#[tokio::test]
async fn mutate_while_paging_and_fail_window() {
    let sb = sandbox().await;
    let tok = access_token(&sb).await;
    let base = "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '2024-01-01' AND MetaData.LastUpdatedTime < '2024-07-01' ORDERBY MetaData.LastUpdatedTime";
    let (_, first) = get_json(&sb, &tok, &format!("{base} STARTPOSITION 1 MAXRESULTS 10")).await;
    let first_id = first["QueryResponse"]["Invoice"][0]["Id"].clone();
    sb.set_faults(Faults {
        mutate_while_paging_every: 1,
        ..Faults::default()
    });
    let (st, _) = get_json(&sb, &tok, &format!("{base} STARTPOSITION 11 MAXRESULTS 10")).await;
    assert_eq!(st, 200);
    assert_eq!(sb.stats().mutations, 1);
    let touched = sb
        .records("Invoice")
        .into_iter()
        .find(|r| r["Id"] == first_id)
        .unwrap();
    assert_ne!(
        touched["MetaData"]["LastUpdatedTime"],
        first["QueryResponse"]["Invoice"][0]["MetaData"]["LastUpdatedTime"]
    );
    sb.set_faults(Faults {
        fail_window_containing: Some("2024-03-04T12:00:00Z".into()),
        ..Faults::default()
    });
    let win = |a: &str, b: &str| {
        format!("SELECT COUNT(*) FROM Invoice WHERE MetaData.LastUpdatedTime >= '{a}' AND MetaData.LastUpdatedTime < '{b}'")
    };
    assert_eq!(
        get_json(&sb, &tok, &win("2024-03-04", "2024-03-05"))
            .await
            .0,
        500
    );
    assert_eq!(
        get_json(&sb, &tok, &win("2024-03-05", "2024-03-06"))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn control_api_and_planted_records() {
    let sb = sandbox().await;
    let c = client();
    let base = format!("{}/__sandbox", sb.api_base_url());
    let f: Value = c
        .put(format!("{base}/faults"))
        .json(&json!({"throttle_every": 5}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (f["throttle_every"].as_u64(), f["max_concurrent"].as_u64()),
        (Some(5), Some(10))
    );
    assert_eq!(sb.faults().throttle_every, 5);
    assert_eq!(
        c.put(format!("{base}/faults"))
            .body("{nope")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    sb.put_record(
        "Customer",
        json!({"Id": "999", "SyncToken": "0", "DisplayName": "Planted", "Active": true,
               "MetaData": {"CreateTime": "2024-03-04T16:00:00-08:00", "LastUpdatedTime": "2024-03-04T16:00:00-08:00"}}),
    );
    let r = c
        .post(format!("{base}/touch/Customer/999"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        c.post(format!("{base}/touch/Customer/123456"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let recs: Vec<Value> = c
        .get(format!("{base}/records/Customer"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(recs.len(), 31);
    let planted = recs.iter().find(|r| r["Id"] == "999").unwrap();
    assert_eq!(planted["SyncToken"], "1");
    assert_ne!(
        planted["MetaData"]["LastUpdatedTime"],
        "2024-03-04T16:00:00-08:00"
    );
    let stats: Value = c
        .get(format!("{base}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(stats["request_log"].is_array());
    assert!(sb.try_put_record("Nope", json!({})).is_err());
}

#[tokio::test]
async fn same_seed_same_data_and_parallel_sandboxes() {
    let (a, b) = (sandbox().await, sandbox().await);
    assert_ne!(a.addr(), b.addr());
    assert_eq!(a.records("Invoice"), b.records("Invoice"));
    assert_eq!(a.records("Customer").len(), 30);
    let other = Sandbox::start(SandboxConfig {
        seed: 7,
        invoices: 250,
        customers: 30,
        items: 10,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    assert_ne!(a.records("Invoice"), other.records("Invoice"));
    let names: Vec<String> = a
        .records("Customer")
        .iter()
        .map(|c| c["DisplayName"].as_str().unwrap().to_string())
        .collect();
    assert!(names.iter().any(|n| n.contains('\'')) && names.iter().any(|n| n.contains('\\')));
    assert!(a.records("Customer").iter().any(|c| c["Active"] == false));
    let addr = a.addr();
    a.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    b.shutdown().await;
    other.shutdown().await;
}

/// 500k invoices: one month's window paged at 1000 per page, plus whole-table COUNTs.
/// Run with `cargo test --release -- --ignored large_dataset` (takes a few seconds).
#[tokio::test]
#[ignore]
async fn large_dataset_paging() {
    let t0 = std::time::Instant::now();
    let cfg = SandboxConfig {
        invoices: 500_000,
        ..SandboxConfig::default()
    };
    let sb = Sandbox::start(cfg).await.unwrap();
    let started = t0.elapsed();
    let tok = access_token(&sb).await;
    sb.set_faults(Faults {
        max_requests_per_minute: 0,
        ..Faults::default()
    });
    let t1 = std::time::Instant::now();
    let (_, v) = get_json(&sb, &tok, "SELECT COUNT(*) FROM Invoice").await;
    assert_eq!(v["QueryResponse"]["totalCount"], 500_000);
    let window = "FROM Invoice WHERE MetaData.LastUpdatedTime >= '2024-03-01' AND MetaData.LastUpdatedTime < '2024-04-01'";
    let (_, v) = get_json(&sb, &tok, &format!("SELECT COUNT(*) {window}")).await;
    let total = v["QueryResponse"]["totalCount"].as_u64().unwrap();
    let tc = std::time::Instant::now();
    for _ in 0..10 {
        get_json(&sb, &tok, &format!("SELECT COUNT(*) {window}")).await;
    }
    eprintln!("10 window counts: {:?}", tc.elapsed());
    let tc = std::time::Instant::now();
    for _ in 0..10 {
        let r = get(&sb, &tok, &format!("SELECT * {window} ORDERBY MetaData.LastUpdatedTime STARTPOSITION 5000 MAXRESULTS 1000"), true).await;
        r.bytes().await.unwrap();
    }
    eprintln!("10 pages, body not parsed: {:?}", tc.elapsed());
    let mut seen = 0;
    let mut start = 1;
    loop {
        let q = format!("SELECT * {window} ORDERBY MetaData.LastUpdatedTime STARTPOSITION {start} MAXRESULTS 1000");
        let (st, v) = get_json(&sb, &tok, &q).await;
        assert_eq!(st, 200);
        let Some(page) = v["QueryResponse"]["Invoice"].as_array() else {
            break;
        };
        seen += page.len() as u64;
        start += page.len();
    }
    assert_eq!(seen, total);
    let paged = t1.elapsed();
    let t2 = std::time::Instant::now();
    for start in [1, 250_001, 499_001] {
        let (st, _) = get_json(
            &sb,
            &tok,
            &format!("SELECT * FROM Invoice STARTPOSITION {start} MAXRESULTS 1000"),
        )
        .await;
        assert_eq!(st, 200);
    }
    eprintln!(
        "start {started:?}; window of {total} paged in {paged:?}; 3 unfiltered pages in {:?}",
        t2.elapsed()
    );
    sb.shutdown().await;
}

/// The `oauth2` crate (what the real client uses) must interoperate with the token endpoint.
#[tokio::test]
async fn oauth2_crate_refreshes_against_sandbox() {
    use oauth2::{
        basic::BasicClient, ClientId, ClientSecret, RefreshToken, TokenResponse, TokenUrl,
    };
    let sb = sandbox().await;
    let oauth = BasicClient::new(ClientId::new(sb.client_id().into()))
        .set_client_secret(ClientSecret::new(sb.client_secret().into()))
        .set_token_uri(TokenUrl::new(sb.token_url()).unwrap());
    let http = client();
    let first = sb.current_refresh_token();
    let tok = oauth
        .exchange_refresh_token(&RefreshToken::new(first.clone()))
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(
        tok.refresh_token().unwrap().secret(),
        &sb.current_refresh_token()
    );
    assert_eq!(tok.expires_in(), Some(std::time::Duration::from_secs(3600)));
    let again = oauth
        .exchange_refresh_token(&RefreshToken::new(first))
        .request_async(&http)
        .await;
    assert!(again.is_err(), "a retired refresh token is invalid_grant");
    let (st, _) = get_json(
        &sb,
        tok.access_token().secret(),
        "SELECT COUNT(*) FROM Customer",
    )
    .await;
    assert_eq!(st, 200);
}
