//! Channels whose deposits go through Permit2 (`asset_transfer_method = "permit2"`, for tokens without
//! EIP-3009): the official client's deposit and paygate's own client's, on anvil with Permit2's and the Permit2
//! deposit collector's test-only stand-ins at their canonical addresses.

use std::time::Duration;

use paygate_chain::devtoken::dev_account;
use paygate_chain::escrow::{self, BatchSettlement};
use paygate_testkit::node;
use serde_json::json;

use super::common::{self, Harness, Options, pay_to, payer};
use super::{CENT, channel_id, channel_option, events, offer};

/// A seller of the test token declared without its EIP-712 domain, as a token without EIP-3009 is: its channels
/// take Permit2 deposits (the default then), claimed on every pass.
async fn permit2_seller() -> Harness {
    let plain = format!(
        "[networks.local.assets.PLAIN]\naddress = \"{}\"\ndecimals = 6\nusd = true\n",
        paygate_chain::devtoken::test_usdc_address()
    );
    let channel = channel_option("claim_every_secs = 0").replace("asset = \"USDC\"", "asset = \"PLAIN\"");
    Harness::start_with(Options { extra_toml: format!("{channel}\n{plain}"), ..Default::default() }).await
}

/// A seller of a token without EIP-3009 (declared without an EIP-712 domain), whose channels take Permit2 deposits
/// by default (`asset_transfer_method`): the official client signs a Permit2 `PermitWitnessTransferFrom` for the
/// Permit2 deposit collector (the test-only stand-in at the canonical address), paygate checks it and relays the
/// deposit. Without the payer's approval of Permit2 the deposit is refused before it is relayed, and nothing moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_deposits_through_permit2_when_the_offer_asks() {
    let h = permit2_seller().await;
    let (payer_before, seller_before) = (h.chain.balance(payer()).await, h.chain.balance(pay_to()).await);
    let (_, required) = offer(&h).await;
    let accepted = required["accepts"].as_array().unwrap().iter().find(|a| a["scheme"] == "batch-settlement").unwrap();
    assert_eq!(accepted["extra"]["assetTransferMethod"], "permit2", "{accepted}");
    assert!(accepted["extra"].get("name").is_none(), "no EIP-712 domain to name: {accepted}");
    let url = h.url("/v1/quote");

    // Not approved yet: refused before anything is sent, no channel, nothing called.
    let refused = node::channel(&url, &h.chain.rpc_url, &["--calls", "1", "--deposit", "100000"]).await;
    assert_eq!(refused["statuses"], json!([402]), "{refused}");
    assert!(refused["bodies"][0].as_str().unwrap().contains("permit2_allowance_required"), "{refused}");
    assert_eq!(h.chain.balance(payer()).await, payer_before);
    assert_eq!(events::<BatchSettlement::Deposited>(&h).await, 0);
    assert_eq!(h.upstream.hits(), 0);

    h.chain.approve_permit2(&dev_account(1)).await;

    let answer = node::channel(&url, &h.chain.rpc_url, &["--calls", "3", "--deposit", "100000"]).await;
    assert_eq!(answer["statuses"], json!([200, 200, 200]), "{answer}");
    assert_eq!(h.chain.balance(payer()).await, payer_before - 100_000, "the deposit is in escrow");
    assert_eq!(events::<BatchSettlement::Deposited>(&h).await, 1);
    // Permit2 moved it from the payer straight to the escrow (the ERC-3009 collector receives it first).
    assert_eq!(h.chain.transfers(payer(), escrow::BATCH_SETTLEMENT).await, 1);
    let channel = h.gateway.store().channel(&channel_id()).await.unwrap().unwrap();
    assert_eq!((channel.deposit, channel.charged), (100_000, 3 * CENT));

    h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();
    assert_eq!(h.chain.balance(pay_to()).await, seller_before + 3 * CENT);
}

/// paygate's own paying client on a seller whose channels take Permit2 deposits (a token sold without EIP-3009):
/// it signs the Permit2 deposit the official client signs, and its top-ups are Permit2 deposits too. Each deposit
/// row of the spend log keeps its Permit2 nonce, so that one a crash left `pending` is decided from Permit2's nonce
/// bitmap: a deposit refused before it moved (the payer had not approved Permit2 yet) stays undecided while its
/// deadline runs and is then failed, nothing spent. The channel that refused open never existed: the next call
/// forgets it and opens another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paying_client_deposits_through_permit2_when_the_offer_asks() {
    use std::collections::HashMap;
    use std::sync::Arc;

    use alloy::primitives::U256;
    use paygate_chain::Chain;
    use paygate_client::{PayError, Policy, Reconciled, SpendLog, SpendState, reconcile};

    let h = permit2_seller().await;
    let buyer = dev_account(3);
    let (buyer_before, seller_before) = (h.chain.balance(buyer.address()).await, h.chain.balance(pay_to()).await);
    let log = SpendLog::in_memory().await.unwrap();
    let client = common::channel_client(&buyer, Policy::default(), &log, 3 * CENT);
    let url = h.url("/v1/quote");
    let get = || client.send("GET", &url, Default::default(), None);
    let chains: HashMap<u64, Arc<dyn Chain>> = HashMap::from([(31337, h.chain.chain.clone())]);

    // Not approved yet: the open is refused before it is relayed; its deposit row keeps the Permit2 nonce.
    match get().await {
        Err(PayError::Rejected { status: 402, body, .. }) => {
            assert!(body.contains("permit2_allowance_required"), "{body}")
        }
        other => panic!("expected the seller to refuse the deposit, got {other:?}"),
    }
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_before);
    let refused = log.pending().await.unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].kind, "deposit");
    let nonce = refused[0].nonce.clone().unwrap();
    let nonce: U256 = nonce.strip_prefix("permit2:").unwrap_or_else(|| panic!("{nonce}")).parse().unwrap();
    assert!(!paygate_chain::upto::permit2_nonce_used(h.chain.chain.as_ref(), buyer.address(), nonce).await.unwrap());
    let now = paygate_client::now_ms();
    assert_eq!(reconcile(&log, &chains, now).await.unwrap(), Reconciled { undecided: 1, ..Default::default() });

    h.chain.approve_permit2(&buyer).await;

    // The refused channel is not the seller's: the next call forgets it and pays from a new one; the fourth call
    // tops the new one up with a second Permit2 deposit.
    for _ in 0..4 {
        assert_eq!(get().await.unwrap().status, 200);
    }
    let sessions = log.sessions().await.unwrap();
    let open: Vec<_> = sessions.iter().filter(|s| s.state == "open").collect();
    assert_eq!((sessions.len(), open.len()), (2, 1), "{sessions:?}");
    let channel = h.gateway.store().channel(&open[0].channel_id).await.unwrap().unwrap();
    assert_eq!((channel.deposit, channel.charged), (6 * CENT, 4 * CENT));
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_before - 6 * CENT, "two deposits, through Permit2");
    assert_eq!(h.chain.transfers(buyer.address(), escrow::BATCH_SETTLEMENT).await, 2);
    let records = log.records().await.unwrap();
    let deposits: Vec<_> = records.iter().filter(|r| r.kind == "deposit" && r.state == SpendState::Paid).collect();
    assert_eq!(deposits.len(), 2, "{records:?}");
    for deposit in deposits {
        let nonce = deposit.nonce.as_deref().and_then(|n| n.strip_prefix("permit2:")).unwrap().parse().unwrap();
        let used = paygate_chain::upto::permit2_nonce_used(h.chain.chain.as_ref(), buyer.address(), nonce);
        assert!(used.await.unwrap(), "each deposit's nonce is the one Permit2 used");
    }

    // Past its deadline, the refused deposit is decided: it never moved.
    let later = now + 11 * 60 * 1000;
    assert_eq!(reconcile(&log, &chains, later).await.unwrap(), Reconciled { expired: 1, ..Default::default() });
    assert!(log.pending().await.unwrap().is_empty());

    h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();
    assert_eq!(h.chain.balance(pay_to()).await, seller_before + 4 * CENT);
}
