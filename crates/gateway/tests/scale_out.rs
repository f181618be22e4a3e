//! Several paygate instances on one PostgreSQL ledger, as behind a load balancer: a credential sent to two
//! instances fifty times at once is paid once (one 200, one upstream call, one transfer on chain), a claim
//! outlives the instances that made it, and a channel paid through both in turn charges every call once.

use futures_util::future::join_all;
use paygate_chain::devtoken::dev_account;
use paygate_store::PaymentQuery;
use paygate_testkit::postgres::PgServer;
use paygate_testkit::{Devchain, MINING, ServedGateway, Upstream, node};

/// Both instances share the secret, realm and public URL, so they issue and accept the same challenges.
fn config(upstream: &str, chain: &Devchain, store_url: &str) -> String {
    format!(
        r#"
        [server]
        secret = "scale-out-test-secret-of-at-least-32-bytes"
        realm = "api.test"
        public_url = "http://api.test"

        [upstream]
        url = "{upstream}"

        [store]
        url = "{store_url}"

        {accept}

        [[routes]]
        method = "GET"
        path = "/v1/quote"
        price = "$0.01"
        "#,
        accept = paygate_testkit::local_usdc_toml(
            chain.chain_id,
            &chain.rpc_url,
            "receipt_poll_ms = 50",
            dev_account(9).address(),
            &paygate_testkit::builtin_settlement()
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgres_pay_a_credential_once() {
    let postgres = tokio::task::spawn_blocking(PgServer::start).await.expect("PostgreSQL starts");
    let store_url = postgres.database().await;
    let chain = Devchain::start_with(31337, MINING).await;
    let upstream = Upstream::start().await;
    let toml = config(&upstream.url(), &chain, &store_url);
    let (a, b) =
        (ServedGateway::start(&toml, Default::default()).await, ServedGateway::start(&toml, Default::default()).await);
    let (payer, seller) = (dev_account(1).address(), dev_account(9).address());
    let before = chain.balance(seller).await;

    // The official client signs against instance A; the copies go to A and B alike.
    let (name, value) = node::sign("x402", &a.url("/v1/quote"), &[]).await;
    let http = reqwest::Client::new();
    let sends = (0..50).map(|i| {
        let url = if i % 2 == 0 { a.url("/v1/quote") } else { b.url("/v1/quote") };
        http.get(url).header(&name, &value).send()
    });
    let statuses: Vec<u16> =
        join_all(sends).await.into_iter().map(|r| r.expect("an answer").status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| [200, 403, 409].contains(s)), "{statuses:?}");
    assert_eq!(upstream.hits(), 1, "one request reached the upstream");
    assert_eq!(chain.transfers(payer, seller).await, 1, "one transfer on chain");
    assert_eq!(chain.balance(seller).await - before, 10_000);
    let ledger = a.gateway.store().payments(&PaymentQuery::default()).await.expect("ledger");
    assert_eq!(ledger.len(), 1, "one row, seen from either instance");

    // Both instances stop; a new one on the same database still refuses the spent credential.
    drop((a, b));
    let c = ServedGateway::start(&toml, Default::default()).await;
    let again = http.get(c.url("/v1/quote")).header(&name, &value).send().await.expect("an answer");
    assert_eq!(again.status(), 403);
    assert_eq!(upstream.hits(), 1);
    assert_eq!(chain.transfers(payer, seller).await, 1);
}

/// An x402 payment identifier's answer is kept in the shared store: a client whose first request went to one
/// instance gets the same answer from another, charged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_instance_gives_a_payment_identifiers_first_answer() {
    let postgres = tokio::task::spawn_blocking(PgServer::start).await.expect("PostgreSQL starts");
    let store_url = postgres.database().await;
    let chain = Devchain::start_with(31337, MINING).await;
    let upstream = Upstream::start().await;
    let toml = config(&upstream.url(), &chain, &store_url);
    let (a, b) =
        (ServedGateway::start(&toml, Default::default()).await, ServedGateway::start(&toml, Default::default()).await);
    let (payer, seller) = (dev_account(1).address(), dev_account(9).address());
    let id = ["--payment-id", "pay_0123456789abcdef0123456789abcdef"];
    let (name, value) = node::sign("x402", &a.url("/v1/quote"), &id).await;
    let http = reqwest::Client::new();
    let first = http.get(a.url("/v1/quote")).header(&name, &value).send().await.expect("an answer");
    assert_eq!(first.status(), 200);
    let receipt = first.headers()["payment-response"].clone();
    let again = http.get(b.url("/v1/quote")).header(&name, &value).send().await.expect("an answer");
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["payment-response"], receipt);
    assert_eq!(upstream.hits(), 1);
    assert_eq!(chain.transfers(payer, seller).await, 1);
}

/// A payer's rate limit is kept in the shared store: its allowance holds across instances, not once per instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payers_rate_limit_holds_across_instances() {
    let postgres = tokio::task::spawn_blocking(PgServer::start).await.expect("PostgreSQL starts");
    let store_url = postgres.database().await;
    let chain = Devchain::start_with(31337, MINING).await;
    let upstream = Upstream::start().await;
    let toml = format!("{}\n[limits]\nper_payer_per_minute = 1\n", config(&upstream.url(), &chain, &store_url));
    let (a, b) =
        (ServedGateway::start(&toml, Default::default()).await, ServedGateway::start(&toml, Default::default()).await);
    let first = node::client(&["x402", "pay", &a.url("/v1/quote")]).await;
    assert_eq!(first["status"], 200, "{first}");
    let (name, value) = node::sign("x402", &b.url("/v1/quote"), &[]).await;
    let refused = reqwest::Client::new().get(b.url("/v1/quote")).header(name, value).send().await.expect("an answer");
    assert_eq!(refused.status(), 429);
    let problem: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(problem["reason"], "payer_rate_limited");
    assert_eq!(upstream.hits(), 1);
    assert_eq!(chain.transfers(dev_account(1).address(), dev_account(9).address()).await, 1);
}

/// One x402 `batch-settlement` channel paid through two instances in turn (the official client, a new process
/// each time): each instance starts its writes from the channel as it last wrote it, which the other's calls make
/// stale, and the compare-and-swap still charges every call exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_charge_one_channel_exactly_whichever_serves_each_call() {
    let postgres = tokio::task::spawn_blocking(PgServer::start).await.expect("PostgreSQL starts");
    let store_url = postgres.database().await;
    let chain = Devchain::start_with(31337, MINING).await;
    let upstream = Upstream::start().await;
    let channel = format!(
        r#"
        [[accept]]
        name = "channel"
        rail = "batch-settlement"
        network = "local"
        asset = "USDC"
        pay_to = "{}"
        settler_key = "{}"
        claim_every_secs = 3600
        "#,
        dev_account(9).address(),
        paygate_testkit::SETTLER_KEY
    );
    let toml = format!("{}\n{channel}", config(&upstream.url(), &chain, &store_url));
    let (a, b) =
        (ServedGateway::start(&toml, Default::default()).await, ServedGateway::start(&toml, Default::default()).await);
    let first = node::channel(&a.url("/v1/quote"), &chain.rpc_url, &["--calls", "3", "--deposit", "100000"]).await;
    assert_eq!(first["statuses"], serde_json::json!([200, 200, 200]), "{first}");
    for instance in [&b, &a, &b] {
        let more = node::channel(&instance.url("/v1/quote"), &chain.rpc_url, &["--calls", "2"]).await;
        assert_eq!(more["statuses"], serde_json::json!([200, 200]), "{more}");
    }
    let channels = a.gateway.store().channels(10).await.expect("channels");
    assert_eq!(channels.len(), 1);
    assert_eq!((channels[0].charged, channels[0].reserved(), channels[0].deposit), (90_000, 0, 100_000));
    assert_eq!(upstream.hits(), 9);
    let ledger = b.gateway.store().payments(&PaymentQuery::default()).await.expect("ledger");
    assert_eq!(ledger.iter().filter(|r| r.state == paygate_store::PaymentState::Settled).count(), 9);
}

/// One MPP `evm` session paid through two instances on one PostgreSQL (paygate's own paying client, which keeps
/// the channel per seller, whichever instance answers): each call is charged once on the shared channel row, and
/// the close, sent to the instance that served the last call, settles exactly what both served and refunds the rest.
/// Both relay and settle from one key: the instance that did not send the close relays the next deposit with the
/// nonce the node now expects (it used to sign its own stale count and be refused "nonce too low").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_charge_one_session_exactly_and_either_closes_it() {
    use paygate_client::{AssetBook, KnownAsset, PayingClient, Policy, SpendLog, Wallet};

    let postgres = tokio::task::spawn_blocking(PgServer::start).await.expect("PostgreSQL starts");
    let store_url = postgres.database().await;
    let chain = Devchain::start_with(31337, MINING).await;
    let upstream = Upstream::start().await;
    let payee = dev_account(0).address();
    let session = format!(
        r#"
        [[accept]]
        name = "session"
        rail = "evm-session"
        network = "local"
        asset = "USDC"
        pay_to = "{payee}"
        settler_key = "{}"
        settle_every_secs = 3600
        "#,
        paygate_testkit::SETTLER_KEY
    );
    let toml = format!("{}\n{session}", config(&upstream.url(), &chain, &store_url));
    let (a, b) =
        (ServedGateway::start(&toml, Default::default()).await, ServedGateway::start(&toml, Default::default()).await);
    let buyer = dev_account(3);
    let (buyer_before, payee_before) = (chain.balance(buyer.address()).await, chain.balance(payee).await);
    let log = SpendLog::in_memory().await.expect("spend log");
    let client =
        PayingClient::new(reqwest::Client::new(), Wallet::from_signer(buyer.clone()), Policy::default(), log.clone())
            .with_assets(AssetBook::builtin().with(KnownAsset::dev_test_usdc(31337)))
            .with_session_deposit(50_000);
    for instance in [&a, &b, &a, &b] {
        let paid = client.send("GET", &instance.url("/v1/quote"), Default::default(), None).await.expect("paid");
        assert_eq!((paid.status.as_u16(), paid.payment.map(|p| p.offer.scheme)), (200, Some("evm/session".to_owned())));
    }
    let channels = b.gateway.store().channels(10).await.expect("channels");
    assert_eq!(channels.len(), 1, "one channel, whichever instance served");
    assert_eq!((channels[0].deposit, channels[0].charged, channels[0].reserved()), (50_000, 40_000, 0));
    assert_eq!(chain.balance(buyer.address()).await, buyer_before - 50_000, "one deposit");

    let closed = client.close_session(&channels[0].id).await.expect("closed");
    assert_eq!((closed.settled.as_str(), closed.refunded.as_str()), ("40000", "10000"));
    assert_eq!(chain.balance(buyer.address()).await, buyer_before - 40_000);
    assert_eq!(chain.balance(payee).await, payee_before + 40_000);
    assert_eq!(upstream.hits(), 4);
    let ledger = a.gateway.store().payments(&PaymentQuery::default()).await.expect("ledger");
    assert_eq!(ledger.iter().filter(|r| r.state == paygate_store::PaymentState::Settled).count(), 4);
    // Closed for both instances: the next call, to the other one, opens a new channel.
    let again = client.send("GET", &a.url("/v1/quote"), Default::default(), None).await.expect("answered");
    let reopened = b.gateway.store().channels(10).await.expect("channels");
    assert_eq!((again.status.as_u16(), reopened.len()), (200, 2), "a new call opens a new channel");
}
