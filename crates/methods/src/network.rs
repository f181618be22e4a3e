//! Networks as rails see them: the built-in registry's (`paygate_core::registry`) with the operator's
//! `[networks.<name>]` tables laid over it, or the operator's own; and their chains, connected once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use paygate_chain::{Chain, ChainError, RpcChain, TxSender};
use paygate_core::registry::{self, ChainKind, TransferMethod};
use serde::{Deserialize, Serialize};

/// A config error: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: Field,
    pub message: String,
}

/// Where a config error is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// A field of the `[[accept]]` entry being read (`settler_key`, `stripe.secret_key`).
    Entry(String),
    /// A field elsewhere in the config (`networks.base.rpc_url`).
    Config(String),
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::Entry(path) | Field::Config(path) => f.write_str(path),
        }
    }
}

impl FieldError {
    /// An error in a field of the entry being read.
    pub fn entry(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: Field::Entry(field.into()), message: message.into() }
    }

    /// An error in a field elsewhere in the config.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: Field::Config(field.into()), message: message.into() }
    }

    /// The field's path in the whole config, for an entry whose own path is `entry` (`accept[0]`).
    pub fn path(&self, entry: &str) -> String {
        match &self.field {
            Field::Entry(field) if field.is_empty() => entry.to_owned(),
            Field::Entry(field) => format!("{entry}.{field}"),
            Field::Config(field) => field.clone(),
        }
    }
}

/// `[networks.<name>]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Required for networks paygate does not know.
    #[serde(default)]
    pub chain_id: Option<u64>,
    /// JSON-RPC URL; defaults to the built-in network's public endpoint, if it has one.
    #[serde(default)]
    pub rpc_url: Option<String>,
    /// Blocks a pay-first transfer must be buried under; defaults to the built-in network's.
    #[serde(default)]
    pub confirmations: Option<u64>,
    #[serde(default = "default_rpc_timeout")]
    pub rpc_timeout_secs: u64,
    /// Longest wait for a settlement receipt before the payment becomes `pending`.
    #[serde(default = "default_receipt_timeout")]
    pub receipt_timeout_secs: u64,
    #[serde(default = "default_poll_ms")]
    pub receipt_poll_ms: u64,
    /// How long the node must be seen missing a transaction a settler key sent before its nonce is signed again
    /// (see `paygate_chain::nonce`).
    #[serde(default = "default_lost_nonce_grace")]
    pub lost_nonce_grace_secs: u64,
    /// Tokens on this chain, by symbol.
    #[serde(default)]
    pub assets: BTreeMap<String, AssetConfig>,
    /// `devnet` only: keep the embedded devnet's state in this file (relative to the config file), so balances
    /// survive a restart (default: in memory).
    #[serde(default)]
    pub state_file: Option<PathBuf>,
}

fn default_rpc_timeout() -> u64 {
    10
}
fn default_receipt_timeout() -> u64 {
    60
}
fn default_poll_ms() -> u64 {
    500
}
fn default_lost_nonce_grace() -> u64 {
    paygate_chain::nonce::LOST_NONCE_GRACE.as_secs()
}

impl NetworkConfig {
    /// A sender of `signer`'s transactions on `chain`, this network's settings applied.
    pub fn sender(&self, chain: Arc<dyn Chain>, signer: PrivateKeySigner) -> TxSender {
        TxSender::with_lost_nonce_grace(chain, signer, Duration::from_secs(self.lost_nonce_grace_secs))
    }
}

/// `[networks.<name>.assets.<SYMBOL>]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AssetConfig {
    pub address: String,
    pub decimals: u8,
    /// A USD stablecoin (`$` prices are paid in it one to one).
    #[serde(default = "yes")]
    pub usd: bool,
    /// EIP-712 domain, for EIP-3009 tokens.
    #[serde(default)]
    pub eip712_name: Option<String>,
    #[serde(default)]
    pub eip712_version: Option<String>,
}

fn yes() -> bool {
    true
}

/// The configured networks, by name.
pub type Networks = BTreeMap<String, NetworkConfig>;

/// A network as built-in data and config make it.
#[derive(Debug, Clone)]
pub struct ResolvedNetwork {
    pub chain_id: u64,
    pub kind: ChainKind,
    pub confirmations: u64,
    pub rpc_url: Option<String>,
    pub config: NetworkConfig,
    /// By upper-case symbol.
    pub assets: BTreeMap<String, ResolvedAsset>,
}

/// An asset of a [`ResolvedNetwork`].
#[derive(Debug, Clone)]
pub struct ResolvedAsset {
    pub symbol: String,
    pub address: String,
    pub decimals: u8,
    pub usd: bool,
    pub eip712: Option<(String, String)>,
    pub transfers: Vec<TransferMethod>,
}

impl ResolvedNetwork {
    /// The asset of this symbol (any case).
    pub fn asset(&self, symbol: &str) -> Option<&ResolvedAsset> {
        self.assets.get(&symbol.to_ascii_uppercase())
    }
}

/// Resolves network `name`: the built-in one with the config's overrides, or the config's own.
pub fn resolve_network(networks: &Networks, name: &str) -> Result<ResolvedNetwork, FieldError> {
    let overrides = networks.get(name).cloned().unwrap_or_default();
    let builtin = registry::network(name);
    let chain_id = overrides.chain_id.or(builtin.map(|n| n.chain_id)).ok_or_else(|| {
        FieldError::config(
            format!("networks.{name}.chain_id"),
            format!("{name:?} is not a built-in network: give its chain_id"),
        )
    })?;
    let kind = builtin.map_or(ChainKind::Evm, |n| n.kind);
    let mut assets = BTreeMap::new();
    for a in builtin.map_or(&[][..], |n| n.assets) {
        let asset = ResolvedAsset {
            symbol: a.symbol.to_owned(),
            address: a.address.to_owned(),
            decimals: a.decimals,
            usd: a.usd,
            eip712: a.eip712.map(|(n, v)| (n.to_owned(), v.to_owned())),
            transfers: a.transfers.to_vec(),
        };
        assets.insert(a.symbol.to_ascii_uppercase(), asset);
    }
    for (symbol, a) in &overrides.assets {
        let eip712 = match (&a.eip712_name, &a.eip712_version) {
            (Some(n), Some(v)) => Some((n.clone(), v.clone())),
            _ => None,
        };
        let mut transfers = vec![TransferMethod::Erc20Transfer];
        if eip712.is_some() {
            transfers.insert(0, TransferMethod::Eip3009);
        }
        if kind == ChainKind::Tempo {
            transfers.insert(0, TransferMethod::Tip20);
        }
        let asset = ResolvedAsset {
            symbol: symbol.clone(),
            address: a.address.clone(),
            decimals: a.decimals,
            usd: a.usd,
            eip712,
            transfers,
        };
        assets.insert(symbol.to_ascii_uppercase(), asset);
    }
    Ok(ResolvedNetwork {
        chain_id,
        kind,
        confirmations: overrides.confirmations.or(builtin.map(|n| n.confirmations)).unwrap_or(1),
        rpc_url: overrides.rpc_url.clone().or(builtin.and_then(|n| n.public_rpc).map(str::to_owned)),
        config: overrides,
        assets,
    })
}

/// Connects to network `name`'s RPC and checks its chain id. `None` when it has no RPC URL; an unreachable node
/// is only a warning (payments on it fail until it answers).
pub async fn connect(name: &str, network: &ResolvedNetwork) -> Result<Option<Arc<dyn Chain>>, FieldError> {
    let Some(url) = &network.rpc_url else { return Ok(None) };
    let field = || format!("networks.{name}.rpc_url");
    let timeout = Duration::from_secs(network.config.rpc_timeout_secs.max(1));
    let chain =
        RpcChain::new(url, network.chain_id, timeout).map_err(|e| FieldError::config(field(), e.to_string()))?;
    match chain.check().await {
        Ok(()) => {}
        Err(ChainError::Unavailable(reason)) => {
            tracing::warn!(network = %name, %reason, "the chain is not reachable now; payments on it will fail until it is");
        }
        Err(e) => return Err(FieldError::config(field(), e.to_string())),
    }
    Ok(Some(Arc::new(chain)))
}

/// The address a `did:pkh:eip155:<chainId>:<address>` DID (an MPP credential's `source`) names, when it names one
/// on `chain_id`. A mixed-case address must be correctly checksummed (as viem's `isAddress`).
pub fn pkh_address(source: &str, chain_id: u64) -> Option<alloy::primitives::Address> {
    let rest = source.strip_prefix("did:pkh:eip155:")?;
    let (chain, address) = rest.split_once(':')?;
    if chain != chain_id.to_string() {
        return None;
    }
    let body = address.strip_prefix("0x")?;
    if body.len() != 40 || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let parsed: alloy::primitives::Address = address.parse().ok()?;
    let mixed = body.bytes().any(|b| b.is_ascii_lowercase()) && body.bytes().any(|b| b.is_ascii_uppercase());
    if mixed && parsed.to_checksum(None) != address {
        return None;
    }
    Some(parsed)
}
