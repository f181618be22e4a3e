//! The detours that serve a priced route without a settlement: a client IP's free calls, a payer's free calls
//! (its payment proves who pays and is used up), and API-key customers (metered at the request's price). A call
//! counted and then failed upstream is taken back: it counts for nothing.

use http::request::Parts;
use http::{HeaderValue, Request, Response, header};

use paygate_core::error::Causes;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_store::NewPayment;

use super::claim::{Paid, ledger_row, store_down};
use super::route::RoutePricing;
use super::{Gateway, Inner, Route, SETTLEMENT_HEADER};
use crate::api_keys;
use crate::body::Body;
use crate::metrics::Outcome;
use crate::offers::RouteOffer;
use crate::proxy::ClientAddr;
use crate::request_id::REQUEST_ID;
use crate::usage::{FREE_CALLS_LEFT, IpQuota, period_start};

/// A call counted on a per-IP or per-payer counter.
pub(super) struct CountedCall {
    pub counter: String,
    /// The period it was counted in.
    pub start: i64,
    /// How many calls came before it in the period.
    pub index: u64,
}

/// The API key of a route that serves API-key customers, when the request carries one.
pub(super) fn api_key(pricing: &RoutePricing, parts: &Parts) -> Option<String> {
    if !pricing.api_keys {
        return None;
    }
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    api_keys::bearer(value).map(str::to_owned)
}

impl Gateway {
    /// Takes one of the client IP's free calls on the route, when it has one left: the call and how many are left
    /// after it.
    pub(super) async fn take_free_ip_call(
        &self,
        route: &Route,
        pricing: &RoutePricing,
        parts: &Parts,
    ) -> Result<Option<(CountedCall, u64)>, Rejection> {
        let (Some(quota), Some(ClientAddr(peer))) = (pricing.ip_quota(), parts.extensions.get::<ClientAddr>()) else {
            return Ok(None);
        };
        let counter = IpQuota::counter(&route.name, peer.ip());
        let start = period_start(quota.period, self.clock.now_unix());
        match self.store.count_call(&counter, start, &[quota.free_range()]).await {
            Ok(Some(index)) => Ok(Some((CountedCall { counter, start, index }, quota.calls.saturating_sub(index + 1)))),
            Ok(None) => Ok(None),
            Err(e) => Err(store_down(&e)),
        }
    }

    /// Serves one of a client IP's free calls; a call the upstream fails is taken back.
    pub(super) async fn free_ip_call<S: Inner>(
        &self,
        call: CountedCall,
        left: u64,
        request: Request<Body>,
        inner: S,
    ) -> Response<Body> {
        let mut response = self.upstream(inner, request).await;
        if response.status().as_u16() >= 400 {
            self.uncount(Some(&call)).await;
            return response;
        }
        self.metrics.outcome(Outcome::FreeCall);
        response.headers_mut().insert(FREE_CALLS_LEFT, HeaderValue::from(left));
        response
    }

    /// Takes back a counted call that failed.
    pub(super) async fn uncount(&self, call: Option<&CountedCall>) {
        if let Some(call) = call
            && let Err(e) = self.store.uncount_call(&call.counter, call.start).await
        {
            tracing::error!(counter = %call.counter, error = %Causes(&e), "could not take back a failed call");
        }
    }

    /// Serves a payer's free call: the payment proved who pays and is used up, and nothing is settled.
    pub(super) async fn free_payer_call<S: Inner>(
        &self,
        paid: &Paid<'_>,
        call: &CountedCall,
        request: Request<Body>,
        inner: S,
    ) -> Response<Body> {
        let mut response = self.upstream(inner, request).await;
        let status = response.status().as_u16();
        if !paid.payment.serve_free(call.index, status).await {
            self.uncount(Some(call)).await;
            return response;
        }
        response.headers_mut().insert(SETTLEMENT_HEADER, HeaderValue::from_static("free"));
        if let Ok(id) = HeaderValue::from_str(paid.ctx.request_id) {
            response.headers_mut().insert(REQUEST_ID, id);
        }
        response
    }

    /// Serves an API-key customer: an unknown or revoked key is 401 and never reaches the upstream; a call the
    /// upstream answered below 400 is metered at `offer`'s amount (the price this request has on the route).
    pub(super) async fn key_customer<S: Inner>(
        &self,
        key: &str,
        offer: &RouteOffer,
        request: Request<Body>,
        inner: S,
        request_id: &str,
    ) -> Response<Body> {
        let customer = match self.store.api_key_by_hash(&api_keys::hash(key)).await {
            Ok(Some(customer)) if customer.revoked_at_ms.is_none() => customer,
            Ok(found) => {
                let (reason, detail) = match found {
                    Some(_) => ("revoked_api_key", "this API key was revoked"),
                    None => ("unknown_api_key", "this API key is not known here"),
                };
                let mut response = self.reject(&Rejection::new(RejectKind::InvalidApiKey, reason, detail), request_id);
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
            Err(e) => return self.reject(&store_down(&e), request_id),
        };
        let route = super::bind::ledger_route(request.method(), request.uri(), request.extensions());
        let response = self.upstream(inner, request).await;
        if response.status().as_u16() >= 400 {
            return response;
        }
        let usage = NewPayment {
            proof_key: format!("apikey:{}:{:x}", customer.id, alloy::primitives::B128::random()),
            protocol: "api-key".to_owned(),
            rail: "api-key".to_owned(),
            payer: format!("key:{}", customer.name),
            settlement: serde_json::json!({ "api_key": customer.name, "status": response.status().as_u16() }),
            ..ledger_row(offer, request_id, route)
        };
        match self.store.record_usage(&usage).await {
            Ok(_) => self.metrics.outcome(Outcome::Metered),
            Err(e) => {
                tracing::error!(customer = %customer.name, error = %Causes(&e), "could not meter an API-key call")
            }
        }
        response
    }
}
