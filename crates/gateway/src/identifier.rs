//! x402 `payment-identifier`s: idempotent retries of paid requests.
//!
//! A client whose connection broke after it paid cannot tell whether it was served. When its payload carries
//! a payment identifier (`extensions["payment-identifier"].info.id`), it can send the same payload again and
//! gets the first answer again, `PAYMENT-RESPONSE` included, from whichever instance it reaches: the answer is
//! kept in the store all instances share. The same id with another payload is a 409, and so is a resend while
//! the first request is still being processed.
//!
//! The id is looked up before the payment is verified (a settled authorization no longer verifies), so it is
//! bound to the digest of the exact payload, not only to its terms. Only answers to requests that moved money
//! (settled, or pending on chain) are kept; after any other outcome the id is forgotten, and the same payload
//! sent again is processed anew, which is what a client retrying after an upstream failure wants. A body over
//! [`KEPT_BODY_BYTES`] is not kept: the resend is served by the upstream again, without a second charge.

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt as _;
use paygate_core::digest::body_digest;
use paygate_core::error::Causes;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_proto::x402::{self, payment_identifier};
use paygate_store::{Identified, KeptAnswer, Store};

use crate::body::Body;

/// The largest body kept for a resend.
pub(crate) const KEPT_BODY_BYTES: usize = 1 << 20;

/// A payment identifier on one route, with the digest of the payload it came with.
#[derive(Debug, Clone)]
pub(crate) struct Identifier {
    key: String,
    digest: String,
}

impl Identifier {
    /// The identifier of an x402 v2 payload on route `route` (ids are scoped by route); `None` without one.
    pub(crate) fn of(route: &str, payload: &x402::PaymentPayload) -> Result<Option<Identifier>, Rejection> {
        let id = payment_identifier::id(payload.extensions.as_ref()).map_err(|e| {
            Rejection::new(RejectKind::MalformedCredential, "invalid_payment_identifier", e.to_string())
        })?;
        Ok(id.map(|id| Identifier {
            key: format!("{route}|{id}"),
            digest: body_digest(paygate_proto::jcs::canonicalize(payload).as_bytes()),
        }))
    }
}

/// What to do with a request carrying an identifier.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// First seen: process the payment, then [`keep`] its answer.
    Process,
    /// Answered before: this is the answer.
    Answered(Response<Body>),
    /// Answered before, its body too large to keep: serve the upstream's answer again with these headers.
    Redeliver(Vec<(HeaderName, HeaderValue)>),
    /// Refused: another payload, or the first request is still in flight.
    Refused(Rejection),
}

/// Looks `identifier` up, claiming it when it is new.
pub(crate) async fn look_up(store: &dyn Store, identifier: &Identifier) -> Result<Lookup, paygate_store::StoreError> {
    Ok(match store.identify(&identifier.key, &identifier.digest).await? {
        Identified::New => Lookup::Process,
        Identified::InProgress => Lookup::Refused(
            Rejection::new(
                RejectKind::InFlight,
                "payment_identifier_in_flight",
                "a request with this payment identifier is being processed; retry shortly for its answer",
            )
            .retry_after(1),
        ),
        Identified::Conflict => Lookup::Refused(Rejection::new(
            RejectKind::IdentifierConflict,
            "payment_identifier_conflict",
            "this payment identifier was used with another payment; use a new identifier for a new payment",
        )),
        Identified::Answered(answer) => match answer.body {
            Some(body) => Lookup::Answered(rebuild(answer.status, &answer.headers, Body::from(body))),
            None => Lookup::Redeliver(header_pairs(&answer.headers)),
        },
    })
}

/// Whether `response` answers a payment that moved money or may still move it: its x402 settlement header says
/// success, or pending.
fn moved_money(response: &Response<Body>) -> bool {
    [x402::PAYMENT_RESPONSE, x402::X_PAYMENT_RESPONSE]
        .iter()
        .filter_map(|name| response.headers().get(*name))
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| x402::decode_header::<x402::SettleResponse>(value).ok())
        .any(|settled| settled.success || settled.error_reason.as_deref() == Some("settlement_pending"))
}

/// Keeps the answer to `identifier`'s first request when it moved money, or forgets the identifier so that the
/// same payload is processed anew; returns the response to send. A body up to [`KEPT_BODY_BYTES`] is read
/// whole to be kept; a larger one streams on, and only its headers are kept.
pub(crate) async fn keep(store: &dyn Store, identifier: &Identifier, response: Response<Body>) -> Response<Body> {
    if !moved_money(&response) {
        if let Err(e) = store.forget_identifier(&identifier.key).await {
            tracing::warn!(error = %Causes(&e), "could not forget a payment identifier");
        }
        return response;
    }
    let (parts, mut body) = response.into_parts();
    let mut read = Vec::new();
    let mut len = 0;
    let complete = loop {
        match body.frame().await {
            None => break true,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    len += data.len();
                    read.push(data);
                }
                if len > KEPT_BODY_BYTES {
                    break false;
                }
            }
            // The upstream broke off: what was read goes out, and a resend asks the upstream again.
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the upstream's body broke off");
                break false;
            }
        }
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter(|(name, _)| *name != http::header::CONTENT_LENGTH)
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
        .collect();
    let kept_body = complete.then(|| read.concat());
    let answer = KeptAnswer { status: parts.status.as_u16(), headers, body: kept_body };
    if let Err(e) = store.keep_answer(&identifier.key, &answer).await {
        tracing::warn!(error = %Causes(&e), "could not keep the answer of a payment identifier");
    }
    let body = if complete {
        Body::from(Bytes::from(answer.body.unwrap_or_default()))
    } else {
        let prefix = futures_util::stream::iter(read.into_iter().map(Ok::<_, axum::Error>));
        Body::from_stream(prefix.chain(body.into_data_stream()))
    };
    Response::from_parts(parts, body)
}

/// A response from kept parts.
fn rebuild(status: u16, headers: &[(String, String)], body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    for (name, value) in header_pairs(headers) {
        response.headers_mut().append(name, value);
    }
    response
}

fn header_pairs(headers: &[(String, String)]) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter_map(|(name, value)| Some((HeaderName::try_from(name).ok()?, HeaderValue::try_from(value).ok()?)))
        .collect()
}

/// Adds the kept payment headers to a redelivered response.
pub(crate) fn with_kept_headers(mut response: Response<Body>, kept: Vec<(HeaderName, HeaderValue)>) -> Response<Body> {
    for (name, value) in kept {
        let payment_header = [x402::PAYMENT_RESPONSE, x402::X_PAYMENT_RESPONSE, crate::engine::SETTLEMENT_HEADER]
            .contains(&name.as_str());
        if payment_header {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
