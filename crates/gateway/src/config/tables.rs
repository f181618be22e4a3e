//! The plain tables of the config file: `[server]`, `[upstream]`, `[store]`, `[limits]`, `[admin]`,
//! `[reconciler]`, and the file of `paygate facilitator`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use paygate_core::secret::Secret;
use paygate_methods::network::NetworkConfig;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::document::{OVERRIDE_PREFIX, apply_overrides, expand_env, parse_document, read};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// MPP realm; defaults to the request's `Host`.
    #[serde(default)]
    pub realm: Option<String>,
    /// Public base URL of the API, for x402's `resource.url`; defaults to `http://<Host>`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// How long a 402's offers stay payable.
    #[serde(default = "default_challenge_ttl")]
    pub challenge_ttl_secs: u64,
    /// HMAC key of the challenge ids, at least 32 bytes. Share it between instances. When absent a random key
    /// is made at start (challenges then do not survive a restart).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// What to do with requests no route matches.
    #[serde(default)]
    pub unknown_routes: UnknownRoutes,
    /// Largest request body paid routes accept (they buffer it to bind its digest).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Origins allowed by CORS; `[]` turns CORS off.
    #[serde(default = "default_cors")]
    pub cors_origins: Vec<String>,
    /// Largest request head (request line and headers) a connection may send; larger is refused (431).
    #[serde(default = "default_max_header")]
    pub max_header_bytes: usize,
    /// PEM certificate chain (leaf first) to serve HTTPS with; relative to the config file. With `tls_key_file`.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            realm: None,
            public_url: None,
            challenge_ttl_secs: default_challenge_ttl(),
            secret: None,
            unknown_routes: UnknownRoutes::default(),
            max_body_bytes: default_max_body(),
            cors_origins: default_cors(),
            max_header_bytes: default_max_header(),
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8402".into()
}
fn default_challenge_ttl() -> u64 {
    30
}
fn default_max_body() -> usize {
    1 << 20
}
fn default_max_header() -> usize {
    64 * 1024
}
fn default_cors() -> Vec<String> {
    vec!["*".into()]
}

/// Requests that match no route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownRoutes {
    /// 404 with a problem body; the upstream never sees them.
    #[default]
    Reject,
    /// Passed to the upstream untouched, like free routes.
    Proxy,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL of the API being sold.
    pub url: String,
    /// Longest wait for the upstream's response headers.
    #[serde(default = "default_upstream_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
}

fn default_upstream_timeout() -> u64 {
    30
}
fn default_connect_timeout() -> u64 {
    5
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://path` (relative paths are relative to the config file) or `sqlite::memory:`.
    #[serde(default = "default_store")]
    pub url: String,
}

impl StoreConfig {
    /// Reads only the `[store]` table of a configuration file (with its `PAYGATE_STORE_*` overrides), expanding
    /// only its environment references: what commands that read the ledger need, without the secrets of the rest
    /// (a Stripe key, a settler key).
    pub fn load(path: &Path) -> Result<StoreConfig, ConfigError> {
        let file = path.display().to_string();
        let err = |field: &str, message: String| ConfigError { file: file.clone(), field: field.into(), message };
        let mut value: toml::Value = toml::from_str(&read(path)?).map_err(|e| err("(file)", e.message().to_owned()))?;
        let overrides: Vec<(String, String)> =
            std::env::vars().filter(|(name, _)| name.starts_with("PAYGATE_STORE_")).collect();
        apply_overrides(&mut value, &overrides).map_err(|(field, message)| err(&field, message))?;
        let mut store = value.get("store").cloned().unwrap_or_else(|| toml::Value::Table(Default::default()));
        expand_env(&mut store, &mut "store".to_owned(), &|name| std::env::var(name).ok())
            .map_err(|(field, message)| err(&field, message))?;
        let mut store: StoreConfig =
            store.try_into().map_err(|e: toml::de::Error| err("store", e.message().to_owned()))?;
        store.resolve_relative_to(path);
        Ok(store)
    }

    /// Makes a relative `sqlite://` path relative to the config file at `path`.
    pub(super) fn resolve_relative_to(&mut self, path: &Path) {
        if let Some(rest) = self.url.strip_prefix("sqlite://")
            && !rest.starts_with('/')
            && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        {
            self.url = format!("sqlite://{}", PathBuf::from(dir).join(rest).display());
        }
    }
}

/// Rate limits; absent fields are unlimited.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests per minute from one client address (the TCP peer), on every route.
    #[serde(default)]
    pub per_ip_per_minute: Option<u32>,
    /// Verified payment attempts per minute from one payer.
    #[serde(default)]
    pub per_payer_per_minute: Option<u32>,
}

/// The admin listener: `/metrics`, `/health` and the admin API.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin listener (`127.0.0.1:9402`); none when absent. Keep it off the public network.
    #[serde(default)]
    pub listen: Option<String>,
    /// Bearer token of `/api/*`, at least 16 characters; write `"${PAYGATE_ADMIN_TOKEN}"`.
    #[serde(default)]
    pub token: Option<Secret>,
}

/// The shortest admin token accepted.
pub const MIN_ADMIN_TOKEN: usize = 16;

impl AdminConfig {
    /// The token, when the listener is on; errors name the field for `file`.
    pub fn checked_token(&self, file: &str) -> Result<Option<&str>, ConfigError> {
        if self.listen.is_none() {
            return Ok(None);
        }
        let err = |message: String| ConfigError { file: file.to_owned(), field: "admin.token".into(), message };
        match &self.token {
            None => Err(err("the admin listener needs a token: token = \"${PAYGATE_ADMIN_TOKEN}\"".into())),
            Some(token) if token.expose().len() < MIN_ADMIN_TOKEN => {
                Err(err(format!("must be at least {MIN_ADMIN_TOKEN} characters")))
            }
            Some(token) => Ok(Some(token.expose())),
        }
    }
}

/// The reconciler, which decides `pending` payments and those a stopped gateway left unfinished.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcilerConfig {
    /// Seconds between passes (the first runs at start); 0 runs none.
    #[serde(default = "default_reconcile_interval")]
    pub interval_secs: u64,
    /// Seconds a `verified` or `settling` payment must have been left alone before it is taken for abandoned
    /// by a gateway that stopped. Keep it above the upstream timeout and the receipt timeout.
    #[serde(default = "default_stale_after")]
    pub stale_after_secs: u64,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        ReconcilerConfig { interval_secs: default_reconcile_interval(), stale_after_secs: default_stale_after() }
    }
}

fn default_reconcile_interval() -> u64 {
    30
}
fn default_stale_after() -> u64 {
    300
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { url: default_store() }
    }
}

fn default_store() -> String {
    "sqlite://paygate.db".into()
}

/// The configuration file of `paygate facilitator`: the facilitator and the networks it settles on.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FacilitatorFile {
    pub facilitator: FacilitatorConfig,
    /// As in the gateway's file: built-in networks need no entry unless something is overridden.
    #[serde(default)]
    pub networks: BTreeMap<String, NetworkConfig>,
}

impl FacilitatorFile {
    /// Reads `path`, with `PAYGATE_<TABLE>_<FIELD>` overrides and `${ENV}` references from the environment.
    pub fn load(path: &Path) -> Result<FacilitatorFile, ConfigError> {
        // Only its own tables: the gateway's (`PAYGATE_SERVER_...`) may be set in the same environment.
        let own = |name: &str| {
            ["FACILITATOR_", "NETWORKS_"].iter().any(|t| name.starts_with(&format!("{OVERRIDE_PREFIX}{t}")))
        };
        let overrides: Vec<(String, String)> = std::env::vars().filter(|(name, _)| own(name)).collect();
        let env = |name: &str| std::env::var(name).ok();
        FacilitatorFile::parse_with(&read(path)?, &path.display().to_string(), &env, &overrides)
    }

    pub fn parse_with(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &[(String, String)],
    ) -> Result<FacilitatorFile, ConfigError> {
        parse_document(text, file, env, overrides)
    }
}

/// `[facilitator]`: an x402 facilitator settling EIP-3009 payments for any seller on the listed networks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FacilitatorConfig {
    /// Address to listen on.
    #[serde(default = "default_facilitator_listen")]
    pub listen: String,
    /// The key that submits settlements and pays their gas on every network; write `"${PAYGATE_SETTLER_KEY}"`.
    pub settler_key: Secret,
    /// The networks it settles on (built-in names or `[networks.<name>]` tables with an `rpc_url`).
    pub networks: Vec<String>,
}

fn default_facilitator_listen() -> String {
    "127.0.0.1:4020".into()
}
