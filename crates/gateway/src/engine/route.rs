//! A route as the config made it at load: its matcher, and how it charges, decided once. The request path
//! matches on [`Pricing`] and never re-derives the mode from fields; combinations the config refuses (a tiered
//! route with free calls per payer, a free route with API keys) cannot be built.

use std::borrow::Cow;

use http::request::Parts;
use paygate_core::money::AtomicAmount;
use paygate_core::reject::Rejection;

use crate::config::SettleTiming;
use crate::meter::Meter;
use crate::offers::{ResourceText, RouteOffer};
use crate::price_hook::PriceHook;
use crate::pricing::UnitPricing;
use crate::routes::RouteMatcher;
use crate::usage::{IpQuota, PayerTiers};

/// One configured route.
#[derive(Debug)]
pub struct Route {
    /// `METHOD /pattern` as configured, for metrics and the ledger.
    pub name: String,
    pub(crate) matcher: RouteMatcher,
    /// `None` for a free route.
    pub(crate) pricing: Option<RoutePricing>,
    pub(crate) settle: SettleTiming,
    pub(crate) resource: ResourceText,
}

/// How a priced route charges.
#[derive(Debug)]
pub(crate) struct RoutePricing {
    pub price: Pricing,
    pub free: Option<FreeCalls>,
    /// Whether API-key customers may call it (`Authorization: Bearer pgk_...`), metered at the request's price.
    pub api_keys: bool,
}

/// What a request of a priced route costs.
#[derive(Debug)]
pub(crate) enum Pricing {
    /// The same offers for every request.
    Flat(Vec<RouteOffer>),
    /// The offers of one unit, times the units the request counts (with the bounds [`UnitPricing`] holds).
    PerUnit { unit: UnitPricing, offers: Vec<RouteOffer> },
    /// Quoted at its maximum (`offers`), charged what the response says it used where the rail can charge less;
    /// a request for an event stream is quoted `streamed`: the same, except that rails that pay streams as they
    /// are delivered quote one part (`engine/stream.rs`).
    Metered { meter: Meter, offers: Vec<RouteOffer>, streamed: Vec<RouteOffer> },
    /// Asked of the operator's service for each request.
    Hook(PriceHook),
    /// By how many calls the payer made on the route in the period.
    Tiered(PayerTiers),
}

/// Calls served free before payment is asked.
#[derive(Debug)]
pub(crate) enum FreeCalls {
    /// Per client IP: no 402 while the address has free calls left.
    PerIp(IpQuota),
    /// Per payer, known from a verified payment that is then not settled. A tiered route gives payers free calls
    /// in its first tier instead.
    PerPayer(PayerTiers),
}

impl Route {
    /// Whether the route is served without payment.
    pub fn is_free(&self) -> bool {
        self.pricing.is_none()
    }

    /// The offers a route lists (in `paygate serve --check-config` and the admin API): its flat price, the price
    /// of one unit, the hook's fallback price, or what a payer with no calls is quoted.
    pub fn listed_offers(&self) -> &[RouteOffer] {
        let Some(pricing) = &self.pricing else { return &[] };
        match &pricing.price {
            Pricing::Flat(offers) | Pricing::PerUnit { offers, .. } | Pricing::Metered { offers, .. } => offers,
            Pricing::Hook(hook) => hook.fallback(),
            Pricing::Tiered(tiers) => tiers.quote(0, &[]),
        }
    }

    /// What an answer (`headers`, `body`) costs in the route's offer number `index`, on a route priced by its
    /// response (`None` on other routes): what the engine charges a rail that charges usage.
    pub fn response_price(&self, index: usize, headers: &http::HeaderMap, body: &[u8]) -> Option<AtomicAmount> {
        let Some(Pricing::Metered { meter, offers, .. }) = self.pricing.as_ref().map(|p| &p.price) else {
            return None;
        };
        let max = offers.get(index)?.amount;
        Some(meter.price(index, headers, body, max).0)
    }

    /// The offers this route makes a request (`parts` and `body`): its own, or computed for it; empty when the
    /// request costs nothing (a free route, no units, a hook's free answer).
    pub async fn offers_for(&self, parts: &Parts, body: &[u8]) -> Result<Cow<'_, [RouteOffer]>, Rejection> {
        match &self.pricing {
            None => Ok(Cow::Borrowed(&[])),
            Some(pricing) => pricing.price.offers_for(parts, body).await,
        }
    }
}

impl Pricing {
    /// The offers for a request: the route's own, or computed for it.
    pub(crate) async fn offers_for(&self, parts: &Parts, body: &[u8]) -> Result<Cow<'_, [RouteOffer]>, Rejection> {
        Ok(match self {
            Pricing::Metered { offers, streamed, .. } if crate::meter::asks_for_stream(&parts.headers) => {
                Cow::Borrowed(if streamed.is_empty() { offers } else { streamed })
            }
            Pricing::Flat(offers) | Pricing::Metered { offers, .. } => Cow::Borrowed(offers),
            Pricing::PerUnit { unit, offers } => {
                let quantity = unit.quantity(parts.uri.query(), body)?;
                Cow::Owned(unit.offers(offers, quantity)?)
            }
            Pricing::Hook(hook) => Cow::Owned(hook.offers(parts, body).await?),
            // What a payer with no calls yet is quoted (the engine quotes the payer).
            Pricing::Tiered(tiers) => Cow::Borrowed(tiers.quote(0, &[])),
        })
    }
}

impl RoutePricing {
    /// The meter of a route priced by its response.
    pub(crate) fn meter(&self) -> Option<&Meter> {
        match &self.price {
            Pricing::Metered { meter, .. } => Some(meter),
            _ => None,
        }
    }

    /// The most a call of a route priced by its response costs in offer `index`: what its 402 quotes when it
    /// is not asked for a stream.
    pub(crate) fn metered_max(&self, index: usize) -> Option<AtomicAmount> {
        match &self.price {
            Pricing::Metered { offers, .. } => offers.get(index).map(|o| o.amount),
            _ => None,
        }
    }

    /// The usage tiers counted per payer: the route's tiers, or its free calls per payer.
    pub(crate) fn payer_tiers(&self) -> Option<&PayerTiers> {
        match (&self.price, &self.free) {
            (Pricing::Tiered(tiers), _) | (_, Some(FreeCalls::PerPayer(tiers))) => Some(tiers),
            _ => None,
        }
    }

    /// The free calls per client IP.
    pub(crate) fn ip_quota(&self) -> Option<&IpQuota> {
        match &self.free {
            Some(FreeCalls::PerIp(quota)) => Some(quota),
            _ => None,
        }
    }
}
