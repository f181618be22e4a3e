//! The `batch-settlement` rail's `[[accept]]` fields, and how they become a [`BatchSettlementMethod`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use paygate_core::registry::TransferMethod;
use paygate_core::secret::Secret;

use super::BatchSettlementMethod;
use crate::channel_call::SettleSchedule;
use crate::channel_journal::ChannelJournal;
use crate::network::{FieldError, Networks};
use crate::rail::{self, BuiltOption, ChainTarget, Common, Rail, RailConfig, RailContext, SettledOption};

/// The rail in the registry. It takes only entries that name it: the same asset also pays per request.
pub const RAIL: Rail = Rail {
    name: "batch-settlement",
    claims: |_: &toml::Table, _: &Networks| false,
    parse: rail::parse::<BatchSettlementConfig>,
};

/// `[[accept]]` with `rail = "batch-settlement"`: channel payments (x402 `batch-settlement`) of an EIP-3009 asset.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSettlementConfig {
    pub network: Option<String>,
    pub asset: Option<String>,
    /// The seller's address: the channels' receiver.
    pub pay_to: Option<String>,
    /// The channels' receiver authorizer: it relays deposits, signs and sends claims, and pays their gas.
    pub settler_key: Option<Secret>,
    /// How long a payer waits to withdraw what was not claimed (x402: 900 s to 30 days).
    #[serde(default = "default_withdraw_delay")]
    pub withdraw_delay_secs: u64,
    /// Claim on chain at least this often (seconds) while a channel has unclaimed value.
    #[serde(default = "default_claim_every")]
    pub claim_every_secs: u64,
    /// Claim at the next pass, whatever the schedule, once a channel's unclaimed value reaches this price
    /// (`"$1"`).
    #[serde(default)]
    pub claim_above: Option<String>,
    /// The most one payer's channels may have served and not yet claimed on chain (`"$5"`): calls beyond it are refused
    /// with 429 and `Retry-After` until the next claim. No cap when absent.
    #[serde(default)]
    pub max_unclaimed: Option<String>,
    /// Close a channel idle this long once everything charged is claimed, refunding the rest of its deposit to
    /// the payer.
    #[serde(default = "default_close_idle")]
    pub close_idle_secs: u64,
    /// How the 402 asks payers to deposit (x402 `assetTransferMethod`): `"eip3009"` (the token's
    /// `receiveWithAuthorization`) or `"permit2"` (Permit2, for a token without EIP-3009; the payer approves
    /// Permit2 on the token once). Default: `eip3009` where the asset has an EIP-712 domain, else `permit2`. A
    /// deposit of either kind is taken.
    #[serde(default)]
    pub asset_transfer_method: Option<AssetTransferMethod>,
}

/// How a deposit is pulled from the payer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AssetTransferMethod {
    Eip3009,
    Permit2,
}

fn default_close_idle() -> u64 {
    86_400
}

fn default_withdraw_delay() -> u64 {
    900
}

fn default_claim_every() -> u64 {
    60
}

#[async_trait]
impl RailConfig for BatchSettlementConfig {
    fn printed(&self) -> toml::Table {
        rail::printed(self)
    }

    fn network(&self) -> Option<&str> {
        self.network.as_deref()
    }

    async fn build(&self, common: &Common, ctx: &mut RailContext<'_>) -> Result<BuiltOption, FieldError> {
        if !(900..=2_592_000).contains(&self.withdraw_delay_secs) {
            return Err(FieldError::entry(
                "withdraw_delay_secs",
                "must be between 900 (15 minutes) and 2592000 (30 days)",
            ));
        }
        let target = ChainTarget {
            network: self.network.as_deref(),
            asset: self.asset.as_deref(),
            pay_to: self.pay_to.as_deref(),
        };
        // Any ERC-20: Permit2 deposits move any of them (whether EIP-3009 deposits can is checked below).
        let transfer = TransferMethod::Erc20Transfer;
        let settled = target.settled(RAIL.name, transfer, "-channel", self.settler_key.as_ref(), common, ctx).await?;
        let SettledOption { resolved, chain, signer: authorizer, sender } = settled;
        let (receipt_timeout, poll_interval) = resolved.receipt_wait();
        let claim_above = resolved.amount("claim_above", self.claim_above.as_deref())?.map(|a| a.0);
        let max_unclaimed = resolved.amount("max_unclaimed", self.max_unclaimed.as_deref())?.map(|a| a.0);
        let book = ctx.channels.clone().ok_or_else(|| FieldError::entry("rail", "channels need a store"))?;
        let journal = ChannelJournal {
            sender: sender.clone(),
            book: book.clone(),
            escrow: paygate_chain::escrow::BATCH_SETTLEMENT,
            option: resolved.option.name.clone(),
            receipt_timeout,
            poll_interval,
        };
        let asset_transfer_method = match (self.asset_transfer_method, &resolved.option.asset.eip712) {
            (Some(AssetTransferMethod::Eip3009), None) => {
                return Err(FieldError::entry(
                    "asset_transfer_method",
                    "the asset has no EIP-712 domain, so no EIP-3009: use \"permit2\"",
                ));
            }
            (Some(method), _) => method,
            (None, Some(_)) => AssetTransferMethod::Eip3009,
            (None, None) => AssetTransferMethod::Permit2,
        };
        let method = BatchSettlementMethod {
            journal,
            asset_transfer_method,
            option: resolved.option,
            chain,
            chain_id: resolved.network.chain_id,
            sender,
            authorizer,
            book,
            withdraw_delay: self.withdraw_delay_secs,
            schedule: SettleSchedule::new(Duration::from_secs(self.claim_every_secs)),
            claim_above,
            max_unclaimed,
            close_idle: Duration::from_secs(self.close_idle_secs),
            receipt_timeout,
            poll_interval,
            clock: ctx.clock.clone(),
        };
        Ok(BuiltOption { method: Arc::new(method), units_per_usd: None })
    }
}
