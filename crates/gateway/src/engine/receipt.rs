//! What a paid answer carries: the receipt in the payment's framing (`PAYMENT-RESPONSE`, `X-PAYMENT-RESPONSE`,
//! `Payment-Receipt`) or the notice that settlement is pending; and on every answer to a priced request, its
//! request id and headers that keep it out of shared caches.

use http::{HeaderMap, HeaderValue, Response, header};

use paygate_core::clock::rfc3339;
use paygate_core::method::{PaymentMethod, SettleOutcome, VerifiedPayment};
use paygate_proto::mpp::{self, Receipt};
use paygate_proto::x402;

use super::claim::Paid;
use super::{Gateway, SETTLEMENT_HEADER};
use crate::body::Body;
use crate::credential::Presented;
use crate::request_id::REQUEST_ID;

impl Gateway {
    /// The upstream's response with the receipt (or the pending notice) added.
    pub(super) fn deliver(
        &self,
        paid: &Paid<'_>,
        mut response: Response<Body>,
        outcome: &SettleOutcome,
    ) -> Response<Body> {
        let headers = response.headers_mut();
        match outcome {
            SettleOutcome::Settled { reference } => add_receipt(headers, paid, reference, self.clock.now_unix()),
            SettleOutcome::Submitted { reference } => {
                headers.insert(SETTLEMENT_HEADER, HeaderValue::from_static("submitted"));
                add_receipt(headers, paid, reference, self.clock.now_unix());
            }
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
}

/// Every answer to a priced request: it names its request, and no shared cache keeps it (a paid answer must not
/// reach an unpaid client through a CDN: an x402 retry carries no `Authorization` header).
pub(super) fn finish(response: &mut Response<Body>, request_id: &str) {
    let headers = response.headers_mut();
    if !headers.contains_key(REQUEST_ID)
        && let Ok(id) = HeaderValue::from_str(request_id)
    {
        headers.insert(REQUEST_ID, id);
    }
    uncacheable(headers);
}

/// The MPP receipt of `payment` (paid on `method`, answering challenge `challenge_id` of MPP method
/// `mpp_method`): with its settlement's `reference`, or, before it settled (a stream's first bytes), naming its
/// channel.
pub(super) fn mpp_receipt(
    mpp_method: &str,
    challenge_id: &str,
    method: &dyn PaymentMethod,
    payment: &VerifiedPayment,
    reference: Option<&str>,
    now: u64,
) -> Receipt {
    let fields = method.mpp_receipt(payment, reference.unwrap_or_default());
    let reference = reference.map(str::to_owned).unwrap_or_else(|| {
        let channel = fields.iter().find(|(name, _)| *name == "channelId").and_then(|(_, v)| v.as_str());
        channel.unwrap_or_default().to_owned()
    });
    let mut receipt = Receipt::success(mpp_method, reference, rfc3339(now)).with("challengeId", challenge_id);
    for (name, value) in fields {
        receipt = receipt.with(name, value);
    }
    receipt
}

fn add_receipt(headers: &mut HeaderMap, paid: &Paid<'_>, reference: &str, now: u64) {
    match paid.presented {
        Presented::Mpp(credential) => {
            let (challenge, method) = (&credential.challenge, paid.payment.method);
            let mpp_method = paid.offer.mpp.map_or(challenge.method.as_str(), |(method, _)| method);
            let receipt = mpp_receipt(mpp_method, &challenge.id, method, paid.payment.charged(), Some(reference), now);
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
pub(super) fn add_x402_settlement(
    headers: &mut HeaderMap,
    paid: &Paid<'_>,
    success: bool,
    reason: Option<&str>,
    reference: &str,
) {
    let (name, network) = match paid.presented {
        Presented::X402V2(_) => (x402::PAYMENT_RESPONSE, paid.offer.method.option().network.to_string()),
        Presented::X402V1(payload) => (x402::X_PAYMENT_RESPONSE, payload.network.clone()),
        Presented::Mpp(_) | Presented::TxHash(_) => return,
    };
    let scheme = success.then(|| paid.payment.method.x402_receipt(paid.payment.charged(), reference)).flatten();
    let (transaction, amount, extra) = match scheme {
        Some(receipt) => (receipt.transaction, receipt.amount, receipt.extra),
        None => (reference.to_owned(), None, None),
    };
    let response = x402::SettleResponse {
        success,
        error_reason: reason.map(str::to_owned),
        transaction,
        network,
        payer: Some(paid.payment.verified.payer.clone()),
        error_message: None,
        amount,
        extra,
    };
    if let Ok(value) = HeaderValue::from_str(&x402::encode_header(&response)) {
        headers.insert(name, value);
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
}
