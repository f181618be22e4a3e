//! Our real gateway, in-process on a free port, in front of a real anvil and a test upstream: the seller the
//! client pays in these tests. (The minimal part of the gateway tests' `Harness::around`.)

#![allow(dead_code)]

use std::time::Duration;

use alloy::primitives::Address;
use paygate_chain::devtoken::{dev_account, test_usdc_address};
use paygate_client::{AssetBook, KnownAsset, PayingClient, Policy, SpendLog, Wallet};
use paygate_gateway::{BuildOptions, Config, PaygateLayer, UpstreamProxy, build, server};
use paygate_testkit::{Devchain, Upstream};
use tower::ServiceBuilder;

/// The price of `/v1/quote`: one cent, in atomic units of the 6-decimal test USDC (= micro-dollars).
pub const PRICE: u128 = 10_000;

pub fn pay_to() -> Address {
    dev_account(9).address()
}

pub fn payer() -> Address {
    dev_account(1).address()
}

/// A running gateway with its chain and upstream.
pub struct Seller {
    pub chain: Devchain,
    pub upstream: Upstream,
    pub base: String,
    _dir: tempfile::TempDir,
    _server: tokio::task::JoinHandle<()>,
}

impl Seller {
    pub async fn start() -> Seller {
        Seller::start_with("").await
    }

    /// With `extra_accept` (more `[[accept]]` options) appended to the config.
    pub async fn start_with(extra_accept: &str) -> Seller {
        Seller::around(Devchain::start(31337).await, extra_accept).await
    }

    /// On `chain` (prepared by the test), with `extra_accept` appended to the config.
    pub async fn around(chain: Devchain, extra_accept: &str) -> Seller {
        let upstream = Upstream::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let toml = format!(
            r#"
            [server]
            secret = "integration-test-secret-of-at-least-32-bytes"
            challenge_ttl_secs = 30

            [upstream]
            url = "{upstream}"
            timeout_secs = 5

            [store]
            url = "sqlite://{db}"

            {accept}
            {extra_accept}

            [[routes]]
            method = "GET"
            path = "/v1/quote"
            price = "$0.01"
            "#,
            upstream = upstream.url(),
            db = dir.path().join("ledger.db").display(),
            accept = paygate_testkit::local_usdc_toml(
                chain.chain_id,
                &chain.rpc_url,
                "receipt_timeout_secs = 30\nreceipt_poll_ms = 50",
                pay_to(),
                &paygate_testkit::builtin_settlement(),
            ),
        );
        let config = Config::parse(&toml, "test.toml").expect("test config parses");
        let built = build(&config, "test.toml", BuildOptions::default()).await.expect("test config builds");
        let proxy =
            UpstreamProxy::new(&config.upstream.url, Duration::from_secs(5), Duration::from_secs(2)).expect("proxy");
        let service = ServiceBuilder::new().layer(PaygateLayer::new(built.gateway.clone())).service(proxy);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            server::serve(listener, service, std::future::pending()).await.expect("gateway serves");
        });
        Seller { chain, upstream, base, _dir: dir, _server: server }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The test token, which the built-in registry does not know: a 6-decimal USD stablecoin on chain 31337.
pub fn local_assets() -> AssetBook {
    AssetBook::builtin().with(KnownAsset {
        chain_id: 31337,
        address: test_usdc_address(),
        symbol: "USDC".into(),
        decimals: 6,
        usd: true,
        eip712: Some(("USD Coin".into(), "2".into())),
    })
}

/// A client paying from dev account 1, with an in-memory spend log.
pub async fn client(policy: Policy) -> PayingClient {
    let log = SpendLog::in_memory().await.expect("spend log");
    PayingClient::new(reqwest::Client::new(), Wallet::from_signer(dev_account(1)), policy, log)
        .with_assets(local_assets())
}
