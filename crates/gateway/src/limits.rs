//! Rate limits: requests per minute from one client address, and paid attempts per minute from one payer,
//! each a keyed token bucket (governor's GCRA) whose burst is the minute's allowance. Over the limit is 429 with
//! `Retry-After`; the payer's limit is checked after verification and before the claim, so a refused payment
//! has claimed, proxied and charged nothing.
//!
//! The client address is the TCP peer: behind a proxy that is the proxy, so set `per_ip_per_minute` only where
//! paygate faces clients directly. Limits are per instance.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use paygate_core::reject::{RejectKind, Rejection};

/// How many keys a limiter holds before it forgets those whose buckets are full again.
const FORGET_ABOVE: usize = 100_000;

/// The configured limits; `None` is unlimited.
#[derive(Debug)]
pub struct RateLimits {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_payer: Option<DefaultKeyedRateLimiter<String>>,
}

fn limiter<K: Hash + Eq + Clone>(per_minute: Option<u32>) -> Option<DefaultKeyedRateLimiter<K>> {
    per_minute.and_then(NonZeroU32::new).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

fn check<K: Hash + Eq + Clone>(
    limiter: &Option<DefaultKeyedRateLimiter<K>>,
    key: &K,
    reason: &'static str,
    what: &str,
) -> Result<(), Rejection> {
    let Some(limiter) = limiter else { return Ok(()) };
    if limiter.len() > FORGET_ABOVE {
        limiter.retain_recent();
    }
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        // Whole seconds, rounded up: `Retry-After: 0` would invite an immediate retry that fails again.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Rejection::new(RejectKind::RateLimited, reason, format!("too many requests {what}; retry in {secs} s"))
            .retry_after(secs.max(1))
    })
}

impl RateLimits {
    pub fn new(per_ip_per_minute: Option<u32>, per_payer_per_minute: Option<u32>) -> Self {
        RateLimits { per_ip: limiter(per_ip_per_minute), per_payer: limiter(per_payer_per_minute) }
    }

    /// Counts a request from `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Rejection> {
        check(&self.per_ip, &ip, "ip_rate_limited", "from this address")
    }

    /// Counts a verified payment attempt by `payer` (an address, compared case-insensitively).
    pub fn check_payer(&self, payer: &str) -> Result<(), Rejection> {
        check(&self.per_payer, &payer.to_ascii_lowercase(), "payer_rate_limited", "from this payer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minute_allowance_is_a_burst_then_refusals_say_when_to_retry() {
        let limits = RateLimits::new(Some(3), Some(2));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            limits.check_ip(ip).unwrap();
        }
        let refused = limits.check_ip(ip).unwrap_err();
        assert_eq!((refused.kind, refused.reason), (RejectKind::RateLimited, "ip_rate_limited"));
        // One request per 20 s comes back.
        assert!((1..=20).contains(&refused.retry_after_secs.unwrap()), "{refused:?}");
        limits.check_ip("127.0.0.2".parse().unwrap()).unwrap();

        limits.check_payer("0xAbC").unwrap();
        limits.check_payer("0xabc").unwrap();
        assert_eq!(limits.check_payer("0xABC").unwrap_err().reason, "payer_rate_limited");
        RateLimits::new(None, Some(0)).check_payer("0xabc").unwrap();
    }
}
