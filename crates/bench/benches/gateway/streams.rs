//! Streams paid as they are delivered (MPP `evm` session, per token) against the same stream on a free route,
//! in one run: (s) a streamed completion of `BENCH_STREAM_TOKENS` chunks through a gateway where the route is free,
//! (t) the same through a gateway where it is priced per token and paid from a session whose vouchers were signed
//! ahead (so the stream never pauses: what is measured is the billing of each chunk, not the payer's round
//! trips), then (t') the same stream where the payer signs each voucher only when asked (`payment-need-voucher`),
//! as MPP clients do. Figures: chunks per second, the ratio (t)/(s), and the time billing adds per chunk.

use std::time::{Duration, Instant};

use alloy::primitives::B256;
use paygate_chain::devtoken::dev_account;
use paygate_client::session::EvmSession;
use paygate_gateway::BuildOptions;
use paygate_proto::mpp::{Challenge, parse_challenges};
use paygate_proto::sse::{self, Event, Events};
use paygate_testkit::{Devchain, ServedGateway, Upstream};
use serde_json::{Value, json};

/// A streamed chunk's price: one output token, $0.000001.
const PART: u128 = 1;

fn config(upstream: &str, store: &str, chain: &Devchain, priced: bool) -> String {
    let route = if priced {
        r#"
        [[routes]]
        method = "POST"
        path = "/v1/stream"
        max_price = "$1"
        accept = ["session"]
        [routes.meter]
        usage = "tokens"
        input_price = "$0.000001"
        output_price = "$0.000001"
        "#
    } else {
        r#"
        [[routes]]
        method = "POST"
        path = "/v1/stream"
        "#
    };
    format!(
        r#"
        [server]
        secret = "benchmark-secret-of-at-least-thirty-two-bytes"
        challenge_ttl_secs = 600
        [upstream]
        url = "{upstream}"
        [store]
        url = "{store}"
        {usdc}
        [[accept]]
        name = "session"
        rail = "evm-session"
        network = "local"
        asset = "USDC"
        pay_to = "{payee}"
        settler_key = "{key}"
        settle_every_secs = 3600
        {route}
        "#,
        usdc = paygate_testkit::local_usdc_toml(
            chain.chain_id,
            &chain.rpc_url,
            "receipt_poll_ms = 20",
            dev_account(9).address(),
            &paygate_testkit::builtin_settlement()
        ),
        payee = dev_account(7).address(),
        key = dev_account(7).to_bytes(),
    )
}

/// One stream of `tokens` chunks through `url`, with `authorization` (none on the free route), read to its end;
/// the session signs what the stream asks for when `signer` is given. The time, and the chunks received.
async fn one_stream(
    http: &reqwest::Client,
    url: &str,
    tokens: usize,
    authorization: Option<String>,
    signer: Option<(&mut EvmSession, &Challenge)>,
) -> (Duration, usize) {
    let started = Instant::now();
    let mut request = http.post(url).header("accept", "text/event-stream").header("content-type", "application/json");
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let mut response = request.body(asked(tokens)).send().await.expect("the gateway answers");
    assert_eq!(response.status(), 200, "{url}");
    let mut signer = signer;
    let mut events = Events::new(1 << 20);
    let mut chunks = 0;
    while let Some(bytes) = response.chunk().await.expect("the stream") {
        for event in events.push(&bytes).iter().filter_map(|e| Event::read(e)) {
            if event.name == sse::NEED_VOUCHER {
                let (session, challenge) = signer.as_mut().expect("only a paid stream asks");
                let needed: Value = serde_json::from_str(&event.data).expect("JSON");
                let cumulative: u128 = needed["requiredCumulative"].as_str().expect("amount").parse().expect("amount");
                session.cumulative = cumulative;
                let credential = session.credential(challenge, session.voucher_for(cumulative));
                let sent = http
                    .post(url)
                    .header("accept", "text/event-stream")
                    .header("authorization", credential)
                    .send()
                    .await
                    .expect("the voucher is taken");
                assert!(sent.status().is_success(), "{}", sent.status());
            } else if event.name == "message" && event.data.contains("delta") {
                chunks += 1;
            }
        }
    }
    (started.elapsed(), chunks)
}

/// The body asking for a stream of `tokens` chunks.
fn asked(tokens: usize) -> String {
    json!({"tokens": tokens, "prompt_tokens": 0}).to_string()
}

/// The session challenge for a stream of `tokens` chunks (a challenge binds its request's body).
async fn session_challenge(http: &reqwest::Client, url: &str, tokens: usize) -> Challenge {
    let response = http.post(url).header("accept", "text/event-stream").body(asked(tokens)).send().await.expect("402");
    response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .flat_map(|v| parse_challenges(v.to_str().expect("ascii")))
        .filter_map(Result::ok)
        .find(|c| c.intent == "session")
        .expect("a session challenge")
}

pub(super) async fn bench(chain: &Devchain, tokens: usize, rounds: usize) {
    println!("\nstreams paid as they are delivered: {tokens} chunks a stream, {rounds} rounds, one output token each:");
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let free =
        ServedGateway::start(&config(&upstream.url(), &store("free.db"), chain, false), BuildOptions::default()).await;
    let paid =
        ServedGateway::start(&config(&upstream.url(), &store("paid.db"), chain, true), BuildOptions::default()).await;
    let (free_url, paid_url) = (format!("{}/v1/stream", free.base), format!("{}/v1/stream", paid.base));
    let http = reqwest::Client::new();
    let challenge = session_challenge(&http, &paid_url, 1).await;
    let stream_challenge = session_challenge(&http, &paid_url, tokens).await;
    let valid_before = paygate_core::clock::Clock::now_unix(&paygate_core::clock::SystemClock) + 600;
    let mut session =
        EvmSession::new(dev_account(6), &challenge, ("USD Coin".into(), "2".into()), B256::repeat_byte(9))
            .expect("a session challenge");
    let deposit = 1_000_000;
    let open = session.open(deposit, PART, valid_before).expect("the deposit covers a part");
    let (_, opened) = one_stream(&http, &paid_url, 1, Some(session.credential(&challenge, open)), None).await;
    assert_eq!(opened, 1);
    let mut charged = PART;
    let mut results = Vec::new();
    // One of each to warm up, then `rounds` of each in turn.
    for round in 0..=rounds {
        let (free_time, free_chunks) = one_stream(&http, &free_url, tokens, None, None).await;
        // Signed ahead: the voucher allows this stream's whole cost.
        let ahead = charged + (tokens as u128) * PART;
        let credential = session.credential(&stream_challenge, session.voucher_for(ahead));
        let (paid_time, paid_chunks) = one_stream(&http, &paid_url, tokens, Some(credential), None).await;
        charged = ahead;
        session.cumulative = charged;
        assert_eq!((free_chunks, paid_chunks), (tokens, tokens));
        if round > 0 {
            results.push((free_time, paid_time));
        }
    }
    let rate = |time: Duration| rate_of(tokens, time);
    for (free_time, paid_time) in &results {
        println!(
            "  (s) free route {:>9.0} chunks/s   (t) billed per chunk {:>9.0} chunks/s   (t)/(s) = {:.2} (target >= 0.80), {:+.2} µs per billed chunk",
            rate(*free_time),
            rate(*paid_time),
            rate(*paid_time) / rate(*free_time),
            (paid_time.as_secs_f64() - free_time.as_secs_f64()) * 1e6 / tokens as f64
        );
    }
    // Vouchers signed only when asked: one pause and one voucher round trip per chunk.
    let paused = tokens.min(200);
    let paused_challenge = session_challenge(&http, &paid_url, paused).await;
    let first = session.credential(&paused_challenge, session.voucher_for(charged + PART));
    session.cumulative = charged + PART;
    let signer = Some((&mut session, &paused_challenge));
    let (time, chunks) = one_stream(&http, &paid_url, paused, Some(first), signer).await;
    assert_eq!(chunks, paused);
    println!(
        "  (t') a voucher signed only when asked, for each chunk: {:.0} chunks/s ({} a chunk, the payer's round trip included)",
        rate_of(paused, time),
        paygate_bench::show(time / paused as u32)
    );
    let channel = paid.gateway.store().channel(&format!("{:#x}", session.channel_id())).await.expect("store");
    let charged_total = channel.expect("the channel").charged;
    assert_eq!(charged_total, charged + paused as u128 * PART, "every chunk delivered was charged, once");
}

fn rate_of(chunks: usize, time: Duration) -> f64 {
    chunks as f64 / time.as_secs_f64()
}
