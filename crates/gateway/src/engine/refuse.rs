//! Refusals: a 402 with fresh offers when paying (again) could help, the bare problem otherwise, each counted by
//! its outcome and reason.

use http::{HeaderValue, Method, Response, header};

use paygate_core::reject::{RejectKind, Rejection};

use super::{Gateway, PaidRequest, Route};
use crate::body::Body;
use crate::metrics::Outcome;
use crate::offers;

impl Gateway {
    /// A refusal without offers, counted.
    pub(crate) fn reject(&self, rejection: &Rejection, request_id: &str) -> Response<Body> {
        self.metrics.outcome(Outcome::Rejected);
        self.metrics.rejected(rejection.reason);
        offers::rejection_response(rejection, request_id)
    }

    /// The 402 for an unpaid request (`rejection` is `None`), or the refusal of a paid one: a 402 with fresh
    /// offers when paying again could help, the bare problem otherwise.
    pub(super) async fn refuse(&self, ctx: &PaidRequest<'_>, rejection: Option<&Rejection>) -> Response<Body> {
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
                let required = offers::payment_required(
                    ctx.offers,
                    ctx.binding,
                    &ctx.route.resource,
                    &self.secret,
                    self.clock.now_unix(),
                    self.settings.challenge_ttl_secs,
                    rejection,
                    ctx.request_id,
                )
                .await;
                // A browser that has not paid gets the page that pays from its wallet, with the same offers.
                match ctx.wants_html && rejection.is_none() {
                    true => crate::paywall::page(required, ctx.offers, &ctx.route.resource),
                    false => required,
                }
            }
        }
    }

    /// A HEAD has no body to deliver, so it is never charged (unless the route sells HEAD itself): a payment
    /// sent with one is refused before anything is verified, and stays good for the GET. `None` when the
    /// request may be paid.
    pub(super) fn head_not_paid(&self, route: &Route, method: &Method, request_id: &str) -> Option<Response<Body>> {
        if method != Method::HEAD || route.matcher.method.as_ref() == Some(&Method::HEAD) {
            return None;
        }
        let rejection = Rejection::new(
            RejectKind::MethodNotPaid,
            "head_not_paid",
            "HEAD is not charged: nothing was verified or charged; send the payment with GET",
        );
        let mut response = self.reject(&rejection, request_id);
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
        Some(response)
    }
}
