//! Rate limits: over the per-address allowance every request is a 429 with `Retry-After`, and over the
//! per-payer allowance a verified payment is refused before it is claimed, so nothing is proxied or charged.

mod common;

use common::{Backend, Harness, Options, pay_to, payer};
use paygate_testkit::node;
use serde_json::Value;

async fn harness(limits: &str) -> Harness {
    Harness::start_with(Options {
        backend: Backend::Devnet,
        extra_toml: format!("[limits]\n{limits}"),
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_over_its_allowance_gets_429_and_when_to_retry() {
    let h = harness("per_ip_per_minute = 3").await;
    for _ in 0..3 {
        assert_eq!(h.http.get(h.url("/v1/quote")).send().await.unwrap().status(), 402);
    }
    for path in ["/v1/quote", "/free"] {
        let refused = h.http.get(h.url(path)).send().await.unwrap();
        assert_eq!(refused.status(), 429, "{path}");
        let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=20).contains(&retry_after), "{retry_after}");
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(
            (problem["type"].as_str(), problem["reason"].as_str()),
            (Some("urn:paygate:problem:rate-limited"), Some("ip_rate_limited"))
        );
        assert_eq!(problem["retryAfter"], retry_after);
    }
    assert_eq!(h.upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payer_over_its_allowance_is_refused_before_anything_is_claimed_or_charged() {
    let h = harness("per_payer_per_minute = 1").await;
    let first = node::client(&["x402", "pay", &h.url("/v1/quote")]).await;
    assert_eq!(first["status"], 200, "{first}");
    let (name, value) = node::sign("x402", &h.url("/v1/quote"), &[]).await;
    let refused = h.http.get(h.url("/v1/quote")).header(name, value).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["reason"], "payer_rate_limited");
    assert_eq!(h.upstream.hits(), 1);
    assert_eq!(h.ledger().await.len(), 1);
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1);
}
