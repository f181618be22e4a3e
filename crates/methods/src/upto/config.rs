//! The `upto` rail's `[[accept]]` fields, and how they become an [`UptoMethod`].

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use paygate_core::secret::Secret;

use super::UptoMethod;
use crate::network::{FieldError, Networks};
use crate::rail::{self, BuiltOption, ChainTarget, Common, Rail, RailConfig, RailContext, SettledOption};

/// The rail in the registry. It takes only entries that name it: the same asset also pays per request.
pub const RAIL: Rail =
    Rail { name: "upto", claims: |_: &toml::Table, _: &Networks| false, parse: rail::parse::<UptoConfig> };

/// `[[accept]]` with `rail = "upto"`: x402 `upto` payments (a Permit2 authorization of a maximum, settled for
/// what the call used) of an ERC-20 the payer approved Permit2 for.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UptoConfig {
    pub network: Option<String>,
    pub asset: Option<String>,
    pub pay_to: Option<String>,
    /// The facilitator's key: offers name its address (`extra.facilitatorAddress`), the payer's witness binds it,
    /// and only it may settle through the upto proxy; it pays the gas.
    pub settler_key: Option<Secret>,
}

#[async_trait]
impl RailConfig for UptoConfig {
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
        let settled = target.settled(RAIL.name, "-upto", self.settler_key.as_ref(), common, ctx).await?;
        let SettledOption { resolved, chain, signer: facilitator, sender } = settled;
        let (receipt_timeout, poll_interval) = resolved.receipt_wait();
        let method = UptoMethod::new(
            resolved.option,
            chain,
            resolved.network.chain_id,
            facilitator.address(),
            sender,
            receipt_timeout,
            poll_interval,
            ctx.clock.clone(),
        );
        Ok(BuiltOption { method: Arc::new(method), units_per_usd: None })
    }
}
