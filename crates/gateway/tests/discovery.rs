//! What agents find without paying, read with the official parsers: each 402's x402 `bazaar` extension
//! (`@x402/extensions`), `GET /openapi.json` (`mppx/discovery`), `GET /.well-known/x402` (each item's offers
//! through `@x402/core`'s schema) and `GET /llms.txt`, all generated from the config, free, and never reaching
//! the upstream.

mod common;

use common::{Harness, Options};
use paygate_testkit::node;
use serde_json::json;

const DOCUMENTED: &str = r#"
[[routes]]
method = "POST"
path = "/v1/metered/docs"
price = "$0.002"
description = "Echoes a JSON body"

[routes.discovery]
input = { text = "hello" }
input_schema = { properties = { text = { type = "string" } } }
output = { text = "hello" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_find_every_priced_route_and_its_offers_without_paying() {
    let h = Harness::start_with(Options { extra_toml: DOCUMENTED.into(), ..Default::default() }).await;
    let seen = node::discovery(&[&h.base, "POST", "/v1/metered/docs", r#"{"text":"hi"}"#]).await;
    assert_eq!(seen["status"], 402, "{seen}");
    // The 402's bazaar extension is valid by the official validator and says what the route takes and answers.
    assert_eq!((&seen["bazaar"]["valid"], &seen["bazaar"]["spec"]["valid"]), (&json!(true), &json!(true)), "{seen}");
    assert_eq!(
        seen["bazaar"]["info"]["input"],
        json!({"type": "http", "method": "POST", "bodyType": "json", "body": {"text": "hello"}})
    );
    assert_eq!(seen["bazaar"]["info"]["output"], json!({"type": "json", "example": {"text": "hello"}}));
    // The OpenAPI document passes mppx's discovery validation without a warning.
    assert_eq!(seen["openapi"], json!([]), "{seen}");
    // The well-known list names every priced route with x402 offers, each parsed by @x402/core.
    let resources: Vec<&str> =
        seen["wellKnown"]["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    for path in ["/v1/quote", "/v1/other", "/v1/echo", "/v1/metered/docs"] {
        assert!(resources.contains(&format!("{}{path}", h.base).as_str()), "{path}: {resources:?}");
    }
    assert!(!resources.iter().any(|r| r.ends_with("/free")), "free routes are not sold");

    let openapi: serde_json::Value = reqwest::get(h.url("/openapi.json")).await.unwrap().json().await.unwrap();
    let post = &openapi["paths"]["/v1/metered/docs"]["post"];
    let offer = &post["x-payment-info"]["offers"][0];
    assert_eq!((&offer["amount"], &offer["currency"]), (&json!("2000"), &json!(h.chain.token.to_checksum(None))));
    assert_eq!(post["requestBody"]["content"]["application/json"]["example"], json!({"text": "hello"}));
    assert!(openapi["paths"]["/free"]["get"].get("x-payment-info").is_none());

    let llms = reqwest::get(h.url("/llms.txt")).await.unwrap();
    assert_eq!(llms.headers()["content-type"], "text/plain; charset=utf-8");
    let llms = llms.text().await.unwrap();
    assert!(llms.contains(&format!("`POST {}/v1/metered/docs`: Echoes a JSON body", h.base)), "{llms}");
    assert!(llms.contains("0.002 USDC on eip155:31337 (x402 exact, MPP evm/charge)"), "{llms}");
    assert!(llms.contains("PAYMENT-SIGNATURE") && llms.contains("Authorization: Payment"), "{llms}");

    // None of it reached the upstream, and nothing was paid or recorded.
    assert_eq!(h.upstream.hits(), 0);
    assert!(h.ledger().await.is_empty());
}

/// A route of the operator's own on a discovery path wins: its API answers it, paygate publishes nothing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_route_on_a_discovery_path_is_the_operators() {
    let own = "[[routes]]\nmethod = \"GET\"\npath = \"/openapi.json\"\n";
    let h = Harness::start_with(Options { extra_toml: own.into(), ..Default::default() }).await;
    let response = reqwest::get(h.url("/openapi.json")).await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.text().await.unwrap(), "upstream: no such path", "the upstream answered it");
    let llms = reqwest::get(h.url("/llms.txt")).await.unwrap();
    assert_eq!(llms.status(), 200, "the other documents are still paygate's");
}
