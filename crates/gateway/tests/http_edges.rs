//! The edges of HTTP itself: heads hyper refuses before paygate sees them, a body whose framing breaks on a free
//! route, `OPTIONS` that are not CORS preflights, `HEAD` on a priced route, and caching of paid answers. Every
//! refusal is a problem body with a request id, and nothing reaches the upstream that should not.

mod common;

use common::{Harness, Options, kind, pay_to, payer, problem};
use paygate_store::PaymentState;
use paygate_testkit::node;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A free route whose upstream reads the body.
fn options() -> Options {
    Options {
        extra_toml: r#"
            [[routes]]
            method = "POST"
            path = "/v1/metered/echo"
        "#
        .into(),
        ..Default::default()
    }
}

/// What came back for raw request bytes: status, head (lower-cased names) and body.
async fn raw(base: &str, request: &[u8]) -> (u16, String, String) {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut response = Vec::new();
    // The server closes the connection after a refusal; a keep-alive answer is read until its body ends.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status =
        head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("a status line: {text:?}"));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn problem_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("a problem body: {body:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_hyper_refuses_get_a_problem_body_with_a_request_id() {
    let h = Harness::start().await;
    let cases: [(&[u8], u16, &str); 3] = [
        (b"GET /free HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, "malformed_request"),
        (
            b"GET /free HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            400,
            "malformed_request",
        ),
        (b"GET /f\x01ree HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed_request"),
    ];
    for (request, status, reason) in cases {
        let (got, head, body) = raw(&h.base, request).await;
        assert_eq!(got, status, "{head}");
        assert!(head.contains("content-type: application/problem+json"), "{head}");
        let p = problem_of(&body);
        assert_eq!(p["reason"], reason, "{p}");
        let id = p["requestId"].as_str().expect("a request id");
        assert!(head.contains(&format!("x-request-id: {}", id.to_ascii_lowercase())), "{head}");
    }
    // A head over the server's limit (64 KiB here): exactly the limit and unfinished, so that the server has read
    // all of it when it answers (unread bytes would make its close a reset).
    let mut big = b"GET /free HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.resize(64 * 1024, b'a');
    let (status, _, body) = raw(&h.base, &big).await;
    assert_eq!((status, problem_of(&body)["reason"].as_str()), (431, Some("headers_too_large")));
    assert_eq!(h.upstream.hits(), 0);
    // The connection's ordinary answers are not touched: a free call still works, and names its request.
    let response = h.send("GET", "/free", None, None).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_chunked_body_on_a_free_route_is_the_clients_fault() {
    let h = Harness::start_with(options()).await;
    let request = b"POST /v1/metered/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\nnot a chunk\r\n0\r\n\r\n";
    let (status, head, body) = raw(&h.base, request).await;
    assert_eq!(status, 400, "{head} {body}");
    let p = problem_of(&body);
    assert_eq!(
        (p["type"].as_str(), p["reason"].as_str()),
        (Some("urn:paygate:problem:malformed-request"), Some("body_unreadable"))
    );
    // A well-formed one goes through.
    let ok = b"POST /v1/metered/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let (status, _, body) = raw(&h.base, ok).await;
    assert_eq!((status, body.contains("hello")), (200, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_cors_preflights_are_answered_by_paygate() {
    let h = Harness::start().await;
    let http = reqwest::Client::new();
    // Not a preflight: the upstream answers it (axum's 405 with its own Allow), with or without Origin.
    for origin in [None, Some("https://app.example")] {
        let mut request = http.request(reqwest::Method::OPTIONS, h.url("/free"));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 405, "{origin:?}");
        assert!(response.headers()["allow"].to_str().unwrap().contains("GET"), "{origin:?}");
        assert!(!response.headers().contains_key("access-control-allow-methods"), "{origin:?}");
    }
    // A preflight: paygate's CORS answers.
    let preflight = http
        .request(reqwest::Method::OPTIONS, h.url("/v1/quote"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "payment-signature")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert!(preflight.headers()["access-control-allow-headers"].to_str().unwrap().contains("payment-signature"));
}

/// HEAD has no body to deliver, so it is never charged: unpaid, it gets the route's 402 (headers only); paid, a
/// refusal that verifies, claims and proxies nothing, and the same credential then pays the GET.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_is_never_charged() {
    let h = Harness::start().await;
    let unpaid = h.send("HEAD", "/v1/quote", None, None).await;
    assert_eq!(unpaid.status(), 402);
    assert!(unpaid.headers().contains_key("payment-required") && unpaid.headers().contains_key("www-authenticate"));

    let (name, value) = node::sign("x402", &h.url("/v1/quote"), &[]).await;
    let paid_head = h.send("HEAD", "/v1/quote", Some((&name, &value)), None).await;
    assert_eq!(paid_head.status(), 405);
    assert_eq!(paid_head.headers()["allow"], "GET");
    assert_eq!(paid_head.headers()["content-type"], "application/problem+json");
    assert!(h.ledger().await.is_empty());
    assert_eq!((h.upstream.hits(), h.chain.transfers(payer(), pay_to()).await), (0, 0));

    let get = h.send("GET", "/v1/quote", Some((&name, &value)), None).await;
    assert_eq!(get.status(), 200);
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1);
}

/// Every answer to a priced request is uncacheable by shared caches, whatever the protocol: an x402 retry has no
/// `Authorization` header, so a CDN would otherwise serve the paid body to unpaid clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_answers_are_never_stored_by_shared_caches() {
    let h = Harness::start().await;
    for protocol in ["x402", "mppx"] {
        let answer = node::client(&[protocol, "pay", &h.url("/v1/quote")]).await;
        assert_eq!(answer["status"], 200, "{protocol}: {answer}");
        assert_eq!(answer["headers"]["cache-control"], "private, no-store", "{protocol}");
    }
    let unpaid = h.send("GET", "/v1/quote", None, None).await;
    assert_eq!(unpaid.headers()["cache-control"], "no-store");
    let ledger = h.ledger().await;
    assert_eq!(ledger.len(), 2);
    assert!(ledger.iter().all(|p| p.state == PaymentState::Settled));
}

/// Refusals name their request too, in the header and the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_their_request_id() {
    let h = Harness::start().await;
    let response = h.send("GET", "/v1/quote", Some(("payment-signature", "%%%")), None).await;
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let (status, p) = problem(response).await;
    assert_eq!((status, kind(&p).1), (400, "malformed_credential"));
    assert_eq!(p.extensions["requestId"], id.as_str());
}
