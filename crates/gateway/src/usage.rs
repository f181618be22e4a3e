//! Calls counted per client IP or per payer in a calendar period, in the shared store so that every instance
//! sees the same counts: a route's free calls, and usage tiers whose price steps down as a payer's calls grow.
//!
//! x402 and MPP fix the amount before the request runs, and the payer is known only from a verified payment:
//! - free calls per IP ([`IpQuota`]) are served before any 402 while the IP has calls left;
//! - per payer ([`PayerTiers`]), a 402 quotes the price of the payer's next paid call (for the payer named in
//!   the `Paygate-Payer` request header, a hint that is never trusted, or else for a payer with no calls yet).
//!   The verified payment is then counted, in one conditional update, only inside the tiers whose price its
//!   amount is. A call that lands in a free tier is served and not settled. A payment whose amount is not the
//!   price of the payer's next call is refused with a 402 quoting the right one, and nothing is charged.
//!
//! A call that fails (the upstream answered 400 or more, or settlement failed) is taken back: it costs nothing
//! and counts for nothing.

use std::net::IpAddr;
use std::sync::Arc;

use paygate_store::CallRange;
use time::{Duration, OffsetDateTime, Time};

use crate::config::Period;
use crate::offers::RouteOffer;

/// The request header naming the payer a 402 should be priced for. Not trusted: the verified payment decides.
pub(crate) const PAYER_HINT: &str = "paygate-payer";

/// The response header telling a client how many free calls it has left in the period.
pub(crate) const FREE_CALLS_LEFT: &str = "paygate-free-calls-left";

/// Unix seconds at which the period holding `unix` began, in UTC.
pub fn period_start(period: Period, unix: u64) -> i64 {
    let at = OffsetDateTime::from_unix_timestamp(i64::try_from(unix).unwrap_or(i64::MAX))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let start = match period {
        Period::Hour => at.replace_time(Time::from_hms(at.hour(), 0, 0).unwrap_or(Time::MIDNIGHT)),
        Period::Day => at.replace_time(Time::MIDNIGHT),
        Period::Week => {
            at.replace_time(Time::MIDNIGHT) - Duration::days(i64::from(at.weekday().number_days_from_monday()))
        }
        Period::Month => at.replace_time(Time::MIDNIGHT).replace_day(1).unwrap_or(at),
    };
    start.unix_timestamp()
}

/// Free calls per client IP on one route.
#[derive(Debug, Clone)]
pub(crate) struct IpQuota {
    pub calls: u64,
    pub period: Period,
}

impl IpQuota {
    /// The counter of `ip` on the route named `route`.
    pub(crate) fn counter(route: &str, ip: IpAddr) -> String {
        format!("ip|{route}|{ip}")
    }

    /// The call indexes that are free.
    pub(crate) fn free_range(&self) -> CallRange {
        CallRange { start: 0, end: Some(self.calls) }
    }
}

/// What the calls of one tier cost.
#[derive(Debug, Clone)]
enum TierPrice {
    Free,
    /// The price the route asks of the request (flat, per unit or from the hook): the free calls of a route
    /// with `free_per = "payer"` are followed by this.
    Request,
    Offers(Vec<RouteOffer>),
}

/// The calls `start..end` of a period, and their price.
#[derive(Debug, Clone)]
struct Tier {
    start: u64,
    end: Option<u64>,
    price: TierPrice,
}

/// A route's price by how many calls the payer made on it in the period: free calls, then tiers.
#[derive(Debug, Clone)]
pub struct PayerTiers {
    pub period: Period,
    tiers: Vec<Tier>,
    /// Every offer of every paid tier: what a payment may answer.
    offers: Vec<RouteOffer>,
}

impl PayerTiers {
    /// `calls` free calls per payer, then the route's own price.
    pub fn free_calls(calls: u64, period: Period) -> PayerTiers {
        let tiers = vec![
            Tier { start: 0, end: Some(calls), price: TierPrice::Free },
            Tier { start: calls, end: None, price: TierPrice::Request },
        ];
        PayerTiers { period, tiers, offers: Vec::new() }
    }

    /// Tiers of `(calls, offers)` in order; no offers is a free tier, no `calls` the last tier (which must be
    /// paid). Errors say what is wrong.
    pub fn new(period: Period, steps: Vec<(Option<u64>, Vec<RouteOffer>)>) -> Result<PayerTiers, String> {
        let last = steps.len().checked_sub(1).ok_or("give at least one tier")?;
        let mut tiers = Vec::with_capacity(steps.len());
        let mut offers = Vec::new();
        let mut start = 0u64;
        for (i, (calls, tier_offers)) in steps.into_iter().enumerate() {
            let end = match (calls, i == last) {
                (None, true) => None,
                (Some(_), true) => {
                    return Err("the last tier has no `calls`: it covers every call after the others".into());
                }
                (None, false) => return Err(format!("tier {i} needs `calls` (only the last tier has no end)")),
                (Some(0), false) => return Err(format!("tier {i} covers no call")),
                (Some(n), false) => Some(start.checked_add(n).ok_or("too many calls")?),
            };
            let price = if tier_offers.is_empty() {
                if end.is_none() {
                    return Err("the last tier must be paid: a route whose calls are all free needs no price".into());
                }
                TierPrice::Free
            } else {
                offers.extend(tier_offers.iter().cloned());
                TierPrice::Offers(tier_offers)
            };
            tiers.push(Tier { start, end, price });
            start = end.unwrap_or(start);
        }
        Ok(PayerTiers { period, tiers, offers })
    }

    /// The counter of `payer` on the route named `route` (addresses compared without case).
    pub fn counter(route: &str, payer: &str) -> String {
        format!("payer|{route}|{}", payer.to_ascii_lowercase())
    }

    /// The offers a payment may answer: every paid tier's, or the request's own after free calls.
    pub fn accepted<'a>(&'a self, request: &'a [RouteOffer]) -> &'a [RouteOffer] {
        if self.offers.is_empty() { request } else { &self.offers }
    }

    /// The offers a 402 quotes to a payer with `calls` counted: those of the first paid tier not yet passed.
    /// `request` is what [`PayerTiers::accepted`] gave.
    pub fn quote<'a>(&'a self, calls: u64, request: &'a [RouteOffer]) -> &'a [RouteOffer] {
        let tier = self
            .tiers
            .iter()
            .find(|t| t.end.is_none_or(|end| end > calls) && !matches!(t.price, TierPrice::Free))
            .expect("the last tier is paid");
        match &tier.price {
            TierPrice::Offers(offers) => offers,
            TierPrice::Request | TierPrice::Free => request,
        }
    }

    /// The call indexes a payment answering `offer` may be counted at: free tiers, and the tiers it is the price
    /// of.
    pub fn ranges(&self, offer: &RouteOffer) -> Vec<CallRange> {
        self.tiers
            .iter()
            .filter(|tier| match &tier.price {
                TierPrice::Free | TierPrice::Request => true,
                TierPrice::Offers(offers) => {
                    offers.iter().any(|o| Arc::ptr_eq(&o.method, &offer.method) && o.amount == offer.amount)
                }
            })
            .map(|tier| CallRange { start: tier.start, end: tier.end })
            .collect()
    }

    /// Whether the call at `index` is free.
    pub fn is_free(&self, index: u64) -> bool {
        self.tiers
            .iter()
            .find(|t| t.start <= index && t.end.is_none_or(|end| index < end))
            .is_some_and(|t| matches!(t.price, TierPrice::Free))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_on_calendar_boundaries_in_utc() {
        // 2026-11-25T13:45:10Z, a Wednesday.
        let at = 1_795_614_310;
        assert_eq!(paygate_core::clock::rfc3339(at), "2026-11-25T13:45:10Z");
        let start = |p| paygate_core::clock::rfc3339(period_start(p, at) as u64);
        assert_eq!(start(Period::Hour), "2026-11-25T13:00:00Z");
        assert_eq!(start(Period::Day), "2026-11-25T00:00:00Z");
        assert_eq!(start(Period::Week), "2026-11-23T00:00:00Z");
        assert_eq!(start(Period::Month), "2026-11-01T00:00:00Z");
        // The first second of a period is in it; the last second of the one before is not.
        let day = period_start(Period::Day, at) as u64;
        assert_eq!(period_start(Period::Day, day) as u64, day);
        assert_eq!(period_start(Period::Day, day - 1) as u64, day - 86_400);
    }

    #[test]
    fn tiers_are_refused_when_they_leave_calls_unpriced_or_all_free() {
        assert!(PayerTiers::new(Period::Day, vec![]).is_err());
        assert!(PayerTiers::new(Period::Day, vec![(Some(10), vec![])]).is_err());
        assert!(PayerTiers::new(Period::Day, vec![(None, vec![]), (None, vec![])]).is_err());
        assert!(PayerTiers::new(Period::Day, vec![(Some(0), vec![]), (None, vec![])]).is_err());
        assert!(PayerTiers::new(Period::Day, vec![(Some(5), vec![]), (None, vec![])]).is_err());
    }

    #[test]
    fn free_calls_per_payer_come_before_the_request_price() {
        let tiers = PayerTiers::free_calls(3, Period::Day);
        assert!(tiers.is_free(0) && tiers.is_free(2));
        assert!(!tiers.is_free(3) && !tiers.is_free(1_000));
    }
}
