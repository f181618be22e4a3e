//! What the gateway costs in process, without sockets: the paygate layer on a free route, building a 402,
//! computing per-unit prices, counting calls for free calls and tiers, and asking the pricing hook.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use paygate_bench::show;
use paygate_gateway::{Gateway, PaygateLayer};
use serde_json::json;
use tower::Layer as _;

use super::{env, tts_body, unreachable_upstream};

/// The paygate layer on a free route, and the 402, each in process.
pub(crate) async fn layer_and_402(gateway: &Arc<Gateway>) {
    // The paygate layer on a free route, without sockets: what it adds to each request on the gateway's core.
    {
        let n = env("BENCH_LAYER", 200_000) as u32;
        let answer = tower::service_fn(|_: Request<axum::body::Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
        });
        let request = || {
            Request::get("/free")
                .header("host", "bench")
                .header("user-agent", "bench")
                .header("accept", "*/*")
                .body(axum::body::Body::empty())
                .expect("request")
        };
        let mut alone = answer;
        let started = std::time::Instant::now();
        for _ in 0..n {
            tower::ServiceExt::ready(&mut alone).await.expect("ready");
            std::hint::black_box(tower::Service::call(&mut alone, request()).await.expect("answered"));
        }
        let bare = started.elapsed() / n;
        let mut layered = PaygateLayer::new(gateway.clone()).layer(answer);
        let started = std::time::Instant::now();
        for _ in 0..n {
            tower::ServiceExt::ready(&mut layered).await.expect("ready");
            std::hint::black_box(tower::Service::call(&mut layered, request()).await.expect("answered"));
        }
        let with_layer = started.elapsed() / n;
        println!(
            "free route in-process: {} per request through the paygate layer, {} without it\n",
            show(with_layer),
            show(bare)
        );
    }
    // The 402 itself, without sockets: what challenge issuance costs the gateway's CPU.
    {
        let gateway = gateway.clone();
        let started = std::time::Instant::now();
        let n = env("BENCH_402", 20_000) as u32;
        for _ in 0..n {
            let request =
                Request::get("/v1/quote").header("host", "bench").body(axum::body::Body::empty()).expect("request");
            let response = gateway.handle(request, tower::service_fn(|_| async { unreachable_upstream() })).await;
            assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
        }
        println!("402 built in-process: {} each\n", show(started.elapsed() / n));
    }
}

/// Per-unit prices, and the costs of free calls, tiers and the hook, in process.
pub(crate) async fn prices_and_rules(gateway: &Arc<Gateway>) {
    // Per-unit prices, without sockets: counting the units of a request and pricing its offers.
    {
        let tts = tts_body();
        let items = Bytes::from(json!({ "items": (0..100).collect::<Vec<u32>>() }).to_string());
        let seconds = Bytes::from(r#"{"duration_seconds": 95.5}"#);
        let cases: [(&str, &str, Option<&str>, Bytes); 5] = [
            ("byte (1,024-byte body)", "POST /price/byte", None, Bytes::from(vec![b'x'; 1024])),
            ("character (1,000 in $.input)", "POST /v1/devnet-tts", None, tts),
            ("item (100 in $.items)", "POST /price/item", None, items),
            ("second ($.duration_seconds)", "POST /price/second", None, seconds),
            ("minute (?duration_seconds=)", "GET /price/minute", Some("duration_seconds=95"), Bytes::new()),
        ];
        let n = env("BENCH_PRICES", 20_000) as u32;
        println!("per-unit price computed in-process (units counted, offers priced), per request:");
        for (name, route, query, body) in cases {
            let (method, path) = route.split_once(' ').expect("METHOD /path");
            let uri = query.map_or_else(|| path.to_owned(), |q| format!("{path}?{q}"));
            let parts = Request::builder().method(method).uri(uri).body(()).expect("request").into_parts().0;
            let route = gateway.routes().iter().find(|r| r.name == route).expect("bench route");
            let started = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(route.offers_for(&parts, &body).await.expect("offers"));
            }
            println!("  {name:<32} {}", show(started.elapsed() / n));
        }
        // A route priced by its response: the tokens of a chat completion's `usage`, read from its JSON answer.
        let route = gateway.routes().iter().find(|r| r.name == "POST /price/tokens").expect("bench route");
        let answer = json!({
            "id": "chatcmpl-bench", "object": "chat.completion", "model": "bench",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "word ".repeat(64)}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 64, "total_tokens": 184},
        })
        .to_string();
        let headers = http::HeaderMap::new();
        assert_eq!(route.response_price(0, &headers, answer.as_bytes()).map(|a| a.0), Some(248), "120 + 2 x 64");
        let started = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(route.response_price(0, &headers, answer.as_bytes()));
        }
        println!(
            "  {:<32} {}",
            format!("tokens from a {}-byte JSON answer", answer.len()),
            show(started.elapsed() / n)
        );
        println!();
    }
    // Free calls, usage tiers and the pricing hook, without the HTTP around them: what each adds to a request.
    {
        let n = env("BENCH_COUNTS", 2_000) as u32;
        let store = gateway.store();
        let start = paygate_gateway::period_start(paygate_gateway::config::Period::Month, 1_800_000_000);
        let counters: Vec<String> = (0..8).map(|i| format!("bench|payer-{i}")).collect();
        let ranges = [paygate_store::CallRange { start: 0, end: None }];
        let started = std::time::Instant::now();
        for i in 0..n {
            store.count_call(&counters[i as usize % 8], start, &ranges).await.expect("counted");
        }
        let count = started.elapsed() / n;
        let started = std::time::Instant::now();
        for i in 0..n {
            std::hint::black_box(store.calls(&counters[i as usize % 8], start).await.expect("read"));
        }
        let read = started.elapsed() / n;
        let hook = gateway.routes().iter().find(|r| r.name == "GET /v1/devnet-hook").expect("hook route");
        // Each a different request, so that none is priced by a kept answer.
        let requests: Vec<http::request::Parts> = (0..n)
            .map(|i| Request::get(format!("/v1/devnet-hook?n={i}")).body(()).expect("request").into_parts().0)
            .collect();
        let started = std::time::Instant::now();
        for parts in &requests {
            std::hint::black_box(hook.offers_for(parts, &[]).await.expect("priced"));
        }
        let asked = started.elapsed() / n;
        println!("free calls, tiers and the hook in-process (SQLite store, hook on loopback), per request:");
        println!("  count a call (free calls, tiers)  {}", show(count));
        println!("  read a payer's calls (tier quote) {}", show(read));
        println!("  ask the pricing hook (not kept)   {}\n", show(asked));
    }
}
