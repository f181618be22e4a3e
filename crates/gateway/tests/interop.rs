//! The official clients pay through paygate on a real chain: `@x402/fetch` + `@x402/evm` (v2), the v1 scheme
//! of `@x402/evm` (`X-PAYMENT`), and `mppx`'s `evm` charge. Each payment moves exactly the price on chain,
//! leaves one `settled` ledger row, and is answered with the protocol's receipt header. The client cases run on
//! anvil and on the embedded devnet; the facilitator, a separate process, needs anvil's JSON-RPC.

#[macro_use]
mod common;

use common::{Backend, Harness, Options, decode_x402, pay_to, payer};
use paygate_gateway::{Outcome, Phase};
use paygate_proto::mpp::Receipt;
use paygate_store::PaymentState;
use paygate_testkit::node;

const CENT: u128 = 10_000;

on_both_chains! {
    official_x402_client_pays_and_gets_a_payment_response = x402_client_pays();
    official_mppx_client_pays_get_and_post_with_a_receipt = mppx_client_pays();
    x402_v1_client_is_served = x402_v1_client_pays();
}

async fn x402_client_pays(backend: Backend) {
    let h = Harness::start_with(backend.options()).await;
    let before = h.chain.balance(pay_to()).await;
    let answer = node::client(&["x402", "pay", &h.url("/v1/quote")]).await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["body"], r#"{"symbol":"PAY","price":"4.02"}"#);
    let settle = decode_x402(answer["headers"]["payment-response"].as_str().expect("PAYMENT-RESPONSE"));
    assert_eq!(settle["success"], true);
    assert_eq!(settle["network"], "eip155:31337");
    assert_eq!(settle["payer"], payer().to_checksum(None));
    let tx = settle["transaction"].as_str().unwrap();
    assert_eq!(tx.len(), 66);

    assert_eq!(h.chain.balance(pay_to()).await - before, CENT);
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1);
    let ledger = h.ledger().await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].state, PaymentState::Settled);
    assert_eq!(ledger[0].amount, "10000");
    assert_eq!(ledger[0].protocol, "x402-v2");
    assert_eq!(ledger[0].tx_hash.as_deref(), Some(tx));
    assert_eq!(ledger[0].upstream_status, Some(200));
    assert_eq!(h.upstream.hits(), 1);

    // The metrics saw the 402, the payment, its phases and its revenue.
    let metrics = h.gateway.metrics();
    assert_eq!((metrics.count(Outcome::Challenged), metrics.count(Outcome::Paid)), (1, 1));
    for phase in Phase::ALL {
        assert_eq!(metrics.phase_total(phase).0, 1, "{phase:?}");
    }
    let text = metrics.encode();
    assert!(
        text.contains(
            r#"paygate_revenue_atomic_total{asset="USDC",network="eip155:31337",route="GET /v1/quote"} 10000"#
        ),
        "{text}"
    );
}

async fn mppx_client_pays(backend: Backend) {
    let h = Harness::start_with(backend.options()).await;
    let before = h.chain.balance(pay_to()).await;

    let answer = node::client(&["mppx", "pay", &h.url("/v1/quote")]).await;
    assert_eq!(answer["status"], 200, "{answer}");
    let receipt =
        Receipt::from_header(answer["headers"]["payment-receipt"].as_str().expect("Payment-Receipt")).unwrap();
    assert_eq!(receipt.status, "success");
    assert_eq!(receipt.method, "evm");
    assert!(answer["headers"]["cache-control"].as_str().unwrap().contains("private"));

    // A POST: the challenge binds the body digest, and mppx sends the same body again.
    let answer =
        node::client(&["mppx", "pay", &h.url("/v1/echo"), "--method", "POST", "--body", r#"{"hello":"world"}"#]).await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["body"], r#"{"hello":"world"}"#);

    assert_eq!(h.chain.balance(pay_to()).await - before, 3 * CENT);
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 2);
    let ledger = h.ledger().await;
    assert_eq!(ledger.len(), 2);
    assert!(ledger.iter().all(|p| p.state == PaymentState::Settled && p.protocol == "mpp"));
    assert_eq!(ledger[1].tx_hash.as_deref(), Some(receipt.reference.as_str()));
    assert_eq!(ledger[0].amount, "20000");
}

/// v1 clients only know named networks, so this chain runs as Base Sepolia's id (84532, `base-sepolia`).
async fn x402_v1_client_pays(backend: Backend) {
    let h = Harness::start_with(Options { chain_id: 84532, ..backend.options() }).await;
    let before = h.chain.balance(pay_to()).await;
    let answer = node::client(&["x402v1", "pay", &h.url("/v1/quote")]).await;
    assert_eq!(answer["status"], 200, "{answer}");
    let settle = decode_x402(answer["headers"]["x-payment-response"].as_str().expect("X-PAYMENT-RESPONSE"));
    assert_eq!(settle["success"], true);
    assert_eq!(settle["network"], "base-sepolia");
    assert_eq!(h.chain.balance(pay_to()).await - before, CENT);
    let ledger = h.ledger().await;
    assert_eq!((ledger.len(), ledger[0].state, ledger[0].protocol.as_str()), (1, PaymentState::Settled, "x402-v1"));
}

/// Settlement through a remote facilitator: the reference `@x402/core` facilitator with `@x402/evm`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settles_through_the_reference_facilitator() {
    let chain = paygate_testkit::Devchain::start(31337).await;
    // Dev account 2 runs the facilitator: its transactions are not the gateway's.
    let facilitator = node::Facilitator::start(
        &chain.rpc_url,
        31337,
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    )
    .await;
    let upstream = paygate_testkit::Upstream::start().await;
    let h = Harness::around(
        chain,
        upstream,
        Options { facilitator_url: Some(facilitator.url.clone()), ..Default::default() },
    )
    .await;
    let before = h.chain.balance(pay_to()).await;

    for protocol in ["x402", "mppx"] {
        let answer = node::client(&[protocol, "pay", &h.url("/v1/quote")]).await;
        assert_eq!(answer["status"], 200, "{protocol}: {answer}");
        assert!(answer["headers"].get("paygate-settlement").is_none(), "{protocol}: {answer} {:?}", h.ledger().await);
    }
    assert_eq!(h.chain.balance(pay_to()).await - before, 2 * CENT);
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 2);
    let ledger = h.ledger().await;
    assert!(
        ledger.iter().all(|p| p.state == PaymentState::Settled && p.tx_hash.as_ref().is_some_and(|t| t.len() == 66))
    );
}
