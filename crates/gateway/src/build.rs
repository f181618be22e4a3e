//! Turns a [`Config`] into a running [`Gateway`]: opens the store, connects chains, builds one payment method
//! per accepted option and the offers of every route. Every error names the config field at fault.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use http::Method;

use paygate_chain::{Chain, RpcChain, TxSender};
use paygate_core::binding::ChallengeSecret;
use paygate_core::clock::{Clock, SystemClock};
use paygate_core::method::{Asset, Eip712Domain, PaymentMethod, PaymentOption};
use paygate_core::money::Price;
use paygate_core::network::Network;
use paygate_methods::eip3009::{Eip3009Method, Settlement};
use paygate_methods::facilitator::FacilitatorClient;
use paygate_store::Store;

use crate::config::{AcceptConfig, Config, ConfigError, SettlementKind};
use crate::engine::{Gateway, Route, Settings};
use crate::offers::{ResourceText, RouteOffer};
use crate::routes::{PathPattern, RouteMatcher};

/// Everything `build` makes.
#[derive(Debug)]
pub struct Built {
    pub gateway: Arc<Gateway>,
    /// Chains by network name, for health checks and tools.
    pub chains: BTreeMap<String, Arc<dyn Chain>>,
}

/// Options that change how a config is built, for tests and the devnet.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub clock: Arc<dyn Clock>,
    /// Chains supplied by the caller (the embedded devnet) by network name; used instead of `rpc_url`.
    pub chains: BTreeMap<String, Arc<dyn Chain>>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { clock: Arc::new(SystemClock), chains: BTreeMap::new() }
    }
}

/// Builds the gateway a config describes. `file` names the config in errors.
pub async fn build(config: &Config, file: &str, options: BuildOptions) -> Result<Built, ConfigError> {
    let err = |field: String, message: String| ConfigError { file: file.to_owned(), field, message };

    let secret = match &config.server.secret {
        Some(secret) => ChallengeSecret::new(secret.expose().as_bytes().to_vec())
            .map_err(|e| err("server.secret".into(), e.to_string()))?,
        None => {
            tracing::warn!("server.secret is not set: using a random one; challenges will not survive a restart");
            ChallengeSecret::new(alloy::primitives::B256::random().to_vec()).expect("32 random bytes")
        }
    };
    if config.server.challenge_ttl_secs == 0 {
        return Err(err("server.challenge_ttl_secs".into(), "must be at least 1".into()));
    }

    let store: Arc<dyn Store> =
        paygate_store::open(&config.store.url).await.map_err(|e| err("store.url".into(), e.to_string()))?;

    let mut chains = options.chains.clone();
    for (name, network) in &config.networks {
        if chains.contains_key(name) {
            continue;
        }
        let Some(url) = &network.rpc_url else { continue };
        let chain = RpcChain::new(url, network.chain_id, Duration::from_secs(network.rpc_timeout_secs))
            .map_err(|e| err(format!("networks.{name}.rpc_url"), e.to_string()))?;
        match chain.check().await {
            Ok(()) => {}
            Err(paygate_chain::ChainError::Unavailable(reason)) => {
                tracing::warn!(network = %name, %reason, "the chain is not reachable now; payments on it will fail until it is");
            }
            Err(e) => return Err(err(format!("networks.{name}.rpc_url"), e.to_string())),
        }
        chains.insert(name.clone(), Arc::new(chain));
    }

    let mut senders: HashMap<(String, Address), Arc<TxSender>> = HashMap::new();
    let mut methods: Vec<Arc<dyn PaymentMethod>> = Vec::new();
    for (i, accept) in config.accept.iter().enumerate() {
        let field = |name: &str| format!("accept[{i}].{name}");
        let method = build_method(config, accept, &chains, &mut senders, options.clock.clone(), &field)
            .map_err(|(f, m)| err(f, m))?;
        if methods.iter().any(|m| m.option().name == method.option().name) {
            return Err(err(field("name"), format!("{:?} is used by two options", method.option().name)));
        }
        methods.push(method);
    }

    let mut routes = Vec::new();
    for (i, route) in config.routes.iter().enumerate() {
        let field = |name: &str| format!("routes[{i}].{name}");
        let method = match route.method.as_deref() {
            None | Some("*") => None,
            Some(m) => Some(
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| err(field("method"), format!("{m:?} is not an HTTP method")))?,
            ),
        };
        let pattern = PathPattern::parse(&route.path).map_err(|e| err(field("path"), e.0))?;
        let mut offers = Vec::new();
        if let Some(price_text) = &route.price {
            let price = Price::parse(price_text).map_err(|e| err(field("price"), e.to_string()))?;
            price.check_minimum().map_err(|e| err(field("price"), e.to_string()))?;
            let chosen: Vec<&Arc<dyn PaymentMethod>> = match &route.accept {
                None => methods.iter().collect(),
                Some(names) => names
                    .iter()
                    .map(|name| {
                        methods
                            .iter()
                            .find(|m| m.option().name == *name)
                            .ok_or_else(|| err(field("accept"), format!("no payment option is named {name:?}")))
                    })
                    .collect::<Result<_, _>>()?,
            };
            if chosen.is_empty() {
                return Err(err(field("price"), "a priced route needs at least one [[accept]] option".into()));
            }
            for method in chosen {
                let asset = &method.option().asset;
                let amount = price
                    .in_asset(&asset.symbol, asset.usd, asset.decimals)
                    .map_err(|e| err(field("price"), format!("{e} (option {:?})", method.option().name)))?;
                offers.push(RouteOffer::new(method.clone(), amount));
            }
        } else if route.accept.is_some() {
            return Err(err(field("accept"), "a free route (no price) accepts no payment".into()));
        }
        let name = format!("{} {}", method.as_ref().map_or("*", |m| m.as_str()), route.path);
        routes.push(Route {
            name,
            matcher: RouteMatcher { method, pattern },
            offers,
            settle: route.settle,
            resource: ResourceText { description: route.description.clone(), mime_type: route.mime_type.clone() },
        });
    }

    let settings = Settings {
        realm: config.server.realm.clone(),
        public_url: config.server.public_url.clone(),
        challenge_ttl_secs: config.server.challenge_ttl_secs,
        max_body_bytes: config.server.max_body_bytes,
        unknown_routes: config.server.unknown_routes,
    };
    let gateway = Gateway::new(routes, secret, store, options.clock, settings);
    Ok(Built { gateway: Arc::new(gateway), chains })
}

fn build_method(
    config: &Config,
    accept: &AcceptConfig,
    chains: &BTreeMap<String, Arc<dyn Chain>>,
    senders: &mut HashMap<(String, Address), Arc<TxSender>>,
    clock: Arc<dyn Clock>,
    field: &dyn Fn(&str) -> String,
) -> Result<Arc<dyn PaymentMethod>, (String, String)> {
    let network = config
        .networks
        .get(&accept.network)
        .ok_or_else(|| (field("network"), format!("no [networks.{}] is configured", accept.network)))?;
    let asset = network
        .assets
        .get(&accept.asset)
        .ok_or_else(|| (field("asset"), format!("network {:?} has no asset {:?}", accept.network, accept.asset)))?;
    let asset_address: Address = asset.address.parse().map_err(|_| {
        (format!("networks.{}.assets.{}.address", accept.network, accept.asset), "not an address".to_owned())
    })?;
    let pay_to: Address = accept.pay_to.parse().map_err(|_| (field("pay_to"), "not an address".to_owned()))?;
    if pay_to == Address::ZERO {
        return Err((field("pay_to"), "the zero address burns payments".into()));
    }
    let eip712 = match (&asset.eip712_name, &asset.eip712_version) {
        (Some(name), Some(version)) => Some(Eip712Domain { name: name.clone(), version: version.clone() }),
        _ => None,
    };
    let option = PaymentOption {
        name: accept.name.clone().unwrap_or_else(|| format!("{}-{}", accept.asset, accept.network).to_lowercase()),
        network: Network::Evm(network.chain_id),
        asset: Asset {
            address: asset_address.to_checksum(None),
            symbol: accept.asset.clone(),
            decimals: asset.decimals,
            usd: asset.usd,
            eip712,
        },
        pay_to: pay_to.to_checksum(None),
        max_timeout_secs: accept.max_timeout_secs,
    };
    let chain = chains.get(&accept.network).cloned();
    let settlement = match accept.settlement {
        SettlementKind::Builtin => {
            let chain = chain.clone().ok_or_else(|| {
                (
                    format!("networks.{}.rpc_url", accept.network),
                    "built-in settlement needs the chain's RPC URL".to_owned(),
                )
            })?;
            let key = accept
                .settler_key
                .as_ref()
                .ok_or_else(|| (field("settler_key"), "built-in settlement needs a settler key".to_owned()))?;
            let signer: PrivateKeySigner =
                key.expose().trim().parse().map_err(|_| (field("settler_key"), "not a hex private key".to_owned()))?;
            let sender = senders
                .entry((accept.network.clone(), signer.address()))
                .or_insert_with(|| Arc::new(TxSender::new(chain, signer)))
                .clone();
            Settlement::Builtin {
                sender,
                receipt_timeout: Duration::from_secs(network.receipt_timeout_secs),
                poll_interval: Duration::from_millis(network.receipt_poll_ms.max(1)),
            }
        }
        SettlementKind::Facilitator => {
            let url = accept
                .facilitator_url
                .as_deref()
                .ok_or_else(|| (field("facilitator_url"), "facilitator settlement needs facilitator_url".to_owned()))?;
            let client = FacilitatorClient::new(url, Duration::from_secs(accept.facilitator_timeout_secs))
                .map_err(|e| (field("facilitator_url"), e.to_string()))?;
            Settlement::Facilitator(client)
        }
    };
    let method = Eip3009Method::new(option, chain, settlement, clock).map_err(|e| (field("asset"), e.problem))?;
    Ok(Arc::new(method))
}
