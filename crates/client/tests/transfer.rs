//! Offers paid by a transfer the client sends itself: pay-first offers (the `x-402-*` dialect: an ERC-20
//! transfer) and MPP `tempo` charges (a TIP-20 `transferWithMemo` bound to the challenge). The client records
//! the hash before broadcasting, waits for it to be mined and for the seller's confirmations, and proves it with
//! the hash. Against our gateway's `txhash` and `tempo` rails on anvil (with a TIP-20 look-alike).

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

/// An MPP `tempo` charge: one `transferWithMemo` of exactly the price, its memo bound to the challenge, proven
/// by a `hash` credential; the receipt names the transfer and the spend log records it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tempo_charge_is_paid_by_one_transfer_bound_to_its_challenge() {
    use alloy::primitives::U256;
    use alloy::rpc::types::Filter;
    use alloy::sol_types::SolEvent;
    use paygate_client::KnownAsset;
    use paygate_methods::tempo::{decode_memo, tip20};

    let chain = paygate_testkit::Devchain::start(31337).await;
    let token = paygate_testkit::tip20::Tip20::deploy(chain.chain.clone(), "Test Dollar", "TUSD").await;
    token.mint(payer(), U256::from(1_000_000u64)).await;
    let tempo = format!(
        r#"
        {}
        [[routes]]
        method = "GET"
        path = "/v1/other"
        price = "$0.01"
        accept = ["tusd-tempo"]
        "#,
        token.tempo_testnet_toml(&chain.rpc_url, pay_to())
    );
    let seller = Seller::around(chain, &tempo).await;
    let tusd = KnownAsset {
        chain_id: 31337,
        address: token.address,
        symbol: "TUSD".into(),
        decimals: 6,
        usd: true,
        eip712: None,
    };
    let client = client(Policy { max_per_payment: Some(PRICE), ..Policy::default() })
        .await
        .with_assets(common::local_assets().with(tusd))
        .with_chains(chains(&seller));
    let before = token.balance(pay_to()).await;

    let paid = client.send("GET", &seller.url("/v1/other"), HeaderMap::new(), None).await.expect("paid");
    assert_eq!(paid.status, 200);
    let payment = paid.payment.expect("a payment");
    assert_eq!((payment.offer.protocol, payment.offer.scheme.as_str()), (Protocol::Mpp, "tempo/charge"));
    let tx_hash = payment.reference.clone().expect("the transfer is the reference");
    let receipt = paid.headers["payment-receipt"].to_str().expect("ascii");
    let receipt = paygate_proto::mpp::Receipt::from_header(receipt).expect("a receipt");
    assert_eq!((receipt.method.as_str(), receipt.reference.as_str()), ("tempo", tx_hash.as_str()));

    // Exactly one transfer, of exactly the price, carrying an MPP attribution memo (the gateway accepted it, so it
    // names this challenge: `gateway/tests/rails.rs` refuses a transfer bound to another).
    assert_eq!(token.balance(pay_to()).await - before, U256::from(PRICE));
    let filter = Filter::new()
        .address(token.address)
        .event_signature(tip20::TransferWithMemo::SIGNATURE_HASH)
        .topic1(payer().into_word())
        .from_block(0);
    let logs = seller.chain.chain.logs(filter).await.expect("logs");
    assert_eq!(logs.len(), 1, "one transfer from the payer");
    assert_eq!(format!("{:#x}", logs[0].transaction_hash.expect("hash")), tx_hash);
    let memo = decode_memo(&logs[0].topics()[3]).expect("an attribution memo");
    assert_eq!(memo.client_fingerprint, None);

    let rows = client.spend_log().records().await.expect("records");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].state, rows[0].protocol.as_str()), (SpendState::Paid, "mpp"));
    assert_eq!(rows[0].reference.as_deref(), Some(tx_hash.as_str()));
    assert!(rows[0].is_transfer(), "{:?}", rows[0]);
}
