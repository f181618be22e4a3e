//! The paid-request engine: route → offers → (no credential: 402) → bind → verify → claim → proxy → settle →
//! receipt and ledger. [`Gateway::handle`] is the whole flow. It has two halves, which the tower layer in
//! `layer.rs` calls itself: [`Gateway::dispatch`] decides without awaiting anything (a free route goes straight to
//! the inner service, so its request never carries the paid flow's state) and [`Gateway::priced`] is the paid flow.
//!
//! Invariants kept here (numbered as in `docs/ARCHITECTURE.md`):
//! 1. an unpaid or unverifiable request has no side effect: the inner service is not called, nothing is
//!    claimed or settled;
//! 3. a proof is claimed in the shared store before the upstream sees the request, so replays never reach it;
//! 4. with the default `settle = "after"`, money moves only when the upstream answered below 400; a settlement
//!    of unknown outcome is recorded `pending` and the response is delivered, never a fresh 402.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use http_body_util::{BodyExt, Limited};
use tower::{Service, ServiceExt};
use tracing::Instrument as _;

use paygate_core::binding::{BindingInput, ChallengeSecret, challenge_scope, encode_request, scope_route};
use paygate_core::clock::{Clock, parse_rfc3339, rfc3339};
use paygate_core::digest::{body_digest, digest_matches};
use paygate_core::method::{PaymentMethod, Proof, SettleOutcome, VerifiedPayment};
use paygate_core::reject::{RejectKind, Rejection};
use paygate_proto::mpp::{self, Receipt};
use paygate_proto::x402;
use paygate_store::{Claim, NewPayment, PaymentId, PaymentRecord, PaymentState, Store, Transition};

use crate::api_keys;
use crate::body::Body;
use crate::config::{SettleTiming, UnknownRoutes};
use crate::credential::{self, Presented};
use crate::identifier::{self, Identifier, Lookup};
use crate::limits::{PayerLimit, RateLimits};
use crate::metrics::{Metrics, Outcome, Phase};
use crate::offers::{self, RequestBinding, ResourceText, RouteOffer, X402_BINDING_KEY};
use crate::price_hook::PriceHook;
use crate::pricing::UnitPricing;
use crate::proxy::ClientAddr;
use crate::reconciler::{Attempt, Reconciler, settle_payment};
pub use crate::request_id::REQUEST_ID;
use crate::request_id::REQUEST_IDS;
use crate::routes::{RouteMatcher, canonical_path};
use crate::usage::{FREE_CALLS_LEFT, IpQuota, PAYER_HINT, PayerTiers, period_start};

/// One configured route.
#[derive(Debug)]
pub struct Route {
    /// `METHOD /pattern` as configured, for metrics.
    pub name: String,
    pub matcher: RouteMatcher,
    /// Empty for a free route. For a per-unit route, the offers of one unit.
    pub offers: Vec<RouteOffer>,
    /// How a per-unit route prices each request; `None` for a flat price.
    pub per_unit: Option<UnitPricing>,
    /// The service that prices each request of the route, if one does; `offers` are then its fallback.
    pub price_hook: Option<PriceHook>,
    /// Free calls and usage tiers counted per payer; `offers` are then what a payer with no calls is quoted.
    pub payer_tiers: Option<PayerTiers>,
    /// Free calls per client IP.
    pub ip_quota: Option<IpQuota>,
    /// Whether API-key customers may call it (`Authorization: Bearer pgk_...`).
    pub api_keys: bool,
    pub settle: SettleTiming,
    pub resource: ResourceText,
}

impl Route {
    /// Whether the route is served without payment.
    pub fn is_free(&self) -> bool {
        self.offers.is_empty() && self.price_hook.is_none() && self.payer_tiers.is_none()
    }
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct Settings {
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
}

/// What becomes of a request ([`Gateway::dispatch`]).
#[derive(Debug)]
pub enum Dispatch {
    /// Straight to the inner service: a free route, or an unknown route proxied as configured.
    PassThrough,
    /// Answered by paygate already: a refusal.
    Answered(Response<Body>),
    /// A priced route (its index in [`Gateway::routes`]): the paid flow ([`Gateway::priced`]) decides.
    Priced(usize),
}

/// The span every log line of a request carries: its id (as its problem body and ledger row do), method and
/// path.
pub fn request_span(request: &Request<Body>, request_id: &str) -> tracing::Span {
    tracing::info_span!("request", id = %request_id, method = %request.method(), path = %request.uri().path())
}

/// The header that tells a client its payment is accepted but its settlement not yet confirmed.
pub const SETTLEMENT_HEADER: &str = "paygate-settlement";

impl Gateway {
    pub fn new(
        routes: Vec<Route>,
        options: Vec<Arc<dyn PaymentMethod>>,
        secret: ChallengeSecret,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Self {
        Gateway {
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

    /// A reconciler for this gateway's payments; rows untouched for `stale_after` are taken for abandoned.
    pub fn reconciler(&self, stale_after: Duration) -> Reconciler {
        Reconciler::new(self.store.clone(), &self.options, stale_after)
    }

    /// A refusal without offers, counted.
    fn reject(&self, rejection: &Rejection, request_id: &str) -> Response<Body> {
        self.metrics.outcome(Outcome::Rejected);
        self.metrics.rejected(rejection.reason);
        offers::rejection_response(rejection, request_id)
    }

    /// Serves one request, calling `inner` (the upstream) only for free routes and verified payments.
    pub async fn handle<S>(&self, mut request: Request<Body>, inner: S) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
        S::Future: Send,
    {
        let (request_id, dispatch) = self.dispatch(&mut request);
        let span = request_span(&request, &request_id);
        match dispatch {
            Dispatch::PassThrough => call(inner, request).instrument(span).await,
            Dispatch::Answered(response) => response,
            Dispatch::Priced(route) => self.priced(route, request, request_id, inner).instrument(span).await,
        }
    }

    /// Tags a request with its id (the client's when sane, which the upstream then logs too) and decides, before
    /// anything is awaited, what becomes of it: a free route's request never builds the paid flow's state.
    pub fn dispatch(&self, request: &mut Request<Body>) -> (String, Dispatch) {
        let request_id = REQUEST_IDS.for_request(request.headers());
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            request.headers_mut().insert(REQUEST_ID, value);
        }
        if let Some(ClientAddr(peer)) = request.extensions().get::<ClientAddr>()
            && let Err(rejection) = self.limits.check_ip(peer.ip())
        {
            let response = self.reject(&rejection, &request_id);
            return (request_id, Dispatch::Answered(response));
        }
        let path = match canonical_path(request.uri().path()) {
            Ok(path) => path,
            Err(e) => {
                let rejection = Rejection::new(RejectKind::AmbiguousPath, "ambiguous_path", e.to_string());
                let response = self.reject(&rejection, &request_id);
                return (request_id, Dispatch::Answered(response));
            }
        };
        let Some(route) = self.routes.iter().position(|r| r.matcher.matches(request.method(), &path)) else {
            self.metrics.outcome(Outcome::UnknownRoute);
            let dispatch = match self.settings.unknown_routes {
                UnknownRoutes::Proxy => Dispatch::PassThrough,
                UnknownRoutes::Reject => {
                    let rejection = Rejection::new(RejectKind::RouteNotFound, "route_not_found", "no route matches");
                    Dispatch::Answered(offers::rejection_response(&rejection, &request_id))
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
    /// answers names the request and is never stored by a shared cache: a paid answer must not reach an unpaid
    /// client through a CDN.
    pub async fn priced<S>(&self, route: usize, request: Request<Body>, request_id: String, inner: S) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
        S::Future: Send,
    {
        let mut response = self.price_and_serve(&self.routes[route], request, &request_id, inner).await;
        let headers = response.headers_mut();
        if !headers.contains_key(REQUEST_ID)
            && let Ok(id) = HeaderValue::from_str(&request_id)
        {
            headers.insert(REQUEST_ID, id);
        }
        uncacheable(headers);
        response
    }

    async fn price_and_serve<S>(
        &self,
        route: &Route,
        request: Request<Body>,
        request_id: &str,
        inner: S,
    ) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
        S::Future: Send,
    {
        let request_id = request_id.to_owned();
        let presented = match credential::extract(request.headers()) {
            Ok(presented) => presented,
            Err(rejection) => return self.reject(&rejection, &request_id),
        };
        // A HEAD has no body to deliver: it is never charged (unless the route sells HEAD itself). Unpaid, it gets
        // the route's 402 (headers only); with a payment, a refusal that leaves the payment unused for the GET.
        if presented.is_some()
            && request.method() == Method::HEAD
            && route.matcher.method.as_ref() != Some(&Method::HEAD)
        {
            let rejection = Rejection::new(
                RejectKind::MethodNotPaid,
                "head_not_paid",
                "HEAD is not charged: nothing was verified or charged; send the payment with GET",
            );
            let mut response = self.reject(&rejection, &request_id);
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
            return response;
        }
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, self.settings.max_body_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                let rejection = if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    Rejection::new(
                        RejectKind::BodyTooLarge,
                        "body_too_large",
                        format!("paid requests carry at most {} bytes", self.settings.max_body_bytes),
                    )
                } else {
                    Rejection::new(
                        RejectKind::MalformedRequest,
                        "body_unreadable",
                        "the request body could not be read (its framing is malformed, or it was cut off)",
                    )
                };
                return self.reject(&rejection, &request_id);
            }
        };
        // A per-unit or hook-priced route's offers are priced for this request (its body is bound to them by
        // digest).
        let priced: Vec<RouteOffer>;
        let offers = match (&route.per_unit, &route.price_hook) {
            (Some(pricing), _) => {
                let quantity = pricing.quantity(parts.uri.query(), &body);
                priced = match quantity.and_then(|q| pricing.offers(&route.offers, q)) {
                    Ok(offers) => offers,
                    Err(rejection) => return self.reject(&rejection, &request_id),
                };
                priced.as_slice()
            }
            (None, Some(hook)) => {
                priced = match hook.offers(&parts, &body).await {
                    Ok(offers) => offers,
                    Err(rejection) => return self.reject(&rejection, &request_id),
                };
                priced.as_slice()
            }
            (None, None) => route.offers.as_slice(),
        };
        if offers.is_empty() {
            // Nothing to pay for (no units, no minimum): served like a free route.
            self.metrics.outcome(Outcome::Free);
            return call(inner, Request::from_parts(parts, Body::from(body))).await;
        }
        if route.api_keys
            && let Some(key) =
                parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(api_keys::bearer)
        {
            let key = key.to_owned();
            return self
                .key_customer(&key, &offers[0], Request::from_parts(parts, Body::from(body)), inner, &request_id)
                .await;
        }
        if presented.is_none()
            && let Some(quota) = &route.ip_quota
            && let Some(ClientAddr(peer)) = parts.extensions.get::<ClientAddr>()
        {
            let counter = IpQuota::counter(&route.name, peer.ip());
            let start = period_start(quota.period, self.clock.now_unix());
            match self.store.count_call(&counter, start, &[quota.free_range()]).await {
                Ok(Some(index)) => {
                    let call = CountedCall { counter, start, index };
                    let left = quota.calls.saturating_sub(index + 1);
                    return self.free_ip_call(call, left, Request::from_parts(parts, Body::from(body)), inner).await;
                }
                Ok(None) => {}
                Err(e) => return self.reject(&store_down(&e), &request_id),
            }
        }
        let binding = self.binding(&parts, &body);
        // A tiered route quotes the payer an unpaid request names (a hint: the verified payment decides; a paid
        // one is not slowed by the look-up, its refusal quotes a payer with no calls) and takes a payment of any
        // tier's price.
        let (quoted, accepted) = match &route.payer_tiers {
            None => (offers, offers),
            Some(tiers) => {
                let accepted = tiers.accepted(offers);
                let hint = parts.headers.get(PAYER_HINT).and_then(|v| v.to_str().ok()).filter(|p| p.len() <= 128);
                let calls = match hint.filter(|_| presented.is_none()) {
                    Some(payer) => {
                        let start = period_start(tiers.period, self.clock.now_unix());
                        self.store.calls(&PayerTiers::counter(&route.name, payer), start).await.unwrap_or(0)
                    }
                    None => 0,
                };
                (tiers.quote(calls, accepted), accepted)
            }
        };
        let ctx = PaidRequest { route, offers: quoted, accepted, binding: &binding, request_id: &request_id };
        let Some(presented) = presented else {
            return self.refuse(&ctx, None).await;
        };
        self.paid(&ctx, presented, parts, body, inner).await
    }

    /// Serves one of a client IP's free calls; a call the upstream fails is taken back (it counts for nothing).
    async fn free_ip_call<S>(&self, call: CountedCall, left: u64, request: Request<Body>, inner: S) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
        S::Future: Send,
    {
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
    async fn uncount(&self, call: Option<&CountedCall>) {
        if let Some(call) = call
            && let Err(e) = self.store.uncount_call(&call.counter, call.start).await
        {
            tracing::error!(counter = %call.counter, error = %e, "could not take back a failed call");
        }
    }

    /// Counts a verified payment's call in its payer's tiers, or refuses it (releasing its claim, nothing
    /// charged) with a 402 quoting the payer's price when its amount is not the price of the payer's next call.
    async fn count_payer_call(
        &self,
        ctx: &PaidRequest<'_>,
        tiers: &PayerTiers,
        offer: &RouteOffer,
        verified: &VerifiedPayment,
        id: PaymentId,
    ) -> Result<(CountedCall, bool), Response<Body>> {
        let counter = PayerTiers::counter(&ctx.route.name, &verified.payer);
        let start = period_start(tiers.period, self.clock.now_unix());
        let rejection = match self.store.count_call(&counter, start, &tiers.ranges(offer)).await {
            Ok(Some(index)) => return Ok((CountedCall { counter, start, index }, tiers.is_free(index))),
            Ok(None) => Rejection::new(
                RejectKind::InvalidChallenge,
                "tier_price_changed",
                "this payment is not the price of the payer's next call on this route (its usage tier moved); \
                 nothing was charged: pay the offer quoted now",
            ),
            Err(e) => store_down(&e),
        };
        let voided = Transition { reason: rejection.reason, ..Default::default() };
        if let Err(e) = self.store.transition(id, &[PaymentState::Verified], PaymentState::Voided, voided).await {
            tracing::error!(payment = id, error = %e, "could not release a payment refused by its tier");
        }
        offer.method.release(verified).await;
        let calls = self.store.calls(&counter, start).await.unwrap_or(0);
        let requote = PaidRequest { offers: tiers.quote(calls, ctx.accepted), ..*ctx };
        Err(self.refuse(&requote, Some(&rejection)).await)
    }

    /// Serves a payer's free call: the payment proved who pays and is used up, and nothing is settled.
    async fn free_payer_call<S>(
        &self,
        paid: &Paid<'_>,
        call: &CountedCall,
        request: Request<Body>,
        inner: S,
    ) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
        S::Future: Send,
    {
        let mut response = self.upstream(inner, request).await;
        let status = response.status().as_u16();
        paid.offer.method.release(paid.verified).await;
        let (to, reason, outcome) = if status >= 400 {
            self.uncount(Some(call)).await;
            (PaymentState::Voided, format!("upstream answered {status}"), Outcome::Voided)
        } else {
            (PaymentState::Free, format!("free call {} of the period", call.index + 1), Outcome::FreeCall)
        };
        self.metrics.outcome(outcome);
        let t = Transition { reason: &reason, upstream_status: Some(status), ..Default::default() };
        if let Err(e) = self.store.transition(paid.id, &[PaymentState::Verified], to, t).await {
            tracing::error!(payment = paid.id, error = %e, "could not record a free call");
        }
        if to == PaymentState::Free {
            response.headers_mut().insert(SETTLEMENT_HEADER, HeaderValue::from_static("free"));
            if let Ok(id) = HeaderValue::from_str(paid.ctx.request_id) {
                response.headers_mut().insert(REQUEST_ID, id);
            }
        }
        response
    }

    /// Serves an API-key customer: an unknown or revoked key is 401 and never reaches the upstream; a call the
    /// upstream answered below 400 is metered at `offer`'s amount (the price this request has on the route).
    async fn key_customer<S>(
        &self,
        key: &str,
        offer: &RouteOffer,
        request: Request<Body>,
        inner: S,
        request_id: &str,
    ) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
        S::Future: Send,
    {
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
        let route = format!("{} {}", request.method(), request.uri().path());
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
            Err(e) => tracing::error!(customer = %customer.name, error = %e, "could not meter an API-key call"),
        }
        response
    }

    /// What every challenge for this request binds.
    fn binding(&self, parts: &Parts, body: &Bytes) -> RequestBinding {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or("localhost");
        let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let realm = self.settings.realm.clone().unwrap_or_else(|| host_name(host).to_owned());
        let resource_url = match &self.settings.public_url {
            Some(base) => format!("{}{path_and_query}", base.trim_end_matches('/')),
            None => format!("http://{host}{path_and_query}"),
        };
        RequestBinding {
            realm,
            route: format!("{} {path_and_query}", parts.method),
            digest: (!body.is_empty()).then(|| body_digest(body)),
            resource_url,
        }
    }

    /// A refusal: a 402 with fresh offers when paying again could help, the bare problem otherwise.
    async fn refuse(&self, ctx: &PaidRequest<'_>, rejection: Option<&Rejection>) -> Response<Body> {
        let outcome = match rejection.map(|r| r.kind) {
            None => Outcome::Challenged,
            Some(RejectKind::Replayed) => Outcome::Replayed,
            Some(RejectKind::SettlementFailed) => Outcome::SettleFailed,
            Some(_) => Outcome::Rejected,
        };
        self.metrics.outcome(outcome);
        if let Some(r) = rejection {
            self.metrics.rejected(r.reason);
        }
        match rejection {
            Some(r) if !r.kind.offers_again() => offers::rejection_response(r, ctx.request_id),
            _ => {
                offers::payment_required(
                    ctx.offers,
                    ctx.binding,
                    &ctx.route.resource,
                    &self.secret,
                    self.clock.now_unix(),
                    self.settings.challenge_ttl_secs,
                    rejection,
                    ctx.request_id,
                )
                .await
            }
        }
    }

    /// A paid request; one carrying an x402 payment identifier is answered as its first request was, when it
    /// was.
    async fn paid<S>(
        &self,
        ctx: &PaidRequest<'_>,
        presented: Presented,
        parts: Parts,
        body: Bytes,
        inner: S,
    ) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
        S::Future: Send,
    {
        let identifier = match &presented {
            Presented::X402V2(payload) => match Identifier::of(&ctx.route.name, payload) {
                Ok(identifier) => identifier,
                Err(rejection) => return self.refuse(ctx, Some(&rejection)).await,
            },
            _ => None,
        };
        let Some(identifier) = identifier else {
            return self.pay_and_serve(ctx, presented, parts, body, inner).await;
        };
        match identifier::look_up(self.store.as_ref(), &identifier).await {
            Ok(Lookup::Process) => {}
            Ok(Lookup::Answered(response)) => {
                self.metrics.outcome(Outcome::Redelivered);
                return response;
            }
            Ok(Lookup::Redeliver(kept)) => {
                self.metrics.outcome(Outcome::Redelivered);
                let response = self.upstream(inner, Request::from_parts(parts, Body::from(body))).await;
                return identifier::with_kept_headers(response, kept);
            }
            Ok(Lookup::Refused(rejection)) => return self.refuse(ctx, Some(&rejection)).await,
            Err(e) => return self.refuse(ctx, Some(&store_down(&e))).await,
        }
        let response = self.pay_and_serve(ctx, presented, parts, body, inner).await;
        identifier::keep(self.store.as_ref(), &identifier, response).await
    }

    /// Binds, verifies, claims, serves and settles a payment.
    async fn pay_and_serve<S>(
        &self,
        ctx: &PaidRequest<'_>,
        presented: Presented,
        parts: Parts,
        body: Bytes,
        inner: S,
    ) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
        S::Future: Send,
    {
        let (offer, challenge_id, verified) = match self.bind_and_verify(ctx, &presented, &body).await {
            Ok(bound) => bound,
            Err(rejection) => {
                // A proof the chain already took may be one whose response was never delivered (a crashed gateway,
                // a settlement that landed after it was reported failed): owed to the same credential, even once
                // its offer has expired, and only to it (its challenge id is the row's).
                if matches!(rejection.kind, RejectKind::Replayed | RejectKind::PaymentExpired)
                    && let Ok((offer, challenge_id, proof)) = self.bind(ctx, &presented, &body, Expiry::Ignored)
                    && let Some(proof_key) = offer.method.proof_key(proof)
                    && let Some(owed) = self.owed_response(&proof_key, challenge_id.as_deref()).await
                {
                    return self.redeliver(ctx, &presented, offer, owed, parts, body, inner).await;
                }
                return self.refuse(ctx, Some(&rejection)).await;
            }
        };
        let now_ms = i64::try_from(self.clock.now_unix()).unwrap_or(i64::MAX).saturating_mul(1000);
        match self.limits.check_payer(self.store.as_ref(), &verified.payer, now_ms).await {
            Ok(()) => {}
            Err(PayerLimit::Over(rejection)) => return self.refuse(ctx, Some(&rejection)).await,
            Err(PayerLimit::Store(e)) => return self.refuse(ctx, Some(&store_down(&e))).await,
        }
        let new = NewPayment {
            proof_key: verified.proof_key.clone(),
            challenge_id,
            protocol: presented.protocol().to_owned(),
            rail: offer.method.rail().to_owned(),
            payer: verified.payer.clone(),
            settlement: verified.settlement.clone(),
            ..ledger_row(offer, ctx.request_id, format!("{} {}", parts.method, parts.uri.path()))
        };
        let started = Instant::now();
        let claim = self.store.claim(&new).await;
        self.metrics.time(Phase::Claim, started.elapsed());
        let id = match claim {
            Ok(Claim::Claimed(id)) => id,
            Ok(Claim::Taken { state, .. }) => {
                if state == PaymentState::Settled
                    && let Some(owed) = self.owed_response(&verified.proof_key, new.challenge_id.as_deref()).await
                {
                    return self.redeliver(ctx, &presented, offer, owed, parts, body, inner).await;
                }
                return self.refuse(ctx, Some(&taken(state))).await;
            }
            Err(e) => return self.refuse(ctx, Some(&store_down(&e))).await,
        };
        let paid = Paid { ctx, presented: &presented, offer, verified: &verified, id };
        let counted = match &ctx.route.payer_tiers {
            None => None,
            Some(tiers) => match self.count_payer_call(ctx, tiers, offer, &verified, id).await {
                Ok((call, true)) => {
                    return self
                        .free_payer_call(&paid, &call, Request::from_parts(parts, Body::from(body)), inner)
                        .await;
                }
                Ok((call, false)) => Some(call),
                Err(response) => return response,
            },
        };

        if ctx.route.settle == SettleTiming::Before {
            let outcome = match self.settle(&paid, &[PaymentState::Verified], None).await {
                Ok(outcome) => outcome,
                Err(response) => {
                    self.uncount(counted.as_ref()).await;
                    return response;
                }
            };
            if let Some(refusal) = self.not_settled(&paid, &outcome).await {
                self.uncount(counted.as_ref()).await;
                return refusal;
            }
            let response = self.upstream(inner, Request::from_parts(parts, Body::from(body))).await;
            let status = response.status().as_u16();
            self.record_upstream_status(id, status).await;
            return self.deliver(&paid, response, &outcome);
        }

        let response = self.upstream(inner, Request::from_parts(parts, Body::from(body))).await;
        let status = response.status().as_u16();
        if status >= 400 {
            self.metrics.outcome(Outcome::Voided);
            // Nothing is charged; the same credential may be sent again while it is valid.
            let reason = format!("upstream answered {status}");
            let voided = Transition { reason: &reason, upstream_status: Some(status), ..Default::default() };
            if let Err(e) = self.store.transition(id, &[PaymentState::Verified], PaymentState::Voided, voided).await {
                tracing::error!(payment = id, error = %e, "could not void a payment after an upstream failure");
            }
            offer.method.release(&verified).await;
            self.uncount(counted.as_ref()).await;
            return response;
        }
        let outcome = match self.settle(&paid, &[PaymentState::Verified], Some(status)).await {
            Ok(outcome) => outcome,
            Err(response) => {
                self.uncount(counted.as_ref()).await;
                return response;
            }
        };
        if let Some(refusal) = self.not_settled(&paid, &outcome).await {
            self.uncount(counted.as_ref()).await;
            return refusal;
        }
        self.deliver(&paid, response, &outcome)
    }

    /// The refusal of a payment whose settlement did not happen: it definitely failed (nothing charged, the
    /// upstream's answer withheld), or it could not be sent (the claim is released; the same payment may be sent
    /// again). `None` for a settled or pending payment.
    async fn not_settled(&self, paid: &Paid<'_>, outcome: &SettleOutcome) -> Option<Response<Body>> {
        match outcome {
            SettleOutcome::Settled { .. } | SettleOutcome::Unknown { .. } => None,
            SettleOutcome::Failed { .. } => Some(self.settlement_failed(paid, outcome).await),
            SettleOutcome::NotSent { refusal } => {
                paid.offer.method.release(paid.verified).await;
                Some(self.refuse(paid.ctx, Some(refusal)).await)
            }
        }
    }

    /// The settled payment of `proof_key` (and of `challenge_id`, when the credential bound one) whose response was
    /// never delivered, taken for this request.
    async fn owed_response(&self, proof_key: &str, challenge_id: Option<&str>) -> Option<PaymentRecord> {
        match self.store.take_owed_response(proof_key, challenge_id).await {
            Ok(owed) => owed,
            Err(e) => {
                tracing::error!(error = %e, "could not look up an owed response");
                None
            }
        }
    }

    /// Serves a request whose payment was settled by the reconciler after a crash, without charging again.
    #[allow(clippy::too_many_arguments)]
    async fn redeliver<S>(
        &self,
        ctx: &PaidRequest<'_>,
        presented: &Presented,
        offer: &RouteOffer,
        owed: PaymentRecord,
        parts: Parts,
        body: Bytes,
        inner: S,
    ) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
        S::Future: Send,
    {
        let verified = VerifiedPayment {
            proof_key: owed.proof_key,
            payer: owed.payer,
            amount: offer.amount,
            settlement: serde_json::Value::Null,
        };
        let paid = Paid { ctx, presented, offer, verified: &verified, id: owed.id };
        let response = self.upstream(inner, Request::from_parts(parts, Body::from(body))).await;
        let status = response.status().as_u16();
        let (reason, still_owed) = if status >= 400 {
            (format!("resent credential: upstream answered {status}; the response is still owed"), true)
        } else {
            ("resent credential: the owed response was delivered".to_owned(), false)
        };
        let t = Transition {
            reason: &reason,
            upstream_status: Some(status),
            response_owed: Some(still_owed),
            ..Default::default()
        };
        if let Err(e) = self.store.transition(owed.id, &[PaymentState::Settled], PaymentState::Settled, t).await {
            tracing::error!(payment = owed.id, error = %e, "could not record a redelivered response");
        }
        if still_owed {
            return response;
        }
        self.metrics.outcome(Outcome::Redelivered);
        let reference = owed.tx_hash.unwrap_or_default();
        self.deliver(&paid, response, &SettleOutcome::Settled { reference })
    }

    /// Calls the upstream, timed.
    async fn upstream<S>(&self, inner: S, request: Request<Body>) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
        S::Future: Send,
    {
        let started = Instant::now();
        let response = call(inner, request).await;
        self.metrics.time(Phase::Upstream, started.elapsed());
        response
    }

    /// Binds a credential to the offer it answers and verifies it. A tx-hash proof binds no challenge: it is
    /// tried against each of the route's offers that take tx hashes (those it names first) until one accepts it.
    async fn bind_and_verify<'r>(
        &self,
        ctx: &PaidRequest<'r>,
        presented: &Presented,
        body: &Bytes,
    ) -> Result<(&'r RouteOffer, Option<String>, VerifiedPayment), Rejection> {
        if let Presented::TxHash(proof) = presented {
            let mut first_error = None;
            for offer in ctx.accepted.iter().filter(|o| o.method.accepts_tx_hash()) {
                match self.verify_timed(offer, Proof::TxHash(proof)).await {
                    Ok(verified) => return Ok((offer, None, verified)),
                    Err(rejection) => {
                        first_error.get_or_insert(rejection);
                    }
                }
            }
            return Err(first_error.unwrap_or_else(|| {
                Rejection::new(
                    RejectKind::InvalidChallenge,
                    "offer_not_current",
                    "this route takes no transaction-hash proofs",
                )
            }));
        }
        let (offer, challenge_id, proof) = self.bind(ctx, presented, body, Expiry::Enforced)?;
        let verified = self.verify_timed(offer, proof).await?;
        Ok((offer, challenge_id, verified))
    }

    async fn verify_timed(&self, offer: &RouteOffer, proof: Proof<'_>) -> Result<VerifiedPayment, Rejection> {
        let started = Instant::now();
        let verified = offer.method.verify(proof, offer.amount).await;
        self.metrics.time(Phase::Verify, started.elapsed());
        verified
    }

    /// Binds a credential to the route's current offer it answers; `expiry` says whether an expired challenge is
    /// refused (only the redelivery of an owed response takes one).
    fn bind<'r, 'p>(
        &self,
        ctx: &PaidRequest<'r>,
        presented: &'p Presented,
        body: &Bytes,
        expiry: Expiry,
    ) -> Result<(&'r RouteOffer, Option<String>, Proof<'p>), Rejection> {
        let check_expiry = |expires: Option<&str>| match expiry {
            Expiry::Enforced => self.check_expiry(expires),
            Expiry::Ignored => Ok(()),
        };
        use RejectKind::*;
        let offers = ctx.accepted;
        let binding = ctx.binding;
        match presented {
            Presented::Mpp(credential) => {
                let ch = &credential.challenge;
                let request = encode_request(&ch.request);
                let echoed = BindingInput {
                    realm: &ch.realm,
                    method: &ch.method,
                    intent: &ch.intent,
                    request: &request,
                    expires: ch.expires.as_deref(),
                    digest: ch.digest.as_deref(),
                    header: ch.header.as_deref(),
                    opaque: ch.opaque.as_deref(),
                };
                if !self.secret.verify(&echoed, &ch.id) {
                    return Err(Rejection::new(
                        InvalidChallenge,
                        "unknown_challenge",
                        "the challenge was not issued by this server or was altered",
                    ));
                }
                check_expiry(ch.expires.as_deref())?;
                if ch.realm != binding.realm {
                    return Err(Rejection::new(
                        InvalidChallenge,
                        "realm_mismatch",
                        "the challenge belongs to another realm",
                    ));
                }
                if ch.opaque.as_deref().and_then(scope_route).as_deref() != Some(binding.route.as_str()) {
                    return Err(Rejection::new(
                        InvalidChallenge,
                        "route_mismatch",
                        "the challenge was issued for another request",
                    ));
                }
                let body_ok = match &ch.digest {
                    Some(digest) => digest_matches(digest, body),
                    None => body.is_empty(),
                };
                if !body_ok {
                    return Err(Rejection::new(
                        InvalidChallenge,
                        "body_mismatch",
                        "the request body is not the one the challenge was issued for",
                    ));
                }
                let offer =
                    offers.iter().find(|o| o.answers_mpp(&ch.method, &ch.intent, &ch.request)).ok_or_else(|| {
                        Rejection::new(InvalidChallenge, "offer_not_current", "this route no longer makes that offer")
                    })?;
                Ok((offer, Some(ch.id.clone()), Proof::Mpp { credential }))
            }
            Presented::X402V2(payload) => {
                if payload.x402_version != 2 {
                    return Err(Rejection::new(
                        InvalidChallenge,
                        "unsupported_version",
                        "PAYMENT-SIGNATURE carries x402 v2",
                    ));
                }
                let mut accepted = serde_json::to_value(&payload.accepted).expect("requirements serialize");
                let echoed =
                    accepted.get_mut("extra").and_then(|e| e.as_object_mut()).and_then(|e| e.remove(X402_BINDING_KEY));
                let offer = offers.iter().find(|o| o.x402_json.as_ref() == Some(&accepted)).ok_or_else(|| {
                    Rejection::new(
                        InvalidChallenge,
                        mismatch_reason(offers, &payload.accepted),
                        "the payment accepts terms this route does not offer",
                    )
                })?;
                let field = |name: &str| echoed.as_ref().and_then(|e| e.get(name)).and_then(|v| v.as_str());
                let (Some(id), Some(expires), Some(nonce)) = (field("id"), field("expires"), field("nonce")) else {
                    return Err(Rejection::new(
                        InvalidChallenge,
                        "missing_binding",
                        "accepted.extra.paygate must echo the offer's binding",
                    ));
                };
                let opaque = challenge_scope(&binding.route, nonce);
                let terms = offer.terms.as_ref().ok_or_else(|| {
                    Rejection::new(InvalidChallenge, "offer_not_current", "this offer binds no challenge")
                })?;
                if !self.secret.verify(&binding.input(terms, expires, &opaque), id) {
                    return Err(Rejection::new(
                        InvalidChallenge,
                        "challenge_mismatch",
                        "the offer was made for another request (route or body) or was altered",
                    ));
                }
                check_expiry(Some(expires))?;
                Ok((offer, Some(id.to_owned()), Proof::X402 { version: 2, payload: &payload.payload }))
            }
            Presented::X402V1(payload) => {
                let chain_id = x402::v1::chain_id(&payload.network);
                let offer = offers
                    .iter()
                    .find(|o| {
                        o.x402.as_ref().is_some_and(|r| {
                            r.scheme == payload.scheme
                                && chain_id.is_some()
                                && x402::v1::chain_id(&r.network) == chain_id
                        })
                    })
                    .ok_or_else(|| {
                        Rejection::new(InvalidChallenge, "network_mismatch", "no offer for that scheme and network")
                    })?;
                Ok((offer, None, Proof::X402 { version: 1, payload: &payload.payload }))
            }
            Presented::TxHash(_) => {
                Err(Rejection::new(InvalidChallenge, "offer_not_current", "transaction-hash proofs bind no challenge"))
            }
        }
    }

    fn check_expiry(&self, expires: Option<&str>) -> Result<(), Rejection> {
        let expires = expires.ok_or_else(|| {
            Rejection::new(RejectKind::InvalidChallenge, "missing_expires", "the challenge has no expiry")
        })?;
        let at = parse_rfc3339(expires).ok_or_else(|| {
            Rejection::new(RejectKind::InvalidChallenge, "invalid_expires", "the expiry is not RFC 3339")
        })?;
        if self.clock.now_unix() >= at {
            return Err(Rejection::new(
                RejectKind::PaymentExpired,
                "challenge_expired",
                "the offer expired; pay the fresh one",
            ));
        }
        Ok(())
    }

    /// Moves the payment to `settling`, settles, and records the outcome.
    async fn settle(
        &self,
        paid: &Paid<'_>,
        from: &[PaymentState],
        upstream_status: Option<u16>,
    ) -> Result<SettleOutcome, Response<Body>> {
        let reason = match upstream_status {
            Some(status) => format!("upstream answered {status}"),
            None => "settling before the upstream".to_owned(),
        };
        let settling = Transition { reason: &reason, upstream_status, ..Default::default() };
        let started = Instant::now();
        let attempt = Attempt { from, settling, owed: None, not_sent: PaymentState::Voided };
        let settled =
            settle_payment(self.store.as_ref(), paid.offer.method.as_ref(), paid.id, paid.verified, attempt).await;
        let outcome = match settled {
            Ok(outcome) => outcome,
            // Without a record of the attempt, money must not move: it did not.
            Err(paygate_store::StoreError::WrongState { .. }) => {
                let released = Rejection::new(
                    RejectKind::InFlight,
                    "payment_released",
                    "the payment was released while this request ran (taken for abandoned); nothing was charged: \
                     send the same credential again",
                );
                return Err(self.refuse(paid.ctx, Some(&released)).await);
            }
            Err(e) => return Err(self.refuse(paid.ctx, Some(&store_down(&e))).await),
        };
        self.metrics.time(Phase::Settle, started.elapsed());
        let option = paid.offer.method.option();
        let amount = paygate_core::money::format_atomic(paid.offer.amount, option.asset.decimals);
        match &outcome {
            SettleOutcome::Settled { reference } => {
                tracing::info!(payment = paid.id, payer = %paid.verified.payer, %amount, asset = %option.asset.symbol, tx = %reference, "settled");
            }
            SettleOutcome::Unknown { reason, reference } => {
                tracing::warn!(payment = paid.id, payer = %paid.verified.payer, %amount, tx = ?reference, %reason, "settlement outcome unknown: pending");
            }
            SettleOutcome::Failed { reason, .. } => {
                tracing::warn!(payment = paid.id, payer = %paid.verified.payer, %amount, %reason, "settlement failed; nothing charged");
            }
            SettleOutcome::NotSent { refusal } => {
                tracing::warn!(payment = paid.id, payer = %paid.verified.payer, %amount, reason = refusal.reason, "settlement not sent; claim released, nothing charged");
            }
        }
        match &outcome {
            SettleOutcome::Settled { .. } => {
                self.metrics.outcome(Outcome::Paid);
                self.metrics.revenue(
                    &paid.ctx.route.name,
                    &option.network.to_string(),
                    &option.asset.symbol,
                    paid.offer.amount.0,
                );
            }
            SettleOutcome::Unknown { .. } => self.metrics.outcome(Outcome::Pending),
            // Counted where the refusal is written.
            SettleOutcome::Failed { .. } | SettleOutcome::NotSent { .. } => {}
        }
        Ok(outcome)
    }

    async fn record_upstream_status(&self, id: PaymentId, status: u16) {
        // Only the status is recorded; the state stays what settlement made it.
        let state = match self.store.payment(id).await {
            Ok(Some(row)) => row.state,
            _ => return,
        };
        let t = Transition { reason: "upstream answered", upstream_status: Some(status), ..Default::default() };
        if let Err(e) = self.store.transition(id, &[state], state, t).await {
            tracing::warn!(payment = id, error = %e, "could not record the upstream status");
        }
    }

    /// The upstream's response with the receipt (or the pending notice) added.
    fn deliver(&self, paid: &Paid<'_>, mut response: Response<Body>, outcome: &SettleOutcome) -> Response<Body> {
        let headers = response.headers_mut();
        match outcome {
            SettleOutcome::Settled { reference } => add_receipt(headers, paid, reference, self.clock.now_unix()),
            SettleOutcome::Unknown { reference, .. } => {
                headers.insert(SETTLEMENT_HEADER, HeaderValue::from_static("pending"));
                add_x402_settlement(
                    headers,
                    paid,
                    false,
                    Some("settlement_pending"),
                    reference.as_deref().unwrap_or(""),
                );
            }
            SettleOutcome::Failed { .. } | SettleOutcome::NotSent { .. } => {}
        }
        if let Ok(id) = HeaderValue::from_str(paid.ctx.request_id) {
            headers.insert(REQUEST_ID, id);
        }
        response
    }

    /// Settlement definitely failed: the upstream's answer is withheld, the payer keeps their money.
    async fn settlement_failed(&self, paid: &Paid<'_>, outcome: &SettleOutcome) -> Response<Body> {
        let reference = match outcome {
            SettleOutcome::Failed { reference, .. } => reference.as_deref().unwrap_or(""),
            _ => "",
        };
        let rejection = Rejection::new(
            RejectKind::SettlementFailed,
            "settlement_failed",
            "the payment could not be settled; nothing was charged",
        );
        let mut response = self.refuse(paid.ctx, Some(&rejection)).await;
        add_x402_settlement(response.headers_mut(), paid, false, Some("settlement_failed"), reference);
        response
    }
}

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
}

/// Whether binding refuses an expired challenge.
#[derive(Debug, Clone, Copy)]
enum Expiry {
    Enforced,
    Ignored,
}

/// A call counted on a per-IP or per-payer counter.
struct CountedCall {
    counter: String,
    /// The period it was counted in.
    start: i64,
    /// How many calls came before it in the period.
    index: u64,
}

/// A claimed payment.
struct Paid<'a> {
    ctx: &'a PaidRequest<'a>,
    presented: &'a Presented,
    offer: &'a RouteOffer,
    verified: &'a VerifiedPayment,
    id: PaymentId,
}

fn add_receipt(headers: &mut HeaderMap, paid: &Paid<'_>, reference: &str, now: u64) {
    match paid.presented {
        Presented::Mpp(credential) => {
            let method = paid.offer.mpp.map_or(credential.challenge.method.as_str(), |(method, _)| method);
            let receipt =
                Receipt::success(method, reference, rfc3339(now)).with("challengeId", credential.challenge.id.clone());
            if let Ok(value) = HeaderValue::from_str(&receipt.to_header()) {
                headers.insert(mpp::PAYMENT_RECEIPT, value);
            }
        }
        Presented::X402V2(_) | Presented::X402V1(_) => add_x402_settlement(headers, paid, true, None, reference),
        // The pay-first dialects define no receipt; the ledger and `X-Request-Id` have it.
        Presented::TxHash(_) => {}
    }
}

/// `PAYMENT-RESPONSE` (v2) or `X-PAYMENT-RESPONSE` (v1); nothing for MPP.
fn add_x402_settlement(headers: &mut HeaderMap, paid: &Paid<'_>, success: bool, reason: Option<&str>, reference: &str) {
    let (name, network) = match paid.presented {
        Presented::X402V2(_) => (x402::PAYMENT_RESPONSE, paid.offer.method.option().network.to_string()),
        Presented::X402V1(payload) => (x402::X_PAYMENT_RESPONSE, payload.network.clone()),
        Presented::Mpp(_) | Presented::TxHash(_) => return,
    };
    let response = x402::SettleResponse {
        success,
        error_reason: reason.map(str::to_owned),
        transaction: reference.to_owned(),
        network,
        payer: Some(paid.verified.payer.clone()),
        error_message: None,
    };
    if let Ok(value) = HeaderValue::from_str(&x402::encode_header(&response)) {
        headers.insert(name, value);
    }
}

fn taken(state: PaymentState) -> Rejection {
    match state {
        PaymentState::Verified | PaymentState::Settling => Rejection::new(
            RejectKind::InFlight,
            "payment_in_flight",
            "this payment is being processed by another request; retry shortly",
        ),
        PaymentState::Voided => Rejection::new(
            RejectKind::Replayed,
            "challenge_used",
            "this challenge was already paid with another payment; request a fresh offer",
        ),
        _ => Rejection::new(RejectKind::Replayed, "payment_replayed", "this payment was already used"),
    }
}

fn store_down(err: &paygate_store::StoreError) -> Rejection {
    tracing::error!(error = %err, "store unavailable");
    Rejection::new(
        RejectKind::StoreUnavailable,
        "store_unavailable",
        "the payment ledger is unavailable; nothing was charged",
    )
}

/// Which field of an echoed x402 offer differs from the route's offers.
fn mismatch_reason(offers: &[RouteOffer], accepted: &x402::PaymentRequirements) -> &'static str {
    let offers: Vec<&x402::PaymentRequirements> = offers.iter().filter_map(|o| o.x402.as_ref()).collect();
    if !offers.iter().any(|o| o.network == accepted.network) {
        "network_mismatch"
    } else if !offers.iter().any(|o| o.asset.eq_ignore_ascii_case(&accepted.asset)) {
        "asset_mismatch"
    } else if !offers.iter().any(|o| o.pay_to.eq_ignore_ascii_case(&accepted.pay_to)) {
        "recipient_mismatch"
    } else if !offers.iter().any(|o| o.amount == accepted.amount) {
        "amount_mismatch"
    } else {
        "offer_mismatch"
    }
}

/// Makes a response uncacheable by shared caches: `private, no-store` where it says nothing (MPP asks for
/// `private` on receipted answers), else its own directives with `public` and `s-maxage` dropped and `private`
/// added (a browser may still keep its own paid answer).
fn uncacheable(headers: &mut HeaderMap) {
    let directives: Vec<String> = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
        .collect();
    let named = |d: &str, name: &str| d.split('=').next().is_some_and(|n| n.trim().eq_ignore_ascii_case(name));
    let value = if directives.is_empty() {
        "private, no-store".to_owned()
    } else if directives.iter().any(|d| named(d, "no-store")) {
        return;
    } else {
        let mut kept: Vec<&str> =
            directives.iter().map(String::as_str).filter(|d| !named(d, "public") && !named(d, "s-maxage")).collect();
        if !kept.iter().any(|d| named(d, "private")) {
            kept.push("private");
        }
        kept.join(", ")
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(header::CACHE_CONTROL, value);
    }
}

/// `api.example.com` of `api.example.com:8443` (and of `[::1]:80`, `[::1]`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':')
        .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host })
}

/// The ledger row of a payment (or a metered call) of `offer` for request `request_id` on `route`: the option's
/// network, asset and recipient and the offer's amount. The caller names how it was paid: proof, challenge,
/// protocol, rail, payer and settlement data.
fn ledger_row(offer: &RouteOffer, request_id: &str, route: String) -> NewPayment {
    let option = offer.method.option();
    NewPayment {
        proof_key: String::new(),
        challenge_id: None,
        request_id: request_id.to_owned(),
        route,
        protocol: String::new(),
        rail: String::new(),
        option_name: option.name.clone(),
        network: option.network.to_string(),
        asset: option.asset.address.clone(),
        asset_symbol: option.asset.symbol.clone(),
        decimals: option.asset.decimals,
        amount: offer.amount.0,
        payer: String::new(),
        pay_to: option.pay_to.clone(),
        settlement: serde_json::Value::Null,
    }
}

async fn call<S>(inner: S, request: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
    S::Future: Send,
{
    match inner.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_to_priced_requests_are_never_stored_by_shared_caches() {
        let cases = [
            (None, "private, no-store"),
            (Some("max-age=60"), "max-age=60, private"),
            (Some("public, max-age=60, s-maxage=600"), "max-age=60, private"),
            (Some("private, max-age=5"), "private, max-age=5"),
            (Some("no-store"), "no-store"),
            (Some("Public, No-Cache"), "No-Cache, private"),
        ];
        for (upstream, expected) in cases {
            let mut headers = HeaderMap::new();
            if let Some(value) = upstream {
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
            }
            uncacheable(&mut headers);
            assert_eq!(headers[header::CACHE_CONTROL], expected, "{upstream:?}");
        }
    }

    #[test]
    fn host_names_drop_ports() {
        assert_eq!(host_name("api.example.com:8443"), "api.example.com");
        assert_eq!(host_name("api.example.com"), "api.example.com");
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("127.0.0.1:8402"), "127.0.0.1");
    }
}
