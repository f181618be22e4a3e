//! Answers given again, without a second charge: the response a settled payment is owed (its gateway died while
//! settling, or its settlement landed after it was reported failed), served to the same credential sent again;
//! and the first answer to an x402 payment identifier, kept in the store (`identifier.rs`).

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};

use paygate_core::method::{SettleOutcome, VerifiedPayment};
use paygate_core::reject::{RejectKind, Rejection};

use super::bind::Expiry;
use super::claim::{Paid, store_down};
use super::{Gateway, Inner, PaidRequest};
use crate::body::Body;
use crate::credential::Presented;
use crate::identifier::{self, Identifier, Lookup};
use crate::metrics::Outcome;
use crate::offers::RouteOffer;
use crate::payment::{ClaimedPayment, OwedPayment};

impl Gateway {
    /// A paid request; one carrying an x402 payment identifier seen before gets its first answer.
    pub(super) async fn paid<S: Inner>(
        &self,
        ctx: &PaidRequest<'_>,
        presented: Presented,
        parts: Parts,
        body: Bytes,
        inner: S,
    ) -> Response<Body> {
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

    /// A payment that did not verify may be one the chain already took whose response was never delivered: owed
    /// to the same credential, even once its offer has expired, and only to it (its challenge id is the row's).
    /// Otherwise, the refusal.
    pub(super) async fn owed_or_refused<S: Inner>(
        &self,
        ctx: &PaidRequest<'_>,
        presented: &Presented,
        rejection: Rejection,
        parts: Parts,
        body: Bytes,
        inner: S,
    ) -> Response<Body> {
        if matches!(rejection.kind, RejectKind::Replayed | RejectKind::PaymentExpired)
            && let Ok((offer, challenge_id, proof)) = self.bind(ctx, presented, Some(&body), Expiry::Ignored)
            && let Some(proof_key) = offer.method.proof_key(proof)
            && let Some(owed) =
                OwedPayment::take(self.store.as_ref(), &self.metrics, &proof_key, challenge_id.as_deref()).await
        {
            return self.redeliver(ctx, presented, offer, owed, parts, body, inner).await;
        }
        self.refuse(ctx, Some(&rejection)).await
    }

    /// Serves a request whose payment was settled without its response reaching the payer, not charging again.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn redeliver<S: Inner>(
        &self,
        ctx: &PaidRequest<'_>,
        presented: &Presented,
        offer: &RouteOffer,
        owed: OwedPayment<'_>,
        parts: Parts,
        body: Bytes,
        inner: S,
    ) -> Response<Body> {
        let response = self.upstream(inner, Request::from_parts(parts, Body::from(body))).await;
        if !owed.answered(response.status().as_u16()).await {
            return response;
        }
        let verified = VerifiedPayment {
            proof_key: owed.row.proof_key.clone(),
            payer: owed.row.payer.clone(),
            amount: offer.amount,
            settlement: serde_json::Value::Null,
        };
        let payment = ClaimedPayment::new(
            self.store.as_ref(),
            &self.metrics,
            owed.row.id,
            offer.method.as_ref(),
            verified,
            &ctx.route.name,
        );
        let paid = Paid { ctx, presented, offer, payment: &payment };
        let reference = owed.row.tx_hash.clone().unwrap_or_default();
        self.deliver(&paid, response, &SettleOutcome::Settled { reference })
    }
}
