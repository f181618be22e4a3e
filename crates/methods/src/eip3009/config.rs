//! The `eip3009` rail's `[[accept]]` fields, and how they become an [`Eip3009Method`]: settled by paygate's own
//! settler key (`builtin`) or by a remote x402 facilitator.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use paygate_core::registry::TransferMethod;
use paygate_core::secret::Secret;

use super::{Eip3009Method, Settlement};
use crate::cdp::CdpKey;
use crate::facilitator::FacilitatorClient;
use crate::network::{FieldError, Networks};
use crate::rail::{self, BuiltOption, ChainTarget, Common, Rail, RailConfig, RailContext, missing};

/// The rail in the registry. An entry that names no rail is this rail's when its asset is an EIP-3009 token.
pub const RAIL: Rail = Rail { name: "eip3009", claims, parse: rail::parse::<Eip3009Config> };

fn claims(fields: &toml::Table, networks: &Networks) -> bool {
    let text = |name: &str| fields.get(name).and_then(toml::Value::as_str);
    let target = ChainTarget { network: text("network"), asset: text("asset"), pay_to: None };
    target.asset_of(networks).is_some_and(|asset| asset.transfers.contains(&TransferMethod::Eip3009))
}

/// `[[accept]]` with `rail = "eip3009"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Eip3009Config {
    /// A network name.
    #[serde(default)]
    pub network: Option<String>,
    /// An asset symbol of that network.
    #[serde(default)]
    pub asset: Option<String>,
    /// The seller's address.
    #[serde(default)]
    pub pay_to: Option<String>,
    /// Who submits the authorization; `builtin` when a settler key is given, else `facilitator`.
    #[serde(default)]
    pub settlement: Option<SettlementKind>,
    /// Built-in settlement: the key that submits and pays gas.
    #[serde(default)]
    pub settler_key: Option<Secret>,
    /// Facilitator settlement: its base URL.
    #[serde(default)]
    pub facilitator_url: Option<String>,
    #[serde(default = "default_facilitator_timeout")]
    pub facilitator_timeout_secs: u64,
    /// A Coinbase CDP API key id, for the CDP facilitator (with `cdp_api_key_secret`): every facilitator
    /// request then carries a fresh signed token.
    #[serde(default)]
    pub cdp_api_key_id: Option<String>,
    /// The key's secret (PEM EC key or base64 Ed25519); write `"${CDP_API_KEY_SECRET}"`.
    #[serde(default)]
    pub cdp_api_key_secret: Option<Secret>,
    /// Built-in settlement: answer once the transfer is confirmed (`confirmed`, the default) or once the node took
    /// it (`submitted`; the reconciler confirms it later).
    #[serde(default)]
    pub wait: Wait,
    /// With `wait = "submitted"`: the most one payer may have answered for and not confirmed (`"$1"`); a payer
    /// over it waits for confirmation. No cap when absent.
    #[serde(default)]
    pub max_unconfirmed: Option<String>,
}

/// When a built-in settlement's answer goes out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Wait {
    /// Once the transfer's receipt says it succeeded.
    #[default]
    Confirmed,
    /// Once the node took the simulated transfer into its pool.
    Submitted,
}

fn default_facilitator_timeout() -> u64 {
    30
}

/// Who settles an `eip3009` option's payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SettlementKind {
    Builtin,
    Facilitator,
}

#[async_trait]
impl RailConfig for Eip3009Config {
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
        let resolved = target.resolve(RAIL.name, TransferMethod::Eip3009, common, ctx).await?;
        let kind = self.settlement.unwrap_or(if self.settler_key.is_some() {
            SettlementKind::Builtin
        } else {
            SettlementKind::Facilitator
        });
        let settlement = match kind {
            SettlementKind::Builtin => {
                let (_, sender) = resolved.settler(RAIL.name, self.settler_key.as_ref(), ctx)?;
                let (receipt_timeout, poll_interval) = resolved.receipt_wait();
                Settlement::Builtin { sender, receipt_timeout, poll_interval }
            }
            SettlementKind::Facilitator => Settlement::Facilitator(self.facilitator()?),
        };
        let is_builtin = matches!(settlement, Settlement::Builtin { .. });
        let has_chain = resolved.chain.is_some();
        let confirm_wait = resolved.receipt_wait();
        let cap = resolved.amount("max_unconfirmed", self.max_unconfirmed.as_deref())?;
        let mut method = Eip3009Method::new(resolved.option, resolved.chain, settlement, ctx.clock.clone())
            .map_err(|e| FieldError::entry("asset", e.problem))?;
        match (self.wait, is_builtin || has_chain) {
            (Wait::Confirmed, _) if self.max_unconfirmed.is_some() => {
                return Err(FieldError::entry("max_unconfirmed", "only with wait = \"submitted\""));
            }
            (Wait::Confirmed, _) => {}
            // The reconciler confirms a submitted transfer from the chain: it must be able to ask it.
            (Wait::Submitted, false) => {
                return Err(FieldError::entry(
                    "wait",
                    "\"submitted\" through a facilitator needs the network's rpc_url, to confirm the transfer",
                ));
            }
            (Wait::Submitted, true) => method = method.answer_when_submitted(cap, confirm_wait),
        }
        Ok(BuiltOption { method: Arc::new(method), units_per_usd: None })
    }
}

impl Eip3009Config {
    /// The facilitator client this entry names (with its CDP key, when given).
    fn facilitator(&self) -> Result<FacilitatorClient, FieldError> {
        let url = self.facilitator_url.as_deref().ok_or_else(|| missing("facilitator_url"))?;
        let mut client = FacilitatorClient::new(url, Duration::from_secs(self.facilitator_timeout_secs))
            .map_err(|e| FieldError::entry("facilitator_url", e.to_string()))?;
        match (&self.cdp_api_key_id, &self.cdp_api_key_secret) {
            (Some(id), Some(secret)) => {
                let key = CdpKey::new(id, secret.expose())
                    .map_err(|e| FieldError::entry("cdp_api_key_secret", e.to_string()))?;
                client = client.with_cdp_key(Arc::new(key));
            }
            (None, None) => {}
            (Some(_), None) => return Err(missing("cdp_api_key_secret")),
            (None, Some(_)) => return Err(missing("cdp_api_key_id")),
        }
        Ok(client)
    }
}
