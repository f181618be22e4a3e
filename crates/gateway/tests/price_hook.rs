//! Dynamic prices from the operator's pricing hook, on a real gateway (embedded devnet, official clients): the
//! 402 states the hook's price, the hook sees only what it was given, the official clients pay exactly it, a
//! request changed after its challenge is refused, and a hook that fails refuses the request (503) or falls back
//! to the configured price.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::{Backend, Harness, Options, decode_x402, pay_to};
use paygate_testkit::node;
use serde_json::{Value, json};

/// How the test's pricing hook answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum HookMode {
    /// Prices by the `x-model` header.
    Price,
    Slow,
    Error,
    Garbage,
    /// A valid answer padded past the 16 KiB paygate reads.
    TooLong,
    /// A price no offered asset can represent (USDC has 6 decimals).
    Unchargeable,
}

#[derive(Debug)]
struct Hook {
    mode: Mutex<HookMode>,
    seen: Mutex<Vec<Value>>,
}

async fn price(State(hook): State<Arc<Hook>>, Json(request): Json<Value>) -> Response {
    hook.seen.lock().unwrap().push(request.clone());
    let mode = *hook.mode.lock().unwrap();
    match mode {
        HookMode::Price => {
            let price = match request["headers"]["x-model"].as_str() {
                Some("large") => "$0.005",
                Some("free") => "$0",
                _ => "$0.002",
            };
            Json(json!({ "price": price })).into_response()
        }
        HookMode::Slow => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Json(json!({ "price": "$0.002" })).into_response()
        }
        HookMode::Error => (StatusCode::INTERNAL_SERVER_ERROR, "pricing database down").into_response(),
        HookMode::Garbage => (StatusCode::OK, "twelve dollars").into_response(),
        HookMode::TooLong => {
            let padded = format!("{}{{\"price\": \"$0.002\"}}", " ".repeat(20 * 1024));
            (StatusCode::OK, [("content-type", "application/json")], padded).into_response()
        }
        HookMode::Unchargeable => Json(json!({ "price": "$0.0000001" })).into_response(),
    }
}

async fn start_hook() -> (Arc<Hook>, String) {
    let hook = Arc::new(Hook { mode: Mutex::new(HookMode::Price), seen: Mutex::new(Vec::new()) });
    let router = axum::Router::new().route("/price", axum::routing::post(price)).with_state(hook.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/price", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (hook, url)
}

async fn harness() -> (Harness, Arc<Hook>) {
    let (hook, url) = start_hook().await;
    let routes = format!(
        r#"
[[routes]]
method = "POST"
path = "/v1/metered/generate"
price_hook = {{ url = "{url}", timeout_ms = 300, headers = ["x-model"] }}

[[routes]]
method = "POST"
path = "/v1/metered/fallback"
price_hook = {{ url = "{url}", timeout_ms = 300, fallback_price = "$0.01" }}
"#
    );
    let h = Harness::start_with(Options { backend: Backend::Devnet, extra_toml: routes, ..Default::default() }).await;
    (h, hook)
}

const BODY: &str = r#"{"prompt":"a haiku about receipts"}"#;

fn generate(h: &Harness, model: &str) -> reqwest::RequestBuilder {
    h.http
        .post(h.url("/v1/metered/generate?stream=false"))
        .header("content-type", "application/json")
        .header("x-model", model)
        .header("x-not-passed", "secret")
        .body(BODY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_402_states_the_hooks_price_and_official_clients_pay_exactly_it() {
    let (h, hook) = harness().await;
    let unpaid = generate(&h, "large").send().await.unwrap();
    assert_eq!(unpaid.status(), 402);
    let required = decode_x402(unpaid.headers()["payment-required"].to_str().unwrap());
    assert_eq!(required["accepts"][0]["amount"], "5000");
    let mpp = unpaid.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let request = mpp.split("request=\"").nth(1).unwrap().split('"').next().unwrap();
    let request: Value = serde_json::from_slice(&paygate_proto::b64::url_decode(request).unwrap()).unwrap();
    assert_eq!(request["amount"], "5000");

    // The hook got what the price may depend on, and only the headers it was given.
    let seen = hook.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        seen,
        json!({
            "method": "POST",
            "path": "/v1/metered/generate",
            "query": "stream=false",
            "headers": { "x-model": "large" },
            "body_digest": paygate_core::digest::body_digest(BODY.as_bytes()),
            "body_length": BODY.len(),
        })
    );

    let before = h.chain.balance(pay_to()).await;
    let url = h.url("/v1/metered/generate?stream=false");
    for (protocol, model, price) in [("x402", "large", 5000), ("mppx", "small", 2000)] {
        let balance = h.chain.balance(pay_to()).await;
        let header = format!("x-model:{model}");
        let paid =
            node::client(&[protocol, "pay", &url, "--method", "POST", "--body", BODY, "--header", &header]).await;
        assert_eq!(paid["status"], 200, "{protocol}: {paid}");
        assert_eq!(h.chain.balance(pay_to()).await - balance, price, "{protocol}");
    }

    // Each paid retry was priced by the answer its 402 got: the hook was asked once per request.
    assert_eq!(hook.seen.lock().unwrap().len(), 2);

    // A request the hook says is free is served without payment.
    let free = generate(&h, "free").send().await.unwrap();
    assert_eq!(free.status(), 200);
    assert_eq!(h.upstream.hits(), 3);

    // A payment made for the cheap model, sent for the dear one: the hook prices the request it gets, so the
    // payment no longer matches and nothing is charged.
    let (name, value) =
        node::sign("x402", &url, &["--method", "POST", "--body", BODY, "--header", "x-model:small"]).await;
    let swapped = generate(&h, "large").header(&name, &value).send().await.unwrap();
    assert_eq!(swapped.status(), 402);
    assert_eq!(swapped.json::<Value>().await.unwrap()["reason"], "amount_mismatch");
    assert_eq!(h.chain.balance(pay_to()).await - before, 7000);
    assert_eq!(h.upstream.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_hook_refuses_the_request_or_falls_back_to_the_configured_price() {
    let (h, hook) = harness().await;
    // Signed while the hook answers.
    let url = h.url("/v1/metered/generate?stream=false");
    let (name, value) =
        node::sign("x402", &url, &["--method", "POST", "--body", BODY, "--header", "x-model:small"]).await;
    hook.seen.lock().unwrap().clear();
    for mode in [HookMode::Slow, HookMode::Error, HookMode::Garbage, HookMode::TooLong, HookMode::Unchargeable] {
        *hook.mode.lock().unwrap() = mode;
        // A request priced before is priced as its 402 was: the kept answer is used, not the failing hook.
        let kept = generate(&h, "small").send().await.unwrap();
        assert_eq!(kept.status(), 402, "{mode:?}");
        let required = decode_x402(kept.headers()["payment-required"].to_str().unwrap());
        assert_eq!(required["accepts"][0]["amount"], "2000");
        for model in ["large", "medium"] {
            let response = generate(&h, model).send().await.unwrap();
            assert_eq!(response.status(), 503, "{mode:?}");
            assert_eq!(response.headers()["retry-after"], "1");
            let problem: Value = response.json().await.unwrap();
            assert_eq!(problem["type"], "urn:paygate:problem:pricing-unavailable", "{mode:?}");
            assert_eq!(problem["reason"], "price_hook_failed");
        }
        // With a fallback price, the route still sells, at that price.
        let fallback = h.http.post(h.url("/v1/metered/fallback")).body(BODY).send().await.unwrap();
        assert_eq!(fallback.status(), 402, "{mode:?}");
        let required = decode_x402(fallback.headers()["payment-required"].to_str().unwrap());
        assert_eq!(required["accepts"][0]["amount"], "10000");
    }
    assert_eq!(h.upstream.hits(), 0);
    assert!(h.ledger().await.is_empty());
    // The failing hook was asked for the new requests only.
    assert!(hook.seen.lock().unwrap().iter().all(|seen| seen["headers"]["x-model"] != "small"));

    // The payment made for a kept price goes through while the hook still fails.
    let paid = generate(&h, "small").header(&name, &value).send().await.unwrap();
    assert_eq!(paid.status(), 200);
    assert_eq!(h.chain.transfers(common::payer(), pay_to()).await, 1);

    // Once a challenge's life has passed, the answer is no longer kept: the failing hook is asked, and refuses.
    h.clock.advance(31);
    let expired = generate(&h, "small").send().await.unwrap();
    assert_eq!(expired.status(), 503);
    assert_eq!(h.upstream.hits(), 1);
}
