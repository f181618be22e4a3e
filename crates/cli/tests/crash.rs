//! Stopping `paygate serve` in the middle of paid requests, the hard way and the polite way.
//!
//! The crash test: it is killed with SIGKILL while paid requests are settling, then restarted on the same
//! ledger. Afterwards every payment the chain shows is in the ledger exactly once as `settled`, and no payer is
//! charged for a request that got no response: a request cut off by the crash, sent again with the same
//! credential, is served (by the reconciler's owed response, or as a fresh payment when nothing was charged).
//!
//! The graceful test: SIGTERM while a paid request waits for the upstream; the request is still answered and
//! settled, and then the process exits.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use paygate_chain::abi::{AuthorizationUse, authorization_use};
use paygate_chain::devtoken::dev_account;
use paygate_client::{AssetBook, KnownAsset, Protocol, Wallet, credential, parse_offers};
use paygate_store::{PaymentQuery, PaymentState};
use paygate_testkit::process::ServeProcess;
use paygate_testkit::{Devchain, Upstream, UpstreamMode, local_usdc_toml};

const BIN: &str = env!("CARGO_BIN_EXE_paygate");
const PAYERS: u32 = 6;

/// `paygate serve` on `config`, and its base URL.
fn serve(config: &std::path::Path) -> (ServeProcess, String) {
    let served = ServeProcess::start(BIN, config);
    let base = format!("http://{}", served.address);
    (served, base)
}

/// One paid request of the load.
#[derive(Debug, Clone)]
struct Attempt {
    header: (String, String),
    payer: Address,
    nonce: B256,
    /// The status it got; `None` when the connection died with the gateway.
    status: Option<u16>,
}

fn assets() -> AssetBook {
    AssetBook::builtin().with(KnownAsset::dev_test_usdc(31337))
}

/// Asks `url` unpaid and signs its x402 v2 offer; `None` when the gateway is gone.
async fn sign(http: &reqwest::Client, url: &str, wallet: &Wallet) -> Option<paygate_client::CredentialHeader> {
    let unpaid = http.get(url).send().await.ok()?;
    assert_eq!(unpaid.status(), 402);
    let headers = unpaid.headers().clone();
    let body = unpaid.bytes().await.expect("402 body");
    let offers = parse_offers(&headers, &body, &assets()).expect("offers parse");
    let offer = offers
        .iter()
        .find(|o| o.protocol == Protocol::X402 && o.x402_version == Some(2) && o.is_payable())
        .expect("an x402 v2 offer");
    Some(credential(wallet, offer).expect("signs"))
}

/// Pays `GET /v1/quote` again and again from dev account `payer` until `stop`.
async fn pay_in_a_loop(base: String, payer: u32, stop: Arc<AtomicBool>, attempts: Arc<Mutex<Vec<Attempt>>>) {
    let http = reqwest::Client::new();
    let wallet = Wallet::from_signer(dev_account(payer));
    let url = format!("{base}/v1/quote");
    while !stop.load(Ordering::SeqCst) {
        let Some(signed) = sign(&http, &url, &wallet).await else { return };
        let sent = http.get(&url).header(&signed.name, &signed.value).send().await;
        let status = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                // The whole body, or the gateway died while sending it.
                response.bytes().await.ok().map(|_| status)
            }
            Err(_) => None,
        };
        attempts.lock().unwrap().push(Attempt {
            header: (signed.name.clone(), signed.value.clone()),
            payer: signed.payer,
            nonce: signed.nonce.parse().expect("an EIP-3009 nonce"),
            status,
        });
    }
}

/// `paygate.toml` in `dir`: `GET /v1/quote` at $0.01 in front of `upstream` (waited for `upstream_timeout`
/// seconds), paid in test USDC on `chain` to dev account 9, settled by dev account 0, its ledger `ledger.db`
/// beside it, reconciling every second rows left alone for `stale_after` seconds.
fn write_config(
    dir: &std::path::Path,
    chain: &Devchain,
    upstream: &Upstream,
    upstream_timeout: u64,
    stale_after: u64,
) -> std::path::PathBuf {
    let config = dir.join("paygate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
secret = "crash-test-secret-of-at-least-32-bytes!"
challenge_ttl_secs = 120

[upstream]
url = "{upstream}"
timeout_secs = {upstream_timeout}

[store]
url = "sqlite://ledger.db"

[reconciler]
interval_secs = 1
stale_after_secs = {stale_after}

{accept}

[[routes]]
method = "GET"
path = "/v1/quote"
price = "$0.01"
"#,
            upstream = upstream.url(),
            accept = local_usdc_toml(
                chain.chain_id,
                &chain.rpc_url,
                "",
                dev_account(9).address(),
                &paygate_testkit::builtin_settlement()
            ),
        ),
    )
    .expect("write config");
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_settlement_loses_no_payment_and_charges_nobody_without_a_response() {
    // Interval mining only: every settlement waits up to a second for its block, so a kill finds some
    // broadcast and unmined, some journaled, some not yet sent.
    let chain = Devchain::start_with(31337, &["--block-time", "1"]).await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let pay_to = dev_account(9).address();
    let config = write_config(dir.path(), &chain, &upstream, 1, 2);
    let (mut first, first_base) = serve(&config);
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let load: Vec<_> = (1..=PAYERS)
        .map(|payer| tokio::spawn(pay_in_a_loop(first_base.clone(), payer, stop.clone(), attempts.clone())))
        .collect();
    // Under load for long enough that payments settled, then killed while others settle.
    let started = Instant::now();
    while attempts.lock().unwrap().iter().filter(|a| a.status == Some(200)).count() < 6 {
        assert!(started.elapsed() < Duration::from_secs(60), "the load never got going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("reaped");
    for task in load {
        task.await.expect("load task");
    }
    let attempts = attempts.lock().unwrap().clone();
    let cut_off: Vec<&Attempt> = attempts.iter().filter(|a| a.status.is_none()).collect();
    assert!(attempts.iter().all(|a| matches!(a.status, None | Some(200))), "{attempts:?}");
    assert!(!cut_off.is_empty(), "the kill cut no request off: {attempts:?}");

    // Restarted on the same ledger: its reconciler takes over what the dead one left.
    let (_second, second_base) = serve(&config);
    let store = paygate_store::open(&format!("sqlite://{}", dir.path().join("ledger.db").display())).await.unwrap();
    let started = Instant::now();
    loop {
        let open = |state| PaymentQuery { state: Some(state), ..Default::default() };
        let verified = store.payments(&open(PaymentState::Verified)).await.unwrap().len();
        let settling = store.payments(&open(PaymentState::Settling)).await.unwrap().len();
        if verified + settling == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{verified} verified, {settling} settling left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The payers whose requests were cut off send the same credentials again.
    let http = reqwest::Client::new();
    let mut resent = HashMap::new();
    for attempt in &cut_off {
        let response = http
            .get(format!("{second_base}/v1/quote"))
            .header(&attempt.header.0, &attempt.header.1)
            .send()
            .await
            .expect("the restarted gateway answers");
        resent.insert(attempt.nonce, response.status().as_u16());
    }
    // Everything the resends settled is mined.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Every authorization the chain used is one settled ledger row, with the transaction the chain names;
    // and it paid for a request that got its 200.
    let ledger = store.payments(&PaymentQuery::default()).await.unwrap();
    let mut used = 0;
    for attempt in &attempts {
        let proof_key = format!("eip155:31337:{:#x}:{:#x}", attempt.payer, attempt.nonce);
        let rows: Vec<_> = ledger.iter().filter(|row| row.proof_key == proof_key).collect();
        let on_chain =
            authorization_use(chain.chain.as_ref(), chain.token, attempt.payer, attempt.nonce).await.unwrap();
        match on_chain {
            AuthorizationUse::Used { tx } => {
                used += 1;
                assert_eq!(rows.len(), 1, "{proof_key}: {rows:?}");
                assert_eq!(rows[0].state, PaymentState::Settled, "{:?}", rows[0]);
                assert_eq!(rows[0].tx_hash, tx.map(|h| h.to_string()), "{:?}", rows[0]);
                assert!(!rows[0].response_owed, "a response is still owed: {:?}", rows[0]);
                let answered = attempt.status == Some(200) || resent.get(&attempt.nonce) == Some(&200);
                assert!(answered, "charged without a response: {attempt:?}, resent {:?}", resent.get(&attempt.nonce));
            }
            AuthorizationUse::Unused => {
                assert!(rows.iter().all(|row| row.state != PaymentState::Settled), "{proof_key}: {rows:?}");
            }
        }
    }
    let redelivered = ledger
        .iter()
        .filter(|row| row.reason.as_deref() == Some("resent credential: the owed response was delivered"))
        .count();
    eprintln!(
        "{} paid requests, {} cut off by the kill; {used} charged; {redelivered} owed responses redelivered",
        attempts.len(),
        cut_off.len()
    );
    // No transfer the ledger does not know.
    let transfers: usize = transfers_to(&chain, pay_to).await;
    assert_eq!(transfers, used);
    assert_eq!(ledger.iter().filter(|row| row.state == PaymentState::Settled).count(), used);
}

/// Transfers into `pay_to` from every payer.
async fn transfers_to(chain: &Devchain, pay_to: Address) -> usize {
    let mut total = 0;
    for payer in 1..=PAYERS {
        total += chain.transfers(dev_account(payer).address(), pay_to).await;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_paid_request_in_flight_finish_and_settle() {
    let chain = Devchain::start(31337).await;
    let upstream = Upstream::start().await;
    upstream.set_mode(UpstreamMode::Slow);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &chain, &upstream, 5, 10);
    // JSON logs, to check that they carry the request id.
    let mut served = ServeProcess::start_with(BIN, &config, &["--log-format", "json"]);
    let base = format!("http://{}", served.address);
    let http = reqwest::Client::new();
    let url = format!("{base}/v1/quote");
    let signed = sign(&http, &url, &Wallet::from_signer(dev_account(1))).await.expect("a 402");
    let paid = tokio::spawn({
        let http = http.clone();
        let url = url.clone();
        async move { http.get(&url).header(&signed.name, &signed.value).send().await }
    });
    // The upstream takes three seconds: the request is in flight when the signal comes.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let terminated = Command::new("kill").args(["-TERM", &served.child.id().to_string()]).status().expect("kill runs");
    assert!(terminated.success());

    let response = paid.await.unwrap().expect("the request in flight is answered");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{body}");
    let receipt = headers["payment-response"].to_str().unwrap().to_owned();
    let settle: serde_json::Value = serde_json::from_slice(&paygate_proto::b64::std_decode(&receipt).unwrap()).unwrap();
    assert_eq!(settle["success"], true, "{settle}");
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    let status = served.child.wait().expect("paygate exits");
    assert!(status.success(), "{status:?}");
    assert!(http.get(&url).send().await.is_err(), "nothing listens after shutdown");

    let store = paygate_store::open(&format!("sqlite://{}", dir.path().join("ledger.db").display())).await.unwrap();
    let ledger = store.payments(&PaymentQuery::default()).await.unwrap();
    assert_eq!((ledger.len(), ledger[0].state), (1, PaymentState::Settled));
    assert_eq!(chain.transfers(dev_account(1).address(), dev_account(9).address()).await, 1);
    assert_eq!(ledger[0].request_id, request_id);
    // The settlement's log line is JSON and names the request, as the response and the ledger do.
    let log = served.log.lock().unwrap().clone();
    let settled = log
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["fields"]["message"] == "settled")
        .unwrap_or_else(|| panic!("no settled line in {log:#?}"));
    assert_eq!(settled["span"]["id"], request_id.as_str(), "{settled}");
    assert_eq!(
        (settled["fields"]["amount"].as_str(), settled["fields"]["asset"].as_str()),
        (Some("0.01"), Some("USDC"))
    );
}
