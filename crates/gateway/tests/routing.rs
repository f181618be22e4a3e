//! What unpaid requests get: a 402 that offers every option in both protocols and has no side effect, free
//! routes passed through, unknown and ambiguous paths refused, and CORS for browser clients; and what the upstream
//! gets of a request.

mod common;

use common::{Harness, Options, decode_x402, kind, problem};
use paygate_proto::mpp;
use paygate_testkit::node;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpaid_requests_get_offers_in_both_protocols_and_touch_nothing() {
    let h = Harness::start().await;
    let mut ids = std::collections::HashSet::new();
    for _ in 0..5 {
        let response = h.send("GET", "/v1/quote", None, None).await;
        assert_eq!(response.status(), 402);
        let headers = response.headers().clone();
        assert_eq!(headers["cache-control"], "no-store");
        // x402 v2: standard base64 JSON with the binding in `extra`.
        let required = decode_x402(headers["payment-required"].to_str().unwrap());
        assert_eq!(required["x402Version"], 2);
        let offer = &required["accepts"][0];
        assert_eq!(
            (offer["scheme"].as_str(), offer["amount"].as_str(), offer["network"].as_str()),
            (Some("exact"), Some("10000"), Some("eip155:31337"))
        );
        assert_eq!(
            (offer["extra"]["name"].as_str(), offer["extra"]["version"].as_str()),
            (Some("USD Coin"), Some("2"))
        );
        assert!(offer["extra"]["paygate"]["id"].is_string());
        // Every 402 mints its own single-use challenge, even for the same request in the same second.
        assert!(ids.insert(offer["extra"]["paygate"]["id"].as_str().unwrap().to_owned()));
        assert!(required["resource"]["url"].as_str().unwrap().ends_with("/v1/quote"));
        // MPP: one challenge, method evm, intent charge, the same id as the x402 offer.
        let challenges: Vec<_> = headers
            .get_all("www-authenticate")
            .iter()
            .map(|v| mpp::parse_challenge(v.to_str().unwrap()).unwrap())
            .collect();
        assert_eq!(challenges.len(), 1);
        assert_eq!((challenges[0].method.as_str(), challenges[0].intent.as_str()), ("evm", "charge"));
        assert_eq!(challenges[0].id, offer["extra"]["paygate"]["id"].as_str().unwrap());
        assert_eq!(challenges[0].request["amount"], "10000");
        assert!(challenges[0].expires.is_some() && challenges[0].digest.is_none());
        // The body is a problem that is also x402 v1's 402 body.
        let (status, p) = problem(response).await;
        assert_eq!(
            (status, kind(&p)),
            (402, ("https://paymentauth.org/problems/payment-required", "payment_required"))
        );
        assert_eq!(p.extensions["x402Version"], 1);
        assert_eq!(p.extensions["accepts"][0]["maxAmountRequired"], "10000");
    }
    // A POST's challenge binds its body.
    let response = h.send("POST", "/v1/echo", None, Some(r#"{"a":1}"#)).await;
    let challenge = mpp::parse_challenge(response.headers()["www-authenticate"].to_str().unwrap()).unwrap();
    assert_eq!(challenge.digest.as_deref(), Some(paygate_core::digest::body_digest(br#"{"a":1}"#).as_str()));
    assert_eq!(h.upstream.hits(), 0);
    assert!(h.ledger().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_unknown_and_ambiguous_routes() {
    let h = Harness::start().await;
    let response = h.send("GET", "/free", None, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "free");
    assert_eq!(h.upstream.hits(), 0, "the free route does not count hits");

    let (status, p) = problem(h.send("GET", "/admin", None, None).await).await;
    assert_eq!((status, kind(&p)), (404, ("urn:paygate:problem:route-not-found", "route_not_found")));
    // Encoded forms of a priced path are still priced; ambiguous ones are refused.
    assert_eq!(h.send("GET", "/v1/%71uote", None, None).await.status(), 402);
    assert_eq!(h.send("GET", "/v1/quote/", None, None).await.status(), 402);
    for path in ["/v1%2Fquote", "/v1//quote", "/v1/./quote", "/free/../v1/quote", "/free/%2e%2e/v1/quote", "/v1/%00"] {
        let (status, body) = common::raw_get(&h.base, path).await;
        assert_eq!(status, 400, "{path}");
        assert!(body.contains("urn:paygate:problem:ambiguous-path"), "{path}: {body}");
    }
    // A method the route does not list is not that route.
    assert_eq!(h.send("DELETE", "/v1/quote", None, None).await.status(), 404);
    assert_eq!(h.upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_can_send_payments_and_read_offers() {
    let h = Harness::start().await;
    let preflight = h
        .http
        .request(reqwest::Method::OPTIONS, h.url("/v1/quote"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "payment-signature,access-control-expose-headers")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    let allowed = preflight.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    for name in ["payment-signature", "x-payment", "authorization", "access-control-expose-headers"] {
        assert!(allowed.contains(name), "{name} in {allowed}");
    }
    let response = h.http.get(h.url("/v1/quote")).header("origin", "https://app.example").send().await.unwrap();
    let exposed = response.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
    for name in ["payment-required", "www-authenticate", "payment-response", "payment-receipt"] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
    assert_eq!(h.upstream.hits(), 0);
}

/// With `unknown_routes = "proxy"` a path no route names goes to the upstream untouched, while priced routes
/// (in any spelling) still ask for payment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_can_pass_through() {
    let h = Harness::start_with(Options { unknown_routes: "proxy", ..Default::default() }).await;
    let response = h.send("GET", "/somewhere/else", None, None).await;
    assert_eq!(response.status(), 404);
    assert_eq!(response.text().await.unwrap(), "upstream: no such path", "the upstream answered");
    assert_eq!(h.send("GET", "/v1/%71uote/", None, None).await.status(), 402);
    assert_eq!(h.upstream.hits(), 0);
}

/// What the upstream receives: `X-Forwarded-For`, `-Host` and `-Proto` and the request id set, hop-by-hop headers
/// (and those `Connection` names) removed, its own `Authorization` kept, and never a payment credential, on a free
/// route and on a route the official x402 and mppx clients pay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_forwarding_headers_and_never_a_credential() {
    let extra = r#"
        [[routes]]
        path = "/headers"

        [[routes]]
        method = "GET"
        path = "/v1/headers"
        price = "$0.01"
    "#;
    let h = Harness::start_with(Options { extra_toml: extra.into(), ..Default::default() }).await;
    let credentials = [
        ("payment-signature", "eyJ4NDAyVmVyc2lvbiI6Mn0="),
        ("x-payment", "eyJ4NDAyVmVyc2lvbiI6MX0="),
        ("payment-authorization", "Payment abc"),
        ("x-402-payment-proof", "0xabc"),
        ("x-402-payment", "0xabc"),
        ("x-payment-hash", "0xabc"),
        ("authorization", "Payment eyJ9"),
    ];
    let mut request = h
        .http
        .get(h.url("/headers"))
        .header("connection", "x-hop-listed")
        .header("x-hop-listed", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic cHJveHk6cHJveHk=")
        .header("te", "trailers")
        .header("trailer", "x-checksum")
        .header("upgrade", "websocket")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-request-id", "client-chosen-1")
        .header("x-kept", "yes");
    for (name, value) in credentials {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen["x-forwarded-host"], h.base.trim_start_matches("http://"));
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-request-id"], "client-chosen-1");
    assert_eq!(seen["host"], h.upstream.addr.to_string());
    assert_eq!(seen["x-kept"], "yes");
    for name in ["connection", "x-hop-listed", "keep-alive", "proxy-authorization", "te", "trailer", "upgrade"]
        .into_iter()
        .chain(credentials.map(|c| c.0))
    {
        assert!(seen.get(name).is_none(), "{name} reached the upstream: {seen}");
    }
    // The upstream's own credentials are not paygate's to take.
    let response = h.send("GET", "/headers", Some(("authorization", "Bearer upstream-token")), None).await;
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["authorization"], "Bearer upstream-token");
    assert!(seen["x-request-id"].as_str().unwrap().starts_with("req_"), "paygate's own id: {seen}");

    for protocol in ["x402", "mppx"] {
        let paid = node::client(&[protocol, "pay", &h.url("/v1/headers"), "--header", "x-kept:yes"]).await;
        assert_eq!(paid["status"], 200, "{protocol}: {paid}");
        let seen: Value = serde_json::from_str(paid["body"].as_str().unwrap()).unwrap();
        assert_eq!((&seen["x-kept"], &seen["x-forwarded-proto"]), (&Value::from("yes"), &Value::from("http")));
        for name in credentials.map(|c| c.0) {
            assert!(seen.get(name).is_none(), "{protocol}: {name} reached the upstream: {seen}");
        }
    }
    assert_eq!(h.upstream.hits(), 4);
}
