//! The `tempo` rail's `[[accept]]` fields (an asset on a Tempo network, and the optional `[accept.tempo]`
//! sponsoring), and how they become a [`TempoMethod`].

use std::sync::Arc;
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use async_trait::async_trait;
use paygate_core::registry::{ChainKind, TransferMethod};
use paygate_core::secret::Secret;
use serde::{Deserialize, Serialize};

use super::{TempoMethod, TempoSettings};
use crate::network::{FieldError, Networks, resolve_network};
use crate::rail::{self, BuiltOption, ChainTarget, Common, Rail, RailConfig, RailContext};

/// The rail in the registry. An entry that names no rail is this rail's when its network is a Tempo network.
pub const RAIL: Rail = Rail { name: "tempo", claims, parse: rail::parse::<TempoRailConfig> };

fn claims(fields: &toml::Table, networks: &Networks) -> bool {
    let network = fields.get("network").and_then(toml::Value::as_str);
    network.and_then(|n| resolve_network(networks, n).ok()).is_some_and(|n| n.kind == ChainKind::Tempo)
}

/// `[[accept]]` with `rail = "tempo"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TempoRailConfig {
    /// A network name.
    #[serde(default)]
    pub network: Option<String>,
    /// An asset symbol of that network.
    #[serde(default)]
    pub asset: Option<String>,
    /// The seller's address.
    #[serde(default)]
    pub pay_to: Option<String>,
    #[serde(default)]
    pub tempo: Option<TempoConfig>,
}

/// `[accept.tempo]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TempoConfig {
    /// Key that co-signs and pays the fees of pull transactions; without it payers pay their own fees.
    #[serde(default)]
    pub fee_payer_key: Option<Secret>,
    /// `["pull", "push"]` by default.
    #[serde(default)]
    pub modes: Option<Vec<String>>,
    /// Sponsor policy: the highest gas limit co-signed (default 2,000,000).
    #[serde(default)]
    pub max_gas: Option<u64>,
    /// Sponsor policy: the longest validity window co-signed (default 900 s).
    #[serde(default)]
    pub max_validity_secs: Option<u64>,
}

#[async_trait]
impl RailConfig for TempoRailConfig {
    fn printed(&self) -> toml::Table {
        rail::printed(self)
    }

    fn network(&self) -> Option<&str> {
        self.network.as_deref()
    }

    async fn build(&self, common: &Common, ctx: &mut RailContext<'_>) -> Result<BuiltOption, FieldError> {
        let target = ChainTarget {
            network: self.network.as_deref(),
            asset: self.asset.as_deref(),
            pay_to: self.pay_to.as_deref(),
        };
        let resolved = target.resolve(RAIL.name, TransferMethod::Tip20, common, ctx).await?;
        let tempo = self.tempo.clone().unwrap_or_default();
        let fee_payer = match &tempo.fee_payer_key {
            Some(key) => Some(
                key.expose()
                    .trim()
                    .parse::<PrivateKeySigner>()
                    .map_err(|_| FieldError::entry("tempo.fee_payer_key", "not a hex private key"))?,
            ),
            None => None,
        };
        let defaults = TempoSettings::default();
        let settings = TempoSettings {
            fee_payer,
            supported_modes: tempo.modes.unwrap_or(defaults.supported_modes.clone()),
            max_gas: tempo.max_gas.unwrap_or(defaults.max_gas),
            max_validity_secs: tempo.max_validity_secs.unwrap_or(defaults.max_validity_secs),
            receipt_timeout: Duration::from_secs(resolved.network.config.receipt_timeout_secs),
            poll_interval: Duration::from_millis(resolved.network.config.receipt_poll_ms.max(1)),
            ..defaults
        };
        let chain = resolved.rpc(RAIL.name)?;
        let method = TempoMethod::new(resolved.option, chain, settings, ctx.clock.clone())
            .map_err(|e| FieldError::entry("asset", e.problem))?;
        Ok(BuiltOption { method: Arc::new(method), units_per_usd: None })
    }
}
