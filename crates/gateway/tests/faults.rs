//! Trust under faults: a remote facilitator that misbehaves (it settles but answers "failed", refuses in words
//! naming its internals, cannot be reached), and the payer is never charged without being served, never told
//! "nothing was charged" when the chain says otherwise, and never shown the facilitator's own words. The
//! facilitator is paygate's own, settling for real on anvil, behind the test kit's fault-injecting front.
//! And a node that loses a settler's transaction after accepting it: the key's later transactions are not held
//! behind the missing nonce for ever.

mod common;

use std::time::Duration;

use alloy::primitives::{Bytes, TxHash};
use common::{Harness, Options, decode_x402, kind, pay_to, payer, problem};
use paygate_chain::devtoken::dev_account;
use paygate_chain::{TxSender, wait_for_receipt};
use paygate_store::PaymentState;
use paygate_testkit::facilitator::{FacilitatorFault, FaultyFacilitator, LEAKY_REASON};
use paygate_testkit::{Devchain, MINING, Upstream, node};
use serde_json::json;

/// A gateway settling through a misbehaving facilitator on anvil; the facilitator too.
async fn through_facilitator(options: Options) -> (Harness, FaultyFacilitator) {
    let chain = Devchain::start_with(31337, MINING).await;
    let facilitator = FaultyFacilitator::start(&chain).await;
    let options = Options { facilitator_url: Some(facilitator.url()), ..options };
    (Harness::around(chain, Upstream::start().await, options).await, facilitator)
}

/// A facilitator whose transfer landed but whose `/settle` answers `success: false` (naming the transaction, or
/// not): the chain decides, the payer is served with a receipt, the row is `settled`, and nothing moves twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_facilitator_that_settles_but_answers_failed_is_decided_from_the_chain() {
    let (h, facilitator) = through_facilitator(Options::default()).await;
    for (round, fault) in
        [FacilitatorFault::SettledButSaysFailed, FacilitatorFault::SettledButSaysFailedQuietly].into_iter().enumerate()
    {
        facilitator.set_fault(fault);
        let answer = node::client(&["x402", "pay", &h.url("/v1/quote")]).await;
        assert_eq!(answer["status"], 200, "{fault:?}: {answer}");
        let settled = decode_x402(answer["headers"]["payment-response"].as_str().expect("PAYMENT-RESPONSE"));
        assert_eq!(settled["success"], true, "{fault:?}: {settled}");
        assert_eq!(h.chain.transfers(payer(), pay_to()).await, round + 1, "{fault:?}");
        let row = &h.ledger().await[0];
        assert_eq!(row.state, PaymentState::Settled, "{fault:?}: {row:?}");
        assert_eq!(row.tx_hash.as_deref(), settled["transaction"].as_str(), "{fault:?}");
        assert_eq!(row.tx_hash.as_ref().map(String::len), Some(66), "{fault:?}: the chain's transaction");
    }
    assert_eq!(h.upstream.hits(), 2);
}

/// A facilitator that answers "failed" with no transaction and lands the transfer a second later: the payer is
/// refused (the chain showed nothing yet), the row is `failed` but checked again, and once the transfer lands
/// the reconciler makes it `settled` with the response owed; the same credential sent again is served, with no
/// second charge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_settlement_that_lands_late_is_found_and_its_response_served() {
    let (h, facilitator) = through_facilitator(Options::default()).await;
    facilitator.set_fault(FacilitatorFault::SaysFailedThenSettles);
    let (name, value) = node::sign("x402", &h.url("/v1/quote"), &[]).await;
    let (status, p) = problem(h.send("GET", "/v1/quote", Some((&name, &value)), None).await).await;
    assert_eq!((status, kind(&p).1), (402, "settlement_failed"));
    let row = &h.ledger().await[0];
    assert_eq!((row.state, row.recheck), (PaymentState::Failed, true), "{row:?}");

    let reconciler = h.gateway.reconciler(Duration::from_secs(60));
    let mut landed = 0;
    for _ in 0..50 {
        landed += reconciler.run_once().await.expect("a pass").landed_late;
        if landed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(landed, 1, "the late transfer is found");
    let row = &h.ledger().await[0];
    assert_eq!((row.state, row.response_owed, row.recheck), (PaymentState::Settled, true, false), "{row:?}");
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1);

    // The used authorization is public on chain; someone who copies it into a credential of their own (a fresh
    // challenge) gets nothing: the response is owed to the payer's credential only.
    let unpaid = h.send("GET", "/v1/quote", None, None).await;
    let fresh = common::decode_x402(unpaid.headers()["payment-required"].to_str().unwrap());
    let mut copied = common::decode_x402(&value);
    copied["accepted"]["extra"]["paygate"] = fresh["accepts"][0]["extra"]["paygate"].clone();
    let (status, _) =
        problem(h.send("GET", "/v1/quote", Some((&name, &common::encode_x402(&copied))), None).await).await;
    assert_eq!(status, 403, "a copied authorization is a replay");
    assert!(h.ledger().await[0].response_owed, "still owed to the payer");

    let response = h.send("GET", "/v1/quote", Some((&name, &value)), None).await;
    assert_eq!(response.status(), 200, "the owed response");
    let settled = decode_x402(response.headers()["payment-response"].to_str().unwrap());
    assert_eq!(settled["success"], true);
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1, "no second charge");
    let again = h.send("GET", "/v1/quote", Some((&name, &value)), None).await;
    assert_eq!(again.status(), 403, "owed once");
}

/// A facilitator's `invalidReason` may name its internals: the payer gets paygate's reason and text, the raw words
/// go to the log only, and nothing is claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_facilitators_own_words_never_reach_the_client() {
    let (h, facilitator) = through_facilitator(Options { network_rpc: false, ..Default::default() }).await;
    facilitator.set_fault(FacilitatorFault::LeakyRefusal);
    let (name, value) = node::sign("x402", &h.url("/v1/quote"), &[]).await;
    let response = h.send("GET", "/v1/quote", Some((&name, &value)), None).await;
    let headers = format!("{:?}", response.headers());
    let (status, p) = problem(response).await;
    assert_eq!((status, kind(&p)), (402, ("urn:paygate:problem:insufficient-funds", "insufficient_funds")));
    let text = format!("{headers} {} {}", p.detail.unwrap_or_default(), serde_json::to_string(&p.extensions).unwrap());
    for secret in ["rpc.internal.example", "SECRET-KEY-123", "apikey", LEAKY_REASON] {
        assert!(!text.contains(secret), "{secret:?} leaked: {text}");
    }
    assert!(h.ledger().await.is_empty());
    assert_eq!(h.upstream.hits(), 0);
}

/// The facilitator cannot be reached when the payment is settled (connection refused: nothing was sent): the call
/// is refused with a 502, not served free as `pending`; the claim is released, and the same credential pays once
/// the facilitator is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_facilitator_at_settlement_refuses_and_releases_the_claim() {
    let (h, mut facilitator) = through_facilitator(Options::default()).await;
    let (name, value) = node::sign("x402", &h.url("/v1/quote"), &[]).await;
    facilitator.stop().await;
    let (status, p) = problem(h.send("GET", "/v1/quote", Some((&name, &value)), None).await).await;
    assert_eq!((status, kind(&p)), (502, ("urn:paygate:problem:facilitator-unavailable", "facilitator_unavailable")));
    assert!(!p.detail.unwrap_or_default().contains("127.0.0.1"), "no internal URL");
    let row = &h.ledger().await[0];
    assert_eq!(row.state, PaymentState::Voided, "{row:?}");
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 0);

    facilitator.resume();
    let response = h.send("GET", "/v1/quote", Some((&name, &value)), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(h.ledger().await[0].state, PaymentState::Settled);
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1);
}

/// A facilitator that answers 500 or garbage after being asked to settle may have broadcast: the payment is
/// `pending` (served, never a fresh 402), and the reconciler finds it settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_facilitator_that_answers_garbage_leaves_the_payment_pending_for_the_chain_to_decide() {
    let (h, facilitator) = through_facilitator(Options::default()).await;
    facilitator.set_fault(FacilitatorFault::Garbage);
    let answer = node::client(&["x402", "pay", &h.url("/v1/quote")]).await;
    assert_eq!(
        (answer["status"].as_u64(), answer["headers"]["paygate-settlement"].as_str()),
        (Some(200), Some("pending"))
    );
    assert_eq!(answer["headers"]["cache-control"], "private, no-store", "a pending answer is not cached either");
    assert_eq!(h.ledger().await[0].state, PaymentState::Pending);
    let done = h.gateway.reconciler(Duration::from_secs(60)).run_once().await.expect("a pass");
    assert_eq!(done.settled, 1, "{done:?}");
    assert_eq!(h.ledger().await[0].state, PaymentState::Settled);
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1);
}

/// A node that loses a transaction it had accepted (a mempool emptied by a restart, an eviction) would hold every
/// later transaction of the settler key behind the missing nonce, for ever. The sender fills that nonce once the
/// node has been behind for its grace: with the next transaction it sends, or with a transaction that does nothing
/// when a settlement pass has nothing new to send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_the_node_lost_is_filled_and_the_transactions_behind_it_are_mined() {
    let chain = Devchain::start_with(31337, MINING).await;
    let key = dev_account(7);
    let grace = Duration::from_millis(500);
    let sender = TxSender::with_lost_nonce_grace(chain.chain.clone(), key.clone(), grace);
    let to = dev_account(8).address();
    let nonce_of = async |hash: TxHash| {
        let tx = chain.rpc("eth_getTransactionByHash", json!([hash])).await;
        u64::from_str_radix(tx["nonce"].as_str().expect("a nonce").trim_start_matches("0x"), 16).expect("hex")
    };
    let mined = async |hash: TxHash, within: Duration| {
        let receipt = wait_for_receipt(chain.chain.as_ref(), hash, within, Duration::from_millis(20)).await;
        receipt.expect("the node answers").map(|r| r.status())
    };
    // The node accepts a transaction (nothing is mined meanwhile), then loses it.
    let lose = async || {
        chain.rpc("evm_setIntervalMining", json!([0])).await;
        chain.rpc("evm_setAutomine", json!([false])).await;
        let lost = sender.send(to, Bytes::new()).await.expect("accepted");
        chain.rpc("anvil_dropTransaction", json!([lost])).await;
        chain.rpc("evm_setAutomine", json!([true])).await;
        lost
    };

    // The next transaction fills the gap.
    let lost = lose().await;
    let behind = sender.send(to, Bytes::new()).await.expect("accepted");
    assert_eq!(mined(behind, Duration::from_millis(1500)).await, None, "it waits behind the lost nonce");
    tokio::time::sleep(grace).await;
    // (To another address: the same call would be signed into the very bytes that were lost.)
    let filler = sender.send(dev_account(9).address(), Bytes::new()).await.expect("sent");
    assert_eq!(mined(filler, Duration::from_secs(5)).await, Some(true));
    assert_eq!(mined(behind, Duration::from_secs(5)).await, Some(true), "mined once the gap is filled");
    assert_eq!(chain.chain.receipt(lost).await.expect("the node answers"), None, "the lost one stays lost");
    assert_eq!(nonce_of(filler).await + 1, nonce_of(behind).await, "the filler took the lost nonce");

    // Nothing new to send: a transaction that does nothing fills it.
    lose().await;
    let behind = sender.send(to, Bytes::new()).await.expect("accepted");
    assert_eq!(sender.fill_lost_nonce().await.expect("asked"), None, "not believed before the grace");
    tokio::time::sleep(grace).await;
    let filler = sender.fill_lost_nonce().await.expect("sent").expect("the node is behind");
    assert_eq!(mined(filler, Duration::from_secs(5)).await, Some(true));
    assert_eq!(mined(behind, Duration::from_secs(5)).await, Some(true), "mined once the gap is filled");
    assert_eq!(nonce_of(filler).await + 1, nonce_of(behind).await, "the filler took the lost nonce");
    assert_eq!(sender.fill_lost_nonce().await.expect("asked"), None, "nothing left to fill");
    let next = sender.send(to, Bytes::new()).await.expect("sent");
    assert_eq!(mined(next, Duration::from_secs(5)).await, Some(true), "the key goes on in order");
    assert_eq!(nonce_of(next).await, nonce_of(behind).await + 1);
}
