//! The gateway under test: built from a TOML config like an operator's, served in-process on a free port in
//! front of a real anvil and a test upstream, with a clock the test can move.

#![allow(dead_code)]

use std::sync::Arc;

use alloy::primitives::Address;
use paygate_chain::devtoken::dev_account;
use paygate_gateway::{BuildOptions, Gateway};
use paygate_proto::{b64, problem::Problem};
use paygate_store::{PaymentQuery, PaymentRecord};
use paygate_testkit::{Devchain, ServedGateway, ShiftedClock, Upstream};
use serde_json::Value;

/// anvil dev key 1: the payer the node clients use.
pub const PAYER_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
/// The key of dev account 15, which holds ETH but no test USDC.
pub fn broke_key() -> String {
    dev_account(15).to_bytes().to_string()
}

pub fn payer() -> Address {
    dev_account(1).address()
}

pub fn pay_to() -> Address {
    dev_account(9).address()
}

/// Knobs of a test gateway.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where payments settle: anvil over JSON-RPC, or the embedded devnet handed to the gateway.
    pub backend: Backend,
    pub chain_id: u64,
    pub settle: &'static str,
    /// Settle through this facilitator instead of the built-in settler.
    pub facilitator_url: Option<String>,
    pub receipt_timeout_secs: u64,
    /// The network's `lost_nonce_grace_secs`.
    pub lost_nonce_grace_secs: u64,
    pub anvil_args: Vec<&'static str>,
    /// `server.unknown_routes`.
    pub unknown_routes: &'static str,
    /// More config (extra `[[accept]]` options, networks), appended as is.
    pub extra_toml: String,
    /// The upstream the gateway sells, instead of the harness's own.
    pub upstream_url: Option<String>,
    /// Whether the gateway may ask the chain itself (its network has an `rpc_url`). Without, verification goes
    /// to the facilitator (anvil only).
    pub network_rpc: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: Backend::Anvil,
            chain_id: 31337,
            settle: "after",
            facilitator_url: None,
            receipt_timeout_secs: 30,
            lost_nonce_grace_secs: 30,
            anvil_args: paygate_testkit::MINING.to_vec(),
            unknown_routes: "reject",
            extra_toml: String::new(),
            upstream_url: None,
            network_rpc: true,
        }
    }
}

/// The chains the settlement suite runs on: the same tests, the same config, either chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Anvil,
    Devnet,
}

impl Backend {
    pub fn options(self) -> Options {
        Options { backend: self, ..Default::default() }
    }
}

/// Declares each settlement case as two tests, `<test>::anvil` and `<test>::devnet`: `test = case(args);`
/// runs `case(Backend::Anvil, args)` and `case(Backend::Devnet, args)`.
#[allow(unused_macros)]
macro_rules! on_both_chains {
    ($($test:ident = $case:ident($($arg:expr),*);)*) => {$(
        mod $test {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn anvil() {
                $case(common::Backend::Anvil $(, $arg)*).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn devnet() {
                $case(common::Backend::Devnet $(, $arg)*).await;
            }
        }
    )*};
}

/// A running gateway and everything around it.
pub struct Harness {
    pub chain: Devchain,
    pub upstream: Upstream,
    pub gateway: Arc<Gateway>,
    pub clock: Arc<ShiftedClock>,
    pub base: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
    _served: ServedGateway,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Harness {
        let chain = match options.backend {
            Backend::Anvil => Devchain::start_with(options.chain_id, &options.anvil_args).await,
            Backend::Devnet => Devchain::embedded(options.chain_id),
        };
        let upstream = Upstream::start().await;
        Harness::around(chain, upstream, options).await
    }

    /// A gateway in front of an existing chain and upstream.
    pub async fn around(chain: Devchain, upstream: Upstream, options: Options) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let settlement = match &options.facilitator_url {
            Some(url) => format!("settlement = \"facilitator\"\nfacilitator_url = \"{url}\""),
            None => paygate_testkit::builtin_settlement(),
        };
        let toml = format!(
            r#"
            [server]
            secret = "integration-test-secret-of-at-least-32-bytes"
            challenge_ttl_secs = 30
            unknown_routes = "{unknown_routes}"

            [upstream]
            url = "{upstream}"
            timeout_secs = 5

            [store]
            url = "sqlite://{db}"

            {accept}

            [[routes]]
            method = "GET"
            path = "/v1/quote"
            price = "$0.01"
            settle = "{settle}"
            description = "A stock quote"

            [[routes]]
            method = "GET"
            path = "/v1/other"
            price = "$0.01"

            [[routes]]
            method = "POST"
            path = "/v1/echo"
            price = "$0.02"
            settle = "{settle}"

            [[routes]]
            path = "/free"

            {extra}
            "#,
            upstream = options.upstream_url.clone().unwrap_or_else(|| upstream.url()),
            db = dir.path().join("ledger.db").display(),
            accept = if options.network_rpc {
                paygate_testkit::local_usdc_toml(
                    chain.chain_id,
                    &chain.rpc_url,
                    &format!(
                        "receipt_timeout_secs = {}\nreceipt_poll_ms = 50\nlost_nonce_grace_secs = {}",
                        options.receipt_timeout_secs, options.lost_nonce_grace_secs
                    ),
                    pay_to(),
                    &settlement,
                )
            } else {
                paygate_testkit::usdc_toml("local", chain.chain_id, "", pay_to(), &settlement)
            },
            settle = options.settle,
            unknown_routes = options.unknown_routes,
            extra = options.extra_toml,
        );
        let clock = Arc::new(ShiftedClock::default());
        let mut build_options = BuildOptions { clock: clock.clone(), ..Default::default() };
        if chain.is_embedded() && options.network_rpc {
            build_options.chains.insert("local".to_owned(), chain.chain.clone());
        }
        let served = ServedGateway::start(&toml, build_options).await;
        Harness {
            chain,
            upstream,
            gateway: served.gateway.clone(),
            clock,
            base: served.base.clone(),
            http: reqwest::Client::new(),
            _dir: dir,
            _served: served,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Serves the admin router of this gateway (its chain as network `local`, `token` for `/api/*`) on a
    /// loopback port; its base URL.
    pub async fn serve_admin(&self, token: &str) -> String {
        let mut chains = std::collections::BTreeMap::new();
        chains.insert("local".to_owned(), self.chain.chain.clone());
        let admin = paygate_gateway::Admin { gateway: self.gateway.clone(), chains, token: token.to_owned() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let router = paygate_gateway::admin_router(Arc::new(admin));
        tokio::spawn(async move { axum::serve(listener, router).await.expect("admin serves") });
        base
    }

    /// The directory of the ledger's database files.
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub async fn ledger(&self) -> Vec<PaymentRecord> {
        self.gateway.store().payments(&PaymentQuery::default()).await.expect("ledger")
    }

    /// Sends a request with one extra header.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        header: Option<(&str, &str)>,
        body: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.http.request(method.parse().expect("method"), self.url(path));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_owned());
        }
        request.send().await.expect("the gateway answers")
    }
}

/// A response's problem body, checked to be `application/problem+json`.
pub async fn problem(response: reqwest::Response) -> (u16, Problem) {
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(content_type, "application/problem+json", "status {status}");
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("a problem body: {text}")))
}

/// Decodes an x402 header (standard base64 JSON).
pub fn decode_x402(value: &str) -> Value {
    serde_json::from_slice(&b64::std_decode(value).expect("base64")).expect("JSON")
}

pub fn encode_x402(value: &Value) -> String {
    b64::std_encode(value.to_string().as_bytes())
}

/// Decodes an MPP credential header (`Payment <base64url JSON>`).
pub fn decode_mpp(value: &str) -> Value {
    let token = value.strip_prefix("Payment ").expect("Payment scheme");
    serde_json::from_slice(&b64::url_decode(token).expect("base64url")).expect("JSON")
}

pub fn encode_mpp(value: &Value) -> String {
    format!("Payment {}", b64::url_encode(value.to_string().as_bytes()))
}

/// The MPP `evm` session challenge of a 402.
pub fn session_challenge(response: &reqwest::Response) -> paygate_proto::mpp::Challenge {
    assert_eq!(response.status(), 402);
    response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .flat_map(|v| paygate_proto::mpp::parse_challenges(v.to_str().unwrap()))
        .filter_map(Result::ok)
        .find(|c| c.method == "evm" && c.intent == "session")
        .expect("the 402 offers an evm session")
}

/// The usual `(type, reason)` of a problem.
pub fn kind(problem: &Problem) -> (&str, &str) {
    (problem.kind.as_str(), problem.extensions.get("reason").and_then(Value::as_str).unwrap_or(""))
}

/// Sends `GET path` as written, bypassing URL normalization (which would resolve `..` before sending), and
/// returns the status code and the body.
pub async fn raw_get(base: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// paygate's paying client as `buyer`, knowing the dev chain's test USDC, paying channel offers with a deposit of
/// `session_deposit` micro-dollars within `policy`, its spend log `log`.
pub fn channel_client(
    buyer: &alloy::signers::local::PrivateKeySigner,
    policy: paygate_client::Policy,
    log: &paygate_client::SpendLog,
    session_deposit: u128,
) -> paygate_client::PayingClient {
    use paygate_client::{AssetBook, KnownAsset, PayingClient, Wallet};
    PayingClient::new(reqwest::Client::new(), Wallet::from_signer(buyer.clone()), policy, log.clone())
        .with_assets(AssetBook::builtin().with(KnownAsset::dev_test_usdc(31337)))
        .with_session_deposit(session_deposit)
}
