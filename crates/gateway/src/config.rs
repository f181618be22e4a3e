//! The operator's configuration: a TOML file, read once at start.
//!
//! String values may reference the environment as `${NAME}` or `${NAME:-default}`; secrets (the challenge
//! secret, settler keys) are expected to come that way and are held in [`Secret`], which never prints. A field
//! of `[server]`, `[upstream]`, `[store]` or `[networks.<name>]` can also be set by an environment variable named
//! after its path (`PAYGATE_SERVER_LISTEN`, `PAYGATE_STORE_URL`, `PAYGATE_NETWORKS_BASE_SEPOLIA_RPC_URL`), which
//! wins over the file. Every error names the file, the field (`routes[1].price`) and what is wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A configuration error, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct ConfigError {
    pub file: String,
    /// The field's path (`routes[0].price`), or `(file)` for file-level errors.
    pub field: String,
    pub message: String,
}

/// A secret string: its `Debug` never shows the value.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

/// Printed configs show that a secret is set, never its value.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<secret>")
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub reconciler: ReconcilerConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Networks by the name options refer to: built-in ones (`base`, `base-sepolia`, `ethereum`, `polygon`,
    /// `tempo`, `tempo-testnet`, `anvil`) need no entry unless something is overridden; others need `chain_id`.
    #[serde(default)]
    pub networks: BTreeMap<String, NetworkConfig>,
    /// The ways the seller accepts money.
    #[serde(default)]
    pub accept: Vec<AcceptConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

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
    fn resolve_relative_to(&mut self, path: &Path) {
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

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        field: "(file)".into(),
        message: format!("cannot read: {e}"),
    })
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { url: default_store() }
    }
}

fn default_store() -> String {
    "sqlite://paygate.db".into()
}

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

/// The payment rails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rail {
    /// A signed EIP-3009 authorization (x402 `exact` and MPP `evm`).
    Eip3009,
    /// Pay first, prove with the transaction hash (`X-402-Payment-Proof` and kin).
    Txhash,
    /// MPP `tempo`: a TIP-20 transfer on Tempo.
    Tempo,
    /// MPP `stripe`: a card through a Stripe Shared Payment Token.
    Stripe,
    /// MPP `lightning`: a BOLT11 invoice.
    Lightning,
}

/// One way the seller accepts money.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptConfig {
    /// Name for routes, the ledger and metrics; defaults to `<asset>-<network>` (lowercase), or the rail.
    #[serde(default)]
    pub name: Option<String>,
    /// The rail; by default `stripe` or `lightning` when that section is present, `tempo` on Tempo networks,
    /// `eip3009` for EIP-3009 tokens, `txhash` for other tokens.
    #[serde(default)]
    pub rail: Option<Rail>,
    /// A network name (chain rails).
    #[serde(default)]
    pub network: Option<String>,
    /// An asset symbol of that network (chain rails).
    #[serde(default)]
    pub asset: Option<String>,
    /// The seller's address (chain rails).
    #[serde(default)]
    pub pay_to: Option<String>,
    #[serde(default = "default_max_timeout")]
    pub max_timeout_secs: u64,
    /// `eip3009`: who submits the authorization; `builtin` when a settler key is given, else `facilitator`.
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
    /// `txhash`: confirmations required (default: the network's).
    #[serde(default)]
    pub confirmations: Option<u64>,
    /// `txhash`: how old a transfer may be and still pay.
    #[serde(default = "default_proof_window")]
    pub proof_window_secs: u64,
    #[serde(default)]
    pub tempo: Option<TempoConfig>,
    #[serde(default)]
    pub stripe: Option<StripeConfig>,
    #[serde(default)]
    pub lightning: Option<LightningConfig>,
}

/// `[accept.tempo]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TempoConfig {
    /// Key that co-signs and pays the fees of pull transactions; without it payers pay their own fees.
    #[serde(default)]
    pub fee_payer_key: Option<Secret>,
    /// `["pull", "push"]` by default.
    #[serde(default)]
    pub modes: Option<Vec<String>>,
    /// Sponsor policy: the highest gas limit co-signed (default 2,000,000).
    #[serde(default)]
    pub max_gas: Option<u64>,
    /// Sponsor policy: the longest validity window co-signed (default 900 s).
    #[serde(default)]
    pub max_validity_secs: Option<u64>,
}

/// `[accept.stripe]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// `sk_...`, from the environment.
    pub secret_key: Secret,
    #[serde(default = "default_stripe_api")]
    pub api_base: String,
    /// The seller's Stripe Business Network profile id.
    #[serde(default)]
    pub network_id: Option<String>,
    #[serde(default = "default_payment_method_types")]
    pub payment_method_types: Vec<String>,
    /// Smallest charge offered, in cents; default: Stripe's minimum for the currency ($0.50), under which Stripe
    /// refuses card charges.
    #[serde(default)]
    pub min_amount_cents: Option<u64>,
    #[serde(default = "default_stripe_timeout")]
    pub timeout_secs: u64,
    /// The form field that carries the buyer's token.
    #[serde(default = "default_token_param")]
    pub token_param: String,
}

/// `[accept.lightning]`: an LND node's REST API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LightningConfig {
    pub lnd_url: String,
    pub macaroon_file: String,
    pub tls_cert_file: String,
    /// `bitcoin`, `testnet`, `signet` or `regtest`.
    #[serde(default = "default_ln_network")]
    pub network: String,
    /// Satoshis per US dollar, for routes priced in `$`; without it only routes priced in `SAT` offer Lightning.
    #[serde(default)]
    pub sats_per_usd: Option<u64>,
    #[serde(default = "default_invoice_expiry")]
    pub invoice_expiry_secs: u64,
    #[serde(default = "default_stripe_timeout")]
    pub timeout_secs: u64,
}

fn default_proof_window() -> u64 {
    600
}
fn default_stripe_api() -> String {
    "https://api.stripe.com".into()
}
fn default_payment_method_types() -> Vec<String> {
    vec!["card".into()]
}
fn default_stripe_timeout() -> u64 {
    20
}
fn default_token_param() -> String {
    "shared_payment_granted_token".into()
}
fn default_ln_network() -> String {
    "bitcoin".into()
}
fn default_invoice_expiry() -> u64 {
    600
}

fn default_max_timeout() -> u64 {
    60
}
fn default_facilitator_timeout() -> u64 {
    30
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SettlementKind {
    Builtin,
    Facilitator,
}

/// One route of the upstream API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// HTTP method, or absent for any.
    #[serde(default)]
    pub method: Option<String>,
    /// `/exact`, `/items/{id}` (one segment), `/files/*` (the rest).
    pub path: String,
    /// `"$0.01"` or `"0.5 USDC"`; absent for a free route.
    #[serde(default)]
    pub price: Option<String>,
    /// Option names this route accepts; all when absent.
    #[serde(default)]
    pub accept: Option<Vec<String>>,
    /// Settle after the upstream answered (default, never charges for a failed call) or before proxying.
    #[serde(default)]
    pub settle: SettleTiming,
    #[serde(default)]
    pub description: Option<String>,
    /// Media type of the response, for x402's `resource.mimeType`.
    #[serde(default)]
    pub mime_type: Option<String>,
    /// Makes `price` a price per unit of the request, counted before it runs.
    #[serde(default)]
    pub per: Option<PriceUnit>,
    /// The JSON field of the body the units are counted in (`$.input`), for `character`, `item`, `second`,
    /// `minute`.
    #[serde(default)]
    pub field: Option<String>,
    /// The query parameter holding the seconds, for `second` and `minute` (instead of `field`).
    #[serde(default)]
    pub query: Option<String>,
    /// The least a request of a per-unit route costs.
    #[serde(default)]
    pub min_price: Option<String>,
    /// The most a request of a per-unit route costs.
    #[serde(default)]
    pub max_price: Option<String>,
    /// Also serve `Authorization: Bearer <key>` for the keys of `paygate keys create`, metering each call.
    #[serde(default)]
    pub api_keys: bool,
    /// Calls served free per client IP or per payer in each `period`, before payment is asked.
    #[serde(default)]
    pub free_calls: Option<u64>,
    /// Whom `free_calls` are counted for (default: the client IP).
    #[serde(default)]
    pub free_per: Option<FreePer>,
    /// The calendar period (UTC) calls are counted in, for `free_calls` and `tiers` (default: a day).
    #[serde(default)]
    pub period: Option<Period>,
    /// The price of a call by how many calls its payer made on the route in the period (instead of `price`).
    #[serde(default)]
    pub tiers: Option<Vec<TierConfig>>,
    /// An HTTP service that prices each request (instead of `price`).
    #[serde(default)]
    pub price_hook: Option<PriceHookConfig>,
}

/// Whom free calls are counted for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FreePer {
    /// The client's address (the TCP peer): no payment is asked while it has free calls left.
    #[default]
    Ip,
    /// The payer's address, known from a verified payment that is then not settled.
    Payer,
}

/// A calendar period in UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Hour,
    #[default]
    Day,
    /// From Monday 00:00 UTC.
    Week,
    Month,
}

/// One step of a route's usage tiers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// How many calls of the period this tier covers; absent for the last tier, which has no end.
    #[serde(default)]
    pub calls: Option<u64>,
    /// The price of each call in this tier; `"$0"` for free calls.
    pub price: String,
}

/// A pricing service paygate asks for each request's price.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceHookConfig {
    /// `http://` or `https://` URL that paygate POSTs the request's description to.
    pub url: String,
    /// How long paygate waits for the answer.
    #[serde(default = "default_price_hook_timeout")]
    pub timeout_ms: u64,
    /// Request headers passed on to the hook, by name.
    #[serde(default)]
    pub headers: Vec<String>,
    /// The price when the hook fails; without it, requests are refused (503) while the hook fails.
    #[serde(default)]
    pub fallback_price: Option<String>,
}

fn default_price_hook_timeout() -> u64 {
    500
}

/// What a per-unit price counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PriceUnit {
    /// Bytes of the request body.
    Byte,
    /// Characters (Unicode scalar values) of a JSON string field.
    Character,
    /// Items of a JSON array field.
    Item,
    /// Seconds, from a numeric JSON field or query parameter (a fraction counts as a whole second).
    Second,
    /// Started minutes of a number of seconds from a JSON field or query parameter.
    Minute,
}

/// When a route's payments are settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SettleTiming {
    #[default]
    After,
    Before,
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
    /// `overrides` (`PAYGATE_SERVER_LISTEN` and kin, with their values) set over the file's.
    pub fn parse_with(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut config: Config = parse_document(text, file, env, overrides)?;
        if config.accept.is_empty() {
            config.accept.push(devnet_accept());
        }
        Ok(config)
    }

    /// Whether an option is paid on the embedded devnet (network `devnet` without an `rpc_url` of its own).
    pub fn uses_embedded_devnet(&self) -> bool {
        let overridden = self.networks.get(DEVNET).is_some_and(|n| n.rpc_url.is_some());
        !overridden && self.accept.iter().any(|a| a.network.as_deref() == Some(DEVNET))
    }
}

/// Parses a TOML document into `T` as every paygate configuration file is read: the `overrides` set over the
/// file's fields, then `${ENV}` references expanded with `env`; errors name the file and the field.
fn parse_document<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &[(String, String)],
) -> Result<T, ConfigError> {
    let err = |field: String, message: String| ConfigError { file: file.to_owned(), field, message };
    let mut value: toml::Value = toml::from_str(text).map_err(|e| {
        let message = e.message().to_owned();
        let field = e
            .span()
            .map(|span| {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}")
            })
            .unwrap_or_else(|| "(file)".into());
        err(field, message)
    })?;
    apply_overrides(&mut value, overrides).map_err(|(field, message)| err(field, message))?;
    expand_env(&mut value, &mut String::new(), env).map_err(|(field, message)| err(field, message))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        err(if field == "." { "(file)".into() } else { field }, e.into_inner().message().to_owned())
    })
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

/// The embedded devnet's network name.
pub const DEVNET: &str = "devnet";

/// The option of a config that names none: test USDC on the embedded devnet, paid to dev account 9 and
/// settled by dev account 0 (the devnet funds both; test money only).
fn devnet_accept() -> AcceptConfig {
    let text = format!(
        "network = \"{DEVNET}\"\nasset = \"USDC\"\npay_to = \"{}\"\nsettlement = \"builtin\"\nsettler_key = \"{}\"\n",
        paygate_chain::devtoken::dev_account(9).address(),
        paygate_chain::devtoken::dev_account(0).to_bytes(),
    );
    toml::from_str(&text).expect("the devnet option is valid")
}

/// The prefix of environment variables that set config fields.
pub const OVERRIDE_PREFIX: &str = "PAYGATE_";

/// `PAYGATE_SERVER_LISTEN` and kin: a field of `[server]`, `[upstream]`, `[store]`, `[reconciler]`, `[admin]`,
/// `[limits]` or `[facilitator]`, or of `[networks.<name>]`
/// (the name in capitals, `-` as `_`: `PAYGATE_NETWORKS_BASE_SEPOLIA_RPC_URL`). Other `PAYGATE_` variables are
/// not config fields and are left alone. The value keeps the type of the file's value when there is one, else
/// reads as a TOML value (`30`, `true`, `["*"]`) or, failing that, a string.
fn apply_overrides(value: &mut toml::Value, overrides: &[(String, String)]) -> Result<(), (String, String)> {
    let Some(root) = value.as_table_mut() else { return Ok(()) };
    let mut networks: Vec<String> =
        root.get("networks").and_then(toml::Value::as_table).map(|t| t.keys().cloned().collect()).unwrap_or_default();
    networks.extend(paygate_core::registry::NETWORKS.iter().map(|n| n.name.to_owned()));
    networks.push(DEVNET.to_owned());
    // The longest name first, so that `BASE_SEPOLIA_` is not read as `BASE_` + `SEPOLIA_...`.
    networks.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for (name, raw) in overrides {
        let Some(rest) = name.strip_prefix(OVERRIDE_PREFIX) else { continue };
        let (tables, field): (Vec<String>, &str) = if let Some(table) =
            ["SERVER", "UPSTREAM", "STORE", "RECONCILER", "ADMIN", "LIMITS", "FACILITATOR"]
                .iter()
                .find(|t| rest.starts_with(&format!("{t}_")))
        {
            (vec![table.to_ascii_lowercase()], &rest[table.len() + 1..])
        } else if let Some(after) = rest.strip_prefix("NETWORKS_") {
            let upper = |n: &str| n.to_ascii_uppercase().replace('-', "_");
            let Some(network) = networks.iter().find(|n| after.starts_with(&format!("{}_", upper(n)))) else {
                return Err((name.clone(), "names no network of the file or the registry".to_owned()));
            };
            (vec!["networks".to_owned(), network.clone()], &after[network.len() + 1..])
        } else {
            continue;
        };
        let mut table = &mut *root;
        for key in &tables {
            let entry = table.entry(key.clone()).or_insert_with(|| toml::Value::Table(Default::default()));
            table = entry.as_table_mut().ok_or_else(|| (key.clone(), "is not a table".to_owned()))?;
        }
        let field = field.to_ascii_lowercase();
        let parsed = match table.get(&field) {
            Some(toml::Value::String(_)) => toml::Value::String(raw.clone()),
            _ => toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.clone())),
        };
        table.insert(field, parsed);
    }
    Ok(())
}

/// Replaces `${NAME}` and `${NAME:-default}` in every string value; `path` tracks the field for errors.
fn expand_env(
    value: &mut toml::Value,
    path: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match value {
        toml::Value::String(s) if s.contains("${") => {
            *s = expand_str(s, env).map_err(|m| (path.clone(), m))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                expand_env(item, path, env)?;
                path.truncate(len);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                expand_env(item, path, env)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_str(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| "unterminated ${...} reference".to_owned())?;
        let reference = &after[..end];
        let (name, default) = match reference.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (reference, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("${{{reference}}} is not an environment reference"));
        }
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [upstream]
        url = "http://127.0.0.1:9000"
    "#;

    #[test]
    fn the_store_table_loads_without_the_rest_of_the_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        let text = "[store]\nurl = \"sqlite://${PAYGATE_TEST_UNSET_DB:-ledger.db}\"\n\n[[accept]]\nrail = \"stripe\"\n\
                    [accept.stripe]\nsecret_key = \"${PAYGATE_TEST_UNSET_STRIPE_KEY}\"\n";
        std::fs::write(&path, text).unwrap();
        let err = Config::load(&path).unwrap_err();
        assert_eq!(err.field, "accept[0].stripe.secret_key", "the whole config needs the key");
        let store = StoreConfig::load(&path).expect("the store alone does not");
        assert_eq!(store.url, format!("sqlite://{}", dir.path().join("ledger.db").display()));
        std::fs::write(&path, "[store]\nurl = \"${PAYGATE_TEST_UNSET_DB}\"\n").unwrap();
        assert_eq!(StoreConfig::load(&path).unwrap_err().field, "store.url");
    }

    #[test]
    fn environment_variables_named_after_a_field_override_the_file() {
        let text = "[server]\nlisten = \"127.0.0.1:8402\"\nsecret = \"12345678901234567890123456789012345\"\n\n\
                    [upstream]\nurl = \"http://127.0.0.1:9000\"\n";
        let vars = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        let overrides = vars(&[
            ("PAYGATE_SERVER_LISTEN", "0.0.0.0:9402"),
            // A string in the file stays a string, even made of digits.
            ("PAYGATE_SERVER_SECRET", "98765432109876543210987654321098765"),
            ("PAYGATE_SERVER_CHALLENGE_TTL_SECS", "60"),
            ("PAYGATE_SERVER_CORS_ORIGINS", r#"["https://app.example"]"#),
            ("PAYGATE_STORE_URL", "postgres://paygate@db/paygate"),
            ("PAYGATE_NETWORKS_BASE_SEPOLIA_RPC_URL", "https://sepolia.example"),
            ("PAYGATE_RECONCILER_INTERVAL_SECS", "5"),
            ("PAYGATE_ADMIN_LISTEN", "127.0.0.1:9403"),
            ("PAYGATE_ADMIN_TOKEN", "a-token-from-the-environment"),
            // Not config fields: left alone.
            ("PAYGATE_LOG", "debug"),
            ("PAYGATE_WALLET_KEY", "0x01"),
        ]);
        let config = Config::parse_with(text, "t.toml", &|_| None, &overrides).unwrap();
        assert_eq!(config.server.listen, "0.0.0.0:9402");
        assert_eq!(config.server.secret.as_ref().map(Secret::expose), Some("98765432109876543210987654321098765"));
        assert_eq!(config.server.challenge_ttl_secs, 60);
        assert_eq!(config.server.cors_origins, ["https://app.example"]);
        assert_eq!(config.store.url, "postgres://paygate@db/paygate");
        assert_eq!(config.networks["base-sepolia"].rpc_url.as_deref(), Some("https://sepolia.example"));
        assert_eq!(config.reconciler.interval_secs, 5);
        assert_eq!(config.admin.listen.as_deref(), Some("127.0.0.1:9403"));
        assert_eq!(config.admin.checked_token("t.toml").unwrap(), Some("a-token-from-the-environment"));

        let err = Config::parse_with(text, "t.toml", &|_| None, &vars(&[("PAYGATE_SERVER_LISTN", "x")])).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
        let err = Config::parse_with(text, "t.toml", &|_| None, &vars(&[("PAYGATE_NETWORKS_MARS_RPC_URL", "x")]))
            .unwrap_err();
        assert!(err.to_string().contains("PAYGATE_NETWORKS_MARS_RPC_URL"), "{err}");
    }

    #[test]
    fn a_printed_config_masks_its_secrets() {
        let text = "[server]\nsecret = \"a-secret-of-at-least-thirty-two-bytes!!\"\n[upstream]\nurl = \"http://x\"\n";
        let printed = toml::to_string(&Config::parse(text, "t.toml").unwrap()).unwrap();
        assert!(printed.contains("secret = \"<secret>\""), "{printed}");
        assert!(!printed.contains("thirty-two"), "{printed}");
        // The devnet option a config without options gets, its settler key masked too.
        assert!(printed.contains("settler_key = \"<secret>\""), "{printed}");
    }

    #[test]
    fn minimal_config_has_defaults() {
        let c = Config::parse(MINIMAL, "x.toml").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8402");
        assert_eq!(c.server.challenge_ttl_secs, 30);
        assert_eq!(c.server.unknown_routes, UnknownRoutes::Reject);
        assert_eq!(c.store.url, "sqlite://paygate.db");
    }

    #[test]
    fn errors_name_file_and_field() {
        let text = format!("{MINIMAL}\n[[routes]]\npath = \"/a\"\nprice = 3\n");
        let e = Config::parse(&text, "gw.toml").unwrap_err();
        assert_eq!(e.file, "gw.toml");
        assert_eq!(e.field, "routes[0].price");
        assert!(e.message.contains("string"), "{e}");
        let e = Config::parse("[server]\nlisten = \"x\"\n", "gw.toml").unwrap_err();
        assert!(e.message.contains("upstream"), "{e}");
        let e = Config::parse(&format!("{MINIMAL}\n[server]\nlisten = \"x\"\nbogus = 1\n"), "gw.toml").unwrap_err();
        assert_eq!(e.field, "server.bogus");
        assert!(e.message.contains("bogus"), "{e}");
        let e = Config::parse("[upstream\n", "gw.toml").unwrap_err();
        assert_eq!(e.field, "line 1");
    }

    #[test]
    fn environment_references_expand_and_secrets_do_not_print() {
        let env = |name: &str| (name == "PAYGATE_TEST_SECRET_X").then(|| "s3cr3t-value".to_owned());
        let text = format!(
            "{MINIMAL}\n[server]\nsecret = \"${{PAYGATE_TEST_SECRET_X}}\"\nrealm = \"${{PAYGATE_TEST_UNSET_Y:-api.example}}\"\n"
        );
        let c = Config::parse_with_env(&text, "x.toml", &env).unwrap();
        assert_eq!(c.server.secret.as_ref().unwrap().expose(), "s3cr3t-value");
        assert_eq!(c.server.realm.as_deref(), Some("api.example"));
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let e = Config::parse_with_env(
            &format!("{MINIMAL}\n[server]\nsecret = \"${{PAYGATE_TEST_UNSET_Z}}\"\n"),
            "x.toml",
            &env,
        )
        .unwrap_err();
        assert_eq!(e.field, "server.secret");
        assert!(e.message.contains("PAYGATE_TEST_UNSET_Z"));
    }
}
