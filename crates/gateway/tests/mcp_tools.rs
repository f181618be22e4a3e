//! Selling the tools of an MCP server: paygate in front of an MCP server built with the official SDK
//! (`tests/node/mcp-server.mjs`, streamable HTTP, stateful sessions), three of its tools priced, and the official
//! clients paying them: the MCP SDK's client wrapped by mppx's McpClient (MPP `evm` charge), and x402 over MCP
//! with `@x402/core` creating the payment. Each paid call moves exactly its price on chain and leaves one
//! settled ledger row; a tool that fails is not charged; an unpaid call never reaches the tool; a replayed
//! payment is refused; everything else on the endpoint passes free.

#[macro_use]
mod common;

use common::{Backend, Harness, Options, pay_to};
use paygate_store::PaymentState;
use paygate_testkit::node::{self, McpServer};
use serde_json::{Value, json};

const TOOLS: &str = r#"
    [[routes]]
    path = "/mcp"
    tool = "forecast"
    price = "$0.01"
    description = "Tomorrow's weather"
    discovery = { input = { city = "Oslo" }, input_schema = { type = "object", properties = { city = { type = "string" } } } }

    [[routes]]
    path = "/mcp"
    tool = "quote"
    price = "$0.02"

    [[routes]]
    path = "/mcp"
    tool = "broken"
    price = "$0.01"
"#;

async fn start(backend: Backend, json_answers: bool) -> (Harness, McpServer) {
    let server = McpServer::start(json_answers).await;
    let options = Options { upstream_url: Some(server.url.clone()), extra_toml: TOOLS.into(), ..backend.options() };
    (Harness::start_with(options).await, server)
}

on_both_chains! {
    mppx_mcp_client_pays_tools_and_a_failed_tool_costs_nothing = mppx_pays(false);
    x402_over_mcp_pays_and_a_replay_is_refused = x402_pays(true);
}

async fn mppx_pays(backend: Backend, json_answers: bool) {
    let (h, server) = start(backend, json_answers).await;
    let before = h.chain.balance(pay_to()).await;
    let answer = node::mcp_tools(&h.url("/mcp"), "mppx").await;
    assert!(answer.get("error").is_none(), "{answer}");
    assert_eq!(answer["tools"], json!(["broken", "echo", "forecast", "quote"]), "tools/list passes free");
    assert!(answer["sessionId"].is_string(), "the MCP session header goes both ways: {answer}");

    // A free tool: no payment asked, no receipt.
    assert_eq!(answer["echo"]["result"]["content"][0]["text"], "hi");
    assert!(answer["echo"]["result"]["receipt"].is_null());

    // Paid tools: the result, with the receipt in `_meta`, naming the challenge it answered.
    let forecast = &answer["forecast"]["result"];
    assert_eq!(forecast["content"][0]["text"], "Forecast for Oslo: sunny, 21 C", "{answer}");
    let receipt = &forecast["receipt"];
    assert_eq!((&receipt["status"], &receipt["method"]), (&json!("success"), &json!("evm")), "{answer}");
    assert_eq!(receipt["reference"].as_str().map(str::len), Some(66));
    assert!(receipt["challengeId"].as_str().is_some_and(|id| !id.is_empty()));
    // A tool with an output schema is paid too: the payment-required result has no structured content the
    // client would check against it.
    let quote = &answer["quote"]["result"];
    assert_eq!(quote["structuredContent"], json!({"symbol": "PAY", "price": "4.02"}), "{answer}");
    assert_eq!(quote["receipt"]["status"], "success");
    // A tool that fails: its error result is delivered, nothing is charged.
    let broken = &answer["broken"]["result"];
    assert_eq!((&broken["isError"], &broken["content"][0]["text"]), (&json!(true), &json!("the tool failed")));
    assert!(broken["receipt"].is_null(), "{answer}");

    assert_eq!(h.chain.balance(pay_to()).await - before, 30_000, "0.01 + 0.02 USDC, the failed call free");
    assert_eq!(
        server.runs().await,
        json!({"forecast": 1, "quote": 1, "broken": 1, "echo": 1}),
        "unpaid calls ran nothing"
    );
    let mut ledger = h.ledger().await;
    ledger.sort_by(|a, b| a.route.cmp(&b.route));
    let rows: Vec<(&str, PaymentState, &str, Option<u16>)> =
        ledger.iter().map(|r| (r.route.as_str(), r.state, r.amount.as_str(), r.upstream_status)).collect();
    assert_eq!(
        rows,
        [
            ("POST mcp://tool/broken", PaymentState::Voided, "10000", Some(422)),
            ("POST mcp://tool/forecast", PaymentState::Settled, "10000", Some(200)),
            ("POST mcp://tool/quote", PaymentState::Settled, "20000", Some(200)),
        ]
    );
    assert_eq!(ledger[1].tx_hash.as_deref(), receipt["reference"].as_str());
}

async fn x402_pays(backend: Backend, json_answers: bool) {
    let (h, server) = start(backend, json_answers).await;
    let before = h.chain.balance(pay_to()).await;
    let answer = node::mcp_tools(&h.url("/mcp"), "x402").await;
    assert!(answer.get("error").is_none(), "{answer}");

    // The unpaid call's x402/error: the tool's resource, its price, its bazaar description as a tool.
    let required = &answer["required"];
    assert_eq!(required["resource"]["url"], "mcp://tool/forecast", "{answer}");
    assert_eq!(required["accepts"][0]["amount"], "10000");
    let input = &required["extensions"]["bazaar"]["info"]["input"];
    assert_eq!((&input["type"], &input["toolName"]), (&json!("mcp"), &json!("forecast")), "{answer}");

    let paid = &answer["paid"]["result"];
    assert_eq!(paid["content"][0]["text"], "Forecast for Oslo: sunny, 21 C", "{answer}");
    let settlement = &paid["_meta"]["x402/payment-response"];
    assert_eq!(settlement["success"], true, "{answer}");
    let tx = settlement["transaction"].as_str().expect("a transaction");

    // The same payment again is refused as a replay, and the tool does not run.
    let replayed = &answer["replayed"]["error"];
    assert_eq!(replayed["code"], -32043, "{answer}");
    assert_eq!(replayed["data"]["httpStatus"], 403);
    assert_eq!(replayed["data"]["problem"]["type"], "urn:paygate:problem:payment-replayed");

    assert_eq!(h.chain.balance(pay_to()).await - before, 10_000);
    assert_eq!(server.runs().await["forecast"], 1);
    let ledger = h.ledger().await;
    assert_eq!(ledger.len(), 1);
    assert_eq!((ledger[0].state, ledger[0].protocol.as_str()), (PaymentState::Settled, "x402-v2"));
    assert_eq!(ledger[0].tx_hash.as_deref(), Some(tx));
}

/// An unpaid call gets one answer both protocols read; nothing runs or is recorded. The endpoint's other
/// traffic passes free, a priced tool cannot hide in a batch, and the tools are listed for discovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_call_asks_both_protocols_and_the_rest_passes_free() {
    let (h, server) = start(Backend::Devnet, false).await;
    let answer = node::mcp_tools(&h.url("/mcp"), "unpaid").await;
    let result = &answer["answer"];
    assert_eq!(result["isError"], true, "{answer}");
    let text: Value = serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(text["x402/error"]["code"], 402);
    assert_eq!(text["x402/error"]["data"]["x402Version"], 2);
    let challenges = &result["_meta"]["org.paymentauth/payment-required"]["challenges"];
    assert_eq!(challenges[0]["method"], "evm", "{answer}");
    assert_eq!(challenges[0]["request"]["amount"], "10000", "the request decoded, as mppx reads it");
    assert_eq!(server.runs().await["forecast"], 0);
    assert!(h.ledger().await.is_empty());

    // The endpoint's GET goes to the MCP server (which has no such session), not to paygate's unknown route.
    let get = h.http.get(h.url("/mcp")).send().await.unwrap();
    assert_eq!(get.status(), 404);
    assert!(get.text().await.unwrap().contains("Session not found"));
    // A batch calling a priced tool is refused before anything reaches the server.
    let batch = json!([{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "forecast"}}]);
    let refused = h.send("POST", "/mcp", None, Some(&batch.to_string())).await;
    let (status, problem) = common::problem(refused).await;
    assert_eq!((status, &problem.extensions["reason"]), (400, &json!("mcp_batched_tool_call")));
    assert_eq!(server.runs().await["forecast"], 0);

    // Discovery lists the tools as MCP resources.
    let listed: Value = h.http.get(h.url("/.well-known/x402")).send().await.unwrap().json().await.unwrap();
    let tool = listed["items"].as_array().unwrap().iter().find(|i| i["resource"] == "mcp://tool/forecast");
    assert_eq!(tool.map(|t| &t["type"]), Some(&json!("mcp")), "{listed}");
}

/// In process, on the test rail (`paygate_methods::test_rail`), the paths no official client can be made to take:
/// a settlement that fails after the tool ran, one left pending, an MCP server that breaks, a credential that
/// does not decode.
mod in_process {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::Body;
    use futures_util::StreamExt as _;
    use http::{Request, Response, StatusCode};
    use http_body_util::BodyExt;
    use paygate_gateway::{BuildOptions, Config, Gateway, build};
    use paygate_store::{PaymentQuery, PaymentState};
    use serde_json::{Value, json};

    const CONFIG: &str = r#"
        [server]
        secret = "engine-test-secret-of-at-least-32-bytes"
        [upstream]
        url = "http://upstream.invalid"
        [store]
        url = "sqlite::memory:"
        [[accept]]
        rail = "test"
        name = "failed"
        outcome = "failed"
        [[accept]]
        rail = "test"
        name = "pending"
        outcome = "pending"
        [[accept]]
        rail = "test"
        name = "settles"
        outcome = "settles"
        [[routes]]
        path = "/mcp"
        tool = "lingers"
        price = "$0.01"
        accept = ["settles"]
        [[routes]]
        path = "/mcp"
        tool = "fails_to_settle"
        price = "$0.01"
        accept = ["failed"]
        [[routes]]
        path = "/mcp"
        tool = "pending"
        price = "$0.01"
        accept = ["pending"]
    "#;

    /// The MCP server: answers every call with a result, except that status 500 comes back for `crash`, and that
    /// `lingers` answers with events (a notification, then the response) on a stream it never ends.
    async fn upstream(ran: Arc<AtomicUsize>, request: Request<Body>) -> Result<Response<Body>, Infallible> {
        ran.fetch_add(1, Ordering::SeqCst);
        let body: Value = serde_json::from_slice(&request.into_body().collect().await.unwrap().to_bytes()).unwrap();
        if body["params"]["name"] == "lingers" {
            let note = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}});
            let answer =
                json!({"jsonrpc": "2.0", "id": body["id"], "result": {"content": [{"type": "text", "text": "done"}]}});
            let events = format!("event: message\ndata: {note}\n\nevent: message\ndata: {answer}\n\n");
            let chunks = vec![Ok::<_, Infallible>(bytes::Bytes::from(events))];
            let stream = futures_util::stream::iter(chunks).chain(futures_util::stream::pending());
            let mut response = Response::new(Body::from_stream(stream));
            response.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
            return Ok(response);
        }
        let mut response = Response::new(Body::from(
            json!({"jsonrpc": "2.0", "id": body["id"], "result": {"content": [{"type": "text", "text": "secret"}]}})
                .to_string(),
        ));
        response.headers_mut().insert("content-type", "application/json".parse().unwrap());
        if body["params"]["arguments"]["crash"] == true {
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        }
        Ok(response)
    }

    async fn call(
        gateway: &Gateway,
        ran: &Arc<AtomicUsize>,
        tool: &str,
        args: Value,
        meta: Option<Value>,
    ) -> (StatusCode, http::HeaderMap, Value) {
        let (status, headers, text) = call_raw(gateway, ran, tool, args, meta).await;
        (status, headers, serde_json::from_str(&text).unwrap())
    }

    /// A call's answer as text (JSON, or an event stream), read to its end.
    async fn call_raw(
        gateway: &Gateway,
        ran: &Arc<AtomicUsize>,
        tool: &str,
        args: Value,
        meta: Option<Value>,
    ) -> (StatusCode, http::HeaderMap, String) {
        let mut params = json!({"name": tool, "arguments": args});
        if let Some(meta) = meta {
            params["_meta"] = meta;
        }
        let message = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
        let request = Request::post("/mcp").header("host", "api.test").body(Body::from(message.to_string())).unwrap();
        let ran = ran.clone();
        let response = gateway.handle(request, tower::service_fn(move |r| upstream(ran.clone(), r))).await;
        let (parts, body) = response.into_parts();
        (parts.status, parts.headers, String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap())
    }

    /// The credential paying the test challenge of an unpaid call's answer with `proof`.
    async fn paid(gateway: &Gateway, ran: &Arc<AtomicUsize>, tool: &str, args: Value, proof: &str) -> Value {
        let (_, _, unpaid) = call(gateway, ran, tool, args, None).await;
        let challenge = unpaid["result"]["_meta"]["org.paymentauth/payment-required"]["challenges"][0].clone();
        json!({"org.paymentauth/credential": {"challenge": challenge, "payload": {"proof": proof}}})
    }

    #[tokio::test]
    async fn a_tools_result_goes_out_only_when_paid_and_as_soon_as_it_came() {
        let config = Config::parse(CONFIG, "mcp.toml").unwrap();
        let gateway = build(&config, "mcp.toml", BuildOptions::default()).await.unwrap().gateway;
        let ran = Arc::new(AtomicUsize::new(0));

        // Settlement fails after the tool ran: its result does not go out, nothing is charged.
        let meta = paid(&gateway, &ran, "fails_to_settle", json!({}), "p1").await;
        let (status, _, answer) = call(&gateway, &ran, "fails_to_settle", json!({}), Some(meta)).await;
        assert_eq!(status, StatusCode::OK, "JSON-RPC answers 200");
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert!(!answer.to_string().contains("secret"), "the result is withheld: {answer}");
        assert!(answer.get("error").is_some() || answer["result"]["isError"] == true, "{answer}");

        // Settlement pending: the result goes out, marked.
        let meta = paid(&gateway, &ran, "pending", json!({}), "p2").await;
        let (status, headers, answer) = call(&gateway, &ran, "pending", json!({}), Some(meta)).await;
        assert_eq!((status, &answer["result"]["content"][0]["text"]), (StatusCode::OK, &json!("secret")), "{answer}");
        assert_eq!(headers["paygate-settlement"], "pending");

        // The MCP server breaks: its answer and status pass, the payment is voided and may be sent again.
        let meta = paid(&gateway, &ran, "pending", json!({"crash": true}), "p3").await;
        let (status, _, _) = call(&gateway, &ran, "pending", json!({"crash": true}), Some(meta)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

        // A credential that does not decode: a JSON-RPC error naming it, the tool not run.
        let runs = ran.load(Ordering::SeqCst);
        let garbage = json!({"org.paymentauth/credential": {"challenge": {"id": 5}, "payload": {}}});
        let (status, _, answer) = call(&gateway, &ran, "pending", json!({}), Some(garbage)).await;
        assert_eq!((status, &answer["error"]["code"]), (StatusCode::OK, &json!(-32602)), "{answer}");
        assert_eq!(answer["error"]["data"]["httpStatus"], 400);
        assert_eq!(ran.load(Ordering::SeqCst), runs);

        // A server that keeps its event stream open after the response: the call is answered at the response,
        // with its receipt in that event, and settled.
        let meta = paid(&gateway, &ran, "lingers", json!({}), "p4").await;
        let lingering = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            call_raw(&gateway, &ran, "lingers", json!({}), Some(meta)),
        );
        let (status, _, text) = lingering.await.expect("answered at the response, not at the stream's end");
        assert_eq!(status, StatusCode::OK);
        assert!(
            text.starts_with("event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\""),
            "{text}"
        );
        assert!(text.contains("org.paymentauth/receipt") && text.ends_with("}\n\n"), "{text}");

        let mut ledger = gateway.store().payments(&PaymentQuery::default()).await.unwrap();
        ledger.sort_by_key(|r| r.id);
        let states: Vec<(PaymentState, Option<u16>)> = ledger.iter().map(|r| (r.state, r.upstream_status)).collect();
        assert_eq!(
            states,
            [
                (PaymentState::Failed, Some(200)),
                (PaymentState::Pending, Some(200)),
                (PaymentState::Voided, Some(500)),
                (PaymentState::Settled, Some(200))
            ]
        );
    }
}
