//! Pay-first offers (the `x-402-*` dialect): the client sends the ERC-20 transfer itself, records its hash
//! before broadcasting, waits for it to be mined and for the seller's confirmations, and proves it with the
//! hash. Against our gateway's `txhash` rail on anvil.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{PRICE, Seller, client, pay_to, payer};
use paygate_chain::Chain;
use paygate_client::{CheapestOffer, PayError, Policy, Progress, Protocol, SpendState, reconcile};
use reqwest::header::HeaderMap;

/// The test token also taken as a plain ERC-20 paid by a proven transfer, `confirmations` deep.
fn txhash_option(confirmations: u64) -> String {
    format!(
        r#"
        [[accept]]
        name = "usdc-local-txhash"
        rail = "txhash"
        network = "local"
        asset = "USDC"
        pay_to = "{}"
        confirmations = {confirmations}
        proof_window_secs = 120
        "#,
        pay_to()
    )
}

fn chains(seller: &Seller) -> HashMap<u64, Arc<dyn Chain>> {
    HashMap::from([(seller.chain.chain_id, seller.chain.chain.clone())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pay_first_offer_is_paid_by_one_transfer_proven_by_its_hash() {
    let seller = Seller::start_with(&txhash_option(1)).await;
    let before = seller.chain.balance(pay_to()).await;
    let client = client(Policy { max_per_payment: Some(PRICE), ..Policy::default() })
        .await
        .with_chains(chains(&seller))
        .with_chooser(CheapestOffer::only(Protocol::TxHash));

    let paid = client.send("GET", &seller.url("/v1/quote"), HeaderMap::new(), None).await.expect("paid");

    assert!(paid.status.is_success(), "{}", paid.status);
    let payment = paid.payment.expect("a payment");
    assert_eq!((payment.offer.protocol, payment.offer.amount.0), (Protocol::TxHash, PRICE));
    let tx_hash = payment.reference.expect("the transfer's hash");
    assert_eq!(seller.chain.balance(pay_to()).await, before + PRICE, "exactly the price moved");
    assert_eq!(seller.chain.transfers(payer(), pay_to()).await, 1, "one transfer");
    assert_eq!(seller.upstream.hits(), 1);
    let records = client.spend_log().records().await.expect("records");
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].state, records[0].protocol.as_str()), (SpendState::Paid, "txhash"));
    assert_eq!(records[0].reference.as_deref(), Some(tx_hash.as_str()));
    assert_eq!(records[0].nonce.as_deref(), Some(tx_hash.as_str()), "the hash was recorded before broadcasting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_proof_is_resent_until_the_seller_has_its_confirmations() {
    let seller = Seller::start_with(&txhash_option(2)).await;
    let stages = Arc::new(Mutex::new(Vec::new()));
    let seen = stages.clone();
    let client = client(Policy::default())
        .await
        .with_chains(chains(&seller))
        .with_chooser(CheapestOffer::only(Protocol::TxHash))
        .with_progress(move |p| seen.lock().unwrap().push(p.clone()));
    // anvil mines only on transactions: a block two seconds in buries the transfer under a second one.
    let rpc = seller.chain.rpc_url.clone();
    let miner = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "evm_mine", "params": []});
        reqwest::Client::new().post(&rpc).json(&body).send().await.expect("evm_mine");
    });

    let paid = client.send("GET", &seller.url("/v1/quote"), HeaderMap::new(), None).await.expect("paid");
    miner.await.unwrap();

    assert!(paid.status.is_success(), "{}", paid.status);
    assert_eq!(seller.chain.transfers(payer(), pay_to()).await, 1, "one transfer, however many proofs");
    let stages = stages.lock().unwrap().clone();
    assert!(matches!(stages.first(), Some(Progress::TransferSent { .. })), "{stages:?}");
    assert!(stages.iter().any(|s| matches!(s, Progress::TransferMined { .. })), "{stages:?}");
    assert!(stages.contains(&Progress::AwaitingConfirmations), "{stages:?}");
    assert_eq!(seller.upstream.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_chain_a_pay_first_offer_is_unpayable_and_nothing_is_sent() {
    let seller = Seller::start_with(&txhash_option(1)).await;
    let client = client(Policy::default()).await.with_chooser(CheapestOffer::only(Protocol::TxHash));

    let err = client.send("GET", &seller.url("/v1/quote"), HeaderMap::new(), None).await.unwrap_err();

    let PayError::NoPayableOffer { offers } = err else { panic!("{err:?}") };
    let transfer = offers.iter().find(|o| o.protocol == Protocol::TxHash).expect("the pay-first offer is read");
    assert_eq!((transfer.amount.0, transfer.usd_micros), (PRICE, Some(PRICE)));
    assert!(transfer.unpayable.as_deref().is_some_and(|why| why.contains("RPC")), "{:?}", transfer.unpayable);
    assert_eq!(seller.chain.transfers(payer(), pay_to()).await, 0);
    assert!(client.spend_log().records().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_is_preferred_over_a_transfer_at_the_same_price() {
    let seller = Seller::start_with(&txhash_option(1)).await;
    let client = client(Policy::default()).await.with_chains(chains(&seller));

    let paid = client.send("GET", &seller.url("/v1/quote"), HeaderMap::new(), None).await.expect("paid");

    assert_eq!(paid.payment.expect("paid").offer.protocol, Protocol::X402, "no gas for the payer when avoidable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_transfer_is_reconciled_from_its_receipt() {
    let seller = Seller::start_with(&txhash_option(1)).await;
    let client = client(Policy::default())
        .await
        .with_chains(chains(&seller))
        .with_chooser(CheapestOffer::only(Protocol::TxHash));
    client.send("GET", &seller.url("/v1/quote"), HeaderMap::new(), None).await.expect("paid");
    let log = client.spend_log();
    let row = log.records().await.unwrap().remove(0);
    // As a crash after broadcasting would leave it.
    log.finish(row.id, SpendState::Pending, row.reference.as_deref(), Some("killed")).await.unwrap();

    let done = reconcile(log, &chains(&seller), paygate_client::now_ms()).await.expect("reconciled");

    assert_eq!((done.settled, done.undecided), (1, 0));
    let row = log.records().await.unwrap().remove(0);
    assert_eq!(row.state, SpendState::Paid);
    assert_eq!(row.reference, row.nonce, "the transfer is the reference");
}
