//! The `evm-session` rail's `[[accept]]` fields, and how they become an [`EvmSessionMethod`].

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use paygate_chain::session_escrow;
use paygate_core::secret::Secret;

use super::EvmSessionMethod;
use crate::channel_call::SettleSchedule;
use crate::channel_journal::ChannelJournal;
use crate::network::{FieldError, Networks};
use crate::rail::{self, BuiltOption, ChainTarget, Common, Rail, RailConfig, RailContext, SettledOption};
use paygate_core::registry::TransferMethod;

/// The rail in the registry. It takes only entries that name it: the same asset also pays per request.
pub const RAIL: Rail =
    Rail { name: "evm-session", claims: |_: &toml::Table, _: &Networks| false, parse: rail::parse::<EvmSessionConfig> };

/// `[[accept]]` with `rail = "evm-session"`: MPP `evm` session channels of an EIP-3009 asset.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EvmSessionConfig {
    pub network: Option<String>,
    pub asset: Option<String>,
    /// The seller's address: the channels' payee. It must be `settler_key`'s: the escrow pays only a payee that
    /// sends `settle` and `close` itself.
    pub pay_to: Option<String>,
    /// The payee's key: it relays deposits, settles and closes, and pays their gas.
    pub settler_key: Option<Secret>,
    /// The escrow contract. When absent, the dev chains' stand-in, if this chain holds exactly it.
    #[serde(default)]
    pub escrow: Option<String>,
    /// What the 402 suggests a payer deposit (`"$1"`).
    #[serde(default)]
    pub suggested_deposit: Option<String>,
    /// Settle on chain at least this often (seconds) while a channel has unsettled value.
    #[serde(default = "default_settle_every")]
    pub settle_every_secs: u64,
    /// Settle at the next pass, whatever the schedule, once a channel's unsettled value reaches this (`"$1"`).
    #[serde(default)]
    pub settle_above: Option<String>,
    /// The most one payer's channels may have served and not yet settled on chain (`"$5"`): calls beyond it are refused
    /// with 429 and `Retry-After` until the next settlement. No cap when absent.
    #[serde(default)]
    pub max_unsettled: Option<String>,
    /// Close a channel idle this long once everything charged is settled, refunding the rest of its deposit.
    #[serde(default = "default_close_idle")]
    pub close_idle_secs: u64,
}

fn default_close_idle() -> u64 {
    86_400
}

fn default_settle_every() -> u64 {
    60
}

#[async_trait]
impl RailConfig for EvmSessionConfig {
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
        let settled = target
            .settled(RAIL.name, TransferMethod::Eip3009, "-session", self.settler_key.as_ref(), common, ctx)
            .await?;
        let SettledOption { resolved, chain, signer: payee, sender } = settled;
        if payee.address().to_checksum(None) != resolved.option.pay_to {
            return Err(FieldError::entry(
                "pay_to",
                "must be settler_key's address: the session escrow pays out only to a payee that settles itself",
            ));
        }
        if resolved.option.asset.eip712.is_none() {
            return Err(FieldError::entry("asset", "has no EIP-712 domain: it cannot be deposited with ERC-3009"));
        }
        let escrow = match &self.escrow {
            Some(text) => text.parse::<Address>().map_err(|_| FieldError::entry("escrow", "not an address"))?,
            None => {
                let (address, code) = session_escrow::dev_code();
                // A chain that cannot be asked now is told apart later: payments fail until it answers.
                let held = chain.code(address).await.unwrap_or_else(|_| code.clone());
                if held != code {
                    return Err(FieldError::entry(
                        "escrow",
                        "name the network's evm session escrow: this chain does not hold the dev stand-in \
                         (`paygate dev fund` places it on anvil)",
                    ));
                }
                address
            }
        };
        let (receipt_timeout, poll_interval) = resolved.receipt_wait();
        let book = ctx.channels.clone().ok_or_else(|| FieldError::entry("rail", "channels need a store"))?;
        let journal = ChannelJournal {
            sender: sender.clone(),
            book: book.clone(),
            escrow,
            option: resolved.option.name.clone(),
            receipt_timeout,
            poll_interval,
        };
        let method = EvmSessionMethod {
            journal,
            suggested_deposit: resolved.amount("suggested_deposit", self.suggested_deposit.as_deref())?.map(|a| a.0),
            settle_above: resolved.amount("settle_above", self.settle_above.as_deref())?.map(|a| a.0),
            max_unsettled: resolved.amount("max_unsettled", self.max_unsettled.as_deref())?.map(|a| a.0),
            book,
            option: resolved.option,
            chain,
            chain_id: resolved.network.chain_id,
            escrow,
            sender,
            schedule: SettleSchedule::new(Duration::from_secs(self.settle_every_secs)),
            close_idle: Duration::from_secs(self.close_idle_secs),
            vouchers: tokio::sync::Notify::new(),
            receipt_timeout,
            poll_interval,
            clock: ctx.clock.clone(),
        };
        Ok(BuiltOption { method: Arc::new(method), units_per_usd: None })
    }
}
