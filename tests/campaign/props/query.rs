//! Escaping never changes the query: for any string, the query the builder renders is
//! parsed by the sandbox (which is as strict as QBO about quotes and backslashes) into
//! the same literal, so it finds exactly the one record holding that string.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use proptest::test_runner::{TestCaseError, TestRunner};
use qbo::entities;
use qbo::query::{Literal, Op, Query};
use qbo::sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};

use super::{config, tricky_string};

struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn connect(sandbox: &Sandbox) -> Api {
        let http = reqwest::Client::new();
        let grant: Value = http
            .post(sandbox.token_url())
            .basic_auth(sandbox.client_id(), Some(sandbox.client_secret()))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &sandbox.current_refresh_token()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Api {
            http,
            url: format!(
                "{}/v3/company/{}/query",
                sandbox.api_base_url(),
                sandbox.realm_id()
            ),
            token: grant["access_token"].as_str().unwrap().to_string(),
        }
    }

    async fn query(&self, q: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(&self.url)
            .query(&[("query", q), ("minorversion", "75")])
            .header("Accept", "application/json")
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

#[test]
fn escaping_never_changes_the_query() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // A company with no generated names: only the records planted here exist.
    let sandbox = rt
        .block_on(Sandbox::start(SandboxConfig {
            invoices: 0,
            customers: 0,
            items: 0,
            counts: entities::ENTITIES
                .iter()
                .map(|e| (e.qbo_name.to_string(), 0))
                .collect(),
            ..SandboxConfig::default()
        }))
        .unwrap();
    let api = rt.block_on(Api::connect(&sandbox));
    let customers = entities::find("customers").unwrap();
    let next_id = AtomicU64::new(1000);
    // Cases repeat strings (shrinking does, too): every record planted under each name.
    let planted = Mutex::new(HashMap::<String, Vec<String>>::new());
    let plant = |name: String, id: u64| {
        sandbox.put_record(
            "Customer",
            json!({
                "Id": id.to_string(), "SyncToken": "0", "DisplayName": name, "Active": true,
                "MetaData": {"CreateTime": "2024-01-01T00:00:00-08:00",
                             "LastUpdatedTime": "2024-01-01T00:00:00-08:00"},
            }),
        );
        planted
            .lock()
            .unwrap()
            .entry(name)
            .or_default()
            .push(id.to_string());
    };
    let mut runner = TestRunner::new(config(192));
    let result = runner.run(&tricky_string(), |name| {
        let n = next_id.fetch_add(1, Ordering::SeqCst) + 1;
        plant(name.clone(), n);
        // A decoy one character longer: a literal cut short by a bad escape would find it.
        plant(format!("{name}'"), n + 500_000);
        let q = Query::select(customers)
            .filter("DisplayName", Op::Eq, Literal::Str(name.clone()))
            .render();
        let (status, body) = rt.block_on(api.query(&q));
        if status != 200 {
            return Err(TestCaseError::fail(format!("{q} -> {status} {body}")));
        }
        let mut found: Vec<String> = body["QueryResponse"]["Customer"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["Id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut expected = planted.lock().unwrap()[&name].clone();
        found.sort();
        expected.sort();
        if found != expected {
            return Err(TestCaseError::fail(format!(
                "{q} found {found:?}, not {expected:?}"
            )));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
