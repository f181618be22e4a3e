//! MPP `evm` sessions on anvil, with the session escrow's stand-in placed by `paygate dev fund`: paygate's own
//! client (no released MPP SDK has the method) opens a channel with one relayed deposit and pays each call with a
//! voucher checked locally; the reconciler's pass settles the channel; a `close` settles the rest and refunds
//! the payer exactly. Refused credentials commit nothing.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::SignerSync;
use alloy::sol_types::SolCall;
use common::{Harness, Options, kind, payer, problem, session_challenge};
use paygate_chain::Chain;
use paygate_chain::devtoken::dev_account;
use paygate_chain::session_escrow::{self, DEV_ESCROW, EvmPaymentChannel};
use paygate_client::session::EvmSession;
use paygate_core::clock::Clock;
use paygate_proto::mpp::Challenge;
use paygate_store::PaymentState;
use paygate_testkit::UpstreamMode;
use serde_json::{Value, json};

const CENT: u128 = 10_000;

/// The payee: the escrow pays out only to a payee that settles itself, so it is the settler key's address.
fn payee() -> Address {
    dev_account(0).address()
}

async fn harness() -> Harness {
    harness_with("").await
}

/// The harness with `extra` lines in the session option.
async fn harness_with(extra: &str) -> Harness {
    harness_options(extra, Options::default()).await
}

async fn harness_options(extra: &str, options: Options) -> Harness {
    let option = format!(
        r#"
        [[accept]]
        rail = "evm-session"
        network = "local"
        asset = "USDC"
        pay_to = "{}"
        settler_key = "{}"
        settle_every_secs = 0
        suggested_deposit = "$0.10"
        {extra}
        "#,
        payee(),
        paygate_testkit::SETTLER_KEY
    );
    Harness::start_with(Options { extra_toml: option, ..options }).await
}

/// The session challenge of a 402 for `GET /v1/quote`.
async fn challenge(h: &Harness) -> Challenge {
    session_challenge(&h.send("GET", "/v1/quote", None, None).await)
}

fn session(ch: &Challenge, signer: u32, salt: u8) -> EvmSession {
    let domain = ("USD Coin".to_owned(), "2".to_owned());
    EvmSession::new(dev_account(signer), ch, domain, B256::repeat_byte(salt)).unwrap()
}

async fn pay(h: &Harness, s: &EvmSession, ch: &Challenge, payload: Value) -> reqwest::Response {
    h.send("GET", "/v1/quote", Some(("authorization", &s.credential(ch, payload))), None).await
}

fn receipt(response: &reqwest::Response) -> Value {
    let header = response.headers().get("payment-receipt").expect("a receipt").to_str().unwrap();
    serde_json::from_slice(&paygate_proto::b64::url_decode(header).unwrap()).unwrap()
}

fn valid_before(h: &Harness) -> u64 {
    h.clock.now_unix() + 600
}

async fn on_chain(h: &Harness, id: B256) -> EvmPaymentChannel::Channel {
    session_escrow::channel(h.chain.chain.as_ref(), DEV_ESCROW, id).await.unwrap()
}

async fn charged(h: &Harness, s: &EvmSession) -> u128 {
    h.gateway.store().channel(&format!("{:#x}", s.channel_id())).await.unwrap().unwrap().charged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_pays_calls_from_one_deposit_settles_them_and_refunds_the_rest_on_close() {
    let h = harness().await;
    let (seller_before, payer_before) = (h.chain.balance(payee()).await, h.chain.balance(payer()).await);
    let ch = challenge(&h).await;
    assert_eq!(ch.request["amount"], CENT.to_string());
    assert_eq!(ch.request["suggestedDeposit"], (10 * CENT).to_string());
    assert_eq!(ch.request["methodDetails"]["escrowContract"], format!("{DEV_ESCROW:#x}"));
    let mut s = session(&ch, 1, 1);

    // Open: the deposit is relayed and on chain before the first call is served.
    let open = s.open(10 * CENT, CENT, valid_before(&h)).unwrap();
    let response = pay(&h, &s, &ch, open).await;
    assert_eq!(response.status(), 200);
    let first = receipt(&response);
    assert_eq!(
        (&first["intent"], &first["spent"], &first["acceptedCumulative"]),
        (&json!("session"), &json!(CENT.to_string()), &json!(CENT.to_string()))
    );
    assert!(first["txHash"].as_str().is_some_and(|h| h.starts_with("0x")), "{first}");
    assert_eq!(h.chain.balance(payer()).await, payer_before - 10 * CENT);
    let state = on_chain(&h, s.channel_id()).await;
    assert_eq!((state.payer, state.payee, state.deposit, state.settled), (payer(), payee(), 10 * CENT, 0));
    // paygate's hashes are the escrow's.
    let digest = EvmPaymentChannel::getVoucherDigestCall { channelId: s.channel_id(), cumulativeAmount: 7 };
    let out = h
        .chain
        .chain
        .call(TransactionRequest::default().to(DEV_ESCROW).input(digest.abi_encode().into()))
        .await
        .unwrap();
    assert_eq!(B256::from_slice(&out), session_escrow::voucher_digest(s.channel_id(), 7, 31337, DEV_ESCROW));

    // Four more calls, each paid by a voucher checked locally: no transaction.
    let block = h.chain.chain.block_number().await.unwrap();
    for k in 2..=5u128 {
        let voucher = s.voucher(CENT).unwrap();
        let response = pay(&h, &s, &ch, voucher).await;
        assert_eq!(response.status(), 200);
        assert_eq!(receipt(&response)["spent"], (k * CENT).to_string());
    }
    assert_eq!(h.chain.chain.block_number().await.unwrap(), block, "vouchers touch no chain");
    assert_eq!(h.chain.balance(payee()).await, seller_before);

    // A call the upstream fails is not charged; the payer takes its voucher back.
    h.upstream.set_mode(UpstreamMode::Fail);
    let voucher = s.voucher(CENT).unwrap();
    assert_eq!(pay(&h, &s, &ch, voucher).await.status(), 500);
    s.not_charged(CENT);
    h.upstream.set_mode(UpstreamMode::Ok);
    assert_eq!(charged(&h, &s).await, 5 * CENT);

    // One reconciler pass settles the channel: the seller has exactly what was charged.
    let done = h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();
    assert_eq!(done.channels_claimed, 1);
    assert_eq!(h.chain.balance(payee()).await, seller_before + 5 * CENT);
    assert_eq!(on_chain(&h, s.channel_id()).await.settled, 5 * CENT);
    let again = h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();
    assert_eq!(again.channels_claimed, 0, "nothing is settled twice");

    // A sixth call, then close: settled with the final voucher, the rest refunded exactly.
    let voucher = s.voucher(CENT).unwrap();
    assert_eq!(pay(&h, &s, &ch, voucher).await.status(), 200);
    let response = pay(&h, &s, &ch, s.close()).await;
    assert_eq!(response.status(), 204);
    let closed = receipt(&response);
    assert_eq!(
        (&closed["spent"], &closed["deposit"]),
        (&json!((6 * CENT).to_string()), &json!((6 * CENT).to_string()))
    );
    assert_eq!(h.upstream.hits(), 7, "six paid calls and the failed one; close never reaches the upstream");
    assert_eq!(h.chain.balance(payee()).await, seller_before + 6 * CENT);
    assert_eq!(h.chain.balance(payer()).await, payer_before - 6 * CENT);
    assert!(on_chain(&h, s.channel_id()).await.finalized);

    // A closed channel pays nothing more: 410, the channel is finalized.
    let voucher = s.voucher_for(7 * CENT);
    let (status, refused) = problem(pay(&h, &s, &ch, voucher).await).await;
    assert_eq!((status, kind(&refused).1), (410, "session_channel_finalized"));
    let ledger = h.ledger().await;
    let settled: Vec<_> = ledger.iter().filter(|r| r.state == PaymentState::Settled).collect();
    assert_eq!(settled.len(), 6);
    assert!(settled.iter().all(|r| r.rail == "evm-session" && r.amount == CENT.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_session_credentials_commit_nothing() {
    let h = harness().await;
    let ch = challenge(&h).await;
    let mut s = session(&ch, 1, 2);
    let payer_before = h.chain.balance(payer()).await;

    // An open whose deposit authorization is signed by someone else: refused before anything is sent.
    let mut forged = s.clone();
    let mut open = forged.open(3 * CENT, CENT, valid_before(&h)).unwrap();
    open["signature"] = session(&ch, 2, 2).open(3 * CENT, CENT, valid_before(&h)).unwrap()["signature"].clone();
    let (status, refused) = problem(pay(&h, &s, &ch, open).await).await;
    assert_eq!((status, kind(&refused).1), (402, "session_invalid_signature"));
    assert_eq!(h.chain.balance(payer()).await, payer_before);

    // An open whose deposit authorization expires before it could be submitted: refused, nothing moves.
    let mut late = s.clone();
    let open = late.open(3 * CENT, CENT, h.clock.now_unix() + 3).unwrap();
    let (status, refused) = problem(pay(&h, &late, &ch, open).await).await;
    assert_eq!((status, kind(&refused).1), (402, "session_deposit_expired"));
    assert_eq!(h.chain.balance(payer()).await, payer_before);

    // A voucher for a channel the escrow does not hold.
    let (status, refused) = problem(pay(&h, &s, &ch, s.voucher_for(CENT)).await).await;
    assert_eq!((status, kind(&refused).1), (410, "session_channel_not_found"));

    // Open with three calls' worth; one paid.
    let open = s.open(3 * CENT, CENT, valid_before(&h)).unwrap();
    assert_eq!(pay(&h, &s, &ch, open).await.status(), 200);

    // The same voucher again: it no longer covers what is charged plus a call; nothing more is charged.
    let second = s.voucher(CENT).unwrap();
    assert_eq!(pay(&h, &s, &ch, second.clone()).await.status(), 200);
    let (status, replayed) = problem(pay(&h, &s, &ch, second).await).await;
    assert_eq!((status, kind(&replayed).1), (402, "session_insufficient_balance"));
    assert_eq!(charged(&h, &s).await, 2 * CENT);

    // Lower than what is charged plus this call.
    let (status, lower) = problem(pay(&h, &s, &ch, s.voucher_for(2 * CENT + 1)).await).await;
    assert_eq!((status, kind(&lower).1), (402, "session_insufficient_balance"));

    // Signed by someone other than the channel's signer.
    let digest = session_escrow::voucher_digest(s.channel_id(), 3 * CENT, 31337, DEV_ESCROW);
    let mut wrong = s.voucher_for(3 * CENT);
    let signature = dev_account(2).sign_hash_sync(&digest).unwrap();
    wrong["signature"] = format!("0x{}", alloy::hex::encode(signature.as_bytes())).into();
    let (status, refused) = problem(pay(&h, &s, &ch, wrong).await).await;
    assert_eq!((status, kind(&refused).1), (402, "session_signer_mismatch"));

    // Above the deposit.
    let (status, over) = problem(pay(&h, &s, &ch, s.voucher_for(4 * CENT)).await).await;
    assert_eq!((status, kind(&over).1), (402, "session_amount_exceeds_deposit"));

    // Malformed.
    let (status, malformed) = problem(pay(&h, &s, &ch, json!({"action": "voucher"})).await).await;
    assert_eq!((status, kind(&malformed).1), (400, "session_malformed"));
    assert_eq!(charged(&h, &s).await, 2 * CENT, "no refusal charged anything");

    // A top-up (management: 204, the upstream is not called) makes room for the call above the deposit.
    let hits = h.upstream.hits();
    let top_up = s.top_up(2 * CENT, B256::repeat_byte(9), valid_before(&h));
    let response = pay(&h, &s, &ch, top_up).await;
    assert_eq!(response.status(), 204);
    assert_eq!(receipt(&response)["deposit"], (5 * CENT).to_string());
    assert_eq!(on_chain(&h, s.channel_id()).await.deposit, 5 * CENT);
    s.cumulative = 2 * CENT;
    let third = s.voucher(CENT).unwrap();
    assert_eq!(pay(&h, &s, &ch, third).await.status(), 200);
    assert_eq!(h.upstream.hits(), hits + 1);
    assert_eq!(h.chain.balance(payer()).await, payer_before - 5 * CENT);
}

/// paygate's paying client (the library behind `paygate pay --session-deposit`): one deposit opens a channel and
/// counts against the budgets once; later calls are vouchers; a call the deposit cannot cover tops it up within
/// the budget; closing refunds what was not used, and the budgets get it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paying_client_pays_sessions_within_its_budgets_and_closes_them() {
    use paygate_client::{PayError, Policy, PolicyViolation, SpendLog};

    let h = harness().await;
    let buyer = dev_account(3);
    let buyer_before = h.chain.balance(buyer.address()).await;
    let seller_before = h.chain.balance(payee()).await;
    let log = SpendLog::in_memory().await.unwrap();
    // A $0.05 deposit covers five one-cent calls; the budget allows two deposits, not three.
    let policy = Policy { daily_budget: Some(120_000), ..Default::default() };
    let client = common::channel_client(&buyer, policy, &log, 50_000);
    let url = h.url("/v1/quote");
    let get = || client.send("GET", &url, Default::default(), None);
    let spent = || async { log.spent("127.0.0.1", paygate_client::now_ms()).await.unwrap().total };

    // A channel, two calls, closed: the unused deposit comes back on chain and to the budgets.
    for _ in 0..2 {
        let paid = get().await.unwrap();
        assert_eq!(paid.status, 200);
        assert_eq!(paid.payment.unwrap().offer.scheme, "evm/session", "sessions are preferred when enabled");
    }
    let challenged = h.gateway.metrics().count(paygate_gateway::Outcome::Challenged);
    assert_eq!(challenged, 1, "the second call answered the remembered challenge, without a 402 round trip");
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_before - 5 * CENT, "one deposit");
    assert_eq!(spent().await, 50_000, "vouchers count once, through their deposit");
    let first = log.sessions().await.unwrap().remove(0);
    assert_eq!((first.deposit.as_str(), first.cumulative.as_str(), first.state.as_str()), ("50000", "20000", "open"));
    let closed = client.close_session(&first.channel_id).await.unwrap();
    assert_eq!((closed.settled.as_str(), closed.refunded.as_str()), ("20000", "30000"));
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_before - 2 * CENT);
    assert_eq!(h.chain.balance(payee()).await, seller_before + 2 * CENT);
    assert_eq!(spent().await, 20_000);

    // A new channel: five calls, then the sixth tops it up by another deposit in the same credential.
    for _ in 0..6 {
        assert_eq!(get().await.unwrap().status, 200);
    }
    let second = log.sessions().await.unwrap().into_iter().find(|s| s.state == "open").unwrap();
    assert_eq!(on_chain(&h, second.channel_id.parse().unwrap()).await.deposit, 10 * CENT);
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_before - 12 * CENT);
    assert_eq!(spent().await, 120_000);
    for _ in 0..4 {
        assert_eq!(get().await.unwrap().status, 200);
    }
    // The eleventh needs a third deposit, which the budget refuses: nothing is signed or sent.
    match get().await {
        Err(PayError::Policy(PolicyViolation::OverDailyBudget { .. })) => {}
        other => panic!("expected the budget to refuse, got {other:?}"),
    }
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_before - 12 * CENT);

    // Closing a channel whose deposit was all used refunds nothing; the seller has every call.
    let closed = client.close_session(&second.channel_id).await.unwrap();
    assert_eq!((closed.settled.as_str(), closed.refunded.as_str()), ("100000", "0"));
    assert_eq!(h.chain.balance(payee()).await, seller_before + 12 * CENT);
    assert!(client.close_session(&second.channel_id).await.is_err(), "a closed channel is not closed twice");
    let kinds: Vec<String> = log.records().await.unwrap().into_iter().map(|r| r.kind).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "deposit").count(), 3);
    assert_eq!(kinds.iter().filter(|k| *k == "voucher").count(), 12);
    assert_eq!(kinds.iter().filter(|k| *k == "refund").count(), 2);
}

alloy::sol! {
    interface Approve {
        function approve(address spender, uint256 value) external returns (bool);
    }
}

/// A payer that sends `approve` and `open` itself, then names the transaction (`type: "hash"`): paygate reads the
/// channel from the escrow, takes it once its open is mined, and pays the call from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_the_payer_opened_itself_is_taken_by_its_hash() {
    use alloy::primitives::U256;
    use paygate_chain::{TxSender, wait_for_receipt};

    let h = harness().await;
    let ch = challenge(&h).await;
    let payer_key = dev_account(4);
    let salt = B256::repeat_byte(4);
    let s = EvmSession::new(payer_key.clone(), &ch, ("USD Coin".into(), "2".into()), salt).unwrap();
    let sender = TxSender::new(h.chain.chain.clone(), payer_key.clone());
    let approve = Approve::approveCall { spender: DEV_ESCROW, value: U256::from(3 * CENT) };
    let open = EvmPaymentChannel::openCall {
        payee: payee(),
        token: h.chain.token,
        deposit: 3 * CENT,
        salt,
        authorizedSigner: Address::ZERO,
    };
    let mut hash = B256::ZERO;
    for (to, data) in [(h.chain.token, approve.abi_encode()), (DEV_ESCROW, open.abi_encode())] {
        hash = sender.send(to, data.into()).await.unwrap();
        let receipt =
            wait_for_receipt(h.chain.chain.as_ref(), hash, Duration::from_secs(10), Duration::from_millis(20));
        assert!(receipt.await.unwrap().unwrap().status());
    }
    let mut payload = s.voucher_for(CENT);
    payload["action"] = "open".into();
    payload["type"] = "hash".into();
    payload["hash"] = format!("{hash:#x}").into();
    payload["salt"] = format!("{salt:#x}").into();
    let response = pay(&h, &s, &ch, payload.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(receipt(&response)["spent"], CENT.to_string());
    assert_eq!(h.gateway.store().channel(&format!("{:#x}", s.channel_id())).await.unwrap().unwrap().deposit, 3 * CENT);

    // Another payer naming the same transaction as its own open: the channel id is not its, nothing is charged.
    let other = EvmSession::new(dev_account(5), &ch, ("USD Coin".into(), "2".into()), salt).unwrap();
    let (status, refused) = problem(pay(&h, &other, &ch, payload).await).await;
    assert_eq!((status, kind(&refused).1), (400, "session_malformed"));
    assert_eq!(charged(&h, &s).await, CENT);
}

/// A channel idle for `close_idle_secs` is settled and closed by the reconciler: the payee gets what was charged,
/// the payer the rest of the deposit, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_settled_and_closed_with_the_rest_refunded() {
    // A `POST` route too: a voucher sent on its own (as a stream waiting for one gets it) is a bare `POST`.
    let h = harness_with(
        r#"close_idle_secs = 0

        [[routes]]
        method = "POST"
        path = "/v1/quote"
        price = "$0.01""#,
    )
    .await;
    let ch = challenge(&h).await;
    let mut s = session(&ch, 1, 6);
    let (seller_before, payer_before) = (h.chain.balance(payee()).await, h.chain.balance(payer()).await);
    let open = s.open(5 * CENT, CENT, valid_before(&h)).unwrap();
    assert_eq!(pay(&h, &s, &ch, open).await.status(), 200);
    let voucher = s.voucher(CENT).unwrap();
    assert_eq!(pay(&h, &s, &ch, voucher).await.status(), 200);

    let done = h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();
    assert_eq!(done.channels_claimed, 1);
    let state = on_chain(&h, s.channel_id()).await;
    assert!(state.finalized, "closed");
    assert_eq!(state.settled, 2 * CENT);
    assert_eq!(h.chain.balance(payee()).await, seller_before + 2 * CENT);
    assert_eq!(h.chain.balance(payer()).await, payer_before - 2 * CENT);
    // Closed: another pass sends nothing, and a voucher is refused as MPP says of a finalized channel (410), so
    // that a client knows to open another rather than top this one up.
    let again = h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();
    assert_eq!(again.channels_claimed, 0);
    let (status, refused) = problem(pay(&h, &s, &ch, s.voucher_for(3 * CENT)).await).await;
    assert_eq!(
        (status, kind(&refused)),
        (410, ("https://paymentauth.org/problems/session/channel-finalized", "session_channel_finalized"))
    );
    let post = session_challenge(&h.send("POST", "/v1/quote", None, None).await);
    let alone = s.credential(&post, s.voucher_for(3 * CENT));
    let (status, refused) = problem(h.send("POST", "/v1/quote", Some(("authorization", &alone)), None).await).await;
    assert_eq!((status, kind(&refused).1), (410, "session_channel_finalized"), "a voucher sent on its own too");
    assert_eq!(charged(&h, &s).await, 2 * CENT);
}

/// paygate's paying client after the seller closed its idle channel: the next call's voucher is refused with 410,
/// and the client forgets the channel and pays that call from a new one, once; nothing is charged twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paying_client_pays_from_a_new_channel_once_the_seller_closed_its_idle_one() {
    use paygate_client::{Policy, SpendLog, SpendState};

    let h = harness_with("close_idle_secs = 0").await;
    let buyer = dev_account(6);
    let (buyer_before, seller_before) = (h.chain.balance(buyer.address()).await, h.chain.balance(payee()).await);
    let log = SpendLog::in_memory().await.unwrap();
    let client = common::channel_client(&buyer, Policy::default(), &log, 5 * CENT);
    let url = h.url("/v1/quote");
    for _ in 0..2 {
        assert_eq!(client.send("GET", &url, Default::default(), None).await.unwrap().status, 200);
    }
    let first = log.sessions().await.unwrap().remove(0);
    h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();
    assert!(on_chain(&h, first.channel_id.parse().unwrap()).await.finalized, "the seller closed it");
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_before - 2 * CENT, "the rest came back");

    let paid = client.send("GET", &url, Default::default(), None).await.unwrap();
    assert_eq!(paid.status, 200);
    let sessions = log.sessions().await.unwrap();
    let state = |id: &str| sessions.iter().find(|s| s.channel_id == id).map(|s| s.state.clone());
    assert_eq!(state(&first.channel_id).as_deref(), Some("closed"));
    let second = sessions.iter().find(|s| s.state == "open").expect("a new channel");
    assert_eq!((second.deposit.as_str(), second.cumulative.as_str()), ("50000", "10000"));
    let second_id: B256 = second.channel_id.parse().unwrap();
    assert_eq!(on_chain(&h, second_id).await.deposit, 5 * CENT);
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_before - 7 * CENT, "settled 2 calls, one new deposit");
    assert_eq!(h.upstream.hits(), 3, "the refused voucher reached no upstream");
    let vouchers = |state: SpendState| {
        let records = log.records();
        async move { records.await.unwrap().iter().filter(|r| r.kind == "voucher" && r.state == state).count() }
    };
    assert_eq!((vouchers(SpendState::Paid).await, vouchers(SpendState::Rejected).await), (3, 1));
    h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();
    assert_eq!(h.chain.balance(payee()).await, seller_before + 3 * CENT, "three calls, each paid once");

    // Closing a channel the seller has closed meanwhile: the seller's 410 is reported, and the spend log no longer
    // lists the channel as open.
    match client.close_session(&second.channel_id).await {
        Err(paygate_client::PayError::Rejected { status: 410, .. }) => {}
        other => panic!("expected the seller's 410, got {other:?}"),
    }
    assert_eq!(log.session(&second.channel_id).await.unwrap().unwrap().state, "closed");

    // The seller's two closes refunded 3 and 4 cents without the payer asking; the budgets counted both
    // deposits. The escrow says so, and reconcile gives the budgets back exactly that, once.
    use paygate_client::{Reconciled, now_ms, reconcile};
    let chains: HashMap<u64, Arc<dyn Chain>> = HashMap::from([(31337, h.chain.chain.clone())]);
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_before - 3 * CENT);
    assert_eq!(log.spent("", now_ms()).await.unwrap().total, 10 * CENT);
    assert_eq!(reconcile(&log, &chains, now_ms()).await.unwrap(), Reconciled { refunds: 2, ..Default::default() });
    assert_eq!(log.spent("", now_ms()).await.unwrap().total, 3 * CENT, "what left the wallet");
    let refunds: Vec<String> =
        log.records().await.unwrap().into_iter().filter(|r| r.kind == "refund").map(|r| r.amount_atomic).collect();
    assert_eq!(refunds, ["30000", "40000"]);
    assert_eq!(reconcile(&log, &chains, now_ms()).await.unwrap(), Reconciled::default(), "once");
}

/// The settlement and the close of an idle session each outlive the receipt timeout (anvil mines only when the
/// test says): each stays journaled, the pass after sends nothing new while it is undecided, and the close mined
/// meanwhile is recorded by the next pass: the channel closed in the store, the rest refunded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_outliving_its_wait_is_recorded_once_the_chain_mines_it() {
    use paygate_core::channel_journal::TransactionKind;

    let options = Options { receipt_timeout_secs: 1, anvil_args: vec![], ..Default::default() };
    let h = harness_options("close_idle_secs = 0", options).await;
    let ch = challenge(&h).await;
    let mut s = session(&ch, 1, 9);
    let (seller_before, payer_before) = (h.chain.balance(payee()).await, h.chain.balance(payer()).await);
    let open = s.open(5 * CENT, CENT, valid_before(&h)).unwrap();
    assert_eq!(pay(&h, &s, &ch, open).await.status(), 200);
    let store = h.gateway.store().clone();
    let id = format!("{:#x}", s.channel_id());
    let option = store.channel(&id).await.unwrap().unwrap().option;
    let undecided = async || {
        let journal = store.undecided_transactions(&option).await.unwrap();
        journal.into_iter().map(|t| t.kind).collect::<Vec<_>>()
    };
    let pass = async || h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();

    h.chain.rpc("evm_setAutomine", json!([false])).await;
    pass().await;
    assert_eq!(undecided().await, [TransactionKind::Settle]);
    pass().await;
    assert_eq!(undecided().await, [TransactionKind::Settle], "nothing new while it is undecided");
    h.chain.rpc("evm_mine", json!([])).await;
    pass().await;
    assert_eq!(undecided().await, [TransactionKind::Close]);
    assert_eq!(store.channel(&id).await.unwrap().unwrap().deposit, 5 * CENT, "not closed before it is mined");
    h.chain.rpc("evm_mine", json!([])).await;
    pass().await;
    assert_eq!(undecided().await, []);

    assert!(on_chain(&h, s.channel_id()).await.finalized);
    let closed = store.channel(&id).await.unwrap().unwrap();
    assert_eq!((closed.deposit, closed.charged, closed.claimed), (CENT, CENT, CENT));
    assert_eq!(h.chain.balance(payee()).await, seller_before + CENT);
    assert_eq!(h.chain.balance(payer()).await, payer_before - CENT);
    h.chain.rpc("evm_setAutomine", json!([true])).await;
    pass().await;
    assert_eq!(h.chain.balance(payer()).await, payer_before - CENT, "refunded once");
}

/// The seller's cap on what it served and has not settled counts every channel of a payer: a second channel does
/// not open a second allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unsettled_cap_counts_all_of_a_payers_channels() {
    let h = harness_with("max_unsettled = \"$0.03\"").await;
    let ch = challenge(&h).await;
    let mut first = session(&ch, 1, 7);
    let open = first.open(5 * CENT, CENT, valid_before(&h)).unwrap();
    assert_eq!(pay(&h, &first, &ch, open).await.status(), 200);
    let voucher = first.voucher(CENT).unwrap();
    assert_eq!(pay(&h, &first, &ch, voucher).await.status(), 200);
    let mut second = session(&ch, 1, 8);
    let open = second.open(5 * CENT, CENT, valid_before(&h)).unwrap();
    assert_eq!(pay(&h, &second, &ch, open).await.status(), 200, "3 cents in all: within the cap");
    let voucher = second.voucher(CENT).unwrap();
    let (status, refused) = problem(pay(&h, &second, &ch, voucher.clone()).await).await;
    assert_eq!((status, kind(&refused).1), (429, "channel_unclaimed_over_cap"));
    assert_eq!(charged(&h, &second).await, CENT, "nothing charged");
    // Once settled, the same voucher pays.
    h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();
    assert_eq!(pay(&h, &second, &ch, voucher).await.status(), 200);
}

/// A close while a call paid from the channel is still being served is refused (409), nothing settled; once the
/// call is answered, the close settles it and refunds the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_waits_for_the_calls_in_flight() {
    let h = harness().await;
    let ch = challenge(&h).await;
    let mut s = session(&ch, 1, 9);
    let (seller_before, payer_before) = (h.chain.balance(payee()).await, h.chain.balance(payer()).await);
    let open = s.open(4 * CENT, CENT, valid_before(&h)).unwrap();
    assert_eq!(pay(&h, &s, &ch, open).await.status(), 200);
    h.upstream.set_mode(UpstreamMode::Slow);
    let voucher = s.voucher(CENT).unwrap();
    let credential = s.credential(&ch, voucher);
    let (http, url) = (h.http.clone(), h.url("/v1/quote"));
    let slow = tokio::spawn(async move { http.get(url).header("authorization", credential).send().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, refused) = problem(pay(&h, &s, &ch, s.close()).await).await;
    assert_eq!((status, kind(&refused).1), (409, "session_calls_in_flight"));
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    h.upstream.set_mode(UpstreamMode::Ok);
    assert_eq!(pay(&h, &s, &ch, s.close()).await.status(), 204);
    assert_eq!(h.chain.balance(payee()).await, seller_before + 2 * CENT);
    assert_eq!(h.chain.balance(payer()).await, payer_before - 2 * CENT);
}
