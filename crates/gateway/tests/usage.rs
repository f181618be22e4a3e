//! Free calls and usage tiers on a real gateway (embedded devnet, official x402 and MPP clients): calls counted
//! per client IP or per payer in the store, free calls served before the 402 or without settling, tier prices
//! stepping down, a tier edge crossed by concurrent payments counting each call once, and failed calls given
//! back.

mod common;

use alloy::primitives::Address;
use common::{Backend, Harness, Options, decode_x402, pay_to, payer};
use futures_util::future::join_all;
use paygate_chain::devtoken::dev_account;
use paygate_store::PaymentState;
use paygate_testkit::UpstreamMode;
use paygate_testkit::node;
use serde_json::Value;

const ROUTES: &str = r#"
[[routes]]
method = "GET"
path = "/v1/metered/ip"
price = "$0.01"
free_calls = 3

[[routes]]
method = "GET"
path = "/v1/metered/payer"
price = "$0.01"
free_calls = 2
free_per = "payer"

[[routes]]
method = "GET"
path = "/v1/metered/tiers"
period = "month"
tiers = [
    { calls = 2, price = "$0" },
    { calls = 3, price = "$0.002" },
    { price = "$0.001" },
]
"#;

async fn harness() -> Harness {
    Harness::start_with(Options { backend: Backend::Devnet, extra_toml: ROUTES.into(), ..Default::default() }).await
}

/// The hex key of anvil dev account `n`.
fn key(n: u32) -> String {
    dev_account(n).to_bytes().to_string()
}

fn address(n: u32) -> Address {
    dev_account(n).address()
}

/// The x402 amount a 402 quotes.
fn quoted_amount(response_headers: &Value) -> String {
    let required = response_headers["payment-required"].as_str().expect("a 402 with PAYMENT-REQUIRED");
    decode_x402(required)["accepts"][0]["amount"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_calls_per_ip_come_before_the_402_and_failed_calls_are_given_back() {
    let h = harness().await;
    let get = || h.http.get(h.url("/v1/metered/ip")).send();

    // A call the upstream fails is not one of the free calls.
    h.upstream.set_mode(UpstreamMode::Fail);
    assert_eq!(get().await.unwrap().status(), 500);
    h.upstream.set_mode(UpstreamMode::Ok);

    for left in ["2", "1", "0"] {
        let response = get().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["paygate-free-calls-left"], left);
    }
    let response = get().await.unwrap();
    assert_eq!(response.status(), 402, "the quota is used up: payment is asked");
    assert_eq!(h.upstream.hits(), 4);

    // Paying still works once the free calls are gone, and is charged.
    let paid = node::client(&["x402", "pay", &h.url("/v1/metered/ip")]).await;
    assert_eq!(paid["status"], 200, "{paid}");
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1);

    // The next day the client has three free calls again; ten racing requests get exactly those three.
    h.clock.advance(86_400);
    let statuses: Vec<u16> =
        join_all((0..10).map(|_| get())).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 402).count(), 7, "{statuses:?}");
    let ledger = h.ledger().await;
    assert_eq!(ledger.len(), 1, "free calls write no payment: {ledger:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_calls_per_payer_are_verified_and_not_settled() {
    let h = harness().await;
    let before = h.chain.balance(payer()).await;
    for (protocol, settled) in [("mppx", false), ("x402", false), ("mppx", true), ("x402", true)] {
        let paid = node::client(&[protocol, "pay", &h.url("/v1/metered/payer")]).await;
        assert_eq!(paid["status"], 200, "{protocol}: {paid}");
        let free = paid["headers"]["paygate-settlement"] == "free";
        assert_eq!(free, !settled, "{protocol}: {paid}");
        assert_eq!(paid["receipt"].is_null(), !settled, "a free call carries no payment receipt: {paid}");
    }
    // Two calls free, two charged $0.01.
    assert_eq!(before - h.chain.balance(payer()).await, 2 * 10_000);
    let mut states: Vec<PaymentState> = h.ledger().await.iter().map(|row| row.state).collect();
    states.sort_by_key(|s| s.as_str());
    assert_eq!(states, [PaymentState::Free, PaymentState::Free, PaymentState::Settled, PaymentState::Settled]);

    // A free call's credential is used up like a paid one.
    let (name, value) = node::sign("x402", &h.url("/v1/metered/payer"), &["--key", &key(3)]).await;
    let first = h.http.get(h.url("/v1/metered/payer")).header(&name, &value).send().await.unwrap();
    assert_eq!(first.headers()["paygate-settlement"], "free");
    let replay = h.http.get(h.url("/v1/metered/payer")).header(&name, &value).send().await.unwrap();
    assert_eq!(replay.status(), 403);
    assert_eq!(h.chain.transfers(address(3), pay_to()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_prices_step_down_with_the_payers_calls() {
    let h = harness().await;
    let url = h.url("/v1/metered/tiers");
    let hint = format!("paygate-payer:{}", payer());
    let before = h.chain.balance(pay_to()).await;

    // A payer with no calls is quoted the first paid tier: $0.002.
    let unpaid = h.http.get(&url).send().await.unwrap();
    assert_eq!(unpaid.status(), 402);
    let quote = decode_x402(unpaid.headers()["payment-required"].to_str().unwrap());
    assert_eq!(quote["accepts"][0]["amount"], "2000");

    // Calls 1 and 2 are free, 3 to 5 cost $0.002, from 6 on $0.001: each paid as the 402 told the payer.
    let mut charged = Vec::new();
    for call in 1..=7 {
        let protocol = if call % 2 == 0 { "mppx" } else { "x402" };
        let balance = h.chain.balance(pay_to()).await;
        let paid = node::client(&[protocol, "pay", &url, "--header", &hint]).await;
        assert_eq!(paid["status"], 200, "call {call} ({protocol}): {paid}");
        charged.push(h.chain.balance(pay_to()).await - balance);
    }
    assert_eq!(charged, [0, 0, 2000, 2000, 2000, 1000, 1000]);

    // Without the hint the payer is quoted $0.002, which is no longer its price: refused, nothing charged, and
    // the refusal quotes the payer's price.
    let paid = node::client(&["x402", "pay", &url]).await;
    assert_eq!(paid["status"], 402, "{paid}");
    assert_eq!(quoted_amount(&paid["headers"]), "1000");
    assert_eq!(h.chain.balance(pay_to()).await - before, 8000);

    // Another payer has its own count: its first call is free.
    let other = node::client(&["x402", "pay", &url, "--key", &key(2)]).await;
    assert_eq!(other["headers"]["paygate-settlement"], "free", "{other}");

    // Next month every payer starts again at the free tier.
    h.clock.advance(31 * 86_400);
    let again = node::client(&["mppx", "pay", &url, "--header", &hint]).await;
    assert_eq!(again["headers"]["paygate-settlement"], "free", "{again}");
    assert_eq!(h.chain.balance(pay_to()).await - before, 8000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_edge_crossed_by_concurrent_payments_counts_each_call_once() {
    let h = harness().await;
    let url = h.url("/v1/metered/tiers");
    // Two payers sign six $0.002 payments each (the price a payer with no calls is quoted); all twelve race.
    let payers = [2u32, 3];
    let signed = join_all(payers.iter().flat_map(|n| (0..6).map(move |_| *n)).map(|n| {
        let url = url.clone();
        async move { (n, node::sign("x402", &url, &["--key", &key(n)]).await) }
    }))
    .await;
    let results = join_all(signed.iter().map(|(n, (name, value))| {
        let request = h.http.get(&url).header(name, value);
        async move {
            let response = request.send().await.unwrap();
            let free = response.headers().get("paygate-settlement").is_some_and(|v| v == "free");
            let status = response.status().as_u16();
            let reason = if status == 402 {
                response.json::<Value>().await.unwrap()["reason"].as_str().unwrap_or_default().to_owned()
            } else {
                String::new()
            };
            (*n, status, free, reason)
        }
    }))
    .await;

    for n in payers {
        let mine: Vec<_> = results.iter().filter(|r| r.0 == n).collect();
        // Calls 1-2 free and 3-5 at $0.002 take five payments; the sixth is past the edge ($0.001 now).
        assert_eq!(mine.iter().filter(|r| r.1 == 200 && r.2).count(), 2, "payer {n}: {mine:?}");
        assert_eq!(mine.iter().filter(|r| r.1 == 200 && !r.2).count(), 3, "payer {n}: {mine:?}");
        assert_eq!(mine.iter().filter(|r| r.1 == 402 && r.3 == "tier_price_changed").count(), 1, "payer {n}: {mine:?}");
        assert_eq!(h.chain.transfers(address(n), pay_to()).await, 3, "payer {n}");
        let start = paygate_gateway::period_start(
            paygate_gateway::config::Period::Month,
            paygate_core::clock::Clock::now_unix(h.clock.as_ref()),
        );
        let counter = paygate_gateway::PayerTiers::counter("GET /v1/metered/tiers", &address(n).to_string());
        assert_eq!(h.gateway.store().calls(&counter, start).await.unwrap(), 5, "payer {n}: each call counted once");
    }
    let ledger = h.ledger().await;
    let count = |state| ledger.iter().filter(|row| row.state == state).count();
    assert_eq!((count(PaymentState::Free), count(PaymentState::Settled), count(PaymentState::Voided)), (4, 6, 2));
    assert_eq!(h.upstream.hits(), 10);
}
