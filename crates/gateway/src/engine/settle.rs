//! Proxying and settling a claimed payment, in the route's order. By default (`settle = "after"`) the upstream
//! answers first, and money moves only when it answered below 400; otherwise the claim is voided and nothing is
//! charged. With `settle = "before"` the money moves first and the upstream's answer is delivered whatever it is.
//! A settlement that definitely failed withholds the upstream's answer (nothing charged, a 402 to pay again); one
//! that could not be sent releases the claim and refuses the call (the same payment may be sent again).
//!
//! Both return `Err` with the response to send when the call's count must be taken back.

use http::{Request, Response};

use paygate_core::method::SettleOutcome;
use paygate_core::money::AtomicAmount;
use paygate_core::reject::{RejectKind, Rejection};

use super::claim::{Paid, store_down};
use super::{Gateway, Inner};
use crate::body::Body;
use crate::payment::NotAttempted;

impl Gateway {
    /// `settle = "before"`: settles, then calls the upstream and records its status.
    pub(super) async fn settle_then_proxy<S: Inner>(
        &self,
        paid: &Paid<'_>,
        request: Request<Body>,
        inner: S,
    ) -> Result<Response<Body>, Response<Body>> {
        let outcome = self.settle(paid, None).await?;
        if let Some(refusal) = self.not_settled(paid, &outcome).await {
            return Err(refusal);
        }
        let response = self.upstream(inner, request).await;
        paid.payment.record_upstream_status(response.status().as_u16()).await;
        Ok(self.deliver(paid, response, &outcome))
    }

    /// `settle = "after"`: calls the upstream, then settles only when it answered below 400.
    pub(super) async fn proxy_then_settle<S: Inner>(
        &self,
        paid: &Paid<'_>,
        request: Request<Body>,
        inner: S,
    ) -> Result<Response<Body>, Response<Body>> {
        let response = self.upstream(inner, request).await;
        let status = response.status().as_u16();
        if status >= 400 {
            // Nothing is charged; the same credential may be sent again while it is valid.
            paid.payment.void_upstream_failed(status).await;
            return Err(response);
        }
        // A route priced by its response charges what the call used where the rail can charge less; a call quoted
        // one part is paid as it is delivered.
        let meter = paid.ctx.route.pricing.as_ref().and_then(|p| p.meter());
        let (response, outcome) = match meter.filter(|_| paid.payment.method.charges_usage()) {
            Some(meter) if paid.offer.per_part => return self.pay_as_delivered(paid, meter, response).await,
            Some(meter) => {
                let (response, used) = self.measure(paid, meter, response, paid.payment.verified.amount).await?;
                (response, self.settle_used(paid, status, used).await?)
            }
            None => (response, self.settle(paid, Some(status)).await?),
        };
        if let Some(refusal) = self.not_settled(paid, &outcome).await {
            return Err(refusal);
        }
        Ok(self.deliver(paid, response, &outcome))
    }

    /// Settles; a settlement that could not be attempted is refused here.
    async fn settle(&self, paid: &Paid<'_>, upstream_status: Option<u16>) -> Result<SettleOutcome, Response<Body>> {
        self.attempted(paid, paid.payment.settle(upstream_status).await).await
    }

    /// Settles what a call priced by its response used.
    async fn settle_used(
        &self,
        paid: &Paid<'_>,
        status: u16,
        used: AtomicAmount,
    ) -> Result<SettleOutcome, Response<Body>> {
        self.attempted(paid, paid.payment.settle_used(status, used).await).await
    }

    /// A settlement's outcome; one that could not be attempted is refused here.
    pub(super) async fn attempted(
        &self,
        paid: &Paid<'_>,
        settled: Result<SettleOutcome, NotAttempted>,
    ) -> Result<SettleOutcome, Response<Body>> {
        match settled {
            Ok(outcome) => Ok(outcome),
            // Without a record of the attempt, money must not move: it did not.
            Err(NotAttempted::Released) => {
                let released = Rejection::new(
                    RejectKind::InFlight,
                    "payment_released",
                    "the payment was released while this request ran (taken for abandoned); nothing was charged: \
                     send the same credential again",
                );
                Err(self.refuse(paid.ctx, Some(&released)).await)
            }
            Err(NotAttempted::Store(e)) => Err(self.refuse(paid.ctx, Some(&store_down(&e))).await),
        }
    }

    /// The refusal of a payment whose settlement did not happen: it definitely failed (nothing charged, the
    /// upstream's answer withheld), or it could not be sent (the claim is released; the same payment may be sent
    /// again). `None` for a settled or pending payment.
    pub(super) async fn not_settled(&self, paid: &Paid<'_>, outcome: &SettleOutcome) -> Option<Response<Body>> {
        match outcome {
            SettleOutcome::Settled { .. } | SettleOutcome::Submitted { .. } | SettleOutcome::Unknown { .. } => None,
            SettleOutcome::Failed { reference, .. } => {
                let rejection = Rejection::new(
                    RejectKind::SettlementFailed,
                    "settlement_failed",
                    "the payment could not be settled; nothing was charged",
                );
                let mut response = self.refuse(paid.ctx, Some(&rejection)).await;
                let reference = reference.as_deref().unwrap_or("");
                super::receipt::add_x402_settlement(
                    response.headers_mut(),
                    paid,
                    false,
                    Some("settlement_failed"),
                    reference,
                );
                Some(response)
            }
            SettleOutcome::NotSent { refusal } => {
                paid.payment.method.release(&paid.payment.verified).await;
                Some(self.refuse(paid.ctx, Some(refusal)).await)
            }
        }
    }
}
