//! Streams paid as they are delivered, over MPP `evm` sessions on anvil: a route priced per token quotes a
//! request for an event stream one token; each token is reserved on the channel just before it is sent, the
//! stream pauses for a voucher when the payer's run out (`payment-need-voucher`) and resumes once one arrives
//! (sent on its own to the same URL), and what was delivered is charged, whether the stream ended, the payer went
//! away, the upstream broke off or no voucher came.

#[macro_use]
mod common;

use std::time::Duration;

use alloy::primitives::{Address, B256};
use common::{Harness, Options, kind, problem, session_challenge};
use paygate_chain::devtoken::dev_account;
use paygate_client::session::EvmSession;
use paygate_core::clock::Clock;
use paygate_proto::mpp::Challenge;
use paygate_proto::sse::{self, Event, Events};
use paygate_store::PaymentState;
use serde_json::{Value, json};

/// One prompt token and one completion token, in the test token's atomic units.
const INPUT: u128 = 1;
const OUTPUT: u128 = 2;

fn payee() -> Address {
    dev_account(0).address()
}

async fn harness() -> Harness {
    let extra = format!(
        r#"
        [[accept]]
        name = "session"
        rail = "evm-session"
        network = "local"
        asset = "USDC"
        pay_to = "{}"
        settler_key = "{}"
        settle_every_secs = 0

        [[routes]]
        method = "POST"
        path = "/v1/stream"
        max_price = "$0.001"
        accept = ["session"]

        [routes.meter]
        usage = "tokens"
        input_price = "$0.000001"
        output_price = "$0.000002"
        voucher_wait_secs = 1

        [[routes]]
        method = "GET"
        path = "/v1/huge"
        max_price = "$0.001"
        accept = ["session"]

        [routes.meter]
        usage = "bytes"
        unit_price = "$0.000001"

        [[routes]]
        method = "POST"
        path = "/v1/metered/*"
        max_price = "$0.001"
        accept = ["session"]

        [routes.meter]
        usage = "tokens"
        input_price = "$0.000001"
        output_price = "$0.000002"
        "#,
        payee(),
        paygate_testkit::SETTLER_KEY
    );
    Harness::start_with(Options { extra_toml: extra, ..Default::default() }).await
}

/// The session challenge of a 402 for `POST path` with `body` (which it binds), asking (or not) for an event
/// stream.
async fn challenge(h: &Harness, path: &str, stream: bool, body: &str) -> Challenge {
    let mut request = h.http.post(h.url(path)).header("content-type", "application/json").body(body.to_owned());
    if stream {
        request = request.header("accept", "text/event-stream");
    }
    session_challenge(&request.send().await.unwrap())
}

/// A channel of `deposit` opened by dev account 5 whose first voucher allows `cumulative`.
fn opened(h: &Harness, ch: &Challenge, salt: u8, deposit: u128, cumulative: u128) -> (EvmSession, Value) {
    let domain = ("USD Coin".to_owned(), "2".to_owned());
    let mut session = EvmSession::new(dev_account(5), ch, domain, B256::repeat_byte(salt)).unwrap();
    let open = session.open(deposit, cumulative, h.clock.now_unix() + 600).unwrap();
    (session, open)
}

/// `POST /v1/stream` for `tokens` tokens, paid with `payload`.
async fn stream(h: &Harness, s: &EvmSession, ch: &Challenge, payload: Value, asked: Value) -> reqwest::Response {
    h.http
        .post(h.url("/v1/stream"))
        .header("accept", "text/event-stream")
        .header("content-type", "application/json")
        .header("authorization", s.credential(ch, payload))
        .body(asked.to_string())
        .send()
        .await
        .unwrap()
}

/// The events of a whole stream, read.
async fn events(response: reqwest::Response) -> Vec<Event> {
    let body = response.bytes().await.unwrap();
    Events::new(1 << 20).push(&body).iter().filter_map(|e| Event::read(e)).collect()
}

fn tokens(events: &[Event]) -> usize {
    events.iter().filter(|e| e.name == "message" && e.data.contains("delta")).count()
}

fn named<'e>(events: &'e [Event], name: &str) -> Vec<&'e Event> {
    events.iter().filter(|e| e.name == name).collect()
}

async fn charged(h: &Harness, s: &EvmSession) -> u128 {
    h.gateway.store().channel(&format!("{:#x}", s.channel_id())).await.unwrap().unwrap().charged
}

/// The ledger row of the one stream paid on the route.
async fn stream_row(h: &Harness) -> paygate_store::PaymentRecord {
    let rows: Vec<_> = h.ledger().await.into_iter().filter(|r| r.route.contains("/v1/stream")).collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.into_iter().next().unwrap()
}

/// Waits until the stream's task has recorded its payment's outcome.
async fn settled_row(h: &Harness) -> paygate_store::PaymentRecord {
    for _ in 0..100 {
        let row = stream_row(h).await;
        if row.state != PaymentState::Verified && row.state != PaymentState::Settling {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the stream's payment was never settled: {:?}", stream_row(h).await);
}

/// paygate's paying client, given a deposit: it follows the stream, answers each request for a voucher and ends
/// charged exactly the tokens the stream carried; closing the channel pays the seller that and refunds the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_completion_is_charged_per_token_pausing_for_vouchers_and_resuming() {
    use paygate_client::{Policy, SpendLog};

    let h = harness().await;
    let buyer = dev_account(3);
    let (buyer_before, seller_before) = (h.chain.balance(buyer.address()).await, h.chain.balance(payee()).await);
    // The 402 for a stream quotes one output token on the session; other requests are quoted the maximum.
    let per_token = challenge(&h, "/v1/stream", true, "{}").await;
    assert_eq!((&per_token.request["amount"], &per_token.request["unitType"]), (&json!("2"), &json!("token")));
    assert_eq!(challenge(&h, "/v1/stream", false, "{}").await.request["amount"], "1000");

    let log = SpendLog::in_memory().await.unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink = seen.clone();
    let client = common::channel_client(&buyer, Policy::default(), &log, 10_000)
        .with_stream_sink(move |event| sink.lock().unwrap().extend_from_slice(event));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("accept", "text/event-stream".parse().unwrap());
    headers.insert("content-type", "application/json".parse().unwrap());
    let asked = json!({"tokens": 20, "prompt_tokens": 5, "delay_ms": 5});
    let paid = client.send("POST", &h.url("/v1/stream"), headers, Some(asked.to_string().into_bytes())).await.unwrap();
    assert_eq!(paid.status, 200);
    assert!(paid.headers.contains_key("payment-receipt"), "the receipt goes out with the first bytes");
    let all: Vec<Event> = Events::new(1 << 20).push(&paid.body).iter().filter_map(|e| Event::read(e)).collect();
    assert_eq!(tokens(&all), 20, "the whole stream was delivered");
    // The first voucher paid one token: each further token, and the prompt at the end, waited for one.
    let asks = named(&all, sse::NEED_VOUCHER);
    assert_eq!(asks.len(), 20, "{asks:?}");
    let first: Value = serde_json::from_str(&asks[0].data).unwrap();
    assert_eq!((&first["requiredCumulative"], &first["acceptedCumulative"]), (&json!("4"), &json!("2")));
    let charge = 5 * INPUT + 20 * OUTPUT;
    let receipt: Value = serde_json::from_str(&named(&all, sse::RECEIPT)[0].data).unwrap();
    assert_eq!(receipt["spent"], charge.to_string());
    // The sink saw the API's events as they came, and none of the payment's.
    let sunk = seen.lock().unwrap().clone();
    let sunk: Vec<Event> = Events::new(1 << 20).push(&sunk).iter().filter_map(|e| Event::read(e)).collect();
    assert_eq!(tokens(&sunk), 20);
    assert!(sunk.iter().all(|e| !e.name.starts_with("payment-")));

    let row = settled_row(&h).await;
    assert_eq!((row.state, row.amount.as_str()), (PaymentState::Settled, charge.to_string().as_str()));
    let session = log.sessions().await.unwrap().remove(0);
    assert_eq!(session.cumulative, charge.to_string(), "the spend log's next voucher starts at what was charged");
    let closed = client.close_session(&session.channel_id).await.unwrap();
    assert_eq!((closed.settled, closed.refunded), (charge.to_string(), (10_000 - charge).to_string()));
    assert_eq!(h.chain.balance(payee()).await, seller_before + charge);
    assert_eq!(h.chain.balance(buyer.address()).await, buyer_before - charge);
}

/// A payer that goes away after five tokens is charged five; the upstream is stopped, not read to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payer_that_disconnects_is_charged_what_it_was_sent_and_the_upstream_stops() {
    let h = harness().await;
    let asked = json!({"tokens": 50, "delay_ms": 100});
    let ch = challenge(&h, "/v1/stream", true, &asked.to_string()).await;
    // Vouchers signed ahead for everything: the stream never pauses.
    let (s, open) = opened(&h, &ch, 1, 10_000, 1_000);
    let mut response = stream(&h, &s, &ch, open, asked).await;
    assert_eq!(response.status(), 200);
    let mut events = Events::new(1 << 20);
    let mut read = 0;
    while read < 5 {
        let chunk = response.chunk().await.unwrap().expect("the stream goes on");
        read += events.push(&chunk).iter().filter_map(|e| Event::read(e)).filter(|e| e.data.contains("delta")).count();
    }
    assert_eq!(read, 5);
    drop(response);
    let row = settled_row(&h).await;
    assert_eq!((row.state, row.amount.as_str()), (PaymentState::Settled, "10"));
    assert_eq!(charged(&h, &s).await, 5 * OUTPUT);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let produced = h.upstream.streamed();
    assert!(produced <= 7, "the upstream went on after the payer left: {produced} tokens");
}

/// An upstream that breaks off after four tokens: the payer is charged four, and told why the stream ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_breaks_off_mid_stream_charges_only_what_was_delivered() {
    let h = harness().await;
    let asked = json!({"tokens": 10, "prompt_tokens": 3, "fail_after": 4});
    let ch = challenge(&h, "/v1/stream", true, &asked.to_string()).await;
    let (s, open) = opened(&h, &ch, 2, 10_000, 1_000);
    let response = stream(&h, &s, &ch, open, asked).await;
    assert_eq!(response.status(), 200);
    let all = events(response).await;
    assert_eq!(tokens(&all), 4);
    let error: Value = serde_json::from_str(&named(&all, sse::ERROR)[0].data).unwrap();
    assert_eq!(error["reason"], "upstream_stream_failed", "{error}");
    let receipt: Value = serde_json::from_str(&named(&all, sse::RECEIPT)[0].data).unwrap();
    assert_eq!(receipt["spent"], (4 * OUTPUT).to_string());
    assert_eq!(charged(&h, &s).await, 4 * OUTPUT);
    assert_eq!(settled_row(&h).await.amount, (4 * OUTPUT).to_string());
}

/// A payer that never answers the request for a voucher: the stream ends cleanly after the meter's wait, charged
/// the one token its first voucher paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_payer_sends_no_voucher_ends_after_the_wait_charging_what_was_delivered() {
    let h = harness().await;
    let asked = json!({"tokens": 5});
    let ch = challenge(&h, "/v1/stream", true, &asked.to_string()).await;
    let (s, open) = opened(&h, &ch, 3, 10_000, OUTPUT);
    let started = std::time::Instant::now();
    let response = stream(&h, &s, &ch, open, asked).await;
    assert_eq!(response.status(), 200);
    let all = events(response).await;
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited for the voucher");
    assert_eq!(tokens(&all), 1);
    assert_eq!(named(&all, sse::NEED_VOUCHER).len(), 1, "the payer is asked once");
    let error: Value = serde_json::from_str(&named(&all, sse::ERROR)[0].data).unwrap();
    assert_eq!(error["reason"], "voucher_timeout");
    assert_eq!(charged(&h, &s).await, OUTPUT);
    assert_eq!(settled_row(&h).await.amount, OUTPUT.to_string());
}

/// A request quoted one token whose answer is not a stream is priced whole: withheld, and nothing charged, when
/// the channel's vouchers do not cover it; delivered and charged what it used when they do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_is_not_a_stream_is_charged_whole_only_when_the_vouchers_cover_it() {
    let h = harness().await;
    // The echo upstream answers the body: 10 prompt and 20 completion tokens, 50 units.
    let body = json!({"usage": {"prompt_tokens": 10, "completion_tokens": 20}}).to_string();
    let ch = challenge(&h, "/v1/metered/a", true, &body).await;
    let send = |s: &EvmSession, payload: Value| {
        h.http
            .post(h.url("/v1/metered/a"))
            .header("accept", "text/event-stream")
            .header("content-type", "application/json")
            .header("authorization", s.credential(&ch, payload))
            .body(body.clone())
            .send()
    };
    let (mut s, open) = opened(&h, &ch, 4, 10_000, OUTPUT);
    let (status, refused) = problem(send(&s, open).await.unwrap()).await;
    assert_eq!(
        (status, kind(&refused)),
        (402, ("https://paymentauth.org/problems/payment-insufficient", "session_insufficient_balance"))
    );
    assert_eq!(charged(&h, &s).await, 0, "nothing is charged for a withheld answer");
    // A voucher signed ahead covers it.
    s.cumulative = 100;
    let response = send(&s, s.voucher_for(100)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(charged(&h, &s).await, 50);
}

/// An answer too large to count what it used (over 32 MiB) is the upstream's failure: 502, nothing charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_too_large_to_meter_charges_nothing() {
    let h = harness().await;
    let ch = session_challenge(&h.http.get(h.url("/v1/huge")).send().await.unwrap());
    assert_eq!(ch.request["amount"], "1000", "quoted the maximum");
    let (s, open) = opened(&h, &ch, 5, 10_000, 1_000);
    let response = h.http.get(h.url("/v1/huge")).header("authorization", s.credential(&ch, open)).send().await.unwrap();
    let (status, refused) = problem(response).await;
    assert_eq!((status, kind(&refused).1), (502, "upstream_unavailable"));
    assert_eq!(charged(&h, &s).await, 0);
    let channel = h.gateway.store().channel(&format!("{:#x}", s.channel_id())).await.unwrap().unwrap();
    assert_eq!(channel.reserved(), 0, "the reservation was given back");
}
