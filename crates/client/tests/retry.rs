//! The paid request's failure modes: a connection lost on the way resends the same credential (one payment,
//! one transfer); a server refusing the credential is reported and recorded, never paid again; and a client
//! that dies after paying leaves a `pending` row that the chain later decides.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{PRICE, Seller, local_assets, pay_to};
use paygate_chain::Chain;
use paygate_chain::devtoken::dev_account;
use paygate_client::{PayError, PayingClient, Policy, Reconciled, SpendLog, SpendState, Wallet, now_ms, reconcile};
use reqwest::header::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the relay does with the first request carrying a credential.
#[derive(Clone, Copy)]
enum Fault {
    /// Close the connection without forwarding it.
    Drop,
    /// Forward it, throw the answer away, and keep the client waiting.
    Swallow,
}

/// A loopback relay to `target` that spoils the first connection carrying a `payment-signature` as `fault`
/// says, and records every credential it sees.
async fn flaky_relay(target: String, fault: Fault) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let credentials = seen.clone();
    let target = target.trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else { return };
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match inbound.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&head).to_string();
            let credential = text
                .lines()
                .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("payment-signature")))
                .map(|(_, v)| v.trim().to_owned());
            if let Some(credential) = credential {
                let first = {
                    let mut seen = credentials.lock().expect("lock");
                    seen.push(credential);
                    seen.len() == 1
                };
                if first {
                    if let Fault::Swallow = fault {
                        let outbound = tokio::net::TcpStream::connect(&target).await.expect("the gateway listens");
                        let (mut from_gateway, mut to_gateway) = outbound.into_split();
                        to_gateway.write_all(&head).await.expect("forward");
                        tokio::spawn(async move {
                            // The rest of the request (a body) goes on; the answer goes nowhere.
                            let (mut from_client, to_client) = inbound.into_split();
                            let mut nowhere = tokio::io::sink();
                            let _ = tokio::join!(
                                tokio::io::copy(&mut from_client, &mut to_gateway),
                                tokio::io::copy(&mut from_gateway, &mut nowhere)
                            );
                            drop(to_client);
                        });
                    }
                    continue;
                }
            }
            let mut outbound = tokio::net::TcpStream::connect(&target).await.expect("the gateway listens");
            outbound.write_all(&head).await.expect("forward");
            tokio::spawn(async move {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (base, seen)
}

#[tokio::test]
async fn a_lost_paid_request_is_resent_with_the_same_credential() {
    let seller = Seller::start().await;
    let (relay, seen) = flaky_relay(seller.base.clone(), Fault::Drop).await;
    // No connection reuse: each request goes through the relay on its own connection.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let log = SpendLog::in_memory().await.expect("spend log");
    let client = PayingClient::new(http, Wallet::from_signer(dev_account(1)), Policy::default(), log)
        .with_assets(local_assets());
    let before = seller.chain.balance(pay_to()).await;

    let paid = client.send("GET", &format!("{relay}/v1/quote"), HeaderMap::new(), None).await.expect("paid");

    assert!(paid.status.is_success());
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2, "the credential was sent twice");
    assert_eq!(seen[0], seen[1], "the same credential both times");
    assert_eq!(seller.chain.balance(pay_to()).await, before + PRICE);
    assert_eq!(seller.chain.transfers(dev_account(1).address(), pay_to()).await, 1);
    let records = client.spend_log().records().await.expect("records");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].state, SpendState::Paid);
}

#[tokio::test]
async fn a_refused_credential_is_reported_and_not_paid_again() {
    let seller = Seller::start().await;
    // Dev account 15 holds ETH but no test USDC: the gateway refuses its authorization.
    let broke = dev_account(15);
    let log = SpendLog::in_memory().await.expect("spend log");
    let client = PayingClient::new(reqwest::Client::new(), Wallet::from_signer(broke.clone()), Policy::default(), log)
        .with_assets(local_assets());

    let err = client.send("GET", &seller.url("/v1/quote"), HeaderMap::new(), None).await.expect_err("refused");

    let PayError::Rejected { status, body, spend_id } = err else { panic!("expected Rejected, got {err:?}") };
    assert_eq!(status, 402, "{body}");
    let records = client.spend_log().records().await.expect("records");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id, spend_id);
    assert_eq!(records[0].state, SpendState::Rejected);
    assert_eq!(records[0].error.as_deref(), Some(body.as_str()));
    assert_eq!(seller.upstream.hits(), 0);
    assert_eq!(seller.chain.transfers(broke.address(), pay_to()).await, 0);
}

#[tokio::test]
async fn a_payment_left_pending_by_a_crash_is_reconciled_from_the_chain() {
    let seller = Seller::start().await;
    let (relay, _) = flaky_relay(seller.base.clone(), Fault::Swallow).await;
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let log = SpendLog::in_memory().await.expect("spend log");
    let client = PayingClient::new(http, Wallet::from_signer(dev_account(1)), Policy::default(), log)
        .with_assets(local_assets());

    // The client dies while waiting for the paid answer, which the gateway sent and the relay swallowed.
    let url = format!("{relay}/v1/quote");
    let send = client.send("GET", &url, HeaderMap::new(), None);
    assert!(tokio::time::timeout(Duration::from_secs(3), send).await.is_err(), "the paid answer never arrives");
    let pending = client.spend_log().pending().await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert!(pending[0].nonce.is_some());
    for _ in 0..100 {
        if seller.chain.transfers(dev_account(1).address(), pay_to()).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let chains: HashMap<u64, Arc<dyn Chain>> = HashMap::from([(31337, seller.chain.chain.clone())]);
    let done = reconcile(client.spend_log(), &chains, now_ms()).await.expect("reconciled");

    assert_eq!(done, Reconciled { settled: 1, ..Reconciled::default() });
    let records = client.spend_log().records().await.expect("records");
    assert_eq!(records[0].state, SpendState::Paid);
    let reference = records[0].reference.clone().expect("the settling transaction");
    let receipt = seller.chain.chain.receipt(reference.parse().expect("a tx hash")).await.expect("receipt");
    assert!(receipt.is_some_and(|r| r.status()), "{reference}");
    assert_eq!(seller.chain.transfers(dev_account(1).address(), pay_to()).await, 1);
    // Nothing is left to decide.
    let again = reconcile(client.spend_log(), &chains, now_ms()).await.expect("reconciled");
    assert_eq!(again, Reconciled::default());
}

/// An x402 `upto` payment (a Permit2 authorization of the route's maximum) whose answer never came back: its row
/// keeps its Permit2 nonce, which `reconcile` decides from Permit2's `nonceBitmap` once the seller settled it. The
/// chain says that the nonce was used, not how much moved: the row keeps the maximum signed, so that the budgets
/// never count less than was spent.
#[tokio::test]
async fn an_upto_payment_left_pending_by_a_crash_is_reconciled_from_permit2() {
    let settlement = format!("settler_key = \"{}\"", paygate_testkit::SETTLER_KEY);
    let extra = paygate_testkit::metered_upto_toml(pay_to(), &settlement);
    let seller = Seller::start_with(&extra).await;
    seller.chain.approve_permit2(&dev_account(1)).await;
    let (relay, _) = flaky_relay(seller.base.clone(), Fault::Swallow).await;
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let log = SpendLog::in_memory().await.expect("spend log");
    let client = PayingClient::new(http, Wallet::from_signer(dev_account(1)), Policy::default(), log)
        .with_assets(local_assets());
    let before = seller.chain.balance(pay_to()).await;

    // The answer (the call used 5 input and 10 output tokens: 25 units) is swallowed; the client dies waiting.
    let body = br#"{"usage": {"prompt_tokens": 5, "completion_tokens": 10}}"#.to_vec();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().expect("a header value"));
    let url = format!("{relay}/v1/metered/e");
    let send = client.send("POST", &url, headers, Some(body));
    assert!(tokio::time::timeout(Duration::from_secs(3), send).await.is_err(), "the paid answer never arrives");
    let pending = client.spend_log().pending().await.expect("pending");
    assert_eq!(pending.len(), 1);
    let nonce = pending[0].nonce.clone().expect("signed");
    assert!(nonce.starts_with("permit2:"), "{nonce}");
    for _ in 0..100 {
        if seller.chain.balance(pay_to()).await == before + 25 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seller.chain.balance(pay_to()).await, before + 25, "the seller settled what the call used");

    let chains: HashMap<u64, Arc<dyn Chain>> = HashMap::from([(31337, seller.chain.chain.clone())]);
    let done = reconcile(client.spend_log(), &chains, now_ms()).await.expect("reconciled");

    assert_eq!(done, Reconciled { settled: 1, ..Reconciled::default() });
    let records = client.spend_log().records().await.expect("records");
    assert_eq!((records[0].state, records[0].amount_atomic.as_str()), (SpendState::Paid, "10000"));
    assert_eq!(reconcile(client.spend_log(), &chains, now_ms()).await.expect("reconciled"), Reconciled::default());
}
