//! What the gateway counts and times, in a Prometheus registry of its own (no global state).
//!
//! Revenue is counted in atomic units with integer counters; the ledger stays the source of truth for money,
//! metrics are for watching it move.

use std::time::Duration;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

/// The phases of a paid request that are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Verify,
    Claim,
    Upstream,
    Settle,
}

impl Phase {
    pub const ALL: [Phase; 4] = [Phase::Verify, Phase::Claim, Phase::Upstream, Phase::Settle];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Verify => "verify",
            Phase::Claim => "claim",
            Phase::Upstream => "upstream",
            Phase::Settle => "settle",
        }
    }
}

/// Outcomes of requests, one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Free,
    UnknownRoute,
    Challenged,
    Paid,
    Rejected,
    Replayed,
    Voided,
    SettleFailed,
    Pending,
    /// A payment settled after a crash, its response delivered to the resent credential.
    Redelivered,
    /// A call of an API-key customer, metered.
    Metered,
    /// One of a client IP's or a payer's free calls.
    FreeCall,
}

impl Outcome {
    pub const ALL: [Outcome; 12] = [
        Outcome::Free,
        Outcome::UnknownRoute,
        Outcome::Challenged,
        Outcome::Paid,
        Outcome::Rejected,
        Outcome::Replayed,
        Outcome::Voided,
        Outcome::SettleFailed,
        Outcome::Pending,
        Outcome::Redelivered,
        Outcome::Metered,
        Outcome::FreeCall,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Free => "free",
            Outcome::UnknownRoute => "unknown_route",
            Outcome::Challenged => "challenged",
            Outcome::Paid => "paid",
            Outcome::Rejected => "rejected",
            Outcome::Replayed => "replayed",
            Outcome::Voided => "voided",
            Outcome::SettleFailed => "settle_failed",
            Outcome::Pending => "pending",
            Outcome::Redelivered => "redelivered",
            Outcome::Metered => "metered",
            Outcome::FreeCall => "free_call",
        }
    }
}

/// The gateway's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `paygate_requests_total`'s counter of each outcome, in the order of [`Outcome::ALL`]: counting a request is
    /// then one atomic add, without looking its label up (every outcome's series shows from the start, at 0).
    by_outcome: Vec<IntCounter>,
    rejections: IntCounterVec,
    phases: HistogramVec,
    revenue: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(Opts::new("paygate_requests_total", "Requests by outcome"), &["outcome"])
            .expect("valid metric");
        let rejections = IntCounterVec::new(
            Opts::new("paygate_rejections_total", "Refused payments by problem reason"),
            &["reason"],
        )
        .expect("valid metric");
        let buckets = vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
        let phases = HistogramVec::new(
            HistogramOpts::new("paygate_phase_seconds", "Time spent per phase of paid requests").buckets(buckets),
            &["phase"],
        )
        .expect("valid metric");
        let revenue = IntCounterVec::new(
            Opts::new("paygate_revenue_atomic_total", "Settled revenue in the asset's atomic units"),
            &["route", "network", "asset"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rejections.clone()),
            Box::new(phases.clone()),
            Box::new(revenue.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        let by_outcome = Outcome::ALL.iter().map(|o| requests.with_label_values(&[o.as_str()])).collect();
        Metrics { registry, by_outcome, rejections, phases, revenue }
    }

    pub fn outcome(&self, outcome: Outcome) {
        self.by_outcome[outcome as usize].inc();
    }

    pub fn rejected(&self, reason: &str) {
        self.rejections.with_label_values(&[reason]).inc();
    }

    pub fn time(&self, phase: Phase, took: Duration) {
        self.phases.with_label_values(&[phase.as_str()]).observe(took.as_secs_f64());
    }

    /// Adds a settled amount. Prometheus counters are 64-bit, and an 18-decimal token (DAI) reaches `u64::MAX` at
    /// about 18.4 tokens, so the counter stops there instead of wrapping to a small number; the ledger keeps the
    /// exact amounts.
    pub fn revenue(&self, route: &str, network: &str, asset: &str, atomic: u128) {
        let counter = self.revenue.with_label_values(&[route, network, asset]);
        let room = u64::MAX - counter.get();
        let add = u64::try_from(atomic).unwrap_or(u64::MAX).min(room);
        if u128::from(add) < atomic {
            tracing::warn!(route, network, asset, "the revenue counter is full; the ledger has the exact amounts");
        }
        counter.inc_by(add);
    }

    /// The revenue counter's value for these labels.
    pub fn revenue_total(&self, route: &str, network: &str, asset: &str) -> u64 {
        self.revenue.with_label_values(&[route, network, asset]).get()
    }

    /// How many times `phase` ran and how long it took in all.
    pub fn phase_total(&self, phase: Phase) -> (u64, Duration) {
        let histogram = self.phases.with_label_values(&[phase.as_str()]);
        (histogram.get_sample_count(), Duration::from_secs_f64(histogram.get_sample_sum()))
    }

    /// Requests counted with `outcome`.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.by_outcome[outcome as usize].get()
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        // Encoding our own well-formed metrics into a Vec cannot fail.
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("metrics encode");
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revenue_in_18_decimal_tokens_saturates_instead_of_wrapping() {
        let metrics = Metrics::default();
        let labels = ("GET /v1/quote", "eip155:1", "DAI");
        // $0.01 in DAI is 10^16 atomic units: 1,844 of them fill a 64-bit counter.
        for _ in 0..2_000 {
            metrics.revenue(labels.0, labels.1, labels.2, 10_000_000_000_000_000);
        }
        assert_eq!(metrics.revenue_total(labels.0, labels.1, labels.2), u64::MAX);
        metrics.revenue("GET /v1/other", "eip155:8453", "USDC", 10_000);
        metrics.revenue("GET /v1/other", "eip155:8453", "USDC", 10_000);
        assert_eq!(metrics.revenue_total("GET /v1/other", "eip155:8453", "USDC"), 20_000, "exact below the limit");
    }

    #[test]
    fn each_outcome_counts_under_its_own_label() {
        let metrics = Metrics::default();
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            for _ in 0..=i {
                metrics.outcome(outcome);
            }
        }
        let text = metrics.encode();
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(metrics.count(outcome), i as u64 + 1);
            let line = format!("paygate_requests_total{{outcome=\"{}\"}} {}", outcome.as_str(), i + 1);
            assert!(text.contains(&line), "{line} in {text}");
        }
    }
}
