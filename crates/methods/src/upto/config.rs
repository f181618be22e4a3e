//! The `upto` rail's `[[accept]]` fields, and how they become an [`UptoMethod`].

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use paygate_core::secret::Secret;

use super::{UptoMethod, UptoSettlement};
use crate::facilitator::FacilitatorClient;
use crate::network::{FieldError, Networks};
use crate::rail::{self, BuiltOption, ChainTarget, Common, Rail, RailConfig, RailContext, SettledOption};
use paygate_core::registry::TransferMethod;

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
    /// Instead of `settler_key`: a remote x402 facilitator that settles `upto` on this network (`paygate
    /// facilitator`); offers name the address its `/supported` gives. Verification stays here, on the network's
    /// `rpc_url`.
    #[serde(default)]
    pub facilitator_url: Option<String>,
    #[serde(default = "default_facilitator_timeout")]
    pub facilitator_timeout_secs: u64,
}

fn default_facilitator_timeout() -> u64 {
    10
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
        if let Some(url) = &self.facilitator_url {
            if self.settler_key.is_some() {
                return Err(FieldError::entry("facilitator_url", "give `settler_key` or `facilitator_url`, not both"));
            }
            let (resolved, chain) = target.on_chain(RAIL.name, TransferMethod::Eip3009, "-upto", common, ctx).await?;
            let timeout = Duration::from_secs(self.facilitator_timeout_secs);
            let client = FacilitatorClient::new(url, timeout)
                .map_err(|e| FieldError::entry("facilitator_url", e.to_string()))?;
            let facilitator = remote_address(&client, &resolved.option.network.to_string()).await?;
            let chain_id = resolved.network.chain_id;
            let settlement = UptoSettlement::Facilitator(client);
            let method =
                UptoMethod::new(resolved.option, (chain, chain_id), facilitator, settlement, ctx.clock.clone());
            return Ok(BuiltOption { method: Arc::new(method), units_per_usd: None });
        }
        let settled =
            target.settled(RAIL.name, TransferMethod::Eip3009, "-upto", self.settler_key.as_ref(), common, ctx).await?;
        let SettledOption { resolved, chain, signer: facilitator, sender } = settled;
        let (receipt_timeout, poll_interval) = resolved.receipt_wait();
        let settlement = UptoSettlement::Builtin { sender, receipt_timeout, poll_interval };
        let chain = (chain, resolved.network.chain_id);
        let method = UptoMethod::new(resolved.option, chain, facilitator.address(), settlement, ctx.clock.clone());
        Ok(BuiltOption { method: Arc::new(method), units_per_usd: None })
    }
}

/// The address a remote facilitator settles `upto` from on `network`, as its `/supported` says.
async fn remote_address(client: &FacilitatorClient, network: &str) -> Result<Address, FieldError> {
    let supported = client.supported().await.map_err(|e| FieldError::entry("facilitator_url", e.to_string()))?;
    let kind = supported.kinds.iter().find(|k| k.x402_version == 2 && k.scheme == "upto" && k.network == network);
    let address = kind.and_then(|k| k.extra.as_ref()?.get("facilitatorAddress")?.as_str()?.parse().ok());
    address.ok_or_else(|| {
        FieldError::entry("facilitator_url", format!("the facilitator does not settle `upto` on {network}"))
    })
}
