//! paygate itself, in process: built from config text the way `paygate serve` builds it (CORS, the paygate
//! layer, the reverse proxy) and served on a loopback port the kernel picks, for tests that pay it; and the
//! standard [`Seller`] the buyer's tests pay.

use std::sync::Arc;
use std::time::Duration;

use paygate_gateway::{BuildOptions, Config, CorsLayer, Gateway, PaygateLayer, UpstreamProxy, build, server};
use tower::ServiceBuilder;

use crate::{Devchain, Upstream};

/// A served gateway; it stops when dropped.
#[derive(Debug)]
pub struct ServedGateway {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub gateway: Arc<Gateway>,
    server: tokio::task::JoinHandle<()>,
}

impl ServedGateway {
    /// Builds `toml` (with `options`: a clock, injected chains) and serves it.
    pub async fn start(toml: &str, options: BuildOptions) -> ServedGateway {
        let config = Config::parse(toml, "test.toml").expect("test config parses");
        let built = build(&config, "test.toml", options).await.expect("test config builds");
        let proxy =
            UpstreamProxy::new(&config.upstream.url, Duration::from_secs(5), Duration::from_secs(2)).expect("proxy");
        let service = ServiceBuilder::new()
            .option_layer(CorsLayer::new(&config.server.cors_origins))
            .layer(PaygateLayer::new(built.gateway.clone()))
            .service(proxy);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            server::serve(listener, service, std::future::pending()).await.expect("gateway serves");
        });
        ServedGateway { base, gateway: built.gateway, server }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for ServedGateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// paygate selling `GET /v1/quote` at one cent (plus whatever `extra` config adds) in front of a test upstream,
/// paid in the test USDC on a chain and settled by the built-in settler, its ledger in a temporary directory:
/// the seller a buyer's tests pay.
#[derive(Debug)]
pub struct Seller {
    pub chain: Devchain,
    pub upstream: Upstream,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Holds the ledger; the tests may keep their own files here.
    pub dir: tempfile::TempDir,
    served: ServedGateway,
}

impl Seller {
    pub async fn start() -> Seller {
        Seller::start_with("").await
    }

    /// With `extra` (more `[[accept]]` options and `[[routes]]`) appended to the config.
    pub async fn start_with(extra: &str) -> Seller {
        Seller::around(Devchain::start(31337).await, extra).await
    }

    /// On `chain` (prepared by the test), with `extra` appended to the config.
    pub async fn around(chain: Devchain, extra: &str) -> Seller {
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

[[routes]]
method = "GET"
path = "/v1/quote"
price = "$0.01"

{extra}
"#,
            upstream = upstream.url(),
            db = dir.path().join("ledger.db").display(),
            accept = crate::local_usdc_toml(
                chain.chain_id,
                &chain.rpc_url,
                "receipt_timeout_secs = 30\nreceipt_poll_ms = 50",
                paygate_chain::devtoken::dev_account(9).address(),
                &crate::builtin_settlement(),
            ),
        );
        // The embedded devnet is handed to the gateway as the network `local`, which it cannot reach by RPC.
        let mut options = BuildOptions::default();
        if chain.is_embedded() {
            options.chains.insert("local".to_owned(), chain.chain.clone());
        }
        let served = ServedGateway::start(&toml, options).await;
        Seller { chain, upstream, base: served.base.clone(), dir, served }
    }

    pub fn url(&self, path: &str) -> String {
        self.served.url(path)
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.served.gateway
    }
}
