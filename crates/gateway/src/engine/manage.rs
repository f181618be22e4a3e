//! Channel management: a credential that asks its rail to top up, close or refund a channel instead of paying a
//! call (an MPP session's `topUp` or `close`, or its `voucher` or `open` sent on its own, with no body: a paused
//! stream's next voucher; an x402 `batch-settlement` `refund`) is bound like any credential (an MPP one sent on its
//! own but for the body, which it does not carry), done by the rail
//! ([`paygate_core::method::PaymentMethod::manage`]), and answered here: MPP with 204 and a `Payment-Receipt`,
//! x402 with 200 and a `PAYMENT-RESPONSE` naming the transaction. Nothing is claimed and the upstream is never
//! called.

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};

use paygate_core::clock::rfc3339;
use paygate_core::method::Asked;
use paygate_proto::mpp::{self, Receipt};
use paygate_proto::x402;

use super::bind::Expiry;
use super::{Gateway, PaidRequest};
use crate::body::Body;
use crate::credential::Presented;

impl Gateway {
    /// The answer to a management credential; `None` when the credential pays a call (or does not bind: the
    /// paid path then says why).
    pub(super) async fn managed(
        &self,
        ctx: &PaidRequest<'_>,
        presented: &Presented,
        parts: &Parts,
        body: &Bytes,
    ) -> Option<Response<Body>> {
        let credential = match presented {
            Presented::Mpp(credential) => credential,
            Presented::X402V2(payment) if is_x402_management(&payment.payload) => {
                return self.managed_x402(ctx, presented, parts, body).await;
            }
            _ => return None,
        };
        let asked = asked(parts, body);
        // A credential sent on its own (a voucher for a stream that waits for it) answers the challenge that
        // started the stream: its body is not this request's, and it may have expired since; the voucher's
        // signature is what pays.
        let (body, expiry) = match asked {
            Asked::Resource => (Some(body), Expiry::Enforced),
            Asked::CredentialOnly => (None, Expiry::Ignored),
        };
        let (offer, _, proof) = self.bind(ctx, presented, body, expiry).ok()?;
        let managed = match offer.method.manage(proof, asked).await? {
            Ok(managed) => managed,
            Err(rejection) => return Some(self.refuse(ctx, Some(&rejection)).await),
        };
        let ch = &credential.challenge;
        let mut receipt = Receipt::success(&ch.method, managed.reference, rfc3339(self.clock.now_unix()))
            .with("challengeId", ch.id.clone());
        for (name, value) in managed.receipt {
            receipt = receipt.with(name, value);
        }
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        if let Ok(value) = HeaderValue::from_str(&receipt.to_header()) {
            response.headers_mut().insert(mpp::PAYMENT_RECEIPT, value);
        }
        Some(response)
    }

    /// The answer to an x402 management payload: 200 with its `PAYMENT-RESPONSE` (the transaction, and the amount
    /// the rail says), no body.
    async fn managed_x402(
        &self,
        ctx: &PaidRequest<'_>,
        presented: &Presented,
        parts: &Parts,
        body: &Bytes,
    ) -> Option<Response<Body>> {
        let (offer, _, proof) = self.bind(ctx, presented, Some(body), Expiry::Enforced).ok()?;
        let managed = match offer.method.manage(proof, asked(parts, body)).await? {
            Ok(managed) => managed,
            Err(rejection) => return Some(self.refuse(ctx, Some(&rejection)).await),
        };
        let amount = managed.receipt.iter().find(|(name, _)| *name == "amount").and_then(|(_, v)| v.as_str());
        let settled = x402::SettleResponse {
            success: true,
            error_reason: None,
            transaction: managed.reference,
            network: offer.method.option().network.to_string(),
            payer: None,
            error_message: None,
            amount: amount.map(str::to_owned),
            extra: None,
        };
        let mut response = Response::new(Body::empty());
        if let Ok(value) = HeaderValue::from_str(&x402::encode_header(&settled)) {
            response.headers_mut().insert(x402::PAYMENT_RESPONSE, value);
        }
        Some(response)
    }
}

/// Whether an x402 payload manages a channel rather than paying a call: `batch-settlement`'s `refund`, x402's one
/// such payload. Read before anything is bound, so that the payments of calls are not read twice.
fn is_x402_management(payload: &serde_json::Value) -> bool {
    payload.get("type").and_then(serde_json::Value::as_str) == Some("refund")
}

/// What a request with a credential asks for: nothing but what its credential does when it is a `POST` with no
/// body and no query (MPP clients send a voucher or an `open` that way; a paid `HEAD` is refused before this);
/// the resource otherwise.
fn asked(parts: &Parts, body: &Bytes) -> Asked {
    let bare_post = parts.method == Method::POST && body.is_empty() && parts.uri.query().is_none();
    if bare_post { Asked::CredentialOnly } else { Asked::Resource }
}
