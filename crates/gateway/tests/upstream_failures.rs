//! A payer is never charged for nothing: when the upstream fails (500, refused, timeout) nothing is settled
//! and the same credential works once the upstream is back. A settlement whose outcome is unknown becomes
//! `pending` and the response is still delivered. A chain that cannot be asked refuses with 502 and claims
//! nothing. The settlement cases run on anvil and on the embedded devnet; the ones that stop or kill the chain
//! need anvil.

#[macro_use]
mod common;

use common::{Backend, Harness, Options, kind, pay_to, payer, problem};
use paygate_store::PaymentState;
use paygate_testkit::{UpstreamMode, node};

on_both_chains! {
    x402_payer_keeps_their_money_when_the_upstream_fails_and_can_retry = retry_after_failure("x402");
    mpp_payer_keeps_their_money_when_the_upstream_fails_and_can_retry = retry_after_failure("mppx");
    settle_before_charges_first = settled_before_proxying();
}

async fn retry_after_failure(backend: Backend, protocol: &str) {
    let mut h = Harness::start_with(backend.options()).await;
    let payer_before = h.chain.balance(payer()).await;
    let (name, value) = node::sign(protocol, &h.url("/v1/quote"), &[]).await;

    // The upstream answers 500: the payer sees it, nothing moves, the ledger says voided.
    h.upstream.set_mode(UpstreamMode::Fail);
    let response = h.send("GET", "/v1/quote", Some((&name, &value)), None).await;
    assert_eq!(response.status(), 500);
    assert!(
        !response.headers().contains_key("payment-response") && !response.headers().contains_key("payment-receipt")
    );
    assert_eq!(h.chain.balance(payer()).await, payer_before);
    let ledger = h.ledger().await;
    assert_eq!((ledger[0].state, ledger[0].upstream_status), (PaymentState::Voided, Some(500)));

    // The upstream is down: 502 with a problem body, still nothing moves.
    h.upstream.set_mode(UpstreamMode::Ok);
    h.upstream.stop().await;
    let (status, p) = problem(h.send("GET", "/v1/quote", Some((&name, &value)), None).await).await;
    assert_eq!((status, kind(&p)), (502, ("urn:paygate:problem:upstream-unavailable", "upstream_unavailable")));
    assert_eq!(h.chain.balance(payer()).await, payer_before);
    assert_eq!(h.ledger().await[0].state, PaymentState::Voided);

    // Back up: the same credential pays, once.
    h.upstream.resume().await;
    let response = h.send("GET", "/v1/quote", Some((&name, &value)), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(payer_before - h.chain.balance(payer()).await, 10_000);
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1);
    let ledger = h.ledger().await;
    assert_eq!(ledger.len(), 1, "one row per proof, reused by the retry");
    assert_eq!(ledger[0].state, PaymentState::Settled);
    let history: Vec<_> =
        h.gateway.store().events(ledger[0].id).await.unwrap().into_iter().map(|e| e.to_state).collect();
    use PaymentState::*;
    assert_eq!(history, [Verified, Voided, Verified, Voided, Verified, Settling, Settled]);
}

/// `settle = "before"`: the money moves before the upstream is called, so an upstream failure is charged (the
/// operator chose so); the ledger records the upstream's status.
async fn settled_before_proxying(backend: Backend) {
    let h = Harness::start_with(Options { settle: "before", ..backend.options() }).await;
    let answer = node::client(&["x402", "pay", &h.url("/v1/quote")]).await;
    assert_eq!(answer["status"], 200, "{answer}");
    h.upstream.set_mode(UpstreamMode::Fail);
    let (name, value) = node::sign("x402", &h.url("/v1/quote"), &[]).await;
    let response = h.send("GET", "/v1/quote", Some((&name, &value)), None).await;
    assert_eq!(response.status(), 500);
    assert!(response.headers().contains_key("payment-response"), "the charge is receipted");
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 2);
    let ledger = h.ledger().await;
    assert_eq!((ledger[0].state, ledger[0].upstream_status), (PaymentState::Settled, Some(500)));
}

/// The settlement transaction is broadcast but not mined before the receipt timeout: the payer gets the
/// response (never a fresh 402), the ledger says `pending` with the transaction hash, and the transaction
/// lands once the chain mines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_settlement_is_pending_and_the_response_is_delivered() {
    // Pure automine, so that nothing mines the transaction before the test says so.
    let h = Harness::start_with(Options { receipt_timeout_secs: 1, anvil_args: vec![], ..Default::default() }).await;
    h.chain.rpc("evm_setAutomine", serde_json::json!([false])).await;
    let answer = node::client(&["x402", "pay", &h.url("/v1/quote")]).await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["headers"]["paygate-settlement"], "pending");
    let settle = common::decode_x402(answer["headers"]["payment-response"].as_str().unwrap());
    assert_eq!(
        (settle["success"].as_bool(), settle["errorReason"].as_str()),
        (Some(false), Some("settlement_pending"))
    );
    let ledger = h.ledger().await;
    assert_eq!(ledger[0].state, PaymentState::Pending);
    let tx = ledger[0].tx_hash.clone().expect("the broadcast transaction is recorded");
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 0);
    h.chain.rpc("evm_mine", serde_json::json!([])).await;
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1);
    let receipt = h.chain.chain.receipt(tx.parse().unwrap()).await.unwrap().expect("mined");
    assert!(receipt.status());
}

/// The chain is unreachable when a payment arrives: 502, nothing claimed, nothing proxied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_chain_is_a_502_with_no_side_effects() {
    let mut h = Harness::start().await;
    let (name, value) = node::sign("x402", &h.url("/v1/quote"), &[]).await;
    h.chain.kill();
    let (status, p) = problem(h.send("GET", "/v1/quote", Some((&name, &value)), None).await).await;
    assert_eq!((status, kind(&p)), (502, ("urn:paygate:problem:chain-unavailable", "chain_unavailable")));
    assert!(!p.detail.unwrap_or_default().contains("127.0.0.1"), "the RPC URL never leaks");
    assert_eq!(h.upstream.hits(), 0);
    assert!(h.ledger().await.is_empty());
}
