//! The `lightning` rail's `[[accept]]` fields (its `[accept.lightning]` table: the operator's LND node), and how
//! they become a [`LightningMethod`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use paygate_core::method::PaymentOption;
use paygate_core::network::Network;
use serde::{Deserialize, Serialize};

use super::{LightningMethod, LightningSettings, LndRest, sat_asset};
use crate::network::{FieldError, Networks};
use crate::rail::{self, BuiltOption, Common, Rail, RailConfig, RailContext, missing};

/// The rail in the registry. An entry that names no rail is this rail's when it has a `[accept.lightning]` table.
pub const RAIL: Rail = Rail { name: "lightning", claims, parse: rail::parse::<LightningRailConfig> };

fn claims(fields: &toml::Table, _: &Networks) -> bool {
    fields.contains_key("lightning")
}

/// `[[accept]]` with `rail = "lightning"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LightningRailConfig {
    #[serde(default)]
    pub lightning: Option<LightningConfig>,
}

/// `[accept.lightning]`: an LND node's REST API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LightningConfig {
    pub lnd_url: String,
    pub macaroon_file: String,
    pub tls_cert_file: String,
    /// `bitcoin`, `testnet`, `signet` or `regtest`.
    #[serde(default = "default_network")]
    pub network: String,
    /// Satoshis per US dollar, for routes priced in `$`; without it only routes priced in `SAT` offer Lightning.
    #[serde(default)]
    pub sats_per_usd: Option<u64>,
    #[serde(default = "default_invoice_expiry")]
    pub invoice_expiry_secs: u64,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_network() -> String {
    "bitcoin".into()
}
fn default_invoice_expiry() -> u64 {
    600
}
fn default_timeout() -> u64 {
    20
}

#[async_trait]
impl RailConfig for LightningRailConfig {
    fn printed(&self) -> toml::Table {
        rail::printed(self)
    }

    async fn build(&self, common: &Common, ctx: &mut RailContext<'_>) -> Result<BuiltOption, FieldError> {
        let ln = self.lightning.as_ref().ok_or_else(|| missing("lightning"))?;
        let option = PaymentOption {
            name: common.name.clone().unwrap_or_else(|| RAIL.name.into()),
            network: Network::Other(format!("lightning:{}", ln.network)),
            asset: sat_asset(),
            pay_to: RAIL.name.into(),
            max_timeout_secs: common.max_timeout_secs,
        };
        let ttl = ctx.challenge_ttl_secs;
        if ln.invoice_expiry_secs < ttl {
            let message = format!(
                "{} s is shorter than server.challenge_ttl_secs ({ttl} s): invoices would expire before their challenges",
                ln.invoice_expiry_secs
            );
            return Err(FieldError::entry("lightning.invoice_expiry_secs", message));
        }
        let timeout = Duration::from_secs(ln.timeout_secs.max(1));
        let backend = LndRest::new(&ln.lnd_url, &ln.macaroon_file, &ln.tls_cert_file, timeout)
            .map_err(|e| FieldError::entry("lightning", e.to_string()))?;
        let settings = LightningSettings { network: ln.network.clone(), invoice_expiry_secs: ln.invoice_expiry_secs };
        let method = LightningMethod::new(option, Arc::new(backend), settings, ctx.clock.clone())
            .map_err(|e| FieldError::entry("lightning", e.problem))?;
        Ok(BuiltOption { method: Arc::new(method), units_per_usd: ln.sats_per_usd })
    }
}
