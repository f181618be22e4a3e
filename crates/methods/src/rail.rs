//! The rail plug-in interface: how one `[[accept]]` entry of the operator's config becomes a payment method.
//!
//! A rail is a module of this crate that implements [`PaymentMethod`], and a [`Rail`] value the module exports
//! (`RAIL`), listed once in [`crate::registry::RAILS`]. The `[[accept]]` entry's own fields (all but `name`,
//! `rail` and `max_timeout_secs`) are the rail's config type, read with serde ([`parse`]); its
//! [`RailConfig::build`] makes the method, given the shared [`RailContext`]. `docs/adding-a-rail.md` walks
//! through adding one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use paygate_chain::{Chain, SendError, TxSender};
use paygate_core::clock::Clock;
use paygate_core::method::{Asset, Eip712Domain, PaymentMethod, PaymentOption, SettleJournal, SettleOutcome};
use paygate_core::money::{AtomicAmount, Decimal, Price};
use paygate_core::network::Network;
use paygate_core::registry::TransferMethod;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_core::secret::Secret;
use paygate_proto::x402;

pub use crate::network::FieldError;
use crate::network::{Networks, ResolvedNetwork, connect, resolve_network};

/// An option a rail cannot serve (its asset, network or recipient does not fit the rail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment option {option}: {problem}")]
pub struct OptionError {
    pub option: String,
    pub problem: String,
}

/// One rail of the registry.
#[derive(Debug, Clone, Copy)]
pub struct Rail {
    /// Its name in the config's `rail = "..."`, the ledger and metrics.
    pub name: &'static str,
    /// Whether an `[[accept]]` entry that names no rail is this rail's (its fields, and the configured networks).
    /// The registry asks each rail in order; the first that claims the entry takes it.
    pub claims: fn(&toml::Table, &Networks) -> bool,
    /// Reads the entry's own fields.
    pub parse: fn(toml::Table) -> Result<Arc<dyn RailConfig>, FieldError>,
}

/// What every `[[accept]]` entry says besides its rail's own fields.
#[derive(Debug, Clone)]
pub struct Common {
    /// The operator's name for the option; each rail has a default.
    pub name: Option<String>,
    /// How long a payer has to complete payment (x402 `maxTimeoutSeconds`).
    pub max_timeout_secs: u64,
}

/// A rail's config: the entry's fields, typed.
#[async_trait]
pub trait RailConfig: std::fmt::Debug + Send + Sync {
    /// The fields as a printed config shows them (secrets masked).
    fn printed(&self) -> toml::Table;

    /// The network the option pays on, for rails that pay on a chain.
    fn network(&self) -> Option<&str> {
        None
    }

    /// Builds the option's payment method. Errors name the field at fault, relative to the entry.
    async fn build(&self, common: &Common, ctx: &mut RailContext<'_>) -> Result<BuiltOption, FieldError>;
}

/// Reads an entry's fields as the config type `C`; errors name the field, relative to the entry.
pub fn parse<C: RailConfig + DeserializeOwned + 'static>(
    fields: toml::Table,
) -> Result<Arc<dyn RailConfig>, FieldError> {
    serde_path_to_error::deserialize(toml::Value::Table(fields))
        .map(|config: C| Arc::new(config) as Arc<dyn RailConfig>)
        .map_err(|e| {
            let path = e.path().to_string();
            FieldError::entry(if path == "." { String::new() } else { path }, e.into_inner().message())
        })
}

/// A config type as a printed config shows it.
pub fn printed<C: Serialize>(config: &C) -> toml::Table {
    toml::Table::try_from(config).unwrap_or_default()
}

/// What building options shares: the configured networks, chains (made once per network, on first use), settler
/// keys (one nonce sequence per key and chain), the clock, and the life of a challenge.
pub struct RailContext<'a> {
    pub networks: &'a Networks,
    pub challenge_ttl_secs: u64,
    pub clock: Arc<dyn Clock>,
    pub chains: BTreeMap<String, Arc<dyn Chain>>,
    pub senders: HashMap<(String, Address), Arc<TxSender>>,
    /// Where channel rails keep their channels: the gateway's store.
    pub channels: Option<Arc<dyn paygate_core::channel::ChannelBook>>,
}

impl RailContext<'_> {
    /// The chain of network `name`, connecting to its RPC on first use. `None` when it has no RPC URL.
    pub async fn chain(&mut self, name: &str, network: &ResolvedNetwork) -> Result<Option<Arc<dyn Chain>>, FieldError> {
        if let Some(chain) = self.chains.get(name) {
            return Ok(Some(chain.clone()));
        }
        let chain = connect(name, network).await?;
        if let Some(chain) = &chain {
            self.chains.insert(name.to_owned(), chain.clone());
        }
        Ok(chain)
    }
}

/// One built option, with how to price it.
#[derive(Debug, Clone)]
pub struct BuiltOption {
    pub method: Arc<dyn PaymentMethod>,
    /// Atomic units per US dollar when `$` prices convert at a configured rate (Lightning's sats).
    pub units_per_usd: Option<u64>,
}

impl BuiltOption {
    /// What `price` asks of this option, exactly, or why it cannot be charged here.
    pub fn price(&self, price: &Price) -> Result<AtomicAmount, String> {
        let asset = &self.method.option().asset;
        let amount = match (price, self.units_per_usd) {
            (Price::Usd(usd), Some(rate)) => {
                let digits =
                    usd.digits.checked_mul(u128::from(rate)).ok_or_else(|| "the amount overflows".to_owned())?;
                Decimal { digits, scale: usd.scale }.to_atomic(asset.decimals).map_err(|e| e.to_string())?
            }
            _ => price.in_asset(&asset.symbol, asset.usd, asset.decimals).map_err(|e| e.to_string())?,
        };
        Ok(amount)
    }
}

/// `this rail needs <field>`.
pub fn missing(field: &str) -> FieldError {
    FieldError::entry(field, format!("this rail needs `{field}`"))
}

/// Where a chain rail's payments go: the `network`, `asset` and `pay_to` fields of its entry.
#[derive(Debug, Clone, Copy)]
pub struct ChainTarget<'a> {
    pub network: Option<&'a str>,
    pub asset: Option<&'a str>,
    pub pay_to: Option<&'a str>,
}

/// An option on a chain: what its entry names, resolved and checked.
pub struct ChainOption {
    pub option: PaymentOption,
    pub network_name: String,
    pub network: ResolvedNetwork,
    /// The chain, when it has an RPC URL.
    pub chain: Option<Arc<dyn Chain>>,
}

impl ChainOption {
    /// The key of field `settler_key` and its sender on this option's chain, shared by every option settling on
    /// that chain with that key (one nonce sequence per key and chain).
    pub fn settler(
        &self,
        rail: &str,
        key: Option<&Secret>,
        ctx: &mut RailContext<'_>,
    ) -> Result<(PrivateKeySigner, Arc<TxSender>), FieldError> {
        let chain = self.rpc(rail)?;
        let key = key.ok_or_else(|| missing("settler_key"))?;
        let signer: PrivateKeySigner =
            key.expose().trim().parse().map_err(|_| FieldError::entry("settler_key", "not a hex private key"))?;
        let sender = ctx
            .senders
            .entry((self.network_name.clone(), signer.address()))
            .or_insert_with(|| Arc::new(self.network.config.sender(chain, signer.clone())))
            .clone();
        Ok((signer, sender))
    }

    /// How long a settlement on this chain waits for its receipt, and how often it asks.
    pub fn receipt_wait(&self) -> (Duration, Duration) {
        let config = &self.network.config;
        (Duration::from_secs(config.receipt_timeout_secs), Duration::from_millis(config.receipt_poll_ms.max(1)))
    }

    /// The price of field `field` (`"$1"`), in this option's asset, when the entry gives one.
    pub fn amount(&self, field: &str, text: Option<&str>) -> Result<Option<AtomicAmount>, FieldError> {
        let asset = &self.option.asset;
        text.map(|text| {
            Price::parse(text)
                .and_then(|price| price.in_asset(&asset.symbol, asset.usd, asset.decimals))
                .map_err(|e| FieldError::entry(field, e.to_string()))
        })
        .transpose()
    }

    /// The chain's RPC, which `rail` needs.
    pub fn rpc(&self, rail: &str) -> Result<Arc<dyn Chain>, FieldError> {
        self.chain.clone().ok_or_else(|| {
            let field = format!("networks.{}.rpc_url", self.network_name);
            FieldError::config(field, format!("rail {rail:?} needs the chain's JSON-RPC URL"))
        })
    }
}

/// An option of a rail that settles itself with a key on an EVM chain (channels, `upto`): the option, the chain,
/// and the settler's key and sender ([`ChainTarget::settled`]).
pub struct SettledOption {
    pub resolved: ChainOption,
    pub chain: Arc<dyn Chain>,
    pub signer: PrivateKeySigner,
    pub sender: Arc<TxSender>,
}

impl ChainTarget<'_> {
    /// The option of `rail` over an asset paid through `transfer`, named `<asset>-<network><suffix>` unless the
    /// entry names it, with the chain it needs and the sender of `key`, its settler.
    pub async fn settled(
        &self,
        rail: &str,
        transfer: TransferMethod,
        suffix: &str,
        key: Option<&Secret>,
        common: &Common,
        ctx: &mut RailContext<'_>,
    ) -> Result<SettledOption, FieldError> {
        let (resolved, chain) = self.on_chain(rail, transfer, suffix, common, ctx).await?;
        let (signer, sender) = resolved.settler(rail, key, ctx)?;
        Ok(SettledOption { resolved, chain, signer, sender })
    }

    /// The option of `rail` over an asset paid through `transfer`, named `<asset>-<network><suffix>` unless the
    /// entry names it, with the chain it needs (for a rail settled by someone else, a remote facilitator).
    pub async fn on_chain(
        &self,
        rail: &str,
        transfer: TransferMethod,
        suffix: &str,
        common: &Common,
        ctx: &mut RailContext<'_>,
    ) -> Result<(ChainOption, Arc<dyn Chain>), FieldError> {
        let mut resolved = self.resolve(rail, transfer, common, ctx).await?;
        if common.name.is_none() {
            resolved.option.name.push_str(suffix);
        }
        let chain = resolved.rpc(rail)?;
        Ok((resolved, chain))
    }

    /// The asset an entry names on its network, when both are there.
    pub fn asset_of(&self, networks: &Networks) -> Option<crate::network::ResolvedAsset> {
        let network = resolve_network(networks, self.network?).ok()?;
        network.asset(self.asset?).cloned()
    }

    /// Resolves the entry for a rail paying through `transfer`, connecting its chain: the option (named
    /// `<asset>-<network>` by default), the network and the chain.
    pub async fn resolve(
        &self,
        rail: &str,
        transfer: TransferMethod,
        common: &Common,
        ctx: &mut RailContext<'_>,
    ) -> Result<ChainOption, FieldError> {
        let network_name = self.network.ok_or_else(|| missing("network"))?;
        let network = resolve_network(ctx.networks, network_name)?;
        let symbol = self.asset.ok_or_else(|| missing("asset"))?;
        let asset = network.asset(symbol).ok_or_else(|| {
            let known: Vec<&str> = network.assets.values().map(|a| a.symbol.as_str()).collect();
            let known = known.join(", ");
            FieldError::entry("asset", format!("network {network_name:?} has no asset {symbol:?} (known: {known})"))
        })?;
        let address: Address = asset.address.parse().map_err(|_| {
            FieldError::config(format!("networks.{network_name}.assets.{symbol}.address"), "not an address")
        })?;
        let pay_to = self.pay_to.ok_or_else(|| missing("pay_to"))?;
        let pay_to: Address = pay_to.parse().map_err(|_| FieldError::entry("pay_to", "not an address"))?;
        if pay_to == Address::ZERO {
            return Err(FieldError::entry("pay_to", "the zero address burns payments"));
        }
        if !asset.transfers.contains(&transfer) {
            let message = format!("{symbol} on {network_name} cannot be paid through rail {rail:?}");
            return Err(FieldError::entry("rail", message));
        }
        let option = PaymentOption {
            name: common.name.clone().unwrap_or_else(|| format!("{}-{}", asset.symbol, network_name).to_lowercase()),
            network: Network::Evm(network.chain_id),
            asset: Asset {
                address: address.to_checksum(None),
                symbol: asset.symbol.clone(),
                decimals: asset.decimals,
                usd: asset.usd,
                eip712: asset.eip712.clone().map(|(name, version)| Eip712Domain { name, version }),
            },
            pay_to: pay_to.to_checksum(None),
            max_timeout_secs: common.max_timeout_secs,
        };
        let chain = ctx.chain(network_name, &network).await?;
        Ok(ChainOption { option, network_name: network_name.to_owned(), network, chain })
    }
}

/// Signs, journals and broadcasts a settlement (`data` to `to`); the outcome instead when nothing (or nothing
/// known) went out.
pub async fn broadcast(
    sender: &TxSender,
    to: Address,
    data: alloy::primitives::Bytes,
    journal: &dyn SettleJournal,
) -> Result<alloy::primitives::TxHash, SettleOutcome> {
    let record = async |hash: alloy::primitives::TxHash, _| journal.broadcasting(&hash.to_string()).await;
    match sender.send_recorded(to, data, record).await {
        Ok(hash) => Ok(hash),
        Err(SendError::WouldRevert(message)) => {
            Err(SettleOutcome::Failed { reason: format!("the transfer reverts: {message}"), reference: None })
        }
        // The ledger could not journal the transaction: it was not broadcast.
        Err(e @ SendError::NotRecorded(_)) => {
            tracing::warn!(error = %e, "settlement not sent");
            Err(SettleOutcome::NotSent {
                refusal: Rejection::new(
                    RejectKind::StoreUnavailable,
                    "store_unavailable",
                    "the payment ledger could not record the settlement; nothing was charged: send the same payment \
                     again",
                ),
            })
        }
        Err(e @ SendError::NotSent(_)) => {
            // The node refused what was journaled (or failed before signing): there is nothing to wait for.
            tracing::warn!(error = %e, "settlement not sent");
            journal.not_broadcast().await;
            Err(SettleOutcome::NotSent {
                refusal: Rejection::new(
                    RejectKind::ChainUnavailable,
                    "chain_unavailable",
                    "the chain did not take the settlement; nothing was charged: send the same payment again",
                ),
            })
        }
        Err(SendError::Unknown { hash, reason }) => {
            Err(SettleOutcome::Unknown { reason, reference: Some(hash.to_string()) })
        }
    }
}

/// The x402 requirements of `option` under `scheme` for `amount`: its token's EIP-712 domain in `extra` (`name`,
/// `version`), with the scheme's own `fields` after it.
pub(crate) fn eip712_requirements(
    option: &PaymentOption,
    scheme: &str,
    amount: AtomicAmount,
    fields: impl IntoIterator<Item = (&'static str, serde_json::Value)>,
) -> x402::PaymentRequirements {
    let mut extra = serde_json::Map::new();
    // A token without EIP-3009 (paid through Permit2) has no domain to name.
    if let Some(domain) = option.asset.eip712.clone() {
        extra.insert("name".into(), domain.name.into());
        extra.insert("version".into(), domain.version.into());
    }
    extra.extend(fields.into_iter().map(|(name, value)| (name.to_owned(), value)));
    x402::PaymentRequirements {
        scheme: scheme.into(),
        network: option.network.to_string(),
        amount: amount.to_string(),
        asset: option.asset.address.clone(),
        pay_to: option.pay_to.clone(),
        max_timeout_seconds: option.max_timeout_secs,
        extra: Some(extra),
    }
}
