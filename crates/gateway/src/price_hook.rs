//! Dynamic prices: a route may ask an HTTP service of the operator for each request's price. paygate POSTs
//! what the price may depend on (method, path, query, the headers the operator chose, the body's digest and
//! length; never the body itself) and the service answers `{"price": "$0.0042"}` (or `"0.5 USDC"`, `"$0"` for
//! free). The answer is converted exactly into each offered asset, like a configured price.
//!
//! It fails closed: when the hook does not answer in time, answers an error or something that is not a price,
//! the request is refused with 503 `pricing-unavailable` (nothing proxied, nothing charged), unless the route
//! sets a `fallback_price`.
//!
//! The payment must match the price of the request it comes with. Each instance keeps the hook's answer for a
//! request (the same method, path, query, chosen headers and body digest) while a challenge lives
//! (`server.challenge_ttl_secs`), so the paid retry of a 402 is priced as the 402 was, without asking again.
//! Another instance asks the hook itself: the hook must price the same request the same way for that long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderName;
use http::request::Parts;
use paygate_core::clock::Clock;
use paygate_core::digest::body_digest;
use paygate_core::money::Price;
use paygate_core::reject::{RejectKind, Rejection};
use serde::{Deserialize, Serialize};

use crate::offers::RouteOffer;
use paygate_methods::rail::BuiltOption;

/// The most of a hook's answer paygate reads.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// The most answers kept; past it, expired ones are dropped, and if none has expired, all.
const MAX_KEPT_ANSWERS: usize = 10_000;

/// A route's pricing hook.
#[derive(Debug)]
pub(crate) struct PriceHook {
    url: reqwest::Url,
    client: reqwest::Client,
    headers: Vec<HeaderName>,
    options: Vec<BuiltOption>,
    /// The offers when the hook fails; `None` fails closed.
    fallback: Option<Vec<RouteOffer>>,
    /// How long an answer is kept, in seconds: the life of a challenge.
    keep_secs: u64,
    clock: Arc<dyn Clock>,
    /// The hook's answers by the request they priced (the JSON sent), with when they expire (Unix seconds).
    answers: Mutex<HashMap<String, (u64, Vec<RouteOffer>)>>,
}

/// What paygate sends the hook.
#[derive(Debug, Serialize)]
struct HookRequest<'a> {
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    /// The chosen headers the request carries, by lowercase name.
    headers: serde_json::Map<String, serde_json::Value>,
    /// `sha-256=<base64>` of the body (the digest MPP challenges bind), absent for an empty body.
    body_digest: Option<String>,
    body_length: usize,
}

/// What the hook answers.
#[derive(Debug, Deserialize)]
struct HookAnswer {
    price: String,
}

impl PriceHook {
    /// A hook at `url` (http or https) that must answer within `timeout`, its answers kept for `keep_secs` by
    /// `clock`; errors say what is wrong.
    pub(crate) fn new(
        url: &str,
        timeout: Duration,
        (keep_secs, clock): (u64, Arc<dyn Clock>),
        headers: &[String],
        options: Vec<BuiltOption>,
        fallback: Option<Vec<RouteOffer>>,
    ) -> Result<PriceHook, String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{url} is not an http or https URL"));
        }
        let headers = headers
            .iter()
            .map(|name| HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a header name")))
            .collect::<Result<_, _>>()?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot make the hook's HTTP client: {e}"))?;
        Ok(PriceHook { url, client, headers, options, fallback, keep_secs, clock, answers: Mutex::default() })
    }

    /// The offers when the hook fails (empty: it fails closed).
    pub(crate) fn fallback(&self) -> &[RouteOffer] {
        self.fallback.as_deref().unwrap_or_default()
    }

    /// The offers for this request: the hook's price in each option, or the fallback when the hook fails. An
    /// empty list when the hook says the request is free.
    pub(crate) async fn offers(&self, parts: &Parts, body: &[u8]) -> Result<Vec<RouteOffer>, Rejection> {
        match self.ask(parts, body).await {
            Ok(offers) => Ok(offers),
            Err(problem) => {
                tracing::warn!(hook = %self.url, %problem, fallback = self.fallback.is_some(), "price hook failed");
                self.fallback.clone().ok_or_else(|| {
                    Rejection::new(
                        RejectKind::PricingUnavailable,
                        "price_hook_failed",
                        "the price of this request could not be computed; nothing was charged: try again",
                    )
                    .retry_after(1)
                })
            }
        }
    }

    async fn ask(&self, parts: &Parts, body: &[u8]) -> Result<Vec<RouteOffer>, String> {
        let headers = self
            .headers
            .iter()
            .filter_map(|name| {
                let value = parts.headers.get(name)?.to_str().ok()?;
                Some((name.as_str().to_owned(), serde_json::Value::from(value)))
            })
            .collect();
        let request = HookRequest {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers,
            body_digest: (!body.is_empty()).then(|| body_digest(body)),
            body_length: body.len(),
        };
        let key = serde_json::to_string(&request).map_err(|e| e.to_string())?;
        if let Some(offers) = self.kept(&key) {
            return Ok(offers);
        }
        let response = self
            .client
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(key.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("it answered {}", response.status()));
        }
        if response.content_length().is_some_and(|len| len > MAX_ANSWER_BYTES as u64) {
            return Err("its answer is too long".into());
        }
        let answer = response.bytes().await.map_err(|e| e.to_string())?;
        if answer.len() > MAX_ANSWER_BYTES {
            return Err("its answer is too long".into());
        }
        let answer: HookAnswer =
            serde_json::from_slice(&answer).map_err(|e| format!("its answer is not {{\"price\": ...}}: {e}"))?;
        let price = Price::parse(&answer.price).map_err(|e| e.to_string())?;
        if price.is_zero() {
            return Ok(Vec::new());
        }
        let offers: Vec<RouteOffer> = self
            .options
            .iter()
            .filter_map(|option| {
                let amount = option.price(&price).ok()?;
                Some(RouteOffer::new(option.method.clone(), amount)).filter(RouteOffer::can_be_paid)
            })
            .collect();
        if offers.is_empty() {
            return Err(format!("no payment option can charge {price}"));
        }
        self.keep(key, offers.clone());
        Ok(offers)
    }

    /// The kept answer for the request sent as `key`, if it has not expired.
    fn kept(&self, key: &str) -> Option<Vec<RouteOffer>> {
        let answers = self.answers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = self.clock.now_unix();
        answers.get(key).filter(|(expires, _)| *expires > now).map(|(_, offers)| offers.clone())
    }

    fn keep(&self, key: String, offers: Vec<RouteOffer>) {
        let now = self.clock.now_unix();
        let mut answers = self.answers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if answers.len() >= MAX_KEPT_ANSWERS {
            answers.retain(|_, (expires, _)| *expires > now);
            if answers.len() >= MAX_KEPT_ANSWERS {
                answers.clear();
            }
        }
        answers.insert(key, (now.saturating_add(self.keep_secs), offers));
    }
}
