//! (m) What the MCP layer adds to a paid call, in process: the same call (arguments `{"city":"Oslo"}`, a small
//! JSON answer) paid as an HTTP route (`POST /v1/forecast`) and as an MCP tool's `tools/call` (`forecast` at
//! `/mcp`), through the same gateway and the same in-process upstream. Both are paid on the test rail (an MPP
//! credential verified, claimed once and settled in an in-memory SQLite ledger; no chain), so that the figure is
//! the engine's work plus the MCP layer's: reading the JSON-RPC call, turning its `_meta` credential into a
//! header, forwarding the call, finding the tool's response and writing the receipt into its `_meta`. The
//! unpaid refusal of each is timed too (a 402, and the payment-required tool result). Each credential answers a
//! challenge of its own (MPP challenges are single-use), all fetched before the timed loops; the two kinds run
//! in turn, four times.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use paygate_bench::show;
use paygate_gateway::{BuildOptions, Config, Gateway, build};
use paygate_proto::mpp::{Credential, parse_challenge};
use serde_json::{Value, json};

const CONFIG: &str = r#"
[server]
secret = "benchmark-secret-of-at-least-thirty-two-bytes"
challenge_ttl_secs = 3600
[upstream]
url = "http://upstream.invalid"
[store]
url = "sqlite::memory:"
[[accept]]
rail = "test"
name = "settles"
outcome = "settles"
[[routes]]
method = "POST"
path = "/v1/forecast"
price = "$0.01"
[[routes]]
path = "/mcp"
tool = "forecast"
price = "$0.01"
"#;

const ARGUMENTS: &str = r#"{"city":"Oslo"}"#;
const FORECAST: &str = "Forecast for Oslo: sunny, 21 C";

/// The upstream of both: the HTTP route's answer, or the MCP server's JSON-RPC response to the call.
async fn upstream(request: Request<axum::body::Body>) -> Result<Response<axum::body::Body>, Infallible> {
    let mcp = request.uri().path() == "/mcp";
    let bytes = request.into_body().collect().await.expect("a body").to_bytes();
    let body: Value = serde_json::from_slice(&bytes).expect("JSON");
    let content = json!({"content": [{"type": "text", "text": FORECAST}]});
    let answer = if mcp { json!({"jsonrpc": "2.0", "id": body["id"], "result": content}) } else { content };
    let mut response = Response::new(axum::body::Body::from(answer.to_string()));
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    Ok(response)
}

fn http_request(authorization: Option<&str>) -> Request<axum::body::Body> {
    let mut request = Request::post("/v1/forecast").header("host", "bench").header("content-type", "application/json");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.body(axum::body::Body::from(ARGUMENTS)).expect("request")
}

fn tool_call(id: usize, meta: Option<Value>) -> Request<axum::body::Body> {
    let mut params = json!({"name": "forecast", "arguments": {"city": "Oslo"}});
    if let Some(meta) = meta {
        params["_meta"] = meta;
    }
    let message = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
    Request::post("/mcp")
        .header("host", "bench")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(axum::body::Body::from(message.to_string()))
        .expect("request")
}

async fn send(gateway: &Gateway, request: Request<axum::body::Body>) -> (StatusCode, http::HeaderMap, Value) {
    let response = gateway.handle(request, tower::service_fn(upstream)).await;
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("a body").to_bytes();
    (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// `n` credentials for the HTTP route, each answering its own 402, and the time each 402 took.
async fn http_credentials(gateway: &Gateway, n: usize, round: usize) -> (Vec<String>, Duration) {
    let started = Instant::now();
    let mut refusals = Vec::with_capacity(n);
    for _ in 0..n {
        refusals.push(send(gateway, http_request(None)).await);
    }
    let each = started.elapsed() / n as u32;
    let credentials = refusals
        .into_iter()
        .enumerate()
        .map(|(i, (status, headers, _))| {
            assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
            let value = headers["www-authenticate"].to_str().expect("a challenge");
            let challenge = parse_challenge(value).expect("an MPP challenge");
            Credential { challenge, payload: json!({"proof": format!("http-{round}-{i}")}), source: None }.to_header()
        })
        .collect();
    (credentials, each)
}

/// `n` credentials for the tool, as `_meta` objects, each answering the challenge of its own unpaid call.
async fn tool_credentials(gateway: &Gateway, n: usize, round: usize) -> (Vec<Value>, Duration) {
    let started = Instant::now();
    let mut refusals = Vec::with_capacity(n);
    for i in 0..n {
        refusals.push(send(gateway, tool_call(i, None)).await);
    }
    let each = started.elapsed() / n as u32;
    let credentials = refusals
        .into_iter()
        .enumerate()
        .map(|(i, (status, _, answer))| {
            assert_eq!((status, &answer["result"]["isError"]), (StatusCode::OK, &json!(true)), "{answer}");
            let challenge = answer["result"]["_meta"]["org.paymentauth/payment-required"]["challenges"][0].clone();
            let credential = json!({"challenge": challenge, "payload": {"proof": format!("mcp-{round}-{i}")}});
            json!({"org.paymentauth/credential": credential})
        })
        .collect();
    (credentials, each)
}

pub(super) async fn bench(n: usize) {
    let config = Config::parse(CONFIG, "bench-mcp.toml").expect("config");
    let built = build(&config, "bench-mcp.toml", BuildOptions::default()).await.expect("gateway");
    let gateway: Arc<Gateway> = built.gateway;
    println!("(m) a paid call in process, on the test rail, {n} calls per kind and round:");
    let mut rows = Vec::new();
    for round in 0..4 {
        let (http_credentials, http_402) = http_credentials(&gateway, n, round).await;
        let (tool_credentials, tool_402) = tool_credentials(&gateway, n, round).await;
        let started = Instant::now();
        for credential in &http_credentials {
            let (status, headers, answer) = send(&gateway, http_request(Some(credential))).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            assert!(headers.contains_key("payment-receipt"));
        }
        let http_paid = started.elapsed() / n as u32;
        let started = Instant::now();
        for (i, meta) in tool_credentials.into_iter().enumerate() {
            let (status, _, answer) = send(&gateway, tool_call(i, Some(meta))).await;
            assert_eq!((status, &answer["result"]["content"][0]["text"]), (StatusCode::OK, &json!(FORECAST)));
            assert_eq!(answer["result"]["_meta"]["org.paymentauth/receipt"]["status"], "success", "{answer}");
        }
        let tool_paid = started.elapsed() / n as u32;
        println!(
            "  round {}: paid HTTP route {} a call, paid MCP tool call {} (+{}, ratio {:.2}); unpaid: 402 {}, \
             payment-required tool result {}",
            round + 1,
            show(http_paid),
            show(tool_paid),
            show(tool_paid.saturating_sub(http_paid)),
            tool_paid.as_secs_f64() / http_paid.as_secs_f64(),
            show(http_402),
            show(tool_402),
        );
        rows.push((http_paid, tool_paid));
    }
    let mut differences: Vec<f64> =
        rows.iter().map(|(http, tool)| tool.as_secs_f64() * 1e6 - http.as_secs_f64() * 1e6).collect();
    differences.sort_by(f64::total_cmp);
    let median = (differences[1] + differences[2]) / 2.0;
    println!(
        "  the MCP layer per paid call, median of the four rounds: {median:+.1} µs (the store's round trips vary more)"
    );
    // What reading the call costs alone, without the store: the JSON-RPC body read, its `_meta` credential turned
    // into a header and the engine's request built.
    let (meta, _) = tool_credentials(&gateway, 1, 9).await;
    let message = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "forecast", "arguments": {"city": "Oslo"}, "_meta": meta[0]}})
    .to_string();
    let reads = 20_000u32;
    let started = Instant::now();
    for _ in 0..reads {
        std::hint::black_box(paygate_gateway::mcp_tool_call_request(message.as_bytes()).expect("a tool call"));
    }
    println!("  reading a paid tools/call into the engine's request: {} each", show(started.elapsed() / reads));
    for phase in paygate_gateway::Phase::ALL {
        let (count, total) = gateway.metrics().phase_total(phase);
        println!("  phase {}: {} mean over {count}", phase.as_str(), show(total / count.max(1) as u32));
    }
    let ledger = gateway.store().payments(&Default::default()).await.expect("ledger");
    let settled = ledger.iter().filter(|r| r.state == paygate_store::PaymentState::Settled).count();
    assert_eq!(settled, 8 * n, "every paid call settled once");
    println!("  {settled} calls settled in the ledger (expected {})\n", 8 * n);
}
