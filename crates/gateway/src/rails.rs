//! The registry of payment rails: how one `[[accept]]` entry of the config becomes a payment method.
//!
//! Adding a rail means a module in `paygate-methods` that implements `PaymentMethod`, and one arm in
//! [`build_option`]. Networks and assets come from the built-in registry (`paygate_core::registry`) with the
//! config's `[networks.*]` laid over it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;

use paygate_chain::{Chain, ChainError, RpcChain, TxSender};
use paygate_core::clock::Clock;
use paygate_core::method::{Asset, Eip712Domain, PaymentMethod, PaymentOption};
use paygate_core::money::{AtomicAmount, Decimal, Price};
use paygate_core::network::Network;
use paygate_core::registry::{self, ChainKind, TransferMethod};
use paygate_methods::cdp::CdpKey;
use paygate_methods::eip3009::{Eip3009Method, Settlement};
use paygate_methods::facilitator::FacilitatorClient;
use paygate_methods::lightning::{LightningMethod, LightningSettings, LndRest};
use paygate_methods::stripe::{StripeMethod, StripeSettings};
use paygate_methods::tempo::{TempoMethod, TempoSettings};
use paygate_methods::txhash::{TxHashMethod, TxHashSettings};

use crate::config::{AcceptConfig, Config, NetworkConfig, Rail, SettlementKind};

/// A config error: the field and what is wrong.
pub(crate) type FieldError = (String, String);

/// A network as built-in data and config make it.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedNetwork {
    pub chain_id: u64,
    pub kind: ChainKind,
    pub confirmations: u64,
    pub rpc_url: Option<String>,
    pub config: NetworkConfig,
    pub assets: BTreeMap<String, ResolvedAsset>,
}

#[derive(Debug, Clone)]
pub(crate) struct ResolvedAsset {
    pub symbol: String,
    pub address: String,
    pub decimals: u8,
    pub usd: bool,
    pub eip712: Option<(String, String)>,
    pub transfers: Vec<TransferMethod>,
}

/// Resolves network `name`: the built-in one with the config's overrides, or the config's own.
pub(crate) fn resolve_network(
    networks: &BTreeMap<String, NetworkConfig>,
    name: &str,
) -> Result<ResolvedNetwork, FieldError> {
    let overrides = networks.get(name).cloned().unwrap_or_default();
    let builtin = registry::network(name);
    let chain_id = overrides.chain_id.or(builtin.map(|n| n.chain_id)).ok_or_else(|| {
        (format!("networks.{name}.chain_id"), format!("{name:?} is not a built-in network: give its chain_id"))
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

/// What building options shares: chains (made once per network, on first use), settler keys (one nonce
/// sequence per key and chain), the clock.
pub(crate) struct RailContext<'a> {
    pub config: &'a Config,
    pub clock: Arc<dyn Clock>,
    pub chains: BTreeMap<String, Arc<dyn Chain>>,
    pub senders: HashMap<(String, Address), Arc<TxSender>>,
}

impl RailContext<'_> {
    /// The chain of network `name`, connecting to its RPC on first use. `None` when it has no RPC URL.
    async fn chain(&mut self, name: &str, network: &ResolvedNetwork) -> Result<Option<Arc<dyn Chain>>, FieldError> {
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

/// Connects to network `name`'s RPC and checks its chain id. `None` when it has no RPC URL; an unreachable node
/// is only a warning (payments on it fail until it answers).
pub(crate) async fn connect(name: &str, network: &ResolvedNetwork) -> Result<Option<Arc<dyn Chain>>, FieldError> {
    let Some(url) = &network.rpc_url else { return Ok(None) };
    let field = || format!("networks.{name}.rpc_url");
    let timeout = Duration::from_secs(network.config.rpc_timeout_secs.max(1));
    let chain = RpcChain::new(url, network.chain_id, timeout).map_err(|e| (field(), e.to_string()))?;
    match chain.check().await {
        Ok(()) => {}
        Err(ChainError::Unavailable(reason)) => {
            tracing::warn!(network = %name, %reason, "the chain is not reachable now; payments on it will fail until it is");
        }
        Err(e) => return Err((field(), e.to_string())),
    }
    Ok(Some(Arc::new(chain)))
}

/// One built option, with how to price it.
#[derive(Debug, Clone)]
pub(crate) struct BuiltOption {
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

/// Builds the payment method of one `[[accept]]` entry; `field` names its fields in errors.
pub(crate) async fn build_option(
    ctx: &mut RailContext<'_>,
    accept: &AcceptConfig,
    field: &dyn Fn(&str) -> String,
) -> Result<BuiltOption, FieldError> {
    let missing = |name: &str| (field(name), format!("this rail needs `{name}`"));
    let rail = match accept.rail {
        Some(rail) => rail,
        None if accept.stripe.is_some() => Rail::Stripe,
        None if accept.lightning.is_some() => Rail::Lightning,
        None => {
            let network = accept.network.as_deref().ok_or_else(|| missing("network"))?;
            let resolved = resolve_network(&ctx.config.networks, network)?;
            let asset = accept.asset.as_deref().and_then(|a| resolved.assets.get(&a.to_ascii_uppercase()));
            match (resolved.kind, asset) {
                (ChainKind::Tempo, _) => Rail::Tempo,
                (_, Some(a)) if a.transfers.contains(&TransferMethod::Eip3009) => Rail::Eip3009,
                _ => Rail::Txhash,
            }
        }
    };
    match rail {
        Rail::Eip3009 | Rail::Txhash | Rail::Tempo => chain_option(ctx, accept, rail, field).await,
        Rail::Stripe => {
            let stripe = accept.stripe.as_ref().ok_or_else(|| missing("stripe"))?;
            let option = PaymentOption {
                name: accept.name.clone().unwrap_or_else(|| "stripe".into()),
                network: Network::Other("stripe".into()),
                asset: Asset { address: "usd".into(), symbol: "USD".into(), decimals: 2, usd: true, eip712: None },
                pay_to: stripe.network_id.clone().unwrap_or_else(|| "stripe".into()),
                max_timeout_secs: accept.max_timeout_secs,
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
            let method = StripeMethod::new(option, settings).map_err(|e| (field("stripe"), e.problem))?;
            Ok(BuiltOption { method: Arc::new(method), units_per_usd: None })
        }
        Rail::Lightning => {
            let ln = accept.lightning.as_ref().ok_or_else(|| missing("lightning"))?;
            let option = PaymentOption {
                name: accept.name.clone().unwrap_or_else(|| "lightning".into()),
                network: Network::Other(format!("lightning:{}", ln.network)),
                asset: Asset { address: "sat".into(), symbol: "SAT".into(), decimals: 0, usd: false, eip712: None },
                pay_to: "lightning".into(),
                max_timeout_secs: accept.max_timeout_secs,
            };
            let ttl = ctx.config.server.challenge_ttl_secs;
            if ln.invoice_expiry_secs < ttl {
                return Err((
                    field("lightning.invoice_expiry_secs"),
                    format!(
                        "{} s is shorter than server.challenge_ttl_secs ({ttl} s): invoices would expire before \
                         their challenges",
                        ln.invoice_expiry_secs
                    ),
                ));
            }
            let timeout = Duration::from_secs(ln.timeout_secs.max(1));
            let backend = LndRest::new(&ln.lnd_url, &ln.macaroon_file, &ln.tls_cert_file, timeout)
                .map_err(|e| (field("lightning"), e.to_string()))?;
            let settings =
                LightningSettings { network: ln.network.clone(), invoice_expiry_secs: ln.invoice_expiry_secs };
            let method = LightningMethod::new(option, Arc::new(backend), settings, ctx.clock.clone())
                .map_err(|e| (field("lightning"), e.problem))?;
            Ok(BuiltOption { method: Arc::new(method), units_per_usd: ln.sats_per_usd })
        }
    }
}

/// The rails that pay on a chain: EIP-3009, tx-hash proofs, Tempo.
async fn chain_option(
    ctx: &mut RailContext<'_>,
    accept: &AcceptConfig,
    rail: Rail,
    field: &dyn Fn(&str) -> String,
) -> Result<BuiltOption, FieldError> {
    let missing = |name: &str| (field(name), format!("this rail needs `{name}`"));
    let network_name = accept.network.as_deref().ok_or_else(|| missing("network"))?;
    let network = resolve_network(&ctx.config.networks, network_name)?;
    let symbol = accept.asset.as_deref().ok_or_else(|| missing("asset"))?;
    let asset = network.assets.get(&symbol.to_ascii_uppercase()).ok_or_else(|| {
        let known: Vec<&str> = network.assets.values().map(|a| a.symbol.as_str()).collect();
        (field("asset"), format!("network {network_name:?} has no asset {symbol:?} (known: {})", known.join(", ")))
    })?;
    let address: Address = asset
        .address
        .parse()
        .map_err(|_| (format!("networks.{network_name}.assets.{symbol}.address"), "not an address".to_owned()))?;
    let pay_to_text = accept.pay_to.as_deref().ok_or_else(|| missing("pay_to"))?;
    let pay_to: Address = pay_to_text.parse().map_err(|_| (field("pay_to"), "not an address".to_owned()))?;
    if pay_to == Address::ZERO {
        return Err((field("pay_to"), "the zero address burns payments".into()));
    }
    let needed = match rail {
        Rail::Eip3009 => TransferMethod::Eip3009,
        Rail::Tempo => TransferMethod::Tip20,
        _ => TransferMethod::Erc20Transfer,
    };
    if !asset.transfers.contains(&needed) {
        return Err((field("rail"), format!("{symbol} on {network_name} cannot be paid through rail {rail:?}")));
    }
    let default_name = format!("{}-{}", asset.symbol, network_name).to_lowercase();
    let option = PaymentOption {
        name: accept.name.clone().unwrap_or(default_name),
        network: Network::Evm(network.chain_id),
        asset: Asset {
            address: address.to_checksum(None),
            symbol: asset.symbol.clone(),
            decimals: asset.decimals,
            usd: asset.usd,
            eip712: asset.eip712.clone().map(|(name, version)| Eip712Domain { name, version }),
        },
        pay_to: pay_to.to_checksum(None),
        max_timeout_secs: accept.max_timeout_secs,
    };
    let chain = ctx.chain(network_name, &network).await?;
    let rpc_needed =
        || (format!("networks.{network_name}.rpc_url"), format!("rail {rail:?} needs the chain's JSON-RPC URL"));
    let receipt_timeout = Duration::from_secs(network.config.receipt_timeout_secs);
    let poll_interval = Duration::from_millis(network.config.receipt_poll_ms.max(1));
    let method: Arc<dyn PaymentMethod> = match rail {
        Rail::Eip3009 => {
            let kind = accept.settlement.unwrap_or(if accept.settler_key.is_some() {
                SettlementKind::Builtin
            } else {
                SettlementKind::Facilitator
            });
            let settlement = match kind {
                SettlementKind::Builtin => {
                    let chain = chain.clone().ok_or_else(rpc_needed)?;
                    let key = accept.settler_key.as_ref().ok_or_else(|| missing("settler_key"))?;
                    let signer: PrivateKeySigner = key
                        .expose()
                        .trim()
                        .parse()
                        .map_err(|_| (field("settler_key"), "not a hex private key".to_owned()))?;
                    let sender = ctx
                        .senders
                        .entry((network_name.to_owned(), signer.address()))
                        .or_insert_with(|| Arc::new(TxSender::new(chain, signer)))
                        .clone();
                    Settlement::Builtin { sender, receipt_timeout, poll_interval }
                }
                SettlementKind::Facilitator => {
                    let url = accept.facilitator_url.as_deref().ok_or_else(|| missing("facilitator_url"))?;
                    let mut client = FacilitatorClient::new(url, Duration::from_secs(accept.facilitator_timeout_secs))
                        .map_err(|e| (field("facilitator_url"), e.to_string()))?;
                    match (&accept.cdp_api_key_id, &accept.cdp_api_key_secret) {
                        (Some(id), Some(secret)) => {
                            let key = CdpKey::new(id, secret.expose())
                                .map_err(|e| (field("cdp_api_key_secret"), e.to_string()))?;
                            client = client.with_cdp_key(Arc::new(key));
                        }
                        (None, None) => {}
                        (Some(_), None) => return Err(missing("cdp_api_key_secret")),
                        (None, Some(_)) => return Err(missing("cdp_api_key_id")),
                    }
                    Settlement::Facilitator(client)
                }
            };
            Arc::new(
                Eip3009Method::new(option, chain, settlement, ctx.clock.clone())
                    .map_err(|e| (field("asset"), e.problem))?,
            )
        }
        Rail::Txhash => {
            let settings = TxHashSettings {
                confirmations: accept.confirmations.unwrap_or(network.confirmations),
                proof_window_secs: accept.proof_window_secs,
            };
            let chain = chain.ok_or_else(rpc_needed)?;
            Arc::new(
                TxHashMethod::new(option, chain, settings, ctx.clock.clone())
                    .map_err(|e| (field("asset"), e.problem))?,
            )
        }
        _ => {
            let tempo = accept.tempo.clone().unwrap_or_default();
            let fee_payer = match &tempo.fee_payer_key {
                Some(key) => Some(
                    key.expose()
                        .trim()
                        .parse::<PrivateKeySigner>()
                        .map_err(|_| (field("tempo.fee_payer_key"), "not a hex private key".to_owned()))?,
                ),
                None => None,
            };
            let defaults = TempoSettings::default();
            let settings = TempoSettings {
                fee_payer,
                supported_modes: tempo.modes.unwrap_or(defaults.supported_modes.clone()),
                max_gas: tempo.max_gas.unwrap_or(defaults.max_gas),
                max_validity_secs: tempo.max_validity_secs.unwrap_or(defaults.max_validity_secs),
                receipt_timeout,
                poll_interval,
                ..defaults
            };
            let chain = chain.ok_or_else(rpc_needed)?;
            Arc::new(
                TempoMethod::new(option, chain, settings, ctx.clock.clone())
                    .map_err(|e| (field("asset"), e.problem))?,
            )
        }
    };
    Ok(BuiltOption { method, units_per_usd: None })
}
