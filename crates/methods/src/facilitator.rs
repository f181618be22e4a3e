//! Client of a remote x402 facilitator: `POST /verify`, `POST /settle`, `GET /supported`.
//!
//! Behaves like the reference `HTTPFacilitatorClient`: JSON bodies, trailing slash stripped, and a failure
//! answered either as `200 {"isValid":false}` (TypeScript facilitator) or `400 {"isValid":false}` (x402-rs) is
//! a structured answer, not a transport error. A request that never reached the facilitator (refused
//! connection, DNS, TLS) is [`FacilitatorError::Unreachable`]: the facilitator did nothing. Anything after the
//! request was sent (timeout, 5xx, garbage) is [`FacilitatorError::Unavailable`]: it may have acted. Neither's
//! text contains the facilitator URL.
//!
//! Facilitators that authenticate their callers (Coinbase CDP) get a fresh signed token with every request:
//! [`FacilitatorClient::with_cdp_key`].

use std::sync::Arc;
use std::time::Duration;

use paygate_core::method::SettleOutcome;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_proto::x402::{FacilitatorRequest, SettleResponse, Supported, VerifyResponse};
use serde::de::DeserializeOwned;

use crate::cdp::CdpKey;

/// The `waitUntil` of a `/settle` request that answers once the transaction was submitted.
pub const SUBMITTED: &str = "submitted";
/// A facilitator that could not give a usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FacilitatorError {
    /// The request never reached the facilitator, so it did nothing.
    #[error("facilitator unreachable: {0}")]
    Unreachable(String),
    /// The request was sent but no usable answer came back: the facilitator may have acted on it.
    #[error("facilitator unavailable: {0}")]
    Unavailable(String),
}

/// A remote facilitator.
#[derive(Debug, Clone)]
pub struct FacilitatorClient {
    base: String,
    http: reqwest::Client,
    cdp_key: Option<Arc<CdpKey>>,
}

impl FacilitatorClient {
    /// A client for the facilitator at `base_url` (for example `https://x402.org/facilitator`).
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, FacilitatorError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| FacilitatorError::Unreachable(format!("HTTP client: {e}")))?;
        Ok(FacilitatorClient { base: base_url.trim_end_matches('/').to_owned(), http, cdp_key: None })
    }

    /// Signs every request with `key`, as the Coinbase CDP facilitator requires.
    pub fn with_cdp_key(mut self, key: Arc<CdpKey>) -> Self {
        self.cdp_key = Some(key);
        self
    }

    /// A request to `path` under the base URL, with its CDP token when the client has a key.
    fn request(&self, method: reqwest::Method, path: &str) -> Result<reqwest::RequestBuilder, FacilitatorError> {
        let url = format!("{}/{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(key) = &self.cdp_key {
            let parsed = reqwest::Url::parse(&url)
                .map_err(|_| FacilitatorError::Unreachable("the facilitator URL is not a URL".into()))?;
            let host = match (parsed.host_str(), parsed.port()) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                (Some(host), None) => host.to_owned(),
                (None, _) => return Err(FacilitatorError::Unreachable("the facilitator URL has no host".into())),
            };
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let token = key
                .token(method.as_str(), &host, parsed.path(), now)
                .map_err(|e| FacilitatorError::Unreachable(e.to_string()))?;
            request = request.bearer_auth(token);
        }
        Ok(request)
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

    /// Asks the facilitator to settle `request` for option `option`, and what came of it: settled, refused
    /// (`settlement_pending` is undecided), not sent (the facilitator was not reached: nothing can have been
    /// broadcast), or undecided (it may have broadcast before failing to answer). The rails' `/settle`.
    pub async fn settle_outcome(&self, request: &FacilitatorRequest, option: &str) -> SettleOutcome {
        match self.settle(request).await {
            // Asked to answer once submitted, its success may be unconfirmed: the reconciler confirms it.
            Ok(answer) if answer.success && request.wait_until.as_deref() == Some(SUBMITTED) => {
                SettleOutcome::Submitted { reference: answer.transaction }
            }
            Ok(answer) if answer.success => SettleOutcome::Settled { reference: answer.transaction },
            Ok(answer) => {
                let reason = answer.error_reason.unwrap_or_else(|| "settlement refused".into());
                let reference = Some(answer.transaction).filter(|t| !t.is_empty());
                if reason == "settlement_pending" {
                    SettleOutcome::Unknown { reason, reference }
                } else {
                    SettleOutcome::Failed { reason, reference }
                }
            }
            Err(e @ FacilitatorError::Unreachable(_)) => {
                tracing::warn!(%option, error = %e, "settlement not sent");
                SettleOutcome::NotSent {
                    refusal: Rejection::new(
                        RejectKind::FacilitatorUnavailable,
                        "facilitator_unavailable",
                        "the facilitator could not be reached to settle; nothing was charged: send the same payment \
                         again",
                    ),
                }
            }
            Err(e @ FacilitatorError::Unavailable(_)) => {
                SettleOutcome::Unknown { reason: e.to_string(), reference: None }
            }
        }
    }

    pub async fn supported(&self) -> Result<Supported, FacilitatorError> {
        let response = self.request(reqwest::Method::GET, "supported")?.send().await.map_err(summarize)?;
        decode(response, &[200]).await
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: &FacilitatorRequest) -> Result<T, FacilitatorError> {
        let response = self.request(reqwest::Method::POST, path)?.json(body).send().await.map_err(summarize)?;
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

/// The error without its URL. A connection that was never made (refused, DNS, TLS, or a connect timeout) sent
/// nothing; anything later may have been acted on.
fn summarize(err: reqwest::Error) -> FacilitatorError {
    if err.is_connect() {
        let what = if err.is_timeout() { "connection timed out" } else { "connection failed" };
        return FacilitatorError::Unreachable(what.into());
    }
    let what = if err.is_timeout() { "timed out" } else { "transport error" };
    FacilitatorError::Unavailable(what.into())
}
