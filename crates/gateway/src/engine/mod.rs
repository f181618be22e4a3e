//! The paid-request engine. [`Gateway::dispatch`] decides without awaiting anything what becomes of a request (a
//! free route goes straight to the inner service, so its request never carries the paid flow's state);
//! [`Gateway::priced`] is the paid flow, a pipeline of steps each in its own module, as `docs/ARCHITECTURE.md`
//! draws it:
//!
//! ```text
//! price (pricing.rs) ─► no credential: 402 (refuse.rs)
//!                   └─► bind, verify (bind.rs) ─► claim (claim.rs) ─► proxy ─► settle (settle.rs) ─► receipt (receipt.rs)
//! ```
//!
//! with the detours on the side: free calls and API-key customers (`free.rs`), answers owed or kept for a
//! payment identifier (`redeliver.rs`), channel management that pays no call (`manage.rs`); a route priced by its
//! response is measured between the proxy and the settlement (`measure.rs`), or, for a stream paid from a
//! session, charged part by part as it is delivered (`stream.rs`). Every change of a claimed payment's
//! ledger row goes through `crate::payment::ClaimedPayment`.
//!
//! Invariants kept here (numbered as in `docs/ARCHITECTURE.md`):
//! 1. an unpaid or unverifiable request has no side effect: the inner service is not called, nothing is
//!    claimed or settled;
//! 3. a proof is claimed in the shared store before the upstream sees the request, so replays never reach it;
//! 4. with the default `settle = "after"`, money moves only when the upstream answered below 400; a settlement
//!    of unknown outcome is recorded `pending` and the response is delivered, never a fresh 402.

mod bind;
mod claim;
mod free;
mod manage;
mod measure;
mod pricing;
mod receipt;
mod redeliver;
mod refuse;
mod route;
mod settle;
mod stream;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Limited};
use tower::{Service, ServiceExt};
use tracing::Instrument as _;

use paygate_core::binding::ChallengeSecret;
use paygate_core::clock::Clock;
use paygate_core::method::PaymentMethod;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_store::Store;

pub use self::route::Route;
pub(crate) use self::route::{FreeCalls, Pricing, RoutePricing};
use crate::body::Body;
use crate::config::{SettleTiming, UnknownRoutes};
use crate::credential::{self, Presented};
use crate::limits::RateLimits;
use crate::metrics::{Metrics, Outcome, Phase};
use crate::offers::{RequestBinding, RouteOffer};
use crate::proxy::ClientAddr;
use crate::reconciler::Reconciler;
use crate::request_id::{REQUEST_ID, REQUEST_IDS};
use crate::routes::canonical_path;

/// The service behind the gateway: the reverse proxy, or an app's own handlers.
pub trait Inner: Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send> + Send {}

impl<S> Inner for S where S: Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send> + Send {}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub realm: Option<String>,
    pub public_url: Option<String>,
    pub challenge_ttl_secs: u64,
    pub max_body_bytes: usize,
    pub unknown_routes: UnknownRoutes,
    /// Rate limits ([`RateLimits`]); `None` is unlimited.
    pub per_ip_per_minute: Option<u32>,
    pub per_payer_per_minute: Option<u32>,
}

/// A configured gateway, shared by every request.
#[derive(Debug)]
pub struct Gateway {
    routes: Vec<Route>,
    /// Every configured payment option, also those no route offers (their payments may still need
    /// reconciling).
    options: Vec<Arc<dyn PaymentMethod>>,
    secret: ChallengeSecret,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    metrics: Metrics,
    limits: RateLimits,
    /// When it was built, RFC 3339.
    started: String,
    /// The MCP endpoints whose tools routes price (`crate::mcp`).
    mcp: crate::mcp::Tools,
}

/// What becomes of a request ([`Gateway::dispatch`]).
#[derive(Debug)]
pub(crate) enum Dispatch {
    /// Straight to the inner service: a free route, or an unknown route proxied as configured.
    PassThrough,
    /// Answered by paygate already: a refusal.
    Answered(Response<Body>),
    /// A priced route (its index in [`Gateway::routes`]): the paid flow ([`Gateway::priced`]) decides.
    Priced(usize),
    /// A `POST` to an MCP endpoint: its body says whether it calls a priced tool ([`Gateway::serve_mcp`]).
    Mcp,
}

/// The span every log line of a request carries: its id (as its problem body and ledger row do), method and
/// path.
pub(crate) fn request_span(request: &Request<Body>, request_id: &str) -> tracing::Span {
    tracing::info_span!("request", id = %request_id, method = %request.method(), path = %request.uri().path())
}

/// The header that tells a client its payment is accepted but its settlement not yet confirmed.
pub(crate) const SETTLEMENT_HEADER: &str = "paygate-settlement";

/// A request to a priced route, while it is being paid for.
#[derive(Clone, Copy)]
struct PaidRequest<'a> {
    route: &'a Route,
    /// The offers a 402 for this request states.
    offers: &'a [RouteOffer],
    /// The offers a payment for this request may answer: `offers`, or on a tiered route every tier's.
    accepted: &'a [RouteOffer],
    binding: &'a RequestBinding,
    request_id: &'a str,
    /// A browser asking for a page: an unpaid request gets the paywall page (`crate::paywall`).
    wants_html: bool,
}

impl Gateway {
    pub(crate) fn new(
        routes: Vec<Route>,
        options: Vec<Arc<dyn PaymentMethod>>,
        secret: ChallengeSecret,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Self {
        Gateway {
            started: paygate_core::clock::rfc3339(clock.now_unix()),
            mcp: crate::mcp::Tools::new(&routes),
            routes,
            options,
            secret,
            store,
            clock,
            limits: RateLimits::new(settings.per_ip_per_minute, settings.per_payer_per_minute),
            settings,
            metrics: Metrics::new(),
        }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn mcp_tools(&self) -> &crate::mcp::Tools {
        &self.mcp
    }

    /// Where this gateway is reached, as clients see it: the configured public URL, else `http://` and the
    /// request's `Host`.
    pub(crate) fn origin(&self, headers: &http::HeaderMap, uri: &http::Uri) -> String {
        bind::origin(&self.settings, headers, uri)
    }

    /// The realm challenges name: the configured one, else the request's host name.
    pub(crate) fn realm(&self, headers: &http::HeaderMap) -> String {
        bind::realm(&self.settings, headers)
    }

    /// When the gateway was built (RFC 3339): the discovery documents' `lastUpdated`.
    pub(crate) fn started(&self) -> &str {
        &self.started
    }

    /// A reconciler for this gateway's payments; rows untouched for `stale_after` are taken for abandoned.
    pub fn reconciler(&self, stale_after: Duration) -> Reconciler {
        Reconciler::new(self.store.clone(), &self.options, stale_after)
    }

    /// Serves one request, calling `inner` (the upstream) only for free routes and verified payments.
    pub async fn handle<S: Inner + 'static>(&self, mut request: Request<Body>, inner: S) -> Response<Body> {
        let (request_id, dispatch) = self.dispatch(&mut request);
        let span = request_span(&request, &request_id);
        match dispatch {
            Dispatch::PassThrough => call(inner, request).instrument(span).await,
            Dispatch::Answered(response) => response,
            Dispatch::Priced(route) => self.priced(route, request, request_id, inner).instrument(span).await,
            Dispatch::Mcp => self.serve_mcp(request, request_id, inner).instrument(span).await,
        }
    }

    /// Tags a request with its id (the client's when sane, which the upstream then logs too) and decides, before
    /// anything is awaited, what becomes of it: a free route's request never builds the paid flow's state.
    pub(crate) fn dispatch(&self, request: &mut Request<Body>) -> (String, Dispatch) {
        let request_id = REQUEST_IDS.for_request(request.headers());
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            request.headers_mut().insert(REQUEST_ID, value);
        }
        if let Some(ClientAddr(peer)) = request.extensions().get::<ClientAddr>()
            && let Err(rejection) = self.limits.check_ip(peer.ip())
        {
            return (request_id.clone(), Dispatch::Answered(self.reject(&rejection, &request_id)));
        }
        let path = match canonical_path(request.uri().path()) {
            Ok(path) => path,
            Err(e) => {
                let rejection = Rejection::new(RejectKind::AmbiguousPath, "ambiguous_path", e.to_string());
                return (request_id.clone(), Dispatch::Answered(self.reject(&rejection, &request_id)));
            }
        };
        // An MCP server's tool calls are told apart by their body, read in `crate::mcp`.
        if request.method() == http::Method::POST && self.mcp.is_endpoint(&path) {
            return (request_id, Dispatch::Mcp);
        }
        let Some(route) = self.routes.iter().position(|r| r.matcher.matches(request.method(), &path)) else {
            // The discovery documents, free and generated here, where no route claims their path.
            if let Some(document) = crate::discovery::answer(self, request, &path) {
                self.metrics.outcome(Outcome::Free);
                return (request_id, Dispatch::Answered(document));
            }
            // The rest of an MCP server's endpoint (its `GET` stream, `DELETE` of a session) passes free.
            if self.mcp.is_endpoint(&path) {
                self.metrics.outcome(Outcome::Free);
                return (request_id, Dispatch::PassThrough);
            }
            self.metrics.outcome(Outcome::UnknownRoute);
            let dispatch = match self.settings.unknown_routes {
                UnknownRoutes::Proxy => Dispatch::PassThrough,
                UnknownRoutes::Reject => {
                    let rejection = Rejection::new(RejectKind::RouteNotFound, "route_not_found", "no route matches");
                    Dispatch::Answered(crate::offers::rejection_response(&rejection, &request_id))
                }
            };
            return (request_id, dispatch);
        };
        if self.routes[route].is_free() {
            self.metrics.outcome(Outcome::Free);
            return (request_id, Dispatch::PassThrough);
        }
        (request_id, Dispatch::Priced(route))
    }

    /// The paid flow of a request [`Gateway::dispatch`] found priced, on route number `route`. Whatever it
    /// answers names the request and is never stored by a shared cache (`receipt.rs`).
    pub(crate) async fn priced<S: Inner>(
        &self,
        route: usize,
        request: Request<Body>,
        request_id: String,
        inner: S,
    ) -> Response<Body> {
        let mut response = self.price_and_serve(&self.routes[route], request, &request_id, inner).await;
        receipt::finish(&mut response, &request_id);
        response
    }

    /// The pipeline's first half: read the credential and the body, price the request, serve what needs no
    /// payment (a request priced at nothing, an API-key customer, a free call), and answer an unpaid request
    /// with the 402.
    async fn price_and_serve<S: Inner>(
        &self,
        route: &Route,
        request: Request<Body>,
        request_id: &str,
        inner: S,
    ) -> Response<Body> {
        let presented = match credential::extract(request.headers()) {
            Ok(presented) => presented,
            Err(rejection) => return self.reject(&rejection, request_id),
        };
        if presented.is_some()
            && let Some(refusal) = self.head_not_paid(route, request.method(), request_id)
        {
            return refusal;
        }
        let (parts, body) = match self.read_body(request).await {
            Ok(read) => read,
            Err(rejection) => return self.reject(&rejection, request_id),
        };
        let Some(pricing) = &route.pricing else { unreachable!("dispatch sends only priced routes here") };
        let offers = match pricing.price.offers_for(&parts, &body).await {
            Ok(offers) => offers,
            Err(rejection) => return self.reject(&rejection, request_id),
        };
        if offers.is_empty() {
            // Nothing to pay for (no units, no minimum): served like a free route.
            self.metrics.outcome(Outcome::Free);
            return call(inner, Request::from_parts(parts, Body::from(body))).await;
        }
        if let Some(key) = free::api_key(pricing, &parts) {
            let request = Request::from_parts(parts, Body::from(body));
            return self.key_customer(&key, &offers[0], request, inner, request_id).await;
        }
        if presented.is_none() {
            match self.take_free_ip_call(route, pricing, &parts).await {
                Ok(Some((call, left))) => {
                    return self.free_ip_call(call, left, Request::from_parts(parts, Body::from(body)), inner).await;
                }
                Ok(None) => {}
                Err(rejection) => return self.reject(&rejection, request_id),
            }
        }
        let binding = bind::binding(&self.settings, &parts, &body);
        let (quoted, accepted) = match self.quote(route, pricing, &offers, &parts, presented.is_none()).await {
            Ok(quote) => quote,
            Err(rejection) => return self.reject(&rejection, request_id),
        };
        let wants_html = crate::paywall::wants_html(&parts.headers);
        let ctx = PaidRequest { route, offers: quoted, accepted, binding: &binding, request_id, wants_html };
        match presented {
            None => self.refuse(&ctx, None).await,
            Some(presented) => self.paid(&ctx, presented, parts, body, inner).await,
        }
    }

    /// The pipeline's second half: bind and verify the payment, claim it, call the upstream, settle, receipt.
    async fn pay_and_serve<S: Inner>(
        &self,
        ctx: &PaidRequest<'_>,
        presented: Presented,
        parts: Parts,
        body: Bytes,
        inner: S,
    ) -> Response<Body> {
        if let Some(answered) = self.managed(ctx, &presented, &parts, &body).await {
            return answered;
        }
        let bound = match self.bind_and_verify(ctx, &presented, &body).await {
            Ok(bound) => bound,
            Err(rejection) => return self.owed_or_refused(ctx, &presented, rejection, parts, body, inner).await,
        };
        let claimed = match self.claim(ctx, &presented, bound, &parts).await {
            Ok(claim::Claimed::New(claimed)) => claimed,
            Ok(claim::Claimed::Owed { owed, offer }) => {
                return self.redeliver(ctx, &presented, offer, *owed, parts, body, inner).await;
            }
            Err(response) => return response,
        };
        let paid = claim::Paid { ctx, presented: &presented, offer: claimed.offer, payment: &claimed.payment };
        let counted = match self.count_payer_call(&paid).await {
            Ok(claim::Counted::Paid(counted)) => counted,
            Ok(claim::Counted::Free(call)) => {
                return self.free_payer_call(&paid, &call, Request::from_parts(parts, Body::from(body)), inner).await;
            }
            Err(response) => return response,
        };
        let request = Request::from_parts(parts, Body::from(body));
        let response = match ctx.route.settle {
            SettleTiming::Before => self.settle_then_proxy(&paid, request, inner).await,
            SettleTiming::After => self.proxy_then_settle(&paid, request, inner).await,
        };
        if response.is_err() {
            self.uncount(counted.as_ref()).await;
        }
        response.unwrap_or_else(|refused| refused)
    }

    /// Reads a priced request's body, whole and bounded: its digest binds the offers.
    pub(crate) async fn read_body(&self, request: Request<Body>) -> Result<(Parts, Bytes), Rejection> {
        let (parts, body) = request.into_parts();
        match Limited::new(body, self.settings.max_body_bytes).collect().await {
            Ok(collected) => Ok((parts, collected.to_bytes())),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(Rejection::new(
                RejectKind::BodyTooLarge,
                "body_too_large",
                format!("paid requests carry at most {} bytes", self.settings.max_body_bytes),
            )),
            Err(_) => Err(Rejection::new(
                RejectKind::MalformedRequest,
                "body_unreadable",
                "the request body could not be read (its framing is malformed, or it was cut off)",
            )),
        }
    }

    /// Calls the upstream, timed.
    async fn upstream<S: Inner>(&self, inner: S, request: Request<Body>) -> Response<Body> {
        let started = Instant::now();
        let response = call(inner, request).await;
        self.metrics.time(Phase::Upstream, started.elapsed());
        response
    }
}

pub(crate) async fn call<S: Inner>(inner: S, request: Request<Body>) -> Response<Body> {
    match inner.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
