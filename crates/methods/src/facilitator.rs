//! Client of a remote x402 facilitator: `POST /verify`, `POST /settle`, `GET /supported`.
//!
//! Behaves like the reference `HTTPFacilitatorClient`: JSON bodies, trailing slash stripped, and a failure
//! answered either as `200 {"isValid":false}` (TypeScript facilitator) or `400 {"isValid":false}` (x402-rs) is
//! a structured answer, not a transport error. Anything else (unreachable, timeout, 5xx, garbage) is
//! [`FacilitatorError::Unavailable`], whose text never contains the facilitator URL.

use std::time::Duration;

use paygate_proto::x402::{FacilitatorRequest, SettleResponse, Supported, VerifyResponse};
use serde::de::DeserializeOwned;

/// A facilitator that could not give a usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FacilitatorError {
    #[error("facilitator unavailable: {0}")]
    Unavailable(String),
}

/// A remote facilitator.
#[derive(Debug, Clone)]
pub struct FacilitatorClient {
    base: String,
    http: reqwest::Client,
}

impl FacilitatorClient {
    /// A client for the facilitator at `base_url` (for example `https://x402.org/facilitator`).
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, FacilitatorError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| FacilitatorError::Unavailable(format!("HTTP client: {e}")))?;
        Ok(FacilitatorClient { base: base_url.trim_end_matches('/').to_owned(), http })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub async fn verify(&self, request: &FacilitatorRequest) -> Result<VerifyResponse, FacilitatorError> {
        self.post("verify", request).await
    }

    pub async fn settle(&self, request: &FacilitatorRequest) -> Result<SettleResponse, FacilitatorError> {
        self.post("settle", request).await
    }

    pub async fn supported(&self) -> Result<Supported, FacilitatorError> {
        let response = self.http.get(format!("{}/supported", self.base)).send().await.map_err(summarize)?;
        decode(response, &[200]).await
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: &FacilitatorRequest) -> Result<T, FacilitatorError> {
        let response = self.http.post(format!("{}/{path}", self.base)).json(body).send().await.map_err(summarize)?;
        decode(response, &[200, 400, 402, 412]).await
    }
}

async fn decode<T: DeserializeOwned>(response: reqwest::Response, accepted: &[u16]) -> Result<T, FacilitatorError> {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(summarize)?;
    if !accepted.contains(&status) {
        return Err(FacilitatorError::Unavailable(format!("HTTP status {status}")));
    }
    serde_json::from_slice(&bytes)
        .map_err(|_| FacilitatorError::Unavailable(format!("unexpected answer (HTTP status {status})")))
}

fn summarize(err: reqwest::Error) -> FacilitatorError {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    FacilitatorError::Unavailable(what.into())
}
