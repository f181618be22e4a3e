//! Per-unit prices on a real gateway: the 402 states the price computed from the request (at the boundaries:
//! zero, the minimum, the maximum), the official clients pay exactly it, a body swapped after the challenge is
//! refused, and a request whose price cannot be computed gets a 400 that names the field.

mod common;

use common::{Backend, Harness, Options, decode_x402, pay_to, payer};
use paygate_testkit::node;
use serde_json::{Value, json};

const ROUTES: &str = r#"
[[routes]]
method = "POST"
path = "/v1/tts"
price = "$0.000015"
per = "character"
field = "$.input"
min_price = "$0.001"
max_price = "$0.05"

[[routes]]
method = "GET"
path = "/v1/transcribe"
price = "$0.006"
per = "minute"
query = "duration_seconds"
"#;

async fn harness() -> Harness {
    Harness::start_with(Options { backend: Backend::Devnet, extra_toml: ROUTES.into(), ..Default::default() }).await
}

/// The x402 amount and the MPP amount the 402 for this request states.
async fn quoted(h: &Harness, request: reqwest::RequestBuilder) -> (u16, Option<String>, Option<String>) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let x402 = response
        .headers()
        .get("payment-required")
        .map(|v| decode_x402(v.to_str().unwrap())["accepts"][0]["amount"].as_str().unwrap().to_owned());
    let mpp = response.headers().get("www-authenticate").and_then(|v| {
        let line = v.to_str().unwrap();
        let request = line.split("request=\"").nth(1)?.split('"').next()?;
        let json = paygate_proto::b64::url_decode(request).ok()?;
        Some(serde_json::from_slice::<Value>(&json).ok()?["amount"].as_str()?.to_owned())
    });
    let _ = h;
    (status, x402, mpp)
}

fn tts(h: &Harness, characters: usize) -> reqwest::RequestBuilder {
    h.http.post(h.url("/v1/tts")).json(&json!({ "input": "a".repeat(characters), "voice": "alto" }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_402_states_the_price_of_this_request() {
    let h = harness().await;
    let quote = |n| quoted(&h, tts(&h, n));
    // 15 atomic units per character, between 1000 and 50000.
    assert_eq!(quote(1000).await, (402, Some("15000".into()), Some("15000".into())));
    assert_eq!(quote(66).await, (402, Some("1000".into()), Some("1000".into())), "66 characters cost the minimum");
    assert_eq!(quote(67).await.1.as_deref(), Some("1005"), "just past the minimum");
    assert_eq!(quote(3333).await.1.as_deref(), Some("49995"));
    assert_eq!(quote(3334).await.1.as_deref(), Some("50000"), "just past the maximum");
    assert_eq!(quote(100_000).await.1.as_deref(), Some("50000"));
    assert_eq!(quote(0).await.1.as_deref(), Some("1000"), "nothing to say still costs the minimum");

    // $0.006 per started minute, from the query.
    let minutes = |seconds: &str| quoted(&h, h.http.get(h.url(&format!("/v1/transcribe?duration_seconds={seconds}"))));
    assert_eq!(minutes("60").await.1.as_deref(), Some("6000"));
    assert_eq!(minutes("60.5").await.1.as_deref(), Some("12000"));
    assert_eq!(minutes("1").await.1.as_deref(), Some("6000"));
    // No minutes and no minimum: nothing to pay, served like a free route.
    assert_eq!(minutes("0").await, (200, None, None));
    assert_eq!(h.upstream.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_cannot_be_priced_get_a_400_naming_the_field() {
    let h = harness().await;
    for (request, reason, detail) in [
        (
            h.http.post(h.url("/v1/tts")).json(&json!({ "text": "hi" })),
            "price_field_missing",
            "the field $.input is missing",
        ),
        (
            h.http.post(h.url("/v1/tts")).json(&json!({ "input": 42 })),
            "price_field_malformed",
            "$.input must be a string",
        ),
        (
            h.http.post(h.url("/v1/tts")).body("input=hi"),
            "body_not_json",
            "the price depends on the JSON body, and it is not JSON",
        ),
        (
            h.http.get(h.url("/v1/transcribe")),
            "price_field_missing",
            "the query parameter \"duration_seconds\" is missing",
        ),
        (
            h.http.get(h.url("/v1/transcribe?duration_seconds=-3")),
            "price_field_malformed",
            "duration_seconds must be a non-negative number of seconds",
        ),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400, "{reason}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:paygate:problem:unpriceable-request");
        assert_eq!((problem["reason"].as_str(), problem["detail"].as_str()), (Some(reason), Some(detail)));
    }
    assert_eq!(h.upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_clients_pay_the_computed_price_and_a_swapped_body_is_refused() {
    let h = harness().await;
    let before = h.chain.balance(pay_to()).await;
    let body = json!({ "input": "a".repeat(1000) }).to_string();
    for protocol in ["x402", "mppx"] {
        let paid = node::client(&[protocol, "pay", &h.url("/v1/tts"), "--method", "POST", "--body", &body]).await;
        assert_eq!(paid["status"], 200, "{protocol}: {paid}");
    }
    assert_eq!(h.chain.balance(pay_to()).await - before, 2 * 15_000);
    let ledger = h.ledger().await;
    assert!(ledger.iter().all(|row| row.amount == "15000"), "{ledger:?}");

    // A credential for a cheap body, sent with a dear one: refused, by the amount (x402 echoes the offer it
    // accepted, which is not this request's) or by the body digest the challenge binds (MPP).
    let cheap = json!({ "input": "a".repeat(67) }).to_string();
    let dear = json!({ "input": "a".repeat(3000) }).to_string();
    for protocol in ["x402", "mppx"] {
        let (name, value) = node::sign(protocol, &h.url("/v1/tts"), &["--method", "POST", "--body", &cheap]).await;
        let swapped = h
            .http
            .post(h.url("/v1/tts"))
            .header("content-type", "application/json")
            .header(&name, &value)
            .body(dear.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(swapped.status(), 402, "{protocol}");
        let problem: Value = swapped.json().await.unwrap();
        assert!(
            ["amount_mismatch", "body_mismatch"].contains(&problem["reason"].as_str().unwrap()),
            "{protocol}: {problem}"
        );
    }
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 2);
    assert_eq!(h.upstream.hits(), 2);
}
