//! A bare QBO query client for the contenders that are not qbo: an access token from the
//! refresh grant, one GET per page, and the seed's retry habits (up to 5 attempts, sleeping
//! 2^n seconds, or that divided by the API's time scale; a 401 refreshes the token).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::BenchError;
use qbo_core::client::response::{parse_page, RawRecord};

/// Where the sandbox is and how to sign in; handed to child processes as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiSpec {
    pub api_base_url: String,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub realm_id: String,
    pub refresh_token: String,
    /// The API runs this many times faster than QBO (the API cost section's time scale), so
    /// the retry sleeps shrink with it.
    pub time_scale: u32,
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    spec: ApiSpec,
    query_url: String,
    access_token: String,
    refresh_token: String,
    /// Requests sent, retries included.
    pub requests: u64,
}

#[derive(Deserialize)]
struct Grant {
    access_token: String,
    refresh_token: String,
}

const ATTEMPTS: u32 = 5;

impl Api {
    pub async fn connect(spec: ApiSpec) -> Result<Api, BenchError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(100))
            .build()
            .map_err(|e| BenchError::Http(e.to_string()))?;
        let query_url = format!(
            "{}/v3/company/{}/query",
            spec.api_base_url.trim_end_matches('/'),
            spec.realm_id
        );
        let refresh_token = spec.refresh_token.clone();
        let mut api = Api {
            http,
            spec,
            query_url,
            access_token: String::new(),
            refresh_token,
            requests: 0,
        };
        api.refresh().await?;
        Ok(api)
    }

    async fn refresh(&mut self) -> Result<(), BenchError> {
        let grant: Grant = self
            .http
            .post(&self.spec.token_url)
            .basic_auth(&self.spec.client_id, Some(&self.spec.client_secret))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", self.refresh_token.as_str()),
            ])
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| BenchError::Http(format!("token refresh: {e}")))?
            .json()
            .await
            .map_err(|e| BenchError::Http(format!("token refresh: {e}")))?;
        self.access_token = grant.access_token;
        self.refresh_token = grant.refresh_token;
        Ok(())
    }

    /// One page of `query` (a SELECT with STARTPOSITION/MAXRESULTS) for `entity` (QBO name).
    pub async fn page(&mut self, entity: &str, query: &str) -> Result<Vec<RawRecord>, BenchError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.requests += 1;
            let sent = self
                .http
                .get(&self.query_url)
                .query(&[("query", query), ("minorversion", "75")])
                .header(reqwest::header::ACCEPT, "application/json")
                .bearer_auth(&self.access_token)
                .send()
                .await;
            let failure = match sent {
                Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {
                    self.refresh().await?;
                    "HTTP 401".to_string()
                }
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(body) => match parse_page(&body, entity) {
                        Ok(page) => return Ok(page.records),
                        Err(e) => e.to_string(),
                    },
                    Err(e) => e.to_string(),
                },
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => e.to_string(),
            };
            if attempt >= ATTEMPTS {
                return Err(BenchError::Http(format!("{query}: {failure}")));
            }
            let backoff = Duration::from_secs(1 << attempt) / self.spec.time_scale.max(1);
            tokio::time::sleep(backoff).await;
        }
    }
}
