//! A route's offers, their binding to the request, and the 402 that presents them in both protocols.
//!
//! Every offer gets one challenge id (an HMAC over its MPP terms, the realm, the expiry, the body digest and
//! the route scope; see `paygate_core::binding`). The same id travels in both framings:
//! as `id` of the offer's `WWW-Authenticate: Payment` line, and as `extra.paygate.id` of its x402 `accepts[]`
//! entry, which x402 clients echo verbatim in `accepted`. A paid retry is checked by recomputing the id for the
//! request as it is now.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value, json};

use paygate_core::binding::{BindingInput, ChallengeSecret, challenge_scope, new_nonce};
use paygate_core::clock::rfc3339;
use paygate_core::method::{MppTerms, PaymentMethod};
use paygate_core::money::AtomicAmount;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_proto::mpp::Challenge;
use paygate_proto::problem::{self, Problem};
use paygate_proto::x402;

use crate::body::Body;

/// The key under x402 `extra` that carries paygate's binding.
pub const X402_BINDING_KEY: &str = "paygate";

/// One offer of a route: a payment method and the amount it asks, with its terms computed once.
#[derive(Debug)]
pub struct RouteOffer {
    pub method: Arc<dyn PaymentMethod>,
    pub amount: AtomicAmount,
    /// The x402 requirements without the binding, if the rail speaks x402.
    pub x402: Option<x402::PaymentRequirements>,
    /// The same as JSON, compared with what a client echoes.
    pub x402_json: Option<Value>,
    /// The terms the challenge id binds (and MPP's framing, when `mpp` is true).
    pub terms: MppTerms,
    /// Whether the rail speaks MPP.
    pub mpp: bool,
}

impl RouteOffer {
    pub fn new(method: Arc<dyn PaymentMethod>, amount: AtomicAmount) -> Self {
        let x402 = method.x402_requirements(amount);
        let x402_json = x402.as_ref().map(|r| serde_json::to_value(r).expect("requirements serialize"));
        let (terms, mpp) = match method.mpp_terms(amount) {
            Some(terms) => (terms, true),
            None => {
                let request = x402_json.clone().unwrap_or(Value::Null);
                (MppTerms { method: "x402", intent: "exact", request }, false)
            }
        };
        RouteOffer { method, amount, x402, x402_json, terms, mpp }
    }
}

/// What of the current request every challenge binds.
#[derive(Debug, Clone)]
pub struct RequestBinding {
    pub realm: String,
    /// `METHOD /path?query` as requested.
    pub route: String,
    /// Digest of the body, when there is one.
    pub digest: Option<String>,
    /// Absolute URL of the resource, for x402.
    pub resource_url: String,
}

impl RequestBinding {
    /// The binding of `offer` with this expiry and scope (`challenge_scope(route, nonce)`).
    pub fn input<'a>(&'a self, offer: &'a RouteOffer, expires: &'a str, opaque: &'a str) -> BindingInput<'a> {
        BindingInput {
            realm: &self.realm,
            method: offer.terms.method,
            intent: offer.terms.intent,
            request: &offer.terms.request,
            expires: Some(expires),
            digest: self.digest.as_deref(),
            header: None,
            opaque: Some(opaque),
        }
    }
}

/// What the 402 says about the route.
#[derive(Debug, Clone, Default)]
pub struct ResourceText {
    pub description: Option<String>,
    pub mime_type: Option<String>,
}

/// Builds the 402 for `offers`: x402 v2 header, MPP challenges, and a problem body that is also x402 v1's.
/// `rejection` explains why a presented payment was refused, when one was.
#[allow(clippy::too_many_arguments)]
pub fn payment_required(
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
    let mut headers = HeaderMap::new();
    let mut accepts_v2 = Vec::new();
    let mut accepts_v1 = Vec::new();
    let mut first_id = None;
    for offer in offers {
        let id = secret.challenge_id(&binding.input(offer, &expires, &opaque));
        first_id.get_or_insert_with(|| id.clone());
        if offer.mpp {
            let challenge = Challenge {
                id: id.clone(),
                realm: binding.realm.clone(),
                method: offer.terms.method.to_owned(),
                intent: offer.terms.intent.to_owned(),
                request: offer.terms.request.clone(),
                description: resource.description.clone().filter(|d| d.is_ascii()),
                digest: binding.digest.clone(),
                expires: Some(expires.clone()),
                header: None,
                opaque: Some(opaque.clone()),
            };
            if let Ok(Ok(value)) = challenge.to_header().map(|h| HeaderValue::from_str(&h)) {
                headers.append(header::WWW_AUTHENTICATE, value);
            }
        }
        if let Some(requirements) = &offer.x402 {
            let mut bound = requirements.clone();
            bound
                .extra
                .get_or_insert_with(Map::new)
                .insert(X402_BINDING_KEY.into(), json!({ "id": id, "expires": expires, "nonce": nonce }));
            accepts_v1.push(v1_requirements(requirements, binding, resource));
            accepts_v2.push(bound);
        }
    }
    let rejection = rejection.cloned().unwrap_or_else(|| {
        Rejection::new(RejectKind::PaymentRequired, "payment_required", "This resource requires payment.")
    });
    if !accepts_v2.is_empty() {
        let required = x402::PaymentRequired {
            x402_version: 2,
            error: Some(x402_error(&rejection, "PAYMENT-SIGNATURE header is required")),
            resource: x402::ResourceInfo {
                url: binding.resource_url.clone(),
                description: resource.description.clone(),
                mime_type: resource.mime_type.clone(),
            },
            accepts: accepts_v2,
            extensions: None,
        };
        if let Ok(value) = HeaderValue::from_str(&x402::encode_header(&required)) {
            headers.insert(x402::PAYMENT_REQUIRED, value);
        }
    }
    let mut body = rejection.to_problem().with_extension("requestId", request_id);
    if let Some(id) = first_id {
        body = body.with_extension("challengeId", id);
    }
    if !accepts_v1.is_empty() {
        body = body
            .with_extension("x402Version", 1)
            .with_extension("error", x402_error(&rejection, "X-PAYMENT header is required"))
            .with_extension("accepts", serde_json::to_value(accepts_v1).expect("requirements serialize"));
    }
    let mut response = problem_response(body, request_id);
    response.headers_mut().extend(headers);
    response
}

fn x402_error(rejection: &Rejection, default: &str) -> String {
    if rejection.kind == RejectKind::PaymentRequired { default.to_owned() } else { rejection.reason.to_owned() }
}

/// The v1 form of an offer: v1 network name where the chain has one, CAIP-2 otherwise.
fn v1_requirements(
    requirements: &x402::PaymentRequirements,
    binding: &RequestBinding,
    resource: &ResourceText,
) -> x402::v1::PaymentRequirements {
    let network = x402::v1::chain_id(&requirements.network)
        .and_then(x402::v1::network_name)
        .map_or_else(|| requirements.network.clone(), str::to_owned);
    x402::v1::PaymentRequirements {
        scheme: requirements.scheme.clone(),
        network,
        max_amount_required: requirements.amount.clone(),
        asset: requirements.asset.clone(),
        pay_to: requirements.pay_to.clone(),
        resource: binding.resource_url.clone(),
        description: resource.description.clone().unwrap_or_default(),
        mime_type: Some(resource.mime_type.clone().unwrap_or_else(|| "application/json".into())),
        output_schema: None,
        max_timeout_seconds: requirements.max_timeout_seconds,
        extra: requirements.extra.clone(),
    }
}

/// A problem response: status from the problem, `application/problem+json`, never cached.
pub fn problem_response(problem: Problem, request_id: &str) -> Response<Body> {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(Body::from(problem.to_json()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(problem::CONTENT_TYPE));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", id);
    }
    response
}

/// A rejection that is not a 402 (those carry offers: [`payment_required`]).
pub fn rejection_response(rejection: &Rejection, request_id: &str) -> Response<Body> {
    let mut problem = rejection.to_problem().with_extension("requestId", request_id);
    if rejection.kind == RejectKind::InFlight {
        problem = problem.with_extension("retryAfter", 1);
    }
    let mut response = problem_response(problem, request_id);
    if rejection.kind == RejectKind::InFlight {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
