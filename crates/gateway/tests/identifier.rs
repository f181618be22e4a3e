//! x402 `payment-identifier`: a client that lost the answer to a paid request sends the same payload with the
//! same id again and gets the first answer again, `PAYMENT-RESPONSE` included, without a second charge or a
//! second upstream call; the same id with another payment is a 409. The official client adds the id with
//! `@x402/extensions`, which it does only when the 402 declares the extension.

mod common;

use std::time::Duration;

use common::{Harness, Options, kind, pay_to, payer, problem};
use paygate_store::PaymentState;
use paygate_testkit::{UpstreamMode, node};

const ID: &str = "pay_7d5d747be160e280504c099d984bcfe0";

fn options() -> Options {
    Options {
        extra_toml: r#"
            [[routes]]
            method = "GET"
            path = "/v1/large"
            price = "$0.01"
        "#
        .into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_payment_gets_its_first_answer_again() {
    let h = Harness::start_with(options()).await;
    let (name, value) = node::sign("x402", &h.url("/v1/quote"), &["--payment-id", ID]).await;
    let first = h.send("GET", "/v1/quote", Some((&name, &value)), None).await;
    assert_eq!(first.status(), 200);
    let receipt = first.headers()["payment-response"].clone();
    let body = first.text().await.unwrap();

    for _ in 0..2 {
        let again = h.send("GET", "/v1/quote", Some((&name, &value)), None).await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.headers()["payment-response"], receipt, "the same settlement answer");
        assert_eq!(again.headers()["cache-control"], "private, no-store");
        assert_eq!(again.text().await.unwrap(), body);
    }
    assert_eq!(h.upstream.hits(), 1, "the upstream answered once");
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1, "charged once");

    // The same id with another payment: 409, and nothing happens.
    let (other_name, other_value) = node::sign("x402", &h.url("/v1/quote"), &["--payment-id", ID]).await;
    assert_ne!(other_value, value);
    let (status, p) = problem(h.send("GET", "/v1/quote", Some((&other_name, &other_value)), None).await).await;
    assert_eq!(
        (status, kind(&p)),
        (409, ("urn:paygate:problem:payment-identifier-conflict", "payment_identifier_conflict"))
    );
    assert_eq!((h.upstream.hits(), h.ledger().await.len()), (1, 1));

    // An id that breaks the extension's rules is malformed.
    let (bad_name, bad_value) = node::sign("x402", &h.url("/v1/quote"), &[]).await;
    let mut payload = common::decode_x402(&bad_value);
    payload["extensions"] =
        serde_json::json!({ "payment-identifier": { "info": { "required": false, "id": "short" } } });
    let (status, p) =
        problem(h.send("GET", "/v1/quote", Some((&bad_name, &common::encode_x402(&payload))), None).await).await;
    assert_eq!((status, kind(&p).1), (400, "invalid_payment_identifier"));
}

/// A payment that moved no money (the upstream failed) keeps no answer: the same payload sent again is processed
/// anew, as a client retrying wants. A resend while the first is in flight is a 409 to retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_answers_that_moved_money_are_kept() {
    let h = Harness::start_with(options()).await;
    let (name, value) = node::sign("x402", &h.url("/v1/quote"), &["--payment-id", ID]).await;
    h.upstream.set_mode(UpstreamMode::Fail);
    assert_eq!(h.send("GET", "/v1/quote", Some((&name, &value)), None).await.status(), 500);
    h.upstream.set_mode(UpstreamMode::Slow);
    let url = h.url("/v1/quote");
    let (n, v) = (name.clone(), value.clone());
    let first = tokio::spawn(async move { reqwest::Client::new().get(url).header(n, v).send().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let in_flight = h.send("GET", "/v1/quote", Some((&name, &value)), None).await;
    assert_eq!(in_flight.headers()["retry-after"], "1");
    let (status, p) = problem(in_flight).await;
    assert_eq!((status, kind(&p).1), (409, "payment_identifier_in_flight"));
    assert_eq!(first.await.unwrap().status(), 200);
    h.upstream.set_mode(UpstreamMode::Ok);
    assert_eq!(h.send("GET", "/v1/quote", Some((&name, &value)), None).await.status(), 200);
    assert_eq!(h.upstream.hits(), 2, "the failed call and the paid one; the resend was answered from the store");
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1);
    assert_eq!(h.ledger().await[0].state, PaymentState::Settled);
}

/// A body too large to keep: the resend is served by the upstream again, with the first settlement's answer, and
/// is not charged again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_answer_is_asked_of_the_upstream_again_without_a_second_charge() {
    let h = Harness::start_with(options()).await;
    let (name, value) = node::sign("x402", &h.url("/v1/large"), &["--payment-id", ID]).await;
    let first = h.send("GET", "/v1/large", Some((&name, &value)), None).await;
    assert_eq!(first.status(), 200);
    let receipt = first.headers()["payment-response"].clone();
    assert_eq!(first.bytes().await.unwrap().len(), 1536 * 1024);
    let again = h.send("GET", "/v1/large", Some((&name, &value)), None).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["payment-response"], receipt);
    assert_eq!(again.bytes().await.unwrap().len(), 1536 * 1024);
    assert_eq!(h.upstream.hits(), 2);
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1);
}
