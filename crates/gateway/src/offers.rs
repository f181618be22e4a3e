//! A route's offers, their binding to the request, and the 402 that presents them in both protocols.
//!
//! Every offer gets one challenge id (an HMAC over its MPP terms, the realm, the expiry, the body digest and
//! the route scope; see `paygate_core::binding`). The same id travels in both framings:
//! as `id` of the offer's `WWW-Authenticate: Payment` line, and as `extra.paygate.id` of its x402 `accepts[]`
//! entry, which x402 clients echo verbatim in `accepted`. A paid retry is checked by recomputing the id for the
//! request as it is now.

use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value};

use paygate_core::binding::{BindingInput, ChallengeSecret, challenge_scope, encode_request, new_nonce};
use paygate_core::clock::rfc3339;
use paygate_core::method::{MppTerms, PaymentMethod};
use paygate_core::money::AtomicAmount;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_proto::mpp::ChallengeParams;
use paygate_proto::problem::{self, Problem};
use paygate_proto::x402::borrowed::{
    Binding, BoundExtra, BoundRequirements, PaymentRequired, PaymentRequiredBody, Resource, V1Requirements,
};
use paygate_proto::{b64, x402};

use crate::body::Body;
use crate::request_id::REQUEST_ID;

/// One offer of a route: a payment method and the amount it asks, with everything that does not change per
/// request computed once, when the route is built.
#[derive(Debug, Clone)]
pub struct RouteOffer {
    pub method: Arc<dyn PaymentMethod>,
    pub amount: AtomicAmount,
    /// The x402 requirements without the binding, if the rail speaks x402.
    pub x402: Option<x402::PaymentRequirements>,
    /// The same as JSON, compared with what a client echoes.
    pub x402_json: Option<Value>,
    /// The v1 network name (or CAIP-2 where the chain has none).
    pub v1_network: Option<String>,
    /// The terms the challenge id binds when they are the same for every request; `None` for rails that make
    /// them per challenge (a Lightning invoice) or bind no challenge at all (pay-first tx hashes).
    pub terms: Option<Terms>,
    /// The MPP `(method, intent)`, when the rail speaks MPP.
    pub mpp: Option<(&'static str, &'static str)>,
    /// Whether `amount` is the price of one part of a stream paid as it is delivered (`engine/stream.rs`), not
    /// of the whole call.
    pub per_part: bool,
}

/// Challenge terms with their encoded `request`.
#[derive(Debug, Clone)]
pub struct Terms {
    pub terms: MppTerms,
    /// `terms.request` as it goes on the wire: base64url of its JCS text.
    pub request_b64: String,
}

impl Terms {
    pub fn new(terms: MppTerms) -> Self {
        Terms { request_b64: encode_request(&terms.request), terms }
    }
}

impl RouteOffer {
    pub fn new(method: Arc<dyn PaymentMethod>, amount: AtomicAmount) -> Self {
        let x402 = method.x402_requirements(amount);
        let x402_json = x402.as_ref().map(|r| serde_json::to_value(r).expect("requirements serialize"));
        let v1_network = x402.as_ref().map(|r| {
            x402::v1::chain_id(&r.network)
                .and_then(x402::v1::network_name)
                .map_or_else(|| r.network.clone(), str::to_owned)
        });
        let mpp = method.mpp_method();
        let terms = match method.mpp_terms(amount) {
            Some(terms) => Some(Terms::new(terms)),
            // An x402-only rail: the challenge id binds its x402 requirements.
            None if !method.terms_per_challenge() => {
                x402_json.clone().map(|request| Terms::new(MppTerms { method: "x402", intent: "exact", request }))
            }
            None => None,
        };
        RouteOffer { method, amount, x402, x402_json, v1_network, terms, mpp, per_part: false }
    }

    /// The offer of a stream paid as it is delivered, `part` each ([`PaymentMethod::pays_streams`]): its MPP
    /// terms say the unit they price (`unitType`).
    pub fn per_part(method: Arc<dyn PaymentMethod>, part: AtomicAmount, unit: &str) -> Self {
        let mut offer = RouteOffer::new(method, part);
        if let Some(terms) = offer.terms.as_mut().filter(|t| t.terms.request.get("unitType").is_some()) {
            terms.terms.request["unitType"] = unit.into();
            *terms = Terms::new(terms.terms.clone());
        }
        offer.per_part = true;
        offer
    }

    /// Whether a payer can pay this offer in some framing: x402, MPP (fixed or per-challenge terms), or a
    /// transaction-hash proof. A rail makes no terms for amounts it cannot charge (under Stripe's minimum).
    pub fn can_be_paid(&self) -> bool {
        self.x402.is_some()
            || (self.mpp.is_some() && (self.terms.is_some() || self.method.terms_per_challenge()))
            || self.method.accepts_tx_hash()
    }

    /// The terms of this offer in one challenge: the route's, or fresh ones for per-challenge rails.
    /// `Ok(None)` for offers that bind no challenge.
    pub async fn challenge_terms(&self) -> Result<Option<Terms>, Rejection> {
        if self.method.terms_per_challenge() {
            return Ok(self.method.challenge_terms(self.amount).await?.map(Terms::new));
        }
        Ok(self.terms.clone())
    }

    /// Whether an echoed MPP challenge (its id already checked) is this offer.
    pub fn answers_mpp(&self, method: &str, intent: &str, request: &Value) -> bool {
        let Some((m, i)) = self.mpp else { return false };
        if m != method || i != intent {
            return false;
        }
        match &self.terms {
            Some(terms) => terms.terms.request == *request,
            None => self.method.matches_request(request, self.amount),
        }
    }
}

/// What of the current request every challenge binds.
#[derive(Debug, Clone)]
pub(crate) struct RequestBinding {
    pub realm: String,
    /// `METHOD /path?query` as requested.
    pub route: String,
    /// Digest of the body, when there is one.
    pub digest: Option<String>,
    /// Absolute URL of the resource, for x402.
    pub resource_url: String,
}

impl RequestBinding {
    /// The binding of `terms` with this expiry and scope (`challenge_scope(route, nonce)`).
    pub(crate) fn input<'a>(&'a self, terms: &'a Terms, expires: &'a str, opaque: &'a str) -> BindingInput<'a> {
        BindingInput {
            realm: &self.realm,
            method: terms.terms.method,
            intent: terms.terms.intent,
            request: &terms.request_b64,
            expires: Some(expires),
            digest: self.digest.as_deref(),
            header: None,
            opaque: Some(opaque),
        }
    }
}

/// Whether a request's `Accept` names `media_type` (`text/html`, `text/event-stream`), parameters and weights
/// aside.
pub(crate) fn accepts(headers: &http::HeaderMap, media_type: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().to_ascii_lowercase().starts_with(media_type)))
}

/// What the 402 says about the route.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResourceText {
    pub description: Option<String>,
    pub mime_type: Option<String>,
    /// The x402 extensions its 402 declares (`crate::discovery::extensions`).
    pub extensions: Map<String, Value>,
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

/// Builds the 402 for `offers`: x402 v2 header, MPP challenges, and a problem body that is also x402 v1's.
/// `rejection` explains why a presented payment was refused, when one was.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn payment_required(
    offers: &[RouteOffer],
    binding: &RequestBinding,
    resource: &ResourceText,
    secret: &ChallengeSecret,
    now: u64,
    ttl_secs: u64,
    rejection: Option<&Rejection>,
    request_id: &str,
) -> Response<Body> {
    let expires = rfc3339(now + ttl_secs);
    let nonce = new_nonce();
    let opaque = challenge_scope(&binding.route, &nonce);
    let description = resource.description.as_deref();
    let mime_type = resource.mime_type.as_deref().unwrap_or("application/json");
    // Each offer's terms in this challenge (made now for per-challenge rails) and its id. An offer whose
    // terms cannot be made (its processor is down) is left out; the others still stand.
    let mut made = Vec::with_capacity(offers.len());
    let mut unavailable = None;
    for offer in offers {
        match offer.challenge_terms().await {
            Ok(terms) => {
                let id = terms.as_ref().map(|t| secret.challenge_id(&binding.input(t, &expires, &opaque)));
                made.push((offer, terms, id));
            }
            Err(rejection) => {
                tracing::warn!(option = %offer.method.option().name, reason = rejection.reason, "offer left out of a 402");
                unavailable.get_or_insert(rejection);
            }
        }
    }
    if made.is_empty()
        && let Some(rejection) = unavailable
    {
        return rejection_response(&rejection, request_id);
    }

    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    let mut accepts_v2 = Vec::new();
    let mut accepts_v1 = Vec::new();
    // A refusal may tell one rail's offers what the client must correct (a channel's state).
    let corrected: Vec<Option<Map<String, Value>>> = made
        .iter()
        .map(|(offer, _, _)| {
            let (rail, fields) = rejection?.offer_extra.as_deref()?;
            let base = offer.x402.as_ref()?.extra.as_ref();
            (offer.method.rail() == *rail).then(|| merged(base, fields))
        })
        .collect();
    for ((offer, terms, id), corrected) in made.iter().zip(&corrected) {
        for (name, value) in offer.method.dialect_headers(offer.amount, now + ttl_secs) {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.append(name, value);
            }
        }
        let (Some(terms), Some(id)) = (terms, id) else { continue };
        if offer.mpp.is_some() {
            let challenge = ChallengeParams {
                id,
                realm: &binding.realm,
                method: terms.terms.method,
                intent: terms.terms.intent,
                request: &terms.request_b64,
                description: description.filter(|d| d.is_ascii()),
                digest: binding.digest.as_deref(),
                expires: Some(&expires),
                header: None,
                opaque: Some(&opaque),
            };
            if let Ok(Ok(value)) = challenge.to_header().map(HeaderValue::try_from) {
                headers.append(header::WWW_AUTHENTICATE, value);
            }
        }
        if let (Some(r), Some(v1_network)) = (&offer.x402, &offer.v1_network) {
            let extra = corrected.as_ref().or(r.extra.as_ref()).unwrap_or(&*EMPTY);
            accepts_v2.push(BoundRequirements {
                scheme: &r.scheme,
                network: &r.network,
                amount: &r.amount,
                asset: &r.asset,
                pay_to: &r.pay_to,
                max_timeout_seconds: r.max_timeout_seconds,
                extra: BoundExtra { base: extra, binding: Binding { expires: &expires, id, nonce: &nonce } },
            });
            accepts_v1.push(V1Requirements {
                scheme: &r.scheme,
                network: v1_network,
                max_amount_required: &r.amount,
                asset: &r.asset,
                pay_to: &r.pay_to,
                resource: &binding.resource_url,
                description: description.unwrap_or(""),
                mime_type,
                output_schema: None,
                max_timeout_seconds: r.max_timeout_seconds,
                extra: r.extra.as_ref(),
            });
        }
    }

    let default_rejection;
    let rejection = match rejection {
        Some(r) => r,
        None => {
            default_rejection =
                Rejection::new(RejectKind::PaymentRequired, "payment_required", "This resource requires payment.");
            &default_rejection
        }
    };
    let reason =
        |default: &'static str| if rejection.kind == RejectKind::PaymentRequired { default } else { rejection.reason };
    if !accepts_v2.is_empty() {
        let required = PaymentRequired {
            x402_version: 2,
            error: reason("PAYMENT-SIGNATURE header is required"),
            resource: Resource { url: &binding.resource_url, description, mime_type: resource.mime_type.as_deref() },
            accepts: accepts_v2,
            extensions: &resource.extensions,
        };
        let json = serde_json::to_vec(&required).expect("x402 offers serialize");
        if let Ok(value) = HeaderValue::try_from(b64::std_encode(&json)) {
            headers.insert(x402::PAYMENT_REQUIRED, value);
        }
    }
    let has_v1 = !accepts_v1.is_empty();
    let body = PaymentRequiredBody {
        kind: rejection.kind.type_uri(),
        title: rejection.kind.title(),
        status: rejection.kind.status(),
        detail: &rejection.detail,
        reason: rejection.reason,
        request_id,
        challenge_id: made.iter().find_map(|(_, _, id)| id.as_deref()),
        x402_version: has_v1.then_some(1),
        error: has_v1.then(|| reason("X-PAYMENT header is required")),
        accepts: accepts_v1,
    };
    *response.body_mut() = Body::from(serde_json::to_vec(&body).expect("402 body serializes"));
    *response.status_mut() = StatusCode::from_u16(rejection.kind.status()).unwrap_or(StatusCode::PAYMENT_REQUIRED);
    set_problem_headers(response.headers_mut(), request_id);
    response
}

/// An offer's `extra` with `fields` added (they win).
fn merged(base: Option<&Map<String, Value>>, fields: &Value) -> Map<String, Value> {
    let mut extra = base.cloned().unwrap_or_default();
    if let Some(fields) = fields.as_object() {
        extra.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    extra
}

fn set_problem_headers(headers: &mut http::HeaderMap, request_id: &str) {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(problem::CONTENT_TYPE));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, id);
    }
}

/// A problem response: status from the problem, `application/problem+json`, never cached.
pub(crate) fn problem_response(problem: Problem, request_id: &str) -> Response<Body> {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(Body::from(problem.to_json()));
    *response.status_mut() = status;
    set_problem_headers(response.headers_mut(), request_id);
    response
}

/// A rejection that is not a 402 (those carry offers: [`payment_required`]).
pub(crate) fn rejection_response(rejection: &Rejection, request_id: &str) -> Response<Body> {
    let mut problem = rejection.to_problem().with_extension("requestId", request_id);
    let retry_after = rejection.retry_after_secs.or((rejection.kind == RejectKind::InFlight).then_some(1));
    if let Some(secs) = retry_after {
        problem = problem.with_extension("retryAfter", secs);
    }
    let mut response = problem_response(problem, request_id);
    if let Some(secs) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
