//! Measuring a call priced by its response (a route with a `meter`), between the upstream's answer and the
//! settlement: on a rail that can charge less than it verified, the answer is read whole (bounded), what it used
//! is counted and priced (`crate::meter`), and the payment is settled for that amount, never more than the 402
//! quoted. An answer too large to read, or cut off, is the upstream's failure: nothing is charged.

use http::Response;
use http_body_util::{BodyExt, Limited};
use paygate_core::money::AtomicAmount;
use paygate_core::reject::{RejectKind, Rejection};

use super::Gateway;
use super::claim::Paid;
use crate::body::Body;
use crate::meter::Meter;

/// The most of an answer paygate reads to count what it used.
const MAX_METERED_BODY: usize = 32 * 1024 * 1024;

impl Gateway {
    /// The upstream's answer, read when counting needs it, and the amount the call used in its offer's asset, at
    /// most `max`.
    pub(super) async fn measure(
        &self,
        paid: &Paid<'_>,
        meter: &Meter,
        response: Response<Body>,
        max: AtomicAmount,
    ) -> Result<(Response<Body>, AtomicAmount), Response<Body>> {
        let index = paid.ctx.offers.iter().position(|o| std::sync::Arc::ptr_eq(&o.method, &paid.offer.method));
        let (parts, body) = response.into_parts();
        let bytes = if meter.reads_body() {
            match Limited::new(body, MAX_METERED_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    paid.payment.void_upstream_failed(502).await;
                    let rejection = Rejection::new(
                        RejectKind::UpstreamUnavailable,
                        "upstream_unavailable",
                        "the API's answer could not be read whole to count what it used; nothing was charged",
                    );
                    return Err(self.reject(&rejection, paid.ctx.request_id));
                }
            }
        } else {
            // A count in a header: the body streams through untouched.
            let (amount, reported) = meter.price(index.unwrap_or(usize::MAX), &parts.headers, &[], max);
            warn_unreported(paid, reported);
            return Ok((Response::from_parts(parts, body), amount));
        };
        let (amount, reported) = meter.price(index.unwrap_or(usize::MAX), &parts.headers, &bytes, max);
        warn_unreported(paid, reported);
        Ok((Response::from_parts(parts, Body::from(bytes)), amount))
    }
}

fn warn_unreported(paid: &Paid<'_>, reported: bool) {
    if !reported {
        tracing::warn!(route = %paid.ctx.route.name, "the API's answer did not say what it used: the maximum is charged");
    }
}
