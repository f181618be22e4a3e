//! The operator's configuration: a TOML file, read once at start, turned into checked types before anything is
//! built from it.
//!
//! String values may reference the environment as `${NAME}` or `${NAME:-default}`; secrets (the challenge
//! secret, settler keys) are expected to come that way and are held in [`Secret`], which never prints. A field
//! of `[server]`, `[upstream]`, `[store]` or `[networks.<name>]` can also be set by an environment variable named
//! after its path (`PAYGATE_SERVER_LISTEN`, `PAYGATE_STORE_URL`, `PAYGATE_NETWORKS_BASE_SEPOLIA_RPC_URL`), which
//! wins over the file (`document.rs`). Every error names the file, the field (`routes[1].price`) and what is
//! wrong.
//!
//! Raw to validated: the file is read into raw tables; each `[[accept]]` entry is then read by its rail's own
//! config type (`accept.rs`, through `paygate_methods::registry`), and each `[[routes]]` entry is checked into a
//! `RouteSpec` whose pricing is one rule (`route.rs`). What is built from a [`Config`] (`build.rs`) never
//! re-derives either.

mod accept;
mod document;
mod route;
mod tables;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use self::accept::AcceptConfig;
pub(crate) use self::document::OVERRIDE_PREFIX;
use self::document::{parse_document, read};
pub use self::route::{
    DiscoveryConfig, FreePer, MeterConfig, MeterUsage, Period, PriceHookConfig, PriceUnit, RouteConfig, SettleTiming,
    TierConfig,
};
pub(crate) use self::route::{FreeSpec, PriceSpec, RouteSpec};
pub use self::tables::{
    AdminConfig, FacilitatorConfig, FacilitatorFile, LimitsConfig, MIN_ADMIN_TOKEN, ReconcilerConfig, ServerConfig,
    StoreConfig, UnknownRoutes, UpstreamConfig,
};
pub use paygate_core::secret::Secret;
pub use paygate_methods::network::{AssetConfig, NetworkConfig};

/// A configuration error, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct ConfigError {
    pub file: String,
    /// The field's path (`routes[0].price`), or `(file)` for file-level errors.
    pub field: String,
    pub message: String,
}

/// The whole configuration file, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub store: StoreConfig,
    pub reconciler: ReconcilerConfig,
    pub admin: AdminConfig,
    pub limits: LimitsConfig,
    /// Networks by the name options refer to: built-in ones (`base`, `base-sepolia`, `ethereum`, `polygon`,
    /// `tempo`, `tempo-testnet`, `anvil`) need no entry unless something is overridden; others need `chain_id`.
    pub networks: BTreeMap<String, NetworkConfig>,
    /// The ways the seller accepts money, each read by its rail.
    pub accept: Vec<AcceptConfig>,
    pub routes: Vec<RouteConfig>,
    /// The routes, checked: what the gateway is built from.
    #[serde(skip)]
    pub(crate) route_specs: Vec<RouteSpec>,
}

/// The file as read, before each part is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: ServerConfig,
    upstream: UpstreamConfig,
    #[serde(default)]
    store: StoreConfig,
    #[serde(default)]
    reconciler: ReconcilerConfig,
    #[serde(default)]
    admin: AdminConfig,
    #[serde(default)]
    limits: LimitsConfig,
    #[serde(default)]
    networks: BTreeMap<String, NetworkConfig>,
    #[serde(default)]
    accept: Vec<accept::RawAccept>,
    #[serde(default)]
    routes: Vec<RouteConfig>,
}

impl Config {
    /// Reads, expands and parses a configuration file. Relative `sqlite://` paths and devnet state files are made
    /// relative to it.
    /// Fields named by `PAYGATE_<TABLE>_<FIELD>` environment variables override the file's.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        // `PAYGATE_FACILITATOR_...` is `paygate facilitator`'s, which may share the environment.
        let facilitator = format!("{OVERRIDE_PREFIX}FACILITATOR_");
        let overrides: Vec<(String, String)> = std::env::vars()
            .filter(|(name, _)| name.starts_with(OVERRIDE_PREFIX) && !name.starts_with(&facilitator))
            .collect();
        let env = |name: &str| std::env::var(name).ok();
        let mut config = Config::parse_with(&read(path)?, &path.display().to_string(), &env, &overrides)?;
        config.store.resolve_relative_to(path);
        if let Some(dir) = path.parent() {
            for file in [&mut config.server.tls_cert_file, &mut config.server.tls_key_file].into_iter().flatten() {
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
            }
            for network in config.networks.values_mut() {
                if let Some(file) = network.state_file.as_mut().filter(|f| f.is_relative()) {
                    *file = dir.join(&*file);
                }
            }
        }
        Ok(config)
    }

    /// Parses configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::parse_with_env(text, file, &|name| std::env::var(name).ok())
    }

    /// Parses configuration text, looking environment references up with `env`.
    pub fn parse_with_env(text: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Config::parse_with(text, file, env, &[])
    }

    /// Parses configuration text, looking environment references up with `env`, with the fields named by
    /// `overrides` (`PAYGATE_SERVER_LISTEN` and kin, with their values) set over the file's; then reads each
    /// option by its rail and checks each route.
    pub fn parse_with(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_document(text, file, env, overrides)?;
        let err = |field: String, message: String| ConfigError { file: file.to_owned(), field, message };
        let mut accept = Vec::with_capacity(raw.accept.len().max(1));
        for (i, entry) in raw.accept.into_iter().enumerate() {
            accept.push(entry.read(&raw.networks).map_err(|e| err(e.path(&format!("accept[{i}]")), e.message))?);
        }
        if accept.is_empty() {
            accept.push(devnet_accept());
        }
        let route_specs = raw
            .routes
            .iter()
            .enumerate()
            .map(|(i, route)| route.validate(&|name| format!("routes[{i}].{name}")).map_err(|(f, m)| err(f, m)))
            .collect::<Result<_, _>>()?;
        Ok(Config {
            server: raw.server,
            upstream: raw.upstream,
            store: raw.store,
            reconciler: raw.reconciler,
            admin: raw.admin,
            limits: raw.limits,
            networks: raw.networks,
            accept,
            routes: raw.routes,
            route_specs,
        })
    }

    /// Whether an option is paid on the embedded devnet (network `devnet` without an `rpc_url` of its own).
    pub fn uses_embedded_devnet(&self) -> bool {
        let overridden = self.networks.get(DEVNET).is_some_and(|n| n.rpc_url.is_some());
        !overridden && self.accept.iter().any(|a| a.settings.network() == Some(DEVNET))
    }
}

/// The embedded devnet's network name.
pub const DEVNET: &str = "devnet";

/// The option of a config that names none: test USDC on the embedded devnet, paid to dev account 9 and
/// settled by dev account 0 (the devnet funds both; test money only). Its rail is the one that claims it.
fn devnet_accept() -> AcceptConfig {
    let text = format!(
        "network = \"{DEVNET}\"\nasset = \"USDC\"\npay_to = \"{}\"\nsettlement = \"builtin\"\nsettler_key = \"{}\"\n",
        paygate_chain::devtoken::dev_account(9).address(),
        paygate_chain::devtoken::dev_account(0).to_bytes(),
    );
    let raw: accept::RawAccept = toml::from_str(&text).expect("the devnet option is valid");
    raw.read(&BTreeMap::new()).expect("the devnet option is valid")
}
