//! `paygate serve` killed with SIGKILL while it holds channel payments it has not claimed on chain yet (and one
//! call in flight), then restarted on the same ledger: everything it charged is claimed and swept exactly once,
//! the call cut off by the kill is not charged (its reservation is given back), and neither is a call whose
//! upstream failed. The same for MPP `evm` sessions paid by `paygate pay`: after the restart the seller settles
//! exactly what was charged, once.

use std::time::{Duration, Instant};

use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use paygate_chain::devtoken::dev_account;
use paygate_chain::escrow::{self, BatchSettlement};
use paygate_testkit::process::ServeProcess;
use paygate_testkit::{Devchain, Upstream, UpstreamMode, local_usdc_toml, node};

const BIN: &str = env!("CARGO_BIN_EXE_paygate");
const CENT: u128 = 10_000;

fn write_config(dir: &std::path::Path, chain: &Devchain, upstream: &Upstream, claim_every_secs: u64) {
    write_config_with(dir, chain, upstream, claim_every_secs, "channel");
}

/// The config of the crash tests; the route takes the option `option` (`channel`: x402 `batch-settlement`;
/// `session`: MPP `evm` session, settled every `claim_every_secs` too).
fn write_config_with(
    dir: &std::path::Path,
    chain: &Devchain,
    upstream: &Upstream,
    claim_every_secs: u64,
    option: &str,
) {
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
secret = "crash-test-secret-of-at-least-32-bytes!"
challenge_ttl_secs = 120

[upstream]
url = "{upstream}"
timeout_secs = 2

[store]
url = "sqlite://ledger.db"

[reconciler]
interval_secs = 1
stale_after_secs = 3

{usdc}

[[accept]]
name = "channel"
rail = "batch-settlement"
network = "local"
asset = "USDC"
pay_to = "{pay_to}"
settler_key = "{key}"
claim_every_secs = {claim_every_secs}

[[accept]]
name = "session"
rail = "evm-session"
network = "local"
asset = "USDC"
pay_to = "{session_pay_to}"
settler_key = "{key}"
settle_every_secs = {claim_every_secs}

[[routes]]
method = "GET"
path = "/v1/quote"
price = "$0.01"
accept = ["{option}"]
"#,
        upstream = upstream.url(),
        usdc = local_usdc_toml(
            chain.chain_id,
            &chain.rpc_url,
            "",
            dev_account(9).address(),
            &paygate_testkit::builtin_settlement()
        ),
        pay_to = dev_account(9).address(),
        session_pay_to = session_payee(),
        key = paygate_testkit::SETTLER_KEY,
    );
    std::fs::write(dir.join("paygate.toml"), config).expect("write config");
}

/// An MPP session's payee settles itself: the settler key's address (dev account 0).
fn session_payee() -> alloy::primitives::Address {
    dev_account(0).address()
}

/// `paygate pay --session-deposit 0.10 URL` as dev account 1, with the spend log in `dir`: its exit code.
async fn pay_from_session(dir: &std::path::Path, url: &str) -> i32 {
    let token = format!("31337:{}:6:USD Coin:2", paygate_chain::devtoken::test_usdc_address());
    let output = tokio::process::Command::new(BIN)
        .args(["pay", "--max", "0.01", "--session-deposit", "0.10", "--usd-token", &token, url])
        .env("PAYGATE_WALLET_KEY", dev_account(1).to_bytes().to_string())
        .env("PAYGATE_SPEND_LOG", dir.join("spend.db"))
        .env("PAYGATE_LOG", "warn")
        .env_remove("PAYGATE_HOME")
        .env_remove("PAYGATE_MAX_PER_PAYMENT")
        .env_remove("PAYGATE_DAILY_BUDGET")
        .env_remove("PAYGATE_HOST_DAILY_BUDGET")
        .kill_on_drop(true)
        .output()
        .await
        .expect("paygate pay runs");
    output.status.code().unwrap_or(-1)
}

async fn escrow_events<E: SolEvent>(chain: &Devchain) -> usize {
    let filter = Filter::new().address(escrow::BATCH_SETTLEMENT).event_signature(E::SIGNATURE_HASH).from_block(0);
    chain.chain.logs(filter).await.expect("logs").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_before_claiming_claims_everything_once_after_restart() {
    let chain = Devchain::start(31337).await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // No claim before the kill.
    write_config(dir.path(), &chain, &upstream, 3600);
    let config = dir.path().join("paygate.toml");
    let mut first = ServeProcess::start(BIN, &config);
    let url = format!("http://{}/v1/quote", first.address);
    let seller = dev_account(9).address();
    let before = chain.balance(seller).await;

    // Five calls charged; one whose upstream failed (not charged).
    let paid = node::channel(&url, &chain.rpc_url, &["--calls", "5", "--deposit", "100000"]).await;
    assert_eq!(paid["statuses"], serde_json::json!([200, 200, 200, 200, 200]), "{paid}");
    upstream.set_mode(UpstreamMode::Fail);
    let failed = node::channel(&url, &chain.rpc_url, &["--calls", "1"]).await;
    assert_eq!(failed["statuses"], serde_json::json!([500]), "{failed}");

    // One call in flight (the upstream answers after three seconds) when the gateway is killed.
    upstream.set_mode(UpstreamMode::Slow);
    let rpc = chain.rpc_url.clone();
    let in_flight = tokio::spawn(async move { node::channel(&url, &rpc, &["--calls", "1"]).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.child.kill().expect("SIGKILL");
    let _ = first.child.wait();
    let _ = in_flight.await;
    assert_eq!(chain.balance(seller).await, before, "nothing was claimed before the kill");
    upstream.set_mode(UpstreamMode::Ok);

    // Restarted with a schedule that claims at once.
    write_config(dir.path(), &chain, &upstream, 1);
    let second = ServeProcess::start(BIN, &config);
    let store = paygate_store::open(&format!("sqlite://{}", dir.path().join("ledger.db").display())).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let channels = store.channels(10).await.unwrap();
        let settled = chain.balance(seller).await - before == 5 * CENT;
        if settled && channels.len() == 1 && channels[0].reserved() == 0 {
            assert_eq!((channels[0].charged, channels[0].claimed), (5 * CENT, 5 * CENT), "{channels:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled after restart: {channels:?}\n{}",
            second.log.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Later passes claim nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(chain.balance(seller).await - before, 5 * CENT);
    assert_eq!(escrow_events::<BatchSettlement::Claimed>(&chain).await, 1);
    assert_eq!(escrow_events::<BatchSettlement::Deposited>(&chain).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_before_settling_sessions_settles_what_was_charged_once_after_restart() {
    let chain = Devchain::start(31337).await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    write_config_with(dir.path(), &chain, &upstream, 3600, "session");
    let config = dir.path().join("paygate.toml");
    let mut first = ServeProcess::start(BIN, &config);
    let url = format!("http://{}/v1/quote", first.address);
    let (payer, payee) = (dev_account(1).address(), session_payee());
    let (payer_before, payee_before) = (chain.balance(payer).await, chain.balance(payee).await);

    // Four calls charged from one deposit, one whose upstream failed (not charged).
    for _ in 0..4 {
        assert_eq!(pay_from_session(dir.path(), &url).await, 0);
    }
    upstream.set_mode(UpstreamMode::Fail);
    assert_ne!(pay_from_session(dir.path(), &url).await, 0, "the upstream failed");
    upstream.set_mode(UpstreamMode::Ok);
    assert_eq!(chain.balance(payer).await, payer_before - 100_000, "one deposit");
    first.child.kill().expect("SIGKILL");
    let _ = first.child.wait();
    assert_eq!(chain.balance(payee).await, payee_before, "nothing was settled before the kill");

    // Restarted with a schedule that settles at once: exactly the four calls reach the payee.
    write_config_with(dir.path(), &chain, &upstream, 1, "session");
    let second = ServeProcess::start(BIN, &config);
    let deadline = Instant::now() + Duration::from_secs(30);
    while chain.balance(payee).await - payee_before != 4 * CENT {
        assert!(
            Instant::now() < deadline,
            "not settled after restart: {}\n{}",
            chain.balance(payee).await - payee_before,
            second.log.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(chain.balance(payee).await - payee_before, 4 * CENT, "later passes settle nothing more");
    let store = paygate_store::open(&format!("sqlite://{}", dir.path().join("ledger.db").display())).await.unwrap();
    let channels = store.channels(10).await.unwrap();
    assert_eq!(channels.len(), 1);
    assert_eq!((channels[0].charged, channels[0].reserved()), (4 * CENT, 0), "{channels:?}");
}
