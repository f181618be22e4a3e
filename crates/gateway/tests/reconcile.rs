//! The reconciler against a real chain: a `pending` payment is decided by what the chain says, never by
//! broadcasting again. (The SIGKILL crash test, `crates/cli/tests/crash.rs`, covers rows a dead gateway left.)

mod common;

use std::time::Duration;

use common::{Harness, Options, kind, pay_to, payer, problem};
use paygate_gateway::Reconciled;
use paygate_store::PaymentState;
use paygate_testkit::node;
use serde_json::json;

/// A harness whose settlements stay unmined (automine off) until the test mines, with a one-second receipt
/// timeout: every payment ends `pending` with its transaction journaled.
async fn pending_payment() -> (Harness, String) {
    let h = Harness::start_with(Options { receipt_timeout_secs: 1, anvil_args: vec![], ..Default::default() }).await;
    h.chain.rpc("evm_setAutomine", json!([false])).await;
    let answer = node::client(&["x402", "pay", &h.url("/v1/quote")]).await;
    assert_eq!(
        (answer["status"].as_u64(), answer["headers"]["paygate-settlement"].as_str()),
        (Some(200), Some("pending"))
    );
    let ledger = h.ledger().await;
    assert_eq!(ledger[0].state, PaymentState::Pending);
    let tx = ledger[0].tx_hash.clone().expect("the transaction was journaled before it was broadcast");
    (h, tx)
}

/// Mined after the timeout: the reconciler waits while it is in the mempool, then finds it on chain and
/// records `settled` with that very transaction, and nothing is broadcast a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_settlement_is_settled_once_the_chain_mines_it() {
    let (h, tx) = pending_payment().await;
    let reconciler = h.gateway.reconciler(Duration::from_secs(60));

    let waiting = reconciler.run_once().await.unwrap();
    assert_eq!(waiting, Reconciled { undecided: 1, ..Default::default() });
    assert_eq!(h.ledger().await[0].state, PaymentState::Pending);
    let in_pool = h.chain.rpc("txpool_content", json!([])).await;
    assert_eq!(in_pool["pending"].as_object().map(|by_sender| by_sender.len()), Some(1), "{in_pool}");

    h.chain.rpc("evm_mine", json!([])).await;
    let done = reconciler.run_once().await.unwrap();
    assert_eq!(done, Reconciled { settled: 1, ..Default::default() });
    let row = &h.ledger().await[0];
    assert_eq!((row.state, row.tx_hash.as_deref()), (PaymentState::Settled, Some(tx.as_str())));
    assert!(!row.response_owed, "the payer got its response when the payment went pending");
    let events = h.gateway.store().events(row.id).await.unwrap();
    assert_eq!(events.last().unwrap().reason, "reconciled: settled on chain");

    // Settled rows are left alone, and exactly one transfer happened.
    assert_eq!(reconciler.run_once().await.unwrap(), Reconciled::default());
    h.chain.rpc("evm_mine", json!([])).await;
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1);
}

/// The journaled transaction is gone from the mempool and the authorization expired unused: the payment
/// `failed`, nothing charged, and the reconciler did not broadcast a replacement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_that_expired_unused_fails_and_nothing_is_charged() {
    let (h, tx) = pending_payment().await;
    let reconciler = h.gateway.reconciler(Duration::from_secs(60));
    h.chain.rpc("anvil_dropTransaction", json!([tx])).await;

    // Still valid: a transaction that is not in this node's pool may be in another's, so it waits.
    assert_eq!(reconciler.run_once().await.unwrap(), Reconciled { undecided: 1, ..Default::default() });
    // Past validBefore (the option's 60 s default) plus the leeway.
    h.clock.advance(400);
    let done = reconciler.run_once().await.unwrap();
    assert_eq!(done, Reconciled { failed: 1, ..Default::default() });
    let row = &h.ledger().await[0];
    assert_eq!(row.state, PaymentState::Failed);
    assert_eq!(row.reason.as_deref(), Some("reconciled: the authorization expired unused; nothing was charged"));

    h.chain.rpc("evm_mine", json!([])).await;
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 0);
    let in_pool = h.chain.rpc("txpool_content", json!([])).await;
    assert_eq!(in_pool["pending"].as_object().map(|by_sender| by_sender.len()), Some(0), "{in_pool}");
}

/// The node refuses the settlement (the settler has no gas money): nothing was broadcast, so the call is refused
/// with a 502 (never served free, never a fresh 402 inviting a second payment), its claim released, and once the
/// settler is funded the same credential pays, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_the_node_refused_is_refused_and_the_same_credential_pays_later() {
    let h = Harness::start().await;
    let settler = paygate_chain::devtoken::dev_account(0).address();
    h.chain.rpc("anvil_setBalance", json!([settler, "0x0"])).await;
    let (name, value) = node::sign("x402", &h.url("/v1/quote"), &[]).await;
    let (status, p) = problem(h.send("GET", "/v1/quote", Some((&name, &value)), None).await).await;
    assert_eq!((status, kind(&p)), (502, ("urn:paygate:problem:chain-unavailable", "chain_unavailable")));
    assert!(p.detail.unwrap_or_default().contains("send the same payment again"));
    let row = &h.ledger().await[0];
    assert_eq!((row.state, row.tx_hash.as_deref()), (PaymentState::Voided, None), "{row:?}");
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 0);
    let reconciler = h.gateway.reconciler(Duration::from_secs(60));
    assert_eq!(reconciler.run_once().await.unwrap(), Reconciled::default(), "nothing to reconcile");

    h.chain.rpc("anvil_setBalance", json!([settler, "0x56bc75e2d63100000"])).await;
    let response = h.send("GET", "/v1/quote", Some((&name, &value)), None).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("payment-response"));
    let row = &h.ledger().await[0];
    assert_eq!(row.state, PaymentState::Settled);
    let tx = row.tx_hash.clone().expect("the settlement's transaction");
    let receipt = h.chain.chain.receipt(tx.parse().unwrap()).await.unwrap().expect("mined");
    assert!(receipt.status());
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1);
    assert_eq!(h.upstream.hits(), 2, "the refused call reached the upstream, and its retry");
    assert_eq!(reconciler.run_once().await.unwrap(), Reconciled::default());
}
