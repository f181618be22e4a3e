//! The paying client after its seller closed its idle x402 channel (`close_idle_secs`) and refunded the unspent
//! deposit: the next voucher is above what the channel holds, the seller's corrective 402 states the channel, and
//! the client tops the same channel up and pays the call, once; `reconcile` finds the seller's refunds in the
//! escrow and gives the budgets back exactly what came back to the wallet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use paygate_chain::Chain;
use paygate_chain::devtoken::dev_account;
use paygate_client::{Policy, Reconciled, SpendLog, SpendState, now_ms, reconcile};

use super::common::{self, Harness, Options, pay_to};
use super::{CENT, channel_option};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paying_client_tops_up_a_channel_whose_idle_rest_the_seller_refunded() {
    let extra = channel_option("claim_every_secs = 0\nclose_idle_secs = 0");
    let h = Harness::start_with(Options { extra_toml: extra, ..Default::default() }).await;
    let buyer = dev_account(6);
    let (buyer_before, seller_before) = (h.chain.balance(buyer.address()).await, h.chain.balance(pay_to()).await);
    let log = SpendLog::in_memory().await.unwrap();
    let client = common::channel_client(&buyer, Policy::default(), &log, 5 * CENT);
    let url = h.url("/v1/quote");
    let pass = || async { h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap() };
    for _ in 0..2 {
        assert_eq!(client.send("GET", &url, Default::default(), None).await.unwrap().status, 200);
    }
    pass().await;
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_before - 2 * CENT, "the seller refunded the rest");

    let paid = client.send("GET", &url, Default::default(), None).await.unwrap();
    assert_eq!(paid.status, 200);
    let sessions = log.sessions().await.unwrap();
    assert_eq!(sessions.len(), 1, "the same channel pays on");
    let session = &sessions[0];
    assert_eq!(
        (session.deposit.as_str(), session.cumulative.as_str(), session.state.as_str()),
        ("70000", "30000", "open")
    );
    let channel = h.gateway.store().channel(&session.channel_id).await.unwrap().unwrap();
    assert_eq!((channel.deposit, channel.charged), (7 * CENT, 3 * CENT), "the seller's record agrees");
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_before - 7 * CENT, "one top-up");
    assert_eq!(h.upstream.hits(), 3, "the refused voucher reached no upstream");
    let records = log.records().await.unwrap();
    let count = |kind: &str, state: SpendState| records.iter().filter(|r| r.kind == kind && r.state == state).count();
    assert_eq!((count("voucher", SpendState::Paid), count("voucher", SpendState::Rejected)), (3, 1));
    assert_eq!(count("deposit", SpendState::Paid), 2);

    // The next pass claims the third call and, the channel idle again, refunds the rest: three calls paid once.
    pass().await;
    assert_eq!(h.chain.balance(pay_to()).await, seller_before + 3 * CENT);
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_before - 3 * CENT);

    // The budgets counted both deposits; the seller's two refunds (3 and 4 cents) came back without the payer
    // asking. The escrow says so, and reconcile gives the budgets back exactly that, once.
    let chains: HashMap<u64, Arc<dyn Chain>> = HashMap::from([(31337, h.chain.chain.clone())]);
    assert_eq!(log.spent("", now_ms()).await.unwrap().total, 10 * CENT);
    assert_eq!(reconcile(&log, &chains, now_ms()).await.unwrap(), Reconciled { refunds: 1, ..Default::default() });
    assert_eq!(log.spent("", now_ms()).await.unwrap().total, 3 * CENT, "what left the wallet");
    let records = log.records().await.unwrap();
    let refunds: Vec<_> = records.iter().filter(|r| r.kind == "refund").collect();
    assert_eq!(refunds.len(), 1, "{records:?}");
    assert_eq!((refunds[0].amount_atomic.as_str(), refunds[0].state), ("70000", SpendState::Paid));
    let session = log.session(&session.channel_id).await.unwrap().unwrap();
    assert_eq!((session.deposit.as_str(), session.state.as_str()), ("30000", "open"), "what the channel holds");
    assert_eq!(reconcile(&log, &chains, now_ms()).await.unwrap(), Reconciled::default(), "once");

    // Nothing is left to refund: the payer's close is the spend log's alone, and gives nothing back twice.
    let closed = client.close_session(&session.channel_id).await.unwrap();
    assert_eq!(closed.refunded, "0");
    assert_eq!(log.spent("", now_ms()).await.unwrap().total, 3 * CENT);
}
