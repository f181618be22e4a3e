//! Channel management: a credential that asks its rail to top up or close a channel instead of paying a call
//! (an MPP session's `topUp` or `close`) is bound like any credential, done by the rail
//! ([`paygate_core::method::PaymentMethod::manage`]), and answered here with 204 and a `Payment-Receipt`:
//! nothing is claimed and the upstream is never called.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

use paygate_core::clock::rfc3339;
use paygate_proto::mpp::{self, Receipt};

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
        body: &Bytes,
    ) -> Option<Response<Body>> {
        let Presented::Mpp(credential) = presented else { return None };
        let (offer, _, proof) = self.bind(ctx, presented, body, Expiry::Enforced).ok()?;
        let managed = match offer.method.manage(proof).await? {
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
}
