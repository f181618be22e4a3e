//! Channel payments (x402 `batch-settlement`) on anvil, with the escrow's stand-in at its canonical address: the
//! official `@x402/evm` client deposits once and pays each call with a voucher checked locally; the reconciler's
//! pass claims every voucher in one transaction and sweeps the seller's value in another. Refused vouchers
//! commit nothing. Deposits through Permit2 are in `permit2.rs`; the paying client after its seller's idle close
//! in `seller_close.rs`; a claim behind a nonce the node lost in `lost_nonce.rs`.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;
mod lost_nonce;
mod lying_seller;
mod permit2;
mod seller_close;

use std::time::Duration;

use alloy::primitives::{Address, B256, aliases::U40};
use alloy::rpc::types::Filter;
use alloy::signers::SignerSync;
use alloy::sol_types::SolEvent;
use common::{Harness, Options, decode_x402, encode_x402, kind, pay_to, payer, problem};
use paygate_chain::devtoken::dev_account;
use paygate_chain::escrow::{self, BatchSettlement};
use paygate_core::channel_journal::TransactionKind;
use paygate_store::PaymentState;
use paygate_testkit::{UpstreamMode, node};
use serde_json::{Value, json};

const CENT: u128 = 10_000;

fn channel_option(extra: &str) -> String {
    format!(
        r#"
        [[accept]]
        rail = "batch-settlement"
        network = "local"
        asset = "USDC"
        pay_to = "{}"
        settler_key = "{}"
        {extra}
        "#,
        pay_to(),
        paygate_testkit::SETTLER_KEY
    )
}

async fn harness() -> Harness {
    Harness::start_with(Options { extra_toml: channel_option(""), ..Default::default() }).await
}

async fn events<E: SolEvent>(h: &Harness) -> usize {
    let filter = Filter::new().address(escrow::BATCH_SETTLEMENT).event_signature(E::SIGNATURE_HASH).from_block(0);
    h.chain.chain.logs(filter).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_pays_fifty_calls_from_one_deposit_settled_in_one_batch() {
    // Claims on every pass, so that the passes below are not held back by the schedule.
    let h =
        Harness::start_with(Options { extra_toml: channel_option("claim_every_secs = 0"), ..Default::default() }).await;
    let seller_before = h.chain.balance(pay_to()).await;
    let payer_before = h.chain.balance(payer()).await;

    let answer = node::channel(&h.url("/v1/quote"), &h.chain.rpc_url, &["--calls", "50", "--deposit", "500000"]).await;
    let statuses = answer["statuses"].as_array().unwrap_or_else(|| panic!("{answer}"));
    assert!(statuses.iter().all(|s| s == 200), "{answer}");
    assert_eq!(statuses.len(), 50);
    for (k, receipt) in answer["receipts"].as_array().unwrap().iter().enumerate() {
        assert_eq!(receipt["success"], true);
        assert_eq!(receipt["extra"]["chargedAmount"], CENT.to_string());
        let cumulative = ((k as u128) + 1) * CENT;
        assert_eq!(receipt["extra"]["channelState"]["chargedCumulativeAmount"], cumulative.to_string(), "{receipt}");
    }
    // The deposit moved into escrow once; nothing reached the seller yet, and no call waited for the chain.
    assert_eq!(h.chain.balance(payer()).await, payer_before - 500_000);
    assert_eq!(h.chain.balance(pay_to()).await, seller_before);
    assert_eq!(events::<BatchSettlement::Deposited>(&h).await, 1);
    assert_eq!(h.upstream.hits(), 50);
    let ledger = h.ledger().await;
    assert_eq!(ledger.len(), 50);
    assert!(ledger.iter().all(|row| row.state == PaymentState::Settled && row.rail == "batch-settlement"));
    assert!(ledger.iter().all(|row| row.amount == CENT.to_string()));

    // The admin API shows the channel and the seller's exposure: charged, not yet claimed.
    let admin = h.serve_admin("admin-token").await;
    let http = reqwest::Client::new();
    let unauthorized = http.get(format!("{admin}/api/channels")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let listed: Value = http
        .get(format!("{admin}/api/channels"))
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = h.chain.token.to_checksum(None);
    assert_eq!(listed["unclaimed"][&token], "500000", "{listed}");
    let channel = &listed["channels"][0];
    assert_eq!(
        [&channel["deposit"], &channel["charged"], &channel["claimed"], &channel["payer"]],
        [&json!("500000"), &json!("500000"), &json!("0"), &json!(payer().to_checksum(None))]
    );

    // The dashboard draws the same.
    let url = format!("{admin}/dashboard#token=admin-token");
    let dom = tokio::task::spawn_blocking(move || paygate_testkit::browser::dump_dom(&url, Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(dom.contains(r#"data-loaded="true""#), "the page did not load its data:\n{dom}");
    let row = format!(
        r#"<tr data-channel="{}"><td>{}…</td><td>usdc-local-channel</td><td>{}</td><td class="num">500000</td><td class="num">500000</td><td class="num">0</td><td class="num">500000</td></tr>"#,
        channel_id(),
        &channel_id()[..10],
        payer().to_checksum(None)
    );
    assert!(dom.contains(&row), "{row} not in:\n{dom}");

    // One pass of the reconciler claims all fifty vouchers in one transaction and sweeps them in another.
    let done = h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();
    assert_eq!(done.channels_claimed, 1);
    assert_eq!(h.chain.balance(pay_to()).await, seller_before + 50 * CENT);
    assert_eq!((events::<BatchSettlement::Claimed>(&h).await, events::<BatchSettlement::Settled>(&h).await), (1, 1));
    let channel = h.gateway.store().unclaimed_channels(10).await.unwrap();
    assert!(channel.is_empty(), "everything charged is claimed");
    let listed: Value = http
        .get(format!("{admin}/api/channels"))
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["unclaimed"][&token], "0", "{listed}");
    assert_eq!(listed["channels"][0]["claimed"], "500000");
    // The two transactions, journaled and decided: the claim of fifty calls and the sweep.
    let mut journal: Vec<(String, String, String)> = listed["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["kind"].to_string(), t["state"].to_string(), t["amount"].to_string()))
        .collect();
    journal.sort();
    let expected = [("\"claim\"", "\"mined\"", "\"500000\""), ("\"sweep\"", "\"mined\"", "\"500000\"")];
    assert_eq!(journal, expected.map(|(k, s, a)| (k.to_owned(), s.to_owned(), a.to_owned())), "{listed}");
    // Nothing is claimed twice, even when the store lost what the chain says was claimed (a gateway that stopped
    // between its claim and recording it): the chain decides, and no second claim is sent.
    let store = h.gateway.store();
    let row = store.channel(&channel_id()).await.unwrap().unwrap();
    assert!(store.swap_channel(row.version, &paygate_core::channel::Channel { claimed: 0, ..row }).await.unwrap());
    let again = h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();
    assert_eq!(again.channels_claimed, 0);
    assert_eq!(store.channel(&channel_id()).await.unwrap().unwrap().claimed, 500_000, "recorded from the chain");
    assert_eq!(events::<BatchSettlement::Claimed>(&h).await, 1);
    assert_eq!(h.chain.balance(pay_to()).await, seller_before + 50 * CENT);
}

/// The id of the node client's channel with the test gateway (payer dev account 1, salt zero).
fn channel_id() -> String {
    format!("{:#x}", escrow::channel_id(&config(pay_to()), 31337))
}

fn config(receiver: Address) -> BatchSettlement::ChannelConfig {
    BatchSettlement::ChannelConfig {
        payer: payer(),
        payerAuthorizer: payer(),
        receiver,
        receiverAuthorizer: dev_account(0).address(),
        token: paygate_chain::devtoken::test_usdc_address(),
        withdrawDelay: U40::from(900),
        salt: B256::ZERO,
    }
}

/// A voucher payload for the payer's channel (dev account 1, the node client's default channel: salt zero),
/// signed by `signer` for a cumulative `max`, in the envelope of the 402's batch-settlement offer.
async fn voucher(h: &Harness, signer: u32, receiver: Address, max: u128) -> String {
    let (_, required) = offer(h).await;
    let accepted = required["accepts"].as_array().unwrap().iter().find(|a| a["scheme"] == "batch-settlement").unwrap();
    let id = escrow::channel_id(&config(receiver), 31337);
    let signature = dev_account(signer).sign_hash_sync(&escrow::voucher_digest(id, max, 31337)).unwrap();
    let payload = json!({
        "type": "voucher",
        "channelConfig": {
            "payer": payer().to_checksum(None), "payerAuthorizer": payer().to_checksum(None),
            "receiver": receiver.to_checksum(None), "receiverAuthorizer": dev_account(0).address().to_checksum(None),
            "token": h.chain.token.to_checksum(None), "withdrawDelay": 900, "salt": format!("{:#x}", B256::ZERO),
        },
        "voucher": {
            "channelId": format!("{id:#x}"),
            "maxClaimableAmount": max.to_string(),
            "signature": format!("0x{}", alloy::hex::encode(signature.as_bytes())),
        },
    });
    encode_x402(&json!({"x402Version": 2, "payload": payload, "resource": required["resource"], "accepted": accepted}))
}

async fn offer(h: &Harness) -> (u16, Value) {
    let response = h.send("GET", "/v1/quote", None, None).await;
    let header = response.headers().get("payment-required").unwrap().to_str().unwrap().to_owned();
    (response.status().as_u16(), decode_x402(&header))
}

async fn pay(h: &Harness, signature: &str) -> reqwest::Response {
    h.send("GET", "/v1/quote", Some(("payment-signature", signature)), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_vouchers_commit_nothing() {
    let h = harness().await;
    // Open the channel with three calls' worth; one call paid.
    let answer = node::channel(&h.url("/v1/quote"), &h.chain.rpc_url, &["--calls", "1", "--deposit", "30000"]).await;
    assert_eq!(answer["statuses"][0], 200, "{answer}");
    let charged = || async { h.gateway.store().unclaimed_channels(10).await.unwrap()[0].charged };
    assert_eq!(charged().await, CENT);

    // The next voucher (cumulative 2 cents) pays once. Sent again, it no longer covers what is charged plus a
    // call: as the official x402 server does, the answer is the corrective 402, and nothing more is charged.
    let second = voucher(&h, 1, pay_to(), 2 * CENT).await;
    assert_eq!(pay(&h, &second).await.status(), 200);
    assert_eq!(charged().await, 2 * CENT);
    let (status, replayed) = problem(pay(&h, &second).await).await;
    assert_eq!((status, kind(&replayed).1), (402, "invalid_batch_settlement_evm_cumulative_amount_mismatch"));
    assert_eq!(charged().await, 2 * CENT);

    // A voucher below what is charged plus this call: the corrective 402 carries the channel's state.
    let response = pay(&h, &voucher(&h, 1, pay_to(), 2 * CENT + 1).await).await;
    assert_eq!(response.status(), 402);
    let required = decode_x402(response.headers().get("payment-required").unwrap().to_str().unwrap());
    assert_eq!(required["error"], "invalid_batch_settlement_evm_cumulative_amount_mismatch");
    let corrected = required["accepts"].as_array().unwrap().iter().find(|a| a["scheme"] == "batch-settlement").unwrap();
    assert_eq!(corrected["extra"]["channelState"]["chargedCumulativeAmount"], (2 * CENT).to_string());
    assert_eq!(corrected["extra"]["voucherState"]["signedMaxClaimable"], (2 * CENT).to_string());

    // A call the upstream fails is not charged: its reservation is given back, and the same voucher pays later.
    let third = voucher(&h, 1, pay_to(), 3 * CENT).await;
    h.upstream.set_mode(UpstreamMode::Fail);
    assert_eq!(pay(&h, &third).await.status(), 500);
    let channel = h.gateway.store().channel(&channel_id()).await.unwrap().unwrap();
    assert_eq!((channel.charged, channel.reserved()), (2 * CENT, 0));
    h.upstream.set_mode(UpstreamMode::Ok);

    // Above the deposit (a fourth call on three calls' worth): refused.
    assert_eq!(pay(&h, &third).await.status(), 200);
    let (status, over) = problem(pay(&h, &voucher(&h, 1, pay_to(), 4 * CENT).await).await).await;
    assert_eq!((status, kind(&over).1), (402, "invalid_batch_settlement_evm_cumulative_exceeds_balance"));

    // Signed by someone else, or for another seller's channel.
    let (status, wrong) = problem(pay(&h, &voucher(&h, 2, pay_to(), 4 * CENT).await).await).await;
    assert_eq!((status, kind(&wrong).1), (402, "invalid_batch_settlement_evm_voucher_signature"));
    let other_seller = dev_account(8).address();
    let (status, other) = problem(pay(&h, &voucher(&h, 1, other_seller, CENT).await).await).await;
    assert_eq!((status, kind(&other).1), (402, "invalid_batch_settlement_evm_receiver_mismatch"));

    // Malformed: a payload that is no deposit or voucher, and a voucher naming another channel than its config.
    let (_, required) = offer(&h).await;
    let accepted = required["accepts"].as_array().unwrap().iter().find(|a| a["scheme"] == "batch-settlement").unwrap();
    let envelope = |payload: Value| {
        encode_x402(
            &json!({"x402Version": 2, "payload": payload, "resource": required["resource"], "accepted": accepted}),
        )
    };
    let (status, garbage) = problem(pay(&h, &envelope(json!({"type": "voucher", "voucher": {}}))).await).await;
    assert_eq!((status, kind(&garbage).1), (400, "invalid_batch_settlement_evm_payload"));
    let mut other = decode_x402(&voucher(&h, 1, pay_to(), 4 * CENT).await)["payload"].clone();
    other["voucher"]["channelId"] = json!(format!("{:#x}", B256::repeat_byte(7)));
    let (status, mismatch) = problem(pay(&h, &envelope(other)).await).await;
    assert_eq!((status, kind(&mismatch).1), (400, "invalid_batch_settlement_evm_payload"));

    // Refunds: of a channel that spent its whole deposit, nothing is left; one whose voucher is not for what the
    // channel charged gets the corrective 402. Neither moves anything.
    let refund = |payload: &str| {
        let mut payload = decode_x402(payload)["payload"].clone();
        payload["type"] = json!("refund");
        payload
    };
    let nothing_left = envelope(refund(&voucher(&h, 1, pay_to(), 3 * CENT).await));
    let (status, empty) = problem(pay(&h, &nothing_left).await).await;
    assert_eq!((status, kind(&empty).1), (402, "invalid_batch_settlement_evm_refund_amount"));
    let behind = envelope(refund(&voucher(&h, 1, pay_to(), 2 * CENT).await));
    let (status, stale) = problem(pay(&h, &behind).await).await;
    assert_eq!((status, kind(&stale).1), (402, "invalid_batch_settlement_evm_cumulative_amount_mismatch"));
    assert_eq!(events::<BatchSettlement::Refunded>(&h).await, 0);
    let channel = h.gateway.store().channel(&channel_id()).await.unwrap().unwrap();
    assert_eq!(channel.deposit, 30_000, "a refused refund lowers nothing");

    assert_eq!(charged().await, 3 * CENT, "no refusal charged anything");
    assert_eq!(h.upstream.hits(), 4);
    let ledger = h.ledger().await;
    let settled = ledger.iter().filter(|r| r.state == PaymentState::Settled).count();
    assert_eq!(settled, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_channel_is_closed_and_its_unspent_deposit_returned_exactly() {
    let extra = channel_option("claim_every_secs = 0\nclose_idle_secs = 0");
    let h = Harness::start_with(Options { extra_toml: extra, ..Default::default() }).await;
    let (payer_before, seller_before) = (h.chain.balance(payer()).await, h.chain.balance(pay_to()).await);
    let answer = node::channel(&h.url("/v1/quote"), &h.chain.rpc_url, &["--calls", "3", "--deposit", "100000"]).await;
    assert_eq!(answer["statuses"], json!([200, 200, 200]), "{answer}");
    assert_eq!(h.chain.balance(payer()).await, payer_before - 100_000, "the deposit is in escrow");

    // One pass: the three calls are claimed and swept, and the channel, idle, is closed with the rest refunded.
    h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();
    assert_eq!(h.chain.balance(pay_to()).await, seller_before + 3 * CENT);
    assert_eq!(h.chain.balance(payer()).await, payer_before - 3 * CENT, "the unspent deposit came back, exactly");
    assert_eq!(events::<BatchSettlement::Refunded>(&h).await, 1);
    let channel = h.gateway.store().channel(&channel_id()).await.unwrap().unwrap();
    assert_eq!((channel.deposit, channel.charged, channel.claimed), (3 * CENT, 3 * CENT, 3 * CENT));

    // A closed channel takes no more vouchers; another pass refunds nothing more.
    let (status, refused) = problem(pay(&h, &voucher(&h, 1, pay_to(), 4 * CENT).await).await).await;
    assert_eq!((status, kind(&refused).1), (402, "invalid_batch_settlement_evm_cumulative_exceeds_balance"));
    h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();
    assert_eq!(events::<BatchSettlement::Refunded>(&h).await, 1);
    assert_eq!(h.chain.balance(payer()).await, payer_before - 3 * CENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_come_early_by_value_and_the_exposure_cap_holds_calls_until_one() {
    let extra = channel_option("claim_every_secs = 3600\nclaim_above = \"$0.03\"\nmax_unclaimed = \"$0.04\"");
    let h = Harness::start_with(Options { extra_toml: extra, ..Default::default() }).await;
    let seller_before = h.chain.balance(pay_to()).await;
    let url = h.url("/v1/quote");
    let pass = || async { h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap().channels_claimed };
    assert_eq!(pass().await, 0, "the schedule's first pass: nothing to claim yet");

    // Two calls: below `claim_above`, and the schedule is an hour: nothing is claimed.
    let answer = node::channel(&url, &h.chain.rpc_url, &["--calls", "2", "--deposit", "100000"]).await;
    assert_eq!(answer["statuses"], json!([200, 200]), "{answer}");
    assert_eq!(pass().await, 0);
    // A third reaches $0.03 unclaimed: the next pass claims, schedule or not.
    let answer = node::channel(&url, &h.chain.rpc_url, &["--calls", "1"]).await;
    assert_eq!(answer["statuses"], json!([200]), "{answer}");
    assert_eq!(pass().await, 1);
    assert_eq!(h.chain.balance(pay_to()).await, seller_before + 3 * CENT);

    // Four more reach the cap of $0.04 served and not claimed; the fifth waits, charged nothing.
    let answer = node::channel(&url, &h.chain.rpc_url, &["--calls", "5"]).await;
    assert_eq!(answer["statuses"], json!([200, 200, 200, 200, 429]), "{answer}");
    let channel = h.gateway.store().channel(&channel_id()).await.unwrap().unwrap();
    assert_eq!((channel.charged, channel.claimed, channel.reserved()), (7 * CENT, 3 * CENT, 0));
    // The next pass claims, and the call goes through.
    assert_eq!(pass().await, 1);
    let answer = node::channel(&url, &h.chain.rpc_url, &["--calls", "1"]).await;
    assert_eq!(answer["statuses"], json!([200]), "{answer}");
    assert_eq!(h.chain.balance(pay_to()).await, seller_before + 7 * CENT);
}

/// Calls left between their move to `settling` and their outcome, as a gateway that moved channel calls to
/// `settling` before charging them (before their charge and their row's move became one write) left them at a
/// stop: one still in flight on its channel (never charged), one already charged. The reconciler charges the
/// first and records the second, and both responses are owed to their payer (the same voucher sent again gets
/// the answer, not a second charge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cut_off_mid_settlement_are_charged_once_and_their_responses_owed() {
    use paygate_core::channel::{ChannelRefusal, update_channel};
    use paygate_store::{Claim, NewPayment, Transition};

    let h = harness().await;
    let answer = node::channel(&h.url("/v1/quote"), &h.chain.rpc_url, &["--calls", "1", "--deposit", "100000"]).await;
    assert_eq!(answer["statuses"], json!([200]), "{answer}");
    let store = h.gateway.store().clone();
    let id = channel_id();
    let mut rows = Vec::new();
    for (max, charged_before_the_stop) in [(2 * CENT, false), (3 * CENT, true)] {
        let settlement =
            json!({"channelId": id, "voucherMax": max.to_string(), "signature": "0x", "price": CENT.to_string()});
        let new = NewPayment {
            proof_key: format!("eip155:31337:channel:{id}:{max}"),
            challenge_id: None,
            request_id: format!("req-{max}"),
            route: "GET /v1/quote".into(),
            protocol: "x402-v2".into(),
            rail: "batch-settlement".into(),
            option_name: "usdc-local-channel".into(),
            network: "eip155:31337".into(),
            asset: h.chain.token.to_checksum(None),
            asset_symbol: "USDC".into(),
            decimals: 6,
            amount: CENT,
            payer: payer().to_checksum(None),
            pay_to: pay_to().to_checksum(None),
            settlement,
        };
        let Claim::Claimed(row) = store.claim(&new).await.unwrap() else { panic!("claimed") };
        let settling = Transition { reason: "upstream answered 200", ..Default::default() };
        store.transition(row, &[PaymentState::Verified], PaymentState::Settling, settling).await.unwrap();
        update_channel(store.as_ref(), &id, |c| c.reserve(CENT, max, "0x")).await.unwrap().unwrap().unwrap();
        if charged_before_the_stop {
            update_channel(store.as_ref(), &id, |c| Ok::<_, ChannelRefusal>(c.commit(max, "0x"))).await.unwrap();
        }
        rows.push(row);
    }
    let channel = store.channel(&id).await.unwrap().unwrap();
    assert_eq!((channel.charged, channel.reserved()), (2 * CENT, CENT));

    // Rows untouched for longer than nothing: a row written in the reconciler's own millisecond is not yet stale.
    tokio::time::sleep(Duration::from_millis(5)).await;
    h.gateway.reconciler(Duration::ZERO).run_once().await.unwrap();
    let channel = store.channel(&id).await.unwrap().unwrap();
    assert_eq!((channel.charged, channel.reserved()), (3 * CENT, 0), "each call charged once");
    assert!(channel.in_flight.is_empty());
    for row in rows {
        let row = store.payment(row).await.unwrap().unwrap();
        assert_eq!((row.state, row.response_owed), (PaymentState::Settled, true), "{row:?}");
    }
}

/// The payer asks for its unspent deposit back with the official client's `refund(url)`: part of it first, then
/// the rest. Each refund moves exactly what was asked (and no more than was not charged) from the escrow to the
/// payer, no call is made, and what was charged stays claimable: the next pass pays the seller exactly that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_gets_its_unspent_deposit_back_when_it_asks() {
    let h =
        Harness::start_with(Options { extra_toml: channel_option("claim_every_secs = 0"), ..Default::default() }).await;
    let (seller_before, payer_before) = (h.chain.balance(pay_to()).await, h.chain.balance(payer()).await);
    let url = h.url("/v1/quote");
    let args = ["--calls", "3", "--deposit", "100000", "--refund", "20000"];
    let answer = node::channel(&url, &h.chain.rpc_url, &args).await;
    assert_eq!(answer["statuses"], json!([200, 200, 200]), "{answer}");
    assert_eq!(
        (&answer["refund"]["success"], &answer["refund"]["amount"]),
        (&json!(true), &json!("20000")),
        "{answer}"
    );
    assert_eq!(h.chain.balance(payer()).await, payer_before - 100_000 + 20_000);
    assert_eq!(events::<BatchSettlement::Refunded>(&h).await, 1);
    assert_eq!(h.upstream.hits(), 3, "a refund calls nothing");
    let channel = h.gateway.store().channel(&channel_id()).await.unwrap().unwrap();
    assert_eq!((channel.deposit, channel.charged), (80_000, 3 * CENT));

    // The rest: the client's channel record is gone after a whole refund; asked again, there is nothing left.
    let answer = node::channel(&url, &h.chain.rpc_url, &["--calls", "0", "--refund"]).await;
    assert_eq!(
        (&answer["refund"]["success"], &answer["refund"]["amount"]),
        (&json!(true), &json!("50000")),
        "{answer}"
    );
    assert_eq!(h.chain.balance(payer()).await, payer_before - 3 * CENT);
    let refused = node::channel(&url, &h.chain.rpc_url, &["--calls", "0", "--refund"]).await;
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("Refund failed")), "{refused}");

    // What was charged is still the seller's: one pass claims and sweeps exactly that.
    h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();
    assert_eq!(h.chain.balance(pay_to()).await, seller_before + 3 * CENT);
    assert_eq!(h.ledger().await.len(), 3, "refunds are no calls");
}

/// The journal (`channel_transactions`): a claim, a sweep and a refund each outlive the receipt timeout (anvil
/// mines only when the test says). Each stays `sent`, the pass after sends nothing new while one is undecided,
/// one the node lost is sent again as the very same transaction, and one whose nonce another transaction took is
/// decided failed with its refund given back to the deposit, then refunded once, by a new transaction. (First, a
/// refund asked while a call is in flight is refused: 409, nothing journaled.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_transactions_outliving_their_wait_are_decided_from_the_chain_and_never_sent_twice() {
    let extra = channel_option("claim_every_secs = 0\nclose_idle_secs = 0");
    let options = Options { extra_toml: extra, receipt_timeout_secs: 1, anvil_args: vec![], ..Default::default() };
    let h = Harness::start_with(options).await;
    let (payer_before, seller_before) = (h.chain.balance(payer()).await, h.chain.balance(pay_to()).await);
    three_calls_paid(&h).await;
    let store = h.gateway.store().clone();
    let pool = async || {
        let content = h.chain.rpc("txpool_content", json!([])).await;
        let by_sender = content["pending"].as_object().cloned().unwrap_or_default();
        by_sender.values().flat_map(|by_nonce| by_nonce.as_object().cloned().unwrap_or_default()).count()
    };
    let pass = async || h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap();

    // A refund asked while a call is in flight: refused, retry shortly, nothing journaled or lowered.
    h.upstream.set_mode(UpstreamMode::Slow);
    let fourth = voucher(&h, 1, pay_to(), 4 * CENT).await;
    let mut refund = decode_x402(&voucher(&h, 1, pay_to(), 3 * CENT).await);
    refund["payload"]["type"] = json!("refund");
    let (in_flight, refused) = tokio::join!(pay(&h, &fourth), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let refused = pay(&h, &encode_x402(&refund)).await;
        (refused.headers().get("retry-after").cloned(), problem(refused).await)
    });
    let (retry_after, (status, busy)) = refused;
    assert_eq!((status, kind(&busy).1), (409, "invalid_batch_settlement_evm_channel_busy"));
    assert_eq!(retry_after.as_ref().and_then(|v| v.to_str().ok()), Some("1"));
    assert_eq!(in_flight.status(), 200);
    h.upstream.set_mode(UpstreamMode::Ok);
    assert!(undecided(&h).await.is_empty());
    let channel = store.channel(&channel_id()).await.unwrap().unwrap();
    assert_eq!((channel.deposit, channel.charged), (100_000, 4 * CENT));

    h.chain.rpc("evm_setAutomine", json!([false])).await;
    pass().await;
    let claim = undecided(&h).await;
    assert_eq!(claim.iter().map(|t| t.0).collect::<Vec<_>>(), [TransactionKind::Claim], "{claim:?}");
    let claim = claim[0].1.clone();

    // The node loses it: the next pass sends the same bytes again (the same hash), and nothing else.
    h.chain.rpc("anvil_dropTransaction", json!([claim])).await;
    assert_eq!(pool().await, 0);
    pass().await;
    assert_eq!(undecided(&h).await, [(TransactionKind::Claim, claim.clone())]);
    assert_eq!(pool().await, 1, "only the claim, again");
    let again = h.chain.rpc("eth_getTransactionByHash", json!([claim])).await;
    assert_eq!(again["hash"], json!(claim));

    // Mined: decided; the pass goes on to the sweep, which outlives its wait too.
    h.chain.rpc("evm_mine", json!([])).await;
    pass().await;
    let sweep = undecided(&h).await;
    assert_eq!(sweep.iter().map(|t| t.0).collect::<Vec<_>>(), [TransactionKind::Sweep], "{sweep:?}");
    h.chain.rpc("evm_mine", json!([])).await;
    assert_eq!(h.chain.balance(pay_to()).await, seller_before + 4 * CENT);

    // The idle channel's refund: the deposit is lowered with it.
    pass().await;
    let refund = undecided(&h).await;
    assert_eq!(refund.iter().map(|t| t.0).collect::<Vec<_>>(), [TransactionKind::Refund], "{refund:?}");
    let channel = store.channel(&channel_id()).await.unwrap().unwrap();
    assert_eq!(channel.deposit, 4 * CENT, "lowered while the refund may reach the chain");

    // It is lost and another transaction takes its nonce: it failed, the deposit is given back, and the same pass
    // refunds again with a new transaction.
    let sent = h.chain.rpc("eth_getTransactionByHash", json!([refund[0].1])).await;
    h.chain.rpc("anvil_dropTransaction", json!([refund[0].1])).await;
    let settler = dev_account(0).address();
    let taker = json!({"from": settler, "to": settler, "nonce": sent["nonce"], "gas": "0x5208"});
    h.chain.rpc("eth_sendTransaction", json!([taker])).await;
    h.chain.rpc("evm_mine", json!([])).await;
    pass().await;
    let second = undecided(&h).await;
    assert_eq!(second.iter().map(|t| t.0).collect::<Vec<_>>(), [TransactionKind::Refund], "{second:?}");
    assert_ne!(second[0].1, refund[0].1, "a new transaction, after the first was decided failed");
    h.chain.rpc("evm_mine", json!([])).await;
    pass().await;
    assert_eq!(undecided(&h).await, []);

    assert_eq!(events::<BatchSettlement::Refunded>(&h).await, 1);
    assert_eq!(h.chain.balance(payer()).await, payer_before - 4 * CENT, "the unspent deposit came back once");
    assert_eq!(h.chain.balance(pay_to()).await, seller_before + 4 * CENT);
    let channel = store.channel(&channel_id()).await.unwrap().unwrap();
    assert_eq!((channel.deposit, channel.charged, channel.claimed), (4 * CENT, 4 * CENT, 4 * CENT));
}

/// The official client pays three calls from one channel (a $0.10 deposit).
async fn three_calls_paid(h: &Harness) {
    let answer = node::channel(&h.url("/v1/quote"), &h.chain.rpc_url, &["--calls", "3", "--deposit", "100000"]).await;
    assert_eq!(answer["statuses"], json!([200, 200, 200]), "{answer}");
}

/// The channel's journaled transactions not decided yet, as (kind, hash).
async fn undecided(h: &Harness) -> Vec<(TransactionKind, String)> {
    let store = h.gateway.store();
    let option = store.channel(&channel_id()).await.unwrap().unwrap().option;
    store.undecided_transactions(&option).await.unwrap().into_iter().map(|t| (t.kind, t.hash)).collect()
}

/// paygate's own paying client on x402 `batch-settlement` (the client library behind `paygate pay`): given a
/// session deposit, it opens a channel with one deposit that counts against the budgets once, pays later calls
/// with vouchers, tops up in the same payload when the deposit runs out, and closes by asking for the unspent
/// deposit back, which the budgets get back too. The seller's pass claims exactly what was served. Once a request
/// was paid from the channel, the next one pays its voucher without a 402 round trip; when the remembered offer
/// expires, the seller's 402 costs nothing and the client pays the current offer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paying_client_pays_x402_channels_within_its_budgets_and_refunds_the_rest() {
    use paygate_client::{PayError, Policy, PolicyViolation, SpendLog, SpendState};

    let extra = channel_option("claim_every_secs = 0");
    let h = Harness::start_with(Options { extra_toml: extra, ..Default::default() }).await;
    let buyer = dev_account(3);
    let buyer_before = h.chain.balance(buyer.address()).await;
    let seller_before = h.chain.balance(pay_to()).await;
    let log = SpendLog::in_memory().await.unwrap();
    // A $0.05 deposit covers five one-cent calls; the budget allows two deposits, not three.
    let policy = Policy { daily_budget: Some(120_000), ..Default::default() };
    let client = common::channel_client(&buyer, policy, &log, 50_000);
    let url = h.url("/v1/quote");
    let get = || client.send("GET", &url, Default::default(), None);
    let spent = || async { log.spent("127.0.0.1", paygate_client::now_ms()).await.unwrap().total };
    let pass = || async { h.gateway.reconciler(Duration::from_secs(60)).run_once().await.unwrap() };

    // A channel, two calls, closed: the unspent deposit comes back on chain and to the budgets.
    for _ in 0..2 {
        let paid = get().await.unwrap();
        assert_eq!(paid.status, 200);
        assert_eq!(paid.payment.unwrap().offer.scheme, "batch-settlement", "channels are preferred when enabled");
    }
    let challenged = || h.gateway.metrics().count(paygate_gateway::Outcome::Challenged);
    assert_eq!(challenged(), 1, "the second call paid its voucher without asking for a 402");
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_before - 5 * CENT, "one deposit");
    assert_eq!(spent().await, 50_000, "vouchers count once, through their deposit");
    let first = log.sessions().await.unwrap().remove(0);
    assert_eq!((first.deposit.as_str(), first.cumulative.as_str(), first.state.as_str()), ("50000", "20000", "open"));
    let channel = h.gateway.store().channel(&first.channel_id).await.unwrap().unwrap();
    assert_eq!((channel.deposit, channel.charged), (5 * CENT, 2 * CENT), "the seller's record agrees");
    let closed = client.close_session(&first.channel_id).await.unwrap();
    assert_eq!((closed.settled.as_str(), closed.refunded.as_str()), ("20000", "30000"));
    assert!(closed.transaction.starts_with("0x"), "{closed:?}");
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_before - 2 * CENT);
    assert_eq!(spent().await, 20_000);
    pass().await;
    assert_eq!(h.chain.balance(pay_to()).await, seller_before + 2 * CENT);

    // A new channel: five calls, then the sixth tops it up by another deposit in the same payload.
    for _ in 0..6 {
        assert_eq!(get().await.unwrap().status, 200);
    }
    let second = log.sessions().await.unwrap().into_iter().find(|s| s.state == "open").unwrap();
    assert_ne!(second.channel_id, first.channel_id);
    let channel = h.gateway.store().channel(&second.channel_id).await.unwrap().unwrap();
    assert_eq!((channel.deposit, channel.charged), (10 * CENT, 6 * CENT));
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_before - 12 * CENT);
    assert_eq!(spent().await, 120_000);
    // The offer the client remembers expires (the seller's clock moves on): the seller refuses it with a 402,
    // nothing is charged, and the client asks for the current offer and pays it, once.
    let before_expiry = challenged();
    h.clock.advance(60);
    for _ in 0..4 {
        assert_eq!(get().await.unwrap().status, 200);
    }
    assert_eq!(challenged(), before_expiry + 1, "one fresh 402 after the remembered offer expired");
    // The eleventh needs a third deposit, which the budget refuses: nothing is signed or sent.
    match get().await {
        Err(PayError::Policy(PolicyViolation::OverDailyBudget { .. })) => {}
        other => panic!("expected the budget to refuse, got {other:?}"),
    }
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_before - 12 * CENT);

    // A channel whose deposit was all spent has nothing to refund: closed in the spend log; the seller claims
    // every call.
    let closed = client.close_session(&second.channel_id).await.unwrap();
    assert_eq!((closed.settled.as_str(), closed.refunded.as_str()), ("100000", "0"));
    assert!(client.close_session(&second.channel_id).await.is_err(), "a closed channel is not closed twice");
    pass().await;
    assert_eq!(h.chain.balance(pay_to()).await, seller_before + 12 * CENT);
    assert_eq!(h.upstream.hits(), 12);
    let records = log.records().await.unwrap();
    let count = |kind: &str, state: SpendState| records.iter().filter(|r| r.kind == kind && r.state == state).count();
    assert_eq!(count("deposit", SpendState::Paid), 3);
    assert_eq!(count("voucher", SpendState::Paid), 12);
    assert_eq!(count("voucher", SpendState::Rejected), 1, "the voucher for the expired offer, taken back");
    assert_eq!(records.iter().filter(|r| r.kind == "refund").count(), 2);
}
