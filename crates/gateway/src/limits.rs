//! Rate limits: requests per minute from one client address, and paid attempts per minute from one payer. Over
//! the limit is 429 with `Retry-After`; the payer's limit is checked after verification and before the claim, so
//! a refused payment has claimed, proxied and charged nothing.
//!
//! The two limits live in different places, on purpose:
//! - **A payer's limit is shared by all instances**: the same token bucket, kept in the store and moved by one
//!   conditional statement ([`Store::take_rate`]), so N instances on one PostgreSQL allow the limit, not N times
//!   it. A paid attempt writes to the store anyway (its claim), so one more round trip is a small share of it.
//! - **An address's limit is per instance**: a keyed token bucket (governor's GCRA) in memory, checked before
//!   anything is awaited. It guards each process against floods, which is only possible without IO: a store
//!   round trip per request would let a flood reach the database, and would cost every free request a write.
//!   Behind a load balancer spreading clients over N instances, set `per_ip_per_minute` to the share of one.
//!
//! The client address is the TCP peer: behind a proxy that is the proxy, so set `per_ip_per_minute` only where
//! paygate faces clients directly.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use paygate_core::reject::{RejectKind, Rejection};
use paygate_store::{Store, StoreError};

/// How many keys the address limiter holds before it forgets those whose buckets are full again.
const FORGET_ABOVE: usize = 100_000;

/// The store's key of a payer's rate: `payer:<address, lower case>`.
const PAYER_RATE_PREFIX: &str = "payer:";

/// The configured limits; `None` is unlimited.
#[derive(Debug)]
pub(crate) struct RateLimits {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_payer_per_minute: Option<NonZeroU32>,
}

impl RateLimits {
    pub(crate) fn new(per_ip_per_minute: Option<u32>, per_payer_per_minute: Option<u32>) -> Self {
        let per_ip = per_ip_per_minute.and_then(NonZeroU32::new).map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        RateLimits { per_ip, per_payer_per_minute: per_payer_per_minute.and_then(NonZeroU32::new) }
    }

    /// Counts a request from `ip`, in this instance.
    pub(crate) fn check_ip(&self, ip: IpAddr) -> Result<(), Rejection> {
        let Some(limiter) = &self.per_ip else { return Ok(()) };
        if limiter.len() > FORGET_ABOVE {
            limiter.retain_recent();
        }
        limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Whole seconds, rounded up: `Retry-After: 0` would invite an immediate retry that fails again.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            too_many("ip_rate_limited", "from this address", secs)
        })
    }

    /// Counts a verified payment attempt by `payer` (an address, compared case-insensitively) at `now_ms`, in
    /// the store all instances share.
    pub(crate) async fn check_payer(&self, store: &dyn Store, payer: &str, now_ms: i64) -> Result<(), PayerLimit> {
        let Some(limit) = self.per_payer_per_minute else { return Ok(()) };
        let key = format!("{PAYER_RATE_PREFIX}{}", payer.to_ascii_lowercase());
        let interval_ms = 60_000 / i64::from(limit.get());
        match store.take_rate(&key, now_ms, interval_ms, 60_000).await {
            Ok(None) => Ok(()),
            Ok(Some(wait_ms)) => {
                let secs = u64::try_from(wait_ms.div_euclid(1000) + i64::from(wait_ms % 1000 > 0)).unwrap_or(1);
                Err(PayerLimit::Over(too_many("payer_rate_limited", "from this payer", secs)))
            }
            Err(e) => Err(PayerLimit::Store(e)),
        }
    }
}

/// Why a payer's attempt is not taken.
#[derive(Debug)]
pub(crate) enum PayerLimit {
    /// Over the limit.
    Over(Rejection),
    /// The store could not count it.
    Store(StoreError),
}

fn too_many(reason: &'static str, what: &str, secs: u64) -> Rejection {
    let secs = secs.max(1);
    Rejection::new(RejectKind::RateLimited, reason, format!("too many requests {what}; retry in {secs} s"))
        .retry_after(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_the_minute_allowance_as_a_burst_then_refusals_say_when_to_retry() {
        let limits = RateLimits::new(Some(3), None);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            limits.check_ip(ip).unwrap();
        }
        let refused = limits.check_ip(ip).unwrap_err();
        assert_eq!((refused.kind, refused.reason), (RejectKind::RateLimited, "ip_rate_limited"));
        // One request per 20 s comes back.
        assert!((1..=20).contains(&refused.retry_after_secs.unwrap()), "{refused:?}");
        limits.check_ip("127.0.0.2".parse().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn a_payer_gets_the_minute_allowance_in_the_store_case_insensitively() {
        let store = paygate_store::SqliteStore::open("sqlite::memory:").await.unwrap();
        let limits = RateLimits::new(None, Some(2));
        let now = 1_800_000_000_000;
        limits.check_payer(&store, "0xAbC", now).await.unwrap();
        limits.check_payer(&store, "0xabc", now + 1_000).await.unwrap();
        let Err(PayerLimit::Over(refused)) = limits.check_payer(&store, "0xABC", now + 2_000).await else {
            panic!("over the limit")
        };
        // One attempt per 30 s comes back: 28 s after the third.
        assert_eq!((refused.reason, refused.retry_after_secs), ("payer_rate_limited", Some(28)));
        limits.check_payer(&store, "0xdef", now + 2_000).await.unwrap();
        limits.check_payer(&store, "0xabc", now + 30_000).await.unwrap();
        RateLimits::new(None, Some(0)).check_payer(&store, "0xabc", now).await.unwrap();
    }
}
