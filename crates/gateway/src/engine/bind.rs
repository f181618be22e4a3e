//! Binding and verifying: which of the route's current offers a credential answers, in each framing, and
//! whether the rail accepts its proof. One module for every framing:
//!
//! - MPP `Authorization: Payment`: the echoed challenge's id is recomputed (HMAC) and must match; then its
//!   expiry, realm, route scope and body digest, and the offer its method, intent and request name;
//! - x402 v2 `PAYMENT-SIGNATURE`: the echoed `accepted` must be one of the offers, and its
//!   `extra.paygate` binding (id, expiry, nonce) must recompute for this request;
//! - x402 v1 `X-PAYMENT`: no challenge is echoed; the offer is the one of its scheme and network, and only the
//!   signed authorization binds it (amount, recipient, token, validity window);
//! - tx-hash proofs (pay first): no challenge at all; each offer taking them is tried, those named first.

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Uri, header};

use paygate_core::binding::{BindingInput, challenge_scope, encode_request, scope_route};
use paygate_core::clock::parse_rfc3339;
use paygate_core::digest::{body_digest, digest_matches};
use paygate_core::method::{Proof, VerifiedPayment};
use paygate_core::reject::{RejectKind, Rejection};
use paygate_proto::x402;
use paygate_proto::x402::borrowed::BINDING_KEY;

use super::{Gateway, PaidRequest, Settings};
use crate::credential::Presented;
use crate::metrics::Phase;
use crate::offers::{RequestBinding, RouteOffer};

/// A credential bound to an offer and verified.
pub(super) struct Bound<'r> {
    pub offer: &'r RouteOffer,
    /// The challenge it answered, when its framing binds one.
    pub challenge_id: Option<String>,
    pub verified: VerifiedPayment,
}

/// Whether binding refuses an expired challenge.
#[derive(Debug, Clone, Copy)]
pub(super) enum Expiry {
    Enforced,
    /// Only the redelivery of an owed response takes an expired one (the payment was made while it was valid),
    /// and a session's voucher sent on its own for the stream its challenge started.
    Ignored,
}

/// What every challenge for this request binds.
pub(super) fn binding(settings: &Settings, parts: &Parts, body: &Bytes) -> RequestBinding {
    // An MCP tool's call binds its tool, not its server's endpoint (`crate::mcp`).
    if let Some(crate::mcp::ToolResource(url)) = parts.extensions.get() {
        return RequestBinding {
            realm: realm(settings, &parts.headers),
            route: format!("{} {url}", parts.method),
            digest: (!body.is_empty()).then(|| body_digest(body)),
            resource_url: url.clone(),
        };
    }
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    RequestBinding {
        realm: realm(settings, &parts.headers),
        route: format!("{} {path_and_query}", parts.method),
        digest: (!body.is_empty()).then(|| body_digest(body)),
        resource_url: format!("{}{path_and_query}", origin(settings, &parts.headers, &parts.uri)),
    }
}

/// What the ledger names a request by: `METHOD /path`, or for an MCP tool's call `POST mcp://tool/<name>`.
pub(super) fn ledger_route(method: &http::Method, uri: &Uri, extensions: &http::Extensions) -> String {
    match extensions.get::<crate::mcp::ToolResource>() {
        Some(crate::mcp::ToolResource(url)) => format!("{method} {url}"),
        None => format!("{method} {}", uri.path()),
    }
}

/// The request's `Host` (or its URI's authority).
fn host<'h>(headers: &'h HeaderMap, uri: Option<&'h Uri>) -> &'h str {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.and_then(|u| u.authority()).map(|a| a.as_str()))
        .unwrap_or("localhost")
}

/// Where clients reach the gateway: the configured public URL, else `http://` and the request's host.
pub(super) fn origin(settings: &Settings, headers: &HeaderMap, uri: &Uri) -> String {
    match &settings.public_url {
        Some(base) => base.trim_end_matches('/').to_owned(),
        None => format!("http://{}", host(headers, Some(uri))),
    }
}

/// The realm challenges name: the configured one, else the request's host name.
pub(super) fn realm(settings: &Settings, headers: &HeaderMap) -> String {
    settings.realm.clone().unwrap_or_else(|| host_name(host(headers, None)).to_owned())
}

fn invalid(reason: &'static str, detail: &'static str) -> Rejection {
    Rejection::new(RejectKind::InvalidChallenge, reason, detail)
}

impl Gateway {
    /// Binds a credential to the offer it answers and verifies it. A tx-hash proof binds no challenge: it is
    /// tried against each of the route's offers that take tx hashes until one accepts it.
    pub(super) async fn bind_and_verify<'r>(
        &self,
        ctx: &PaidRequest<'r>,
        presented: &Presented,
        body: &Bytes,
    ) -> Result<Bound<'r>, Rejection> {
        if let Presented::TxHash(proof) = presented {
            let mut first_error = None;
            for offer in ctx.accepted.iter().filter(|o| o.method.accepts_tx_hash()) {
                match self.verify_timed(offer, Proof::TxHash(proof)).await {
                    Ok(verified) => return Ok(Bound { offer, challenge_id: None, verified }),
                    Err(rejection) => {
                        first_error.get_or_insert(rejection);
                    }
                }
            }
            return Err(first_error
                .unwrap_or_else(|| invalid("offer_not_current", "this route takes no transaction-hash proofs")));
        }
        let (offer, challenge_id, proof) = self.bind(ctx, presented, Some(body), Expiry::Enforced)?;
        let verified = self.verify_timed(offer, proof).await?;
        Ok(Bound { offer, challenge_id, verified })
    }

    async fn verify_timed(&self, offer: &RouteOffer, proof: Proof<'_>) -> Result<VerifiedPayment, Rejection> {
        let started = std::time::Instant::now();
        let verified = offer.method.verify(proof, offer.amount).await;
        self.metrics.time(Phase::Verify, started.elapsed());
        verified
    }

    /// Binds a credential to the route's current offer it answers: the offer, the challenge id, and the proof.
    /// `body` is the request's, which a challenge binds by digest; `None` for a credential sent on its own
    /// (channel management), whose challenge may have been made for a request with a body.
    pub(super) fn bind<'r, 'p>(
        &self,
        ctx: &PaidRequest<'r>,
        presented: &'p Presented,
        body: Option<&Bytes>,
        expiry: Expiry,
    ) -> Result<(&'r RouteOffer, Option<String>, Proof<'p>), Rejection> {
        match presented {
            Presented::Mpp(credential) => self.bind_mpp(ctx, credential, body, expiry),
            Presented::X402V2(payload) => self.bind_x402_v2(ctx, payload, expiry),
            Presented::X402V1(payload) => bind_x402_v1(ctx.accepted, payload),
            Presented::TxHash(_) => Err(invalid("offer_not_current", "transaction-hash proofs bind no challenge")),
        }
    }

    fn bind_mpp<'r, 'p>(
        &self,
        ctx: &PaidRequest<'r>,
        credential: &'p paygate_proto::mpp::Credential,
        body: Option<&Bytes>,
        expiry: Expiry,
    ) -> Result<(&'r RouteOffer, Option<String>, Proof<'p>), Rejection> {
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
            return Err(invalid("unknown_challenge", "the challenge was not issued by this server or was altered"));
        }
        self.check_expiry(ch.expires.as_deref(), expiry)?;
        if ch.realm != ctx.binding.realm {
            return Err(invalid("realm_mismatch", "the challenge belongs to another realm"));
        }
        if ch.opaque.as_deref().and_then(scope_route).as_deref() != Some(ctx.binding.route.as_str()) {
            return Err(invalid("route_mismatch", "the challenge was issued for another request"));
        }
        let body_ok = match (&ch.digest, body) {
            (_, None) => true,
            (Some(digest), Some(body)) => digest_matches(digest, body),
            (None, Some(body)) => body.is_empty(),
        };
        if !body_ok {
            return Err(invalid("body_mismatch", "the request body is not the one the challenge was issued for"));
        }
        let offer = ctx
            .accepted
            .iter()
            .find(|o| o.answers_mpp(&ch.method, &ch.intent, &ch.request))
            .ok_or_else(|| invalid("offer_not_current", "this route no longer makes that offer"))?;
        Ok((offer, Some(ch.id.clone()), Proof::Mpp { credential }))
    }

    fn bind_x402_v2<'r, 'p>(
        &self,
        ctx: &PaidRequest<'r>,
        payload: &'p x402::PaymentPayload,
        expiry: Expiry,
    ) -> Result<(&'r RouteOffer, Option<String>, Proof<'p>), Rejection> {
        if payload.x402_version != 2 {
            return Err(invalid("unsupported_version", "PAYMENT-SIGNATURE carries x402 v2"));
        }
        let mut accepted = serde_json::to_value(&payload.accepted).expect("requirements serialize");
        let echoed = accepted.get_mut("extra").and_then(|e| e.as_object_mut()).and_then(|e| e.remove(BINDING_KEY));
        let offer = ctx.accepted.iter().find(|o| o.x402_json.as_ref() == Some(&accepted)).ok_or_else(|| {
            Rejection::new(
                RejectKind::InvalidChallenge,
                mismatch_reason(ctx.accepted, &payload.accepted),
                "the payment accepts terms this route does not offer",
            )
        })?;
        let field = |name: &str| echoed.as_ref().and_then(|e| e.get(name)).and_then(|v| v.as_str());
        let (Some(id), Some(expires), Some(nonce)) = (field("id"), field("expires"), field("nonce")) else {
            return Err(invalid("missing_binding", "accepted.extra.paygate must echo the offer's binding"));
        };
        let opaque = challenge_scope(&ctx.binding.route, nonce);
        let terms =
            offer.terms.as_ref().ok_or_else(|| invalid("offer_not_current", "this offer binds no challenge"))?;
        if !self.secret.verify(&ctx.binding.input(terms, expires, &opaque), id) {
            return Err(invalid(
                "challenge_mismatch",
                "the offer was made for another request (route or body) or was altered",
            ));
        }
        self.check_expiry(Some(expires), expiry)?;
        Ok((offer, Some(id.to_owned()), Proof::X402 { version: 2, payload: &payload.payload }))
    }

    fn check_expiry(&self, expires: Option<&str>, expiry: Expiry) -> Result<(), Rejection> {
        if let Expiry::Ignored = expiry {
            return Ok(());
        }
        let expires = expires.ok_or_else(|| invalid("missing_expires", "the challenge has no expiry"))?;
        let at = parse_rfc3339(expires).ok_or_else(|| invalid("invalid_expires", "the expiry is not RFC 3339"))?;
        if self.clock.now_unix() >= at {
            return Err(Rejection::new(
                RejectKind::PaymentExpired,
                "challenge_expired",
                "the offer expired; pay the fresh one",
            ));
        }
        Ok(())
    }
}

/// x402 v1 echoes no requirements: the offer is the route's of its scheme and network.
fn bind_x402_v1<'r, 'p>(
    offers: &'r [RouteOffer],
    payload: &'p x402::v1::PaymentPayload,
) -> Result<(&'r RouteOffer, Option<String>, Proof<'p>), Rejection> {
    let chain_id = x402::v1::chain_id(&payload.network);
    let offer = offers
        .iter()
        .find(|o| {
            o.x402.as_ref().is_some_and(|r| {
                r.scheme == payload.scheme && chain_id.is_some() && x402::v1::chain_id(&r.network) == chain_id
            })
        })
        .ok_or_else(|| invalid("network_mismatch", "no offer for that scheme and network"))?;
    Ok((offer, None, Proof::X402 { version: 1, payload: &payload.payload }))
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

/// `api.example.com` of `api.example.com:8443` (and of `[::1]:80`, `[::1]`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':')
        .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_drop_ports() {
        assert_eq!(host_name("api.example.com:8443"), "api.example.com");
        assert_eq!(host_name("api.example.com"), "api.example.com");
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("127.0.0.1:8402"), "127.0.0.1");
    }
}
