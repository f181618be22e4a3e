//! What the wallet's owner allows: a cap per payment, budgets per rolling day (overall and per host), and
//! lists of hosts; and which offer to take when several are acceptable. Every limit is in micro-dollars.
//!
//! The policy is checked before anything is signed. The budget part needs what was already spent, so it runs
//! inside the spend log's transaction ([`crate::SpendLog::reserve`]); the rest is checked here.

use crate::offer::{Offer, Protocol};

/// A payment the policy refuses, naming the limit. Amounts are micro-dollars.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(tag = "limit", rename_all = "snake_case")]
pub enum PolicyViolation {
    #[error("host {host} is on the deny list")]
    HostDenied { host: String },
    #[error("host {host} is not on the allow list")]
    HostNotAllowed { host: String },
    #[error("the owner's confirmation declined the payment")]
    Declined,
    #[error("network {network} is not allowed")]
    NetworkDenied { network: String },
    #[error("asset {asset} is not allowed")]
    AssetDenied { asset: String },
    #[error("the payment of {asked} micro-USD is over the maximum per payment of {max}")]
    OverMaxPerPayment { asked: u128, max: u128 },
    #[error("the payment of {asked} micro-USD is over the daily budget: {spent} of {budget} spent in the last 24 h")]
    OverDailyBudget { asked: u128, spent: u128, budget: u128 },
    #[error(
        "the payment of {asked} micro-USD is over the daily budget for {host}: {spent} of {budget} spent in the last 24 h"
    )]
    OverHostDailyBudget { host: String, asked: u128, spent: u128, budget: u128 },
}

/// The owner's limits. `None` means no limit.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub max_per_payment: Option<u128>,
    /// Over the last 24 hours, all hosts together.
    pub daily_budget: Option<u128>,
    /// Over the last 24 hours, per host.
    pub per_host_daily_budget: Option<u128>,
    /// When not empty, only these hosts are paid.
    pub allow_hosts: Vec<String>,
    pub deny_hosts: Vec<String>,
    /// When not empty, only offers on these networks (CAIP-2 `eip155:8453` or a registry name `base`).
    pub allow_networks: Vec<String>,
    pub deny_networks: Vec<String>,
    /// When not empty, only offers in these assets (token address or symbol).
    pub allow_assets: Vec<String>,
    pub deny_assets: Vec<String>,
}

fn network_matches(pattern: &str, offer: &Offer) -> bool {
    let pattern = pattern.trim();
    pattern.eq_ignore_ascii_case(&offer.network)
        || offer
            .chain_id
            .and_then(paygate_core::registry::network_by_chain_id)
            .is_some_and(|n| n.name.eq_ignore_ascii_case(pattern))
}

fn asset_matches(pattern: &str, offer: &Offer) -> bool {
    let pattern = pattern.trim();
    pattern.eq_ignore_ascii_case(&offer.asset)
        || offer.symbol.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(pattern))
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.ends_with(&format!(".{suffix}")),
        None => host == pattern,
    }
}

impl Policy {
    /// The network and asset lists: which offers may be paid at all.
    pub fn check_terms(&self, offer: &Offer) -> Result<(), PolicyViolation> {
        let network = || PolicyViolation::NetworkDenied { network: offer.network.clone() };
        if self.deny_networks.iter().any(|p| network_matches(p, offer)) {
            return Err(network());
        }
        if !self.allow_networks.is_empty() && !self.allow_networks.iter().any(|p| network_matches(p, offer)) {
            return Err(network());
        }
        let asset =
            || PolicyViolation::AssetDenied { asset: offer.symbol.clone().unwrap_or_else(|| offer.asset.clone()) };
        if self.deny_assets.iter().any(|p| asset_matches(p, offer)) {
            return Err(asset());
        }
        if !self.allow_assets.is_empty() && !self.allow_assets.iter().any(|p| asset_matches(p, offer)) {
            return Err(asset());
        }
        Ok(())
    }

    /// The checks that need no history: the host lists and the cap per payment.
    pub fn check_offer(&self, host: &str, usd_micros: u128) -> Result<(), PolicyViolation> {
        let host = host.to_ascii_lowercase();
        if self.deny_hosts.iter().any(|p| host_matches(p, &host)) {
            return Err(PolicyViolation::HostDenied { host });
        }
        if !self.allow_hosts.is_empty() && !self.allow_hosts.iter().any(|p| host_matches(p, &host)) {
            return Err(PolicyViolation::HostNotAllowed { host });
        }
        if let Some(max) = self.max_per_payment
            && usd_micros > max
        {
            return Err(PolicyViolation::OverMaxPerPayment { asked: usd_micros, max });
        }
        Ok(())
    }

    /// The budget checks, given what was spent in the last 24 hours overall and with `host`.
    pub fn check_budgets(
        &self,
        host: &str,
        asked: u128,
        spent_total: u128,
        spent_host: u128,
    ) -> Result<(), PolicyViolation> {
        if let Some(budget) = self.daily_budget
            && spent_total.saturating_add(asked) > budget
        {
            return Err(PolicyViolation::OverDailyBudget { asked, spent: spent_total, budget });
        }
        if let Some(budget) = self.per_host_daily_budget
            && spent_host.saturating_add(asked) > budget
        {
            return Err(PolicyViolation::OverHostDailyBudget {
                host: host.to_owned(),
                asked,
                spent: spent_host,
                budget,
            });
        }
        Ok(())
    }
}

/// Picks the offer to pay among the payable ones. It sees only offers the client can pay.
pub trait OfferChooser: Send + Sync {
    /// The index in `offers` of the offer to pay, or `None` to pay none.
    fn choose(&self, offers: &[&Offer]) -> Option<usize>;
}

/// The default chooser: the cheapest offer in US dollars, optionally in one protocol only. Ties go to the
/// first offered (the server's preference).
#[derive(Debug, Clone, Default)]
pub struct CheapestOffer {
    pub protocol: Option<Protocol>,
}

impl CheapestOffer {
    /// Only offers in `protocol`.
    pub fn only(protocol: Protocol) -> CheapestOffer {
        CheapestOffer { protocol: Some(protocol) }
    }
}

impl OfferChooser for CheapestOffer {
    fn choose(&self, offers: &[&Offer]) -> Option<usize> {
        offers
            .iter()
            .enumerate()
            .filter(|(_, o)| self.protocol.is_none_or(|p| o.protocol == p))
            .filter_map(|(i, o)| o.usd_micros.map(|usd| (usd, i)))
            .min()
            .map(|(_, i)| i)
    }
}

/// The host of a URL, lowercase, as budgets and host lists see it (`api.example.com`, with `:port` when
/// not the scheme's default).
pub fn host_of(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_themselves() {
        let policy = Policy {
            max_per_payment: Some(10_000),
            daily_budget: Some(25_000),
            per_host_daily_budget: Some(15_000),
            deny_hosts: vec!["*.evil.com".into()],
            ..Policy::default()
        };
        assert_eq!(policy.check_offer("a.evil.com", 1), Err(PolicyViolation::HostDenied { host: "a.evil.com".into() }));
        assert_eq!(
            policy.check_offer("ok.com", 10_001),
            Err(PolicyViolation::OverMaxPerPayment { asked: 10_001, max: 10_000 })
        );
        assert!(policy.check_offer("ok.com", 10_000).is_ok());
        assert_eq!(
            policy.check_budgets("ok.com", 10_000, 20_000, 0),
            Err(PolicyViolation::OverDailyBudget { asked: 10_000, spent: 20_000, budget: 25_000 })
        );
        assert!(matches!(
            policy.check_budgets("ok.com", 10_000, 10_000, 10_000),
            Err(PolicyViolation::OverHostDailyBudget { .. })
        ));
        assert!(policy.check_budgets("ok.com", 5_000, 20_000, 10_000).is_ok());
        let allow = Policy { allow_hosts: vec!["api.good.com".into()], ..Policy::default() };
        assert!(matches!(allow.check_offer("api.bad.com", 1), Err(PolicyViolation::HostNotAllowed { .. })));
    }
}

#[cfg(test)]
mod list_tests {
    use super::*;
    use crate::offer::{AssetBook, parse_offers};

    #[test]
    fn network_and_asset_lists_match_names_and_symbols() {
        let body = serde_json::json!({"x402Version": 1, "accepts": [{
            "scheme": "exact", "network": "base", "maxAmountRequired": "10000",
            "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "resource": "https://x/y", "maxTimeoutSeconds": 60}]});
        let offers =
            parse_offers(&reqwest::header::HeaderMap::new(), body.to_string().as_bytes(), &AssetBook::builtin())
                .unwrap();
        let offer = &offers[0];
        assert!(Policy { allow_networks: vec!["base".into()], ..Policy::default() }.check_terms(offer).is_ok());
        assert!(Policy { allow_networks: vec!["eip155:8453".into()], ..Policy::default() }.check_terms(offer).is_ok());
        assert_eq!(
            Policy { deny_networks: vec!["BASE".into()], ..Policy::default() }.check_terms(offer),
            Err(PolicyViolation::NetworkDenied { network: "eip155:8453".into() })
        );
        assert_eq!(
            Policy { allow_assets: vec!["EURC".into()], ..Policy::default() }.check_terms(offer),
            Err(PolicyViolation::AssetDenied { asset: "USDC".into() })
        );
        assert!(Policy { deny_assets: vec!["usdt".into()], ..Policy::default() }.check_terms(offer).is_ok());
    }
}
