//! The client against the official sellers, on loopback in front of a real anvil: the `@x402/core` resource
//! server with the `@x402/evm` exact scheme, and mppx's server with its `evm` charge (`tests/node/server.mjs`),
//! both settling through the reference x402 facilitator. (The client needed no change for these: the official
//! servers and the client agree on the wire in every case below.)

mod common;

use common::{PRICE, client, pay_to, payer};
use paygate_client::{CheapestOffer, Policy, Protocol, SpendState};
use paygate_testkit::Devchain;
use paygate_testkit::node::{Facilitator, Server};
use reqwest::header::HeaderMap;

/// Dev account 2: it submits the settlements, so its transactions are neither the payer's nor the seller's.
const FACILITATOR_KEY: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";

async fn pays_the_official(kind: &str, protocol: Protocol) {
    let chain = Devchain::start(31337).await;
    let facilitator = Facilitator::start(&chain.rpc_url, 31337, FACILITATOR_KEY).await;
    let server = Server::start(
        kind,
        &chain.rpc_url,
        &chain.token.to_checksum(None),
        &pay_to().to_checksum(None),
        &facilitator.url,
    )
    .await;
    let client = client(Policy { max_per_payment: Some(PRICE), ..Policy::default() })
        .await
        .with_chooser(CheapestOffer::only(protocol));
    let url = format!("{}/paid", server.url);
    let before = chain.balance(pay_to()).await;

    let dry = client.dry_run("GET", &url, HeaderMap::new(), None).await.expect("dry run");
    assert_eq!(dry.status, 402);
    let chosen = &dry.offers[dry.chosen.expect("a payable offer is chosen")];
    assert_eq!((chosen.protocol, chosen.amount.0, chosen.usd_micros), (protocol, PRICE, Some(PRICE)));
    assert_eq!(chosen.network, "eip155:31337");

    let paid = client
        .send("GET", &url, HeaderMap::new(), None)
        .await
        .unwrap_or_else(|e| panic!("the official {kind} server was paid: {e}"));

    assert_eq!(paid.status, 200, "{}", String::from_utf8_lossy(&paid.body));
    let body: serde_json::Value = serde_json::from_slice(&paid.body).expect("a JSON body");
    assert_eq!(body, serde_json::json!({"ok": true}));
    let payment = paid.payment.expect("a payment");
    assert_eq!(payment.offer.protocol, protocol);
    assert_eq!(payment.offer.amount.0, PRICE);
    let reference = payment.reference.expect("a settlement reference");
    assert!(reference.starts_with("0x") && reference.len() == 66, "{reference}");
    assert_eq!(chain.balance(pay_to()).await, before + PRICE);
    assert_eq!(chain.transfers(payer(), pay_to()).await, 1);

    let records = client.spend_log().records().await.expect("records");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].state, SpendState::Paid);
    assert_eq!(records[0].reference.as_deref(), Some(reference.as_str()));
    assert_eq!(records[0].protocol, protocol.to_string());
    assert_eq!(records[0].amount_atomic, PRICE.to_string());
}

#[tokio::test]
async fn pays_the_official_x402_resource_server() {
    pays_the_official("x402", Protocol::X402).await;
}

#[tokio::test]
async fn pays_the_official_mppx_server() {
    pays_the_official("mppx", Protocol::Mpp).await;
}

/// mppx's evm charge also offers its x402 compatibility path (an x402 v2 `exact` offer in `PAYMENT-REQUIRED`
/// next to the `WWW-Authenticate: Payment` challenge); the client pays that one too.
#[tokio::test]
async fn pays_the_official_mppx_server_in_x402() {
    pays_the_official("mppx", Protocol::X402).await;
}
