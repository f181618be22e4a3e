//! A claim that waits behind a nonce the node lost: the settlement pass sends nothing new while its claim is
//! undecided, so nothing else would ever fill the gap; the pass fills it once the node has been behind for the
//! network's `lost_nonce_grace_secs`, and the claim is mined and decided.

use std::time::Duration;

use alloy::primitives::TxHash;
use paygate_chain::devtoken::dev_account;
use paygate_chain::escrow::BatchSettlement;
use paygate_chain::wait_for_receipt;
use paygate_core::channel_journal::TransactionKind;
use serde_json::json;

use super::common::{Harness, Options, pay_to};
use super::{CENT, channel_option, events, three_calls_paid, undecided};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_behind_a_nonce_the_node_lost_is_mined_once_the_pass_fills_it() {
    let extra = channel_option("claim_every_secs = 0");
    let options = Options {
        extra_toml: extra,
        receipt_timeout_secs: 1,
        lost_nonce_grace_secs: 1,
        anvil_args: vec![],
        ..Default::default()
    };
    let h = Harness::start_with(options).await;
    let seller_before = h.chain.balance(pay_to()).await;
    three_calls_paid(&h).await;
    let pass = async || h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();
    let mined = async |hash: &str, within: Duration| {
        let hash: TxHash = hash.parse().unwrap();
        let receipt = wait_for_receipt(h.chain.chain.as_ref(), hash, within, Duration::from_millis(20)).await;
        receipt.unwrap().map(|r| r.status())
    };

    // The settler key's next nonce goes to a transaction (sent outside paygate) that the node accepts; the pass's
    // claim takes the nonce after it; then the node loses the first (and, anvil's way, the claim that depends on
    // it; the next pass sends the claim's bytes again).
    let settler = dev_account(0).address();
    h.chain.rpc("evm_setAutomine", json!([false])).await;
    let lost = h.chain.rpc("eth_sendTransaction", json!([{"from": settler, "to": settler, "gas": "0x5208"}])).await;
    pass().await;
    let claim = undecided(&h).await;
    assert_eq!(claim.iter().map(|t| t.0).collect::<Vec<_>>(), [TransactionKind::Claim], "{claim:?}");
    let claim = claim[0].1.clone();
    h.chain.rpc("anvil_dropTransaction", json!([lost])).await;
    h.chain.rpc("evm_setAutomine", json!([true])).await;

    // Before the grace: the claim waits behind the gap, pass after pass.
    pass().await;
    assert_eq!(undecided(&h).await, [(TransactionKind::Claim, claim.clone())]);
    assert_eq!(mined(&claim, Duration::from_millis(500)).await, None, "it waits behind the lost nonce");

    // After it: the pass fills the gap, and the claim is mined, then decided; the sweep follows.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    pass().await;
    assert_eq!(mined(&claim, Duration::from_secs(5)).await, Some(true), "mined once the gap is filled");
    assert_eq!(mined(lost.as_str().unwrap(), Duration::ZERO).await, None, "the lost one stays lost");
    pass().await;
    assert_eq!(undecided(&h).await, []);
    assert_eq!(events::<BatchSettlement::Claimed>(&h).await, 1);
    assert_eq!(h.chain.balance(pay_to()).await, seller_before + 3 * CENT, "the three calls, swept once");
}
