//! Pricing a request: the offers its route makes it (`Pricing::offers_for`: flat, per unit of the request, asked
//! of the pricing hook, or by usage tier), and on a tiered route the payer's quote. A per-unit or hook price is
//! computed for this request, whose body its challenges then bind by digest.

use http::request::Parts;

use paygate_core::reject::Rejection;

use super::claim::store_down;
use super::route::RoutePricing;
use super::{Gateway, Route};
use crate::offers::RouteOffer;
use crate::usage::{PAYER_HINT, PayerTiers, period_start};

impl Gateway {
    /// What a 402 quotes (`.0`) and what a payment may answer (`.1`). A tiered route quotes the payer an unpaid
    /// request names (a hint: the verified payment decides; a paid request is not slowed by the look-up, its
    /// refusal quotes a payer with no calls) and takes a payment of any tier's price.
    pub(super) async fn quote<'o>(
        &self,
        route: &Route,
        pricing: &'o RoutePricing,
        offers: &'o [RouteOffer],
        parts: &Parts,
        unpaid: bool,
    ) -> Result<(&'o [RouteOffer], &'o [RouteOffer]), Rejection> {
        let Some(tiers) = pricing.payer_tiers() else { return Ok((offers, offers)) };
        let accepted = tiers.accepted(offers);
        let hint = parts.headers.get(PAYER_HINT).and_then(|v| v.to_str().ok()).filter(|p| p.len() <= 128);
        let calls = match hint.filter(|_| unpaid) {
            Some(payer) => {
                let start = period_start(tiers.period, self.clock.now_unix());
                self.store.calls(&PayerTiers::counter(&route.name, payer), start).await.map_err(|e| store_down(&e))?
            }
            None => 0,
        };
        Ok((tiers.quote(calls, accepted), accepted))
    }
}
