//! The paying client against a seller that states its x402 channel holds less than the client deposited, again
//! and again (a relay in front of paygate answers its vouchers so): the client believes a stated balance only when
//! it leaves the voucher uncovered, tops the channel up at most once per call, and is then refused; nothing it
//! signed for the lie reaches the chain.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use paygate_chain::devtoken::dev_account;
use paygate_client::{PayError, Policy, SpendLog, SpendState};
use serde_json::json;

use super::common::{self, Harness, Options, decode_x402, encode_x402};
use super::{CENT, channel_option};

/// What the relay says of the channel `channel_id` instead of letting paygate answer a voucher: it holds
/// `balance`, then `step` less on each refusal after.
struct Lie {
    channel_id: String,
    balance: u128,
    step: u128,
}

struct Relay {
    gateway: String,
    http: reqwest::Client,
    lie: Mutex<Option<Lie>>,
    /// How many requests carried a voucher.
    paid: Mutex<usize>,
}

impl Relay {
    async fn start(gateway: String) -> (String, Arc<Relay>) {
        let relay =
            Arc::new(Relay { gateway, http: reqwest::Client::new(), lie: Mutex::new(None), paid: Mutex::new(0) });
        let app = axum::Router::new().fallback(answer).with_state(relay.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (base, relay)
    }

    fn lie(&self, channel_id: &str, balance: u128, step: u128) {
        *self.lie.lock().unwrap() = Some(Lie { channel_id: channel_id.to_owned(), balance, step });
    }

    fn tell_the_truth(&self) {
        *self.lie.lock().unwrap() = None;
    }

    fn paid(&self) -> usize {
        *self.paid.lock().unwrap()
    }

    /// The balance to state now, if the relay lies.
    fn next_lie(&self) -> Option<(String, u128)> {
        let mut lie = self.lie.lock().unwrap();
        let lie = lie.as_mut()?;
        let stated = lie.balance;
        lie.balance = lie.balance.saturating_sub(lie.step);
        Some((lie.channel_id.clone(), stated))
    }
}

async fn answer(State(relay): State<Arc<Relay>>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let url = format!("{}{}", relay.gateway, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let paid = parts.headers.contains_key("payment-signature");
    if paid {
        *relay.paid.lock().unwrap() += 1;
        if let Some((channel_id, balance)) = relay.next_lie() {
            return corrective(&relay, &url, &channel_id, balance).await;
        }
    }
    let mut forward = relay.http.request(parts.method, &url).body(body);
    for (name, value) in parts.headers.iter().filter(|(name, _)| *name != "host") {
        forward = forward.header(name, value);
    }
    let answered = forward.send().await.unwrap();
    let mut response = Response::builder().status(answered.status());
    for (name, value) in answered.headers() {
        response = response.header(name, value);
    }
    response.body(Body::from(answered.bytes().await.unwrap())).unwrap()
}

/// paygate's own offer for `url`, as the x402 corrective 402 for a voucher above what the channel holds, stating
/// that the channel holds `balance`.
async fn corrective(relay: &Relay, url: &str, channel_id: &str, balance: u128) -> Response {
    let unpaid = relay.http.get(url).send().await.unwrap();
    let mut required = decode_x402(unpaid.headers()["payment-required"].to_str().unwrap());
    required["error"] = "invalid_batch_settlement_evm_cumulative_exceeds_balance".into();
    for offer in required["accepts"].as_array_mut().unwrap() {
        if offer["scheme"] == "batch-settlement" {
            offer["extra"]["channelState"] = json!({"channelId": channel_id, "balance": balance.to_string()});
        }
    }
    let header = encode_x402(&required);
    (http::StatusCode::PAYMENT_REQUIRED, [("payment-required", header)], Bytes::from_static(b"{}")).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_stating_less_than_the_channel_holds_costs_at_most_one_top_up_a_call() {
    let h =
        Harness::start_with(Options { extra_toml: channel_option("claim_every_secs = 0"), ..Default::default() }).await;
    let (relay_base, relay) = Relay::start(h.base.clone()).await;
    let buyer = dev_account(7);
    let log = SpendLog::in_memory().await.unwrap();
    let client = common::channel_client(&buyer, Policy::default(), &log, 5 * CENT);
    let url = format!("{relay_base}/v1/quote");
    assert_eq!(client.send("GET", &url, Default::default(), None).await.unwrap().status, 200, "opened for real");
    let channel_id = log.sessions().await.unwrap().remove(0).channel_id;
    let buyer_after_open = h.chain.balance(buyer.address()).await;
    let refused = |result: Result<paygate_client::Paid, PayError>| match result {
        Err(PayError::Rejected { status: 402, .. }) => {}
        other => panic!("expected the seller's 402, got {other:?}"),
    };

    // A stated balance that still covers the refused voucher (20,000 of 50,000 deposited), a little less each
    // time: not believed; the call is refused, nothing deposited. (Its voucher is sent twice: the channel's
    // remembered offer first, then the offer of a fresh 402, the client's way with an offer refused.)
    relay.lie(&channel_id, 4 * CENT, CENT / 10);
    let before = relay.paid();
    refused(client.send("GET", &url, Default::default(), None).await);
    assert_eq!(relay.paid() - before, 2, "no voucher for the stated balance");
    let session = log.session(&channel_id).await.unwrap().unwrap();
    assert_eq!((session.deposit.as_str(), session.cumulative.as_str()), ("50000", "10000"), "the log unchanged");

    // Told the truth, the client pays the next call from the channel (and remembers its offer again).
    relay.tell_the_truth();
    assert_eq!(client.send("GET", &url, Default::default(), None).await.unwrap().status, 200);

    // A stated balance below the voucher, again and again: the call is paid once more with a top-up, refused,
    // and not topped up again when its fresh 402's offer is refused the same way.
    relay.lie(&channel_id, 0, 0);
    let before = relay.paid();
    refused(client.send("GET", &url, Default::default(), None).await);
    assert_eq!(relay.paid() - before, 3, "the voucher, once with a top-up, the fresh offer's voucher");
    let records = log.records().await.unwrap();
    let count = |kind: &str, state: SpendState| records.iter().filter(|r| r.kind == kind && r.state == state).count();
    assert_eq!(count("deposit", SpendState::Paid), 1, "the open");
    assert_eq!(count("deposit", SpendState::Pending), 1, "the top-up, decided from the chain by reconcile");
    assert_eq!(count("voucher", SpendState::Rejected), 5);
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_after_open, "nothing signed for the lie moved money");
    assert_eq!(count("voucher", SpendState::Paid), 2);
    assert_eq!(h.upstream.hits(), 2, "only the calls told the truth were served");
}
