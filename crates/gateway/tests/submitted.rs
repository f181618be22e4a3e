//! Answering before confirmation (`wait = "submitted"`): on anvil mining a block every four seconds, a paid call
//! is answered once the node took its transfer, with the receipt; its ledger row is `pending` until the
//! reconciler finds the transfer mined. A payer over `max_unconfirmed` waits for confirmation, as with
//! `wait = "confirmed"`.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{Harness, Options, decode_x402, pay_to};
use paygate_store::PaymentState;
use paygate_testkit::node;

const CENT: u128 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_answers_before_the_block_and_the_reconciler_confirms() {
    let extra = format!(
        r#"
        [[accept]]
        name = "usdc-fast"
        network = "local"
        asset = "USDC"
        pay_to = "{}"
        {}
        wait = "submitted"
        max_unconfirmed = "$0.01"

        [[routes]]
        method = "GET"
        path = "/v1/transcribe"
        price = "$0.01"
        accept = ["usdc-fast"]
        "#,
        pay_to(),
        paygate_testkit::builtin_settlement()
    );
    let options = Options { extra_toml: extra, anvil_args: vec!["--block-time", "4"], ..Default::default() };
    let h = Harness::start_with(options).await;
    let before = h.chain.balance(pay_to()).await;

    // Two payments of the same payer, the second sent right after the first was answered.
    let signed = node::client(&["x402", "sign", &h.url("/v1/transcribe"), "--count", "2"]).await;
    let values: Vec<String> =
        signed["values"].as_array().unwrap_or_else(|| panic!("{signed}")).iter().map(|v| v.to_string()).collect();
    let values: Vec<&str> = values.iter().map(|v| v.trim_matches('"')).collect();

    // Answered before its block: the receipt names the transaction, the ledger says pending.
    let first = h.send("GET", "/v1/transcribe", Some(("payment-signature", values[0])), None).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["paygate-settlement"], "submitted");
    let receipt = decode_x402(first.headers()["payment-response"].to_str().unwrap());
    assert_eq!(receipt["success"], true);
    let tx = receipt["transaction"].as_str().unwrap().to_owned();
    let row = h.ledger().await.into_iter().next().unwrap();
    assert_eq!((row.state, row.tx_hash.as_deref()), (PaymentState::Pending, Some(tx.as_str())));
    assert_eq!(h.chain.balance(pay_to()).await, before, "not mined yet");

    // The payer's $0.01 unconfirmed is the cap: the second waits for its block, as `confirmed` does.
    let second = h.send("GET", "/v1/transcribe", Some(("payment-signature", values[1])), None).await;
    assert_eq!(second.status(), 200);
    assert!(second.headers().get("paygate-settlement").is_none());
    assert_eq!(h.chain.balance(pay_to()).await - before, 2 * CENT, "both mined once the second is answered");

    // The reconciler confirms the first from the chain.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();
        let rows = h.ledger().await;
        if rows.iter().all(|r| r.state == PaymentState::Settled) {
            break;
        }
        assert!(Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
