//! The `stripe` rail's `[[accept]]` fields (its `[accept.stripe]` table), and how they become a
//! [`StripeMethod`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use paygate_core::method::{Asset, PaymentOption};
use paygate_core::network::Network;
use paygate_core::secret::Secret;
use serde::{Deserialize, Serialize};

use super::{NETWORK, StripeMethod, StripeSettings};
use crate::network::{FieldError, Networks};
use crate::rail::{self, BuiltOption, Common, Rail, RailConfig, RailContext, missing};

/// The rail in the registry. An entry that names no rail is this rail's when it has a `[accept.stripe]` table.
pub const RAIL: Rail = Rail { name: "stripe", claims, parse: rail::parse::<StripeRailConfig> };

fn claims(fields: &toml::Table, _: &Networks) -> bool {
    fields.contains_key("stripe")
}

/// `[[accept]]` with `rail = "stripe"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StripeRailConfig {
    #[serde(default)]
    pub stripe: Option<StripeConfig>,
}

/// `[accept.stripe]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// `sk_...`, from the environment.
    pub secret_key: Secret,
    #[serde(default = "default_api")]
    pub api_base: String,
    /// The seller's Stripe Business Network profile id.
    #[serde(default)]
    pub network_id: Option<String>,
    #[serde(default = "default_payment_method_types")]
    pub payment_method_types: Vec<String>,
    /// Smallest charge offered, in cents; default: Stripe's minimum for the currency ($0.50), under which Stripe
    /// refuses card charges.
    #[serde(default)]
    pub min_amount_cents: Option<u64>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// The form field that carries the buyer's token.
    #[serde(default = "default_token_param")]
    pub token_param: String,
}

fn default_api() -> String {
    super::DEFAULT_API_BASE.into()
}
fn default_payment_method_types() -> Vec<String> {
    vec!["card".into()]
}
fn default_timeout() -> u64 {
    20
}
fn default_token_param() -> String {
    super::DEFAULT_TOKEN_PARAM.into()
}

#[async_trait]
impl RailConfig for StripeRailConfig {
    fn printed(&self) -> toml::Table {
        rail::printed(self)
    }

    async fn build(&self, common: &Common, _: &mut RailContext<'_>) -> Result<BuiltOption, FieldError> {
        let stripe = self.stripe.as_ref().ok_or_else(|| missing("stripe"))?;
        let option = PaymentOption {
            name: common.name.clone().unwrap_or_else(|| RAIL.name.into()),
            network: Network::Other(NETWORK.into()),
            asset: Asset { address: "usd".into(), symbol: "USD".into(), decimals: 2, usd: true, eip712: None },
            pay_to: stripe.network_id.clone().unwrap_or_else(|| NETWORK.into()),
            max_timeout_secs: common.max_timeout_secs,
        };
        let settings = StripeSettings {
            api_base: stripe.api_base.clone(),
            secret_key: stripe.secret_key.expose().to_owned(),
            network_id: stripe.network_id.clone(),
            payment_method_types: stripe.payment_method_types.clone(),
            timeout: Duration::from_secs(stripe.timeout_secs.max(1)),
            token_param: stripe.token_param.clone(),
            min_amount: stripe.min_amount_cents.map(u128::from),
        };
        let method = StripeMethod::new(option, settings).map_err(|e| FieldError::entry("stripe", e.problem))?;
        Ok(BuiltOption { method: Arc::new(method), units_per_usd: None })
    }
}
