//! `GET .../reports/{name}`: one report, as JSON, through the same tokens, rate limits and
//! retries as every other request. What the JSON must look like is the caller's to check
//! (see `crate::reports::parse`); `check` runs inside the retry loop, so an answer of an
//! unknown shape is asked again and, if it persists, fails instead of being stored.

use serde_json::Value;

use super::{response, Answer, ClientError, QboClient, RequestCounters};

impl QboClient {
    /// Asks QBO for report `name` with `params` (minorversion is added) and returns its JSON
    /// once `check` accepts it. A Fault, even inside a 200, is an error.
    pub async fn fetch_report(
        &self,
        name: &str,
        params: &[(&str, &str)],
        counters: &mut RequestCounters,
        check: impl Fn(&Value) -> Result<(), String>,
    ) -> Result<Answer<Value>, ClientError> {
        let mut url = self.query_url.clone();
        url.path_segments_mut()
            .map_err(|_| ClientError::BadBaseUrl(self.query_url.clone()))?
            .pop()
            .extend(["reports", name]);
        self.execute_get(&url, params, counters, |body| {
            let v: Value = serde_json::from_slice(body).map_err(|e| {
                ClientError::Malformed(format!(
                    "the {name} report is not JSON ({e}): {}",
                    response::snippet(body)
                ))
            })?;
            if let Some(fault) = v.get("Fault").or_else(|| v.get("fault")) {
                return Err(response::fault_error(200, &fault.to_string()));
            }
            check(&v).map_err(|why| {
                ClientError::Malformed(format!(
                    "the {name} report is not of a shape qbo knows: {why}"
                ))
            })?;
            Ok(v)
        })
        .await
    }
}
