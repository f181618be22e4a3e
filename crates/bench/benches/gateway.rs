//! `cargo bench -p paygate-bench`: the gateway on loopback, in one run:
//!
//! (a) the upstream directly, (b0) the same reverse proxy without the paygate layer (a diagnostic), (b) a free
//! route through paygate, (c) 402 challenge issuance, first with everything sharing the machine's cores, then
//! with the gateway on a core of its own and the load generator and upstream on the other, and their ratios
//! (b)/(a) and (c)/(b) in each setup; (d) paid requests
//! (verify + claim + proxy + settle on anvil, paid with x402 v2 credentials signed beforehand), (d') the same
//! paid requests settled on the embedded devnet (revm in this process) instead of anvil, (d2) on anvil with the
//! ledger in PostgreSQL (a throwaway cluster) instead of SQLite, (d3) the same through two instances sharing it,
//! then the ratios (d')/(d), (d2)/(d) and (d3)/(d2) and where (d)'s time goes; (d'') paid POSTs
//! of 1,000 characters on the devnet at a flat price and (d''') the same priced per character, twice in turn,
//! with the in-process cost of computing each kind of per-unit price and of reading a price from a response (the
//! tokens of an OpenAI-compatible JSON answer); the in-process cost of counting a call (free
//! calls, usage tiers), reading a payer's count and asking a pricing hook, and paid throughput on routes with usage
//! tiers and with a pricing hook against a flat price, twice in turn; then paid requests per rail that runs
//! locally, each on a route offering only that rail, with proofs made beforehand: (e) tx-hash proofs of ERC-20
//! transfers on anvil, (f) MPP `tempo` hash credentials of TIP-20 transfers (a look-alike on anvil) bound to
//! their challenges, (g) MPP `stripe` credentials charged through localstripe. Lightning is not measured: its
//! only local backend in the gateway is LND's recorded answer, one invoice that pays once. Last, channel payments
//! (`gateway/channels.rs`): (h) channel-paid calls against (b) the free route and (i) per-request `exact`, and the
//! transactions and gas per 1,000 calls of both models; and streams paid as they are delivered
//! (`gateway/streams.rs`): (t) a stream billed per chunk from a session against (s) the same stream on a free
//! route, in chunks per second, and the time billing adds per chunk; and (m) what the MCP layer adds to a paid
//! call in process (`gateway/mcp.rs`): the same call paid as an HTTP route and as an MCP tool's `tools/call`.
//!
//! Environment: `BENCH_SECS` (per scenario, default 5), `BENCH_ROUNDS` (of (a) to (c) in turn, default 5),
//! `BENCH_CONNECTIONS` (default 32), `BENCH_PAID`
//! (paid requests, default 400), `BENCH_PAID_CONNECTIONS` (default 8), `BENCH_RAIL_PAID` (paid requests per
//! rail in (e) to (g), default 200), `BENCH_PRICES` (per-unit price computations per rule, default 20,000),
//! `BENCH_COUNTS` (call counts and hook questions, default 2,000), `BENCH_ONLY` (`proxy`: stop after (a) to (c),
//! for profiling; `rules`: stop after the free calls, tiers and hook figures; `channels`: only the channel
//! figures; `streams`: only the stream figures; `mcp`: only (m)), `BENCH_STREAM_TOKENS` (chunks a stream, default 20,000),
//! `BENCH_STREAM_ROUNDS` (default 4), `BENCH_MCP_CALLS` (paid calls per kind and round in (m), default 2,000), `BENCH_CHANNEL_PAID` (channel-paid calls per round, default 4,000), `BENCH_LAYER` (free requests
//! through the layer in-process, default 200,000), `BENCH_402` (402s built in-process, default 20,000). Needs
//! anvil, localstripe and PostgreSQL (`scripts/install-test-deps`); nginx, for the reference hop (n), is optional.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{B256, U256};
use alloy::signers::SignerSync;
use alloy::sol_types::SolCall;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use paygate_bench::{Nginx, Stats, pinned_runtime, run, show};
use paygate_chain::abi::Eip3009Token;
use paygate_chain::devtoken::dev_account;
use paygate_chain::{TxSender, wait_for_receipt};
use paygate_gateway::Phase;
use paygate_gateway::{BuildOptions, Config, Gateway, PaygateLayer, UpstreamProxy, build, server};
use paygate_methods::eip3009::{SignedAuthorization, domain};
use paygate_methods::tempo::encode_memo;
use paygate_proto::mpp::{Credential, parse_challenge};
use paygate_proto::x402;
use paygate_testkit::postgres::PgServer;
use paygate_testkit::stripe::LocalStripe;
use paygate_testkit::tip20::Tip20;
use paygate_testkit::{Devchain, ServedGateway};
use serde_json::json;
// In benches/gateway/, not benches/: cargo takes every file of benches/ for a bench of its own.
#[path = "gateway/channels.rs"]
mod channels;
#[path = "gateway/in_process.rs"]
mod in_process;
#[path = "gateway/mcp.rs"]
mod mcp;
#[path = "gateway/streams.rs"]
mod streams;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The allocator the `paygate` binary ships with (`crates/cli/src/main.rs`), so that the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Warnings and errors of the gateway go to stderr (`RUST_LOG` overrides).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(bench());
}

/// Serves `gateway` in front of `upstream`, and the same reverse proxy without the paygate layer (what a bare
/// proxy hop costs here), on the current runtime; their base URLs.
async fn serve_gateway(gateway: Arc<Gateway>, upstream: &str) -> (String, String) {
    let proxy = UpstreamProxy::new(upstream, Duration::from_secs(10), Duration::from_secs(2)).expect("proxy");
    let service = tower::ServiceBuilder::new().layer(PaygateLayer::new(gateway)).service(proxy);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { server::serve(listener, service, std::future::pending()).await.expect("gateway") });
    let bare = UpstreamProxy::new(upstream, Duration::from_secs(10), Duration::from_secs(2)).expect("proxy");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let bare_base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { server::serve(listener, bare, std::future::pending()).await.expect("bare proxy") });
    (base, bare_base)
}

/// The upstream, free route and 402 scenarios: (a), (b0), (b) and (c) at `base`, `bare_base` and `upstream`, and
/// (n) through nginx where it runs.
fn scenarios(
    upstream: &str,
    bare_base: &str,
    base: &str,
    nginx: Option<&Nginx>,
) -> Vec<(&'static str, String, StatusCode)> {
    let mut scenarios = vec![
        ("(a) upstream directly", format!("{upstream}/free"), StatusCode::OK),
        ("(b0) same proxy, no paygate", format!("{bare_base}/free"), StatusCode::OK),
        ("(b) free route via paygate", format!("{base}/free"), StatusCode::OK),
        ("(c) 402 challenge", format!("{base}/v1/quote"), StatusCode::PAYMENT_REQUIRED),
    ];
    if let Some(nginx) = nginx {
        scenarios.push(("(n) nginx, same upstream", format!("{}/free", nginx.url), StatusCode::OK));
    }
    scenarios
}

/// How the load runs of (a) to (c) are made.
#[derive(Clone, Copy)]
struct Load {
    connections: usize,
    warm: Duration,
    secs: Duration,
    rounds: usize,
}

/// Runs (a) to (c) `load.rounds` times in turn, the load generator on `runtime`, and prints each run and the ratios
/// of each round (the machine's noise shows in how rounds differ) with their median.
async fn proxy_rounds(
    setup: &str,
    runtime: &tokio::runtime::Handle,
    scenarios: Vec<(&'static str, String, StatusCode)>,
    load: Load,
) {
    println!("{setup}:");
    print_header();
    let mut rates = Vec::new();
    for round in 1..=load.rounds {
        let mut rate = vec![0.0; scenarios.len()];
        for (i, (name, url, expect)) in scenarios.iter().cloned().enumerate() {
            let stats = runtime
                .spawn(async move {
                    run(get(url.clone()), expect, load.connections, load.warm, None).await;
                    run(get(url), expect, load.connections, load.secs, None).await
                })
                .await
                .expect("load");
            print_row(&format!("{name} #{round}"), &stats);
            rate[i] = stats.per_second();
        }
        rates.push(rate);
    }
    let ratio = |label: &str, over: usize, under: usize, note: &str| {
        let mut each: Vec<f64> = rates.iter().map(|r| r[over] / r[under]).collect();
        let shown: Vec<String> = each.iter().map(|r| format!("{r:.2}")).collect();
        each.sort_by(f64::total_cmp);
        println!("  {label} = {}  (median {:.2}; {note})", shown.join(", "), each[each.len() / 2]);
    };
    ratio("(b)/(a) ", 2, 0, "target >= 0.70");
    ratio("(b0)/(a)", 1, 0, "a bare proxy hop, for comparison");
    ratio("(b)/(b0)", 2, 1, "the paygate layer's share");
    ratio("(c)/(b) ", 3, 2, "target >= 1.00");
    if scenarios.len() > 4 {
        ratio("(n)/(a) ", 4, 0, "nginx in the same place, for reference");
    }
    println!();
}

/// (a) to (c) with the gateway (and the bare proxy) on a core of its own, as a deployment gives it one, and the load
/// generator and a second upstream on the other core: the proxy's cost then shows as the throughput it takes from
/// the client, not as CPU it takes from the upstream and load generator it would otherwise share cores with.
async fn pinned_rounds(gateway: &Arc<Gateway>, load: Load) {
    let setup = "the gateway on core 1, the load generator and upstream on core 0";
    let (Some(client), Some(proxy)) = (pinned_runtime(0), pinned_runtime(1)) else {
        println!("{setup}: not measured, the cores cannot be pinned here\n");
        return;
    };
    let upstream = client.spawn(serve_upstream()).await.expect("upstream");
    let (served, to) = (gateway.clone(), upstream.clone());
    let (base, bare_base) = proxy.spawn(async move { serve_gateway(served, &to).await }).await.expect("gateway");
    let nginx = Nginx::start(&upstream, Some(1));
    proxy_rounds(setup, client.handle(), scenarios(&upstream, &bare_base, &base, nginx.as_ref()), load).await;
    // Dropping a runtime blocks, which an async context does not allow.
    client.shutdown_background();
    proxy.shutdown_background();
}

async fn serve_upstream() -> String {
    use axum::routing::any as get;
    let app = axum::Router::new()
        .route("/free", get(|| async { ([("content-type", "application/json")], r#"{"ok":true,"note":"free"}"#) }))
        // The pricing hook of `/v1/devnet-hook`.
        .route("/price-hook", get(|| async { ([("content-type", "application/json")], r#"{"price":"$0.01"}"#) }))
        .fallback(get(|| async { ([("content-type", "application/json")], r#"{"symbol":"PAY","price":"4.02"}"#) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("upstream") });
    url
}

fn get(url: String) -> paygate_bench::MakeRequest {
    Arc::new(move |_| Request::get(&url).body(Full::new(Bytes::new())).expect("request"))
}

async fn bench() {
    let secs = Duration::from_secs(env("BENCH_SECS", 5) as u64);
    let connections = env("BENCH_CONNECTIONS", 32);
    let paid = env("BENCH_PAID", 400);
    let paid_connections = env("BENCH_PAID_CONNECTIONS", 8);

    let rail_paid = env("BENCH_RAIL_PAID", 200);

    let upstream = serve_upstream().await;
    let chain = Devchain::start(31337).await;
    let devnet = Devchain::embedded(paygate_core::registry::DEVNET_CHAIN_ID);
    let tip20 = Tip20::deploy(chain.chain.clone(), "Test Dollar", "TUSD").await;
    for i in 1..=8 {
        tip20.mint(dev_account(i).address(), U256::from(1_000_000_000u64)).await;
    }
    let stripe = LocalStripe::start().await;
    let dir = std::env::temp_dir().join(format!("paygate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let toml = format!(
        r#"
        [server]
        secret = "benchmark-secret-of-at-least-thirty-two-bytes"
        challenge_ttl_secs = 600
        [upstream]
        url = "{upstream}"
        [store]
        url = "sqlite://{db}"
        {accept}
        {tempo}
        {devnet}
        [[accept]]
        name = "usdc-txhash"
        rail = "txhash"
        network = "local"
        asset = "USDC"
        pay_to = "{pay_to}"
        proof_window_secs = 3600
        {card}

        [[routes]]
        method = "GET"
        path = "/v1/quote"
        price = "$0.01"
        accept = ["usdc-local"]
        [[routes]]
        method = "GET"
        path = "/v1/devnet-quote"
        price = "$0.01"
        accept = ["usdc-embedded"]
        [[routes]]
        method = "POST"
        path = "/v1/devnet-tts"
        price = "$0.00001"
        per = "character"
        field = "$.input"
        min_price = "$0.001"
        accept = ["usdc-embedded"]
        [[routes]]
        method = "POST"
        path = "/v1/devnet-flat"
        price = "$0.01"
        accept = ["usdc-embedded"]
        [[routes]]
        method = "POST"
        path = "/price/byte"
        price = "$0.000001"
        per = "byte"
        accept = ["usdc-embedded"]
        [[routes]]
        method = "POST"
        path = "/price/item"
        price = "$0.0001"
        per = "item"
        field = "$.items"
        accept = ["usdc-embedded"]
        [[routes]]
        method = "POST"
        path = "/price/second"
        price = "$0.0001"
        per = "second"
        field = "$.duration_seconds"
        accept = ["usdc-embedded"]
        [[routes]]
        method = "GET"
        path = "/price/minute"
        price = "$0.006"
        per = "minute"
        query = "duration_seconds"
        accept = ["usdc-embedded"]
        [[routes]]
        method = "POST"
        path = "/price/tokens"
        max_price = "$0.01"
        accept = ["usdc-embedded"]
        [routes.meter]
        usage = "tokens"
        input_price = "$0.000001"
        output_price = "$0.000002"
        [[routes]]
        method = "GET"
        path = "/v1/devnet-tiered"
        period = "month"
        tiers = [{{ calls = 1000000, price = "$0.01" }}, {{ price = "$0.005" }}]
        accept = ["usdc-embedded"]
        [[routes]]
        method = "GET"
        path = "/v1/devnet-hook"
        price_hook = {{ url = "{upstream}/price-hook", timeout_ms = 2000 }}
        accept = ["usdc-embedded"]
        [[routes]]
        path = "/free"
        [[routes]]
        path = "/rail/txhash"
        price = "$0.01"
        accept = ["usdc-txhash"]
        [[routes]]
        path = "/rail/tempo"
        price = "$0.01"
        accept = ["tusd-tempo"]
        [[routes]]
        path = "/rail/stripe"
        price = "$0.01"
        accept = ["card"]
        "#,
        db = dir.join("ledger.db").display(),
        pay_to = dev_account(9).address(),
        tempo = tip20.tempo_testnet_toml(&chain.rpc_url, dev_account(9).address()),
        card = stripe.card_toml(),
        devnet = paygate_testkit::usdc_toml(
            "embedded",
            devnet.chain_id,
            "receipt_poll_ms = 20",
            dev_account(9).address(),
            &paygate_testkit::builtin_settlement()
        ),
        accept = paygate_testkit::local_usdc_toml(
            chain.chain_id,
            &chain.rpc_url,
            "receipt_poll_ms = 20",
            dev_account(9).address(),
            &paygate_testkit::builtin_settlement()
        ),
    );
    let config = Config::parse(&toml, "bench.toml").expect("config");
    let mut build_options = BuildOptions::default();
    build_options.chains.insert("embedded".to_owned(), devnet.chain.clone());
    let built = build(&config, "bench.toml", build_options.clone()).await.expect("gateway");
    let gateway = built.gateway.clone();
    let (base, bare_base) = serve_gateway(built.gateway, &upstream).await;

    println!(
        "paygate bench: {connections} connections, {} s per scenario, {paid} paid requests over {paid_connections} connections",
        secs.as_secs()
    );
    println!("(2 runtime threads; load generator, gateway, upstream and anvil share this machine's cores)\n");
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();

    let channel_paid = env("BENCH_CHANNEL_PAID", 4000);
    if only == "channels" {
        return channels::bench(&chain, &upstream, channel_paid, paid_connections, paid).await;
    }
    let (stream_tokens, stream_rounds) = (env("BENCH_STREAM_TOKENS", 20_000), env("BENCH_STREAM_ROUNDS", 4));
    if only == "streams" {
        return streams::bench(&chain, stream_tokens, stream_rounds).await;
    }
    let mcp_calls = env("BENCH_MCP_CALLS", 2000);
    if only == "mcp" {
        return mcp::bench(mcp_calls).await;
    }
    in_process::layer_and_402(&gateway).await;
    if only == "402" {
        return;
    }
    let load = Load { connections, warm: Duration::from_millis(500), secs, rounds: env("BENCH_ROUNDS", 5) };
    let shared = "everything sharing the machine's cores";
    let nginx = Nginx::start(&upstream, None);
    if nginx.is_none() {
        println!("(nginx is not installed: no reference proxy hop (n); `apt-get install nginx-light` adds it)\n");
    }
    proxy_rounds(
        shared,
        &tokio::runtime::Handle::current(),
        scenarios(&upstream, &bare_base, &base, nginx.as_ref()),
        load,
    )
    .await;
    drop(nginx);
    pinned_rounds(&gateway, load).await;
    if only == "proxy" {
        return;
    }
    in_process::prices_and_rules(&gateway).await;
    // Paid throughput with each rule against the flat price, twice in turn on the devnet, after one flat run to
    // warm up.
    {
        paid_run(&devnet, &[format!("{base}/v1/devnet-quote")], paid, paid_connections).await;
        let mut ratios = Vec::new();
        for _ in 0..2 {
            let (flat, _) = paid_run(&devnet, &[format!("{base}/v1/devnet-quote")], paid, paid_connections).await;
            print_row("paid, flat $0.01", &flat);
            let (tiered, tiered_earned) =
                paid_run(&devnet, &[format!("{base}/v1/devnet-tiered")], paid, paid_connections).await;
            print_row("paid, usage tiers", &tiered);
            let (hooked, hooked_earned) =
                paid_run(&devnet, &[format!("{base}/v1/devnet-hook")], paid, paid_connections).await;
            print_row("paid, pricing hook", &hooked);
            assert_eq!(tiered_earned, tiered.requests as u128 * 10_000);
            assert_eq!(hooked_earned, hooked.requests as u128 * 10_000);
            ratios.push((tiered.per_second() / flat.per_second(), hooked.per_second() / flat.per_second()));
        }
        for (tiers, hook) in ratios {
            println!("tiers/flat = {tiers:.2}, hook/flat = {hook:.2}  (paid throughput on the devnet; target >= 0.95)");
        }
        println!();
        if only == "rules" {
            return;
        }
    }
    print_header();
    let mut rows: Vec<(&str, Stats)> = Vec::new();
    // (d): one fresh 402 per credential, signed by dev accounts 1..=8 in turn.
    let (stats, earned) = paid_run(&chain, &[format!("{base}/v1/quote")], paid, paid_connections).await;
    print_row("(d) paid, settled on anvil", &stats);
    rows.push(("(d) paid, settled on anvil", stats));
    // The phase means below are (d)'s: read them before (d') adds to them.
    let phases: Vec<(Phase, Duration)> = Phase::ALL
        .into_iter()
        .map(|phase| {
            let (count, total) = gateway.metrics().phase_total(phase);
            (phase, if count == 0 { Duration::ZERO } else { total / count as u32 })
        })
        .collect();
    let (stats, devnet_earned) = paid_run(&devnet, &[format!("{base}/v1/devnet-quote")], paid, paid_connections).await;
    print_row("(d') paid, settled on devnet", &stats);
    rows.push(("(d') paid, settled on devnet", stats));
    // The same POST of 1,000 characters, flat-priced and priced per character, twice in turn (the machine's noise
    // shows in how the two ratios differ).
    let mut per_unit_ratios = Vec::new();
    let mut per_unit_earned = 0;
    let mut per_unit_paid = 0;
    for _ in 0..2 {
        let flat_url = format!("{base}/v1/devnet-flat");
        let (flat, _) = paid_post_run(&devnet, &flat_url, tts_body(), paid, paid_connections).await;
        print_row("(d'') paid POST, flat $0.01", &flat);
        let tts_url = format!("{base}/v1/devnet-tts");
        let (per_unit, earned) = paid_post_run(&devnet, &tts_url, tts_body(), paid, paid_connections).await;
        print_row("(d''') same, priced per char", &per_unit);
        per_unit_ratios.push(per_unit.per_second() / flat.per_second());
        per_unit_earned += earned;
        per_unit_paid += per_unit.requests;
    }
    let rate = |i: usize| rows[i].1.per_second();
    println!();
    println!(
        "(d): {} paid, {earned} atomic units settled to the seller (expected {})",
        rows[0].1.requests,
        rows[0].1.requests as u128 * 10_000
    );
    println!("(d')/(d) = {:.2}  (paid throughput, embedded devnet over anvil)", rate(1) / rate(0));
    println!(
        "(d''')/(d'') = {:.2}, {:.2}  (paid throughput, a per-character price over a flat one, two runs; \
         target >= 0.95); {per_unit_earned} atomic units settled per character (expected {})",
        per_unit_ratios[0],
        per_unit_ratios[1],
        per_unit_paid as u128 * 10_000
    );
    println!(
        "(d'): {} paid, {devnet_earned} atomic units settled to the seller (expected {})",
        rows[1].1.requests,
        rows[1].1.requests as u128 * 10_000
    );
    // (d2), (d3): the same paid requests with the ledger in PostgreSQL, through one instance and then through two
    // (requests alternating; one realm and public URL, so either accepts the other's challenges; each its own
    // settler key, as docs/operate.md says).
    let postgres = tokio::task::spawn_blocking(PgServer::start).await.expect("PostgreSQL starts");
    let pg_toml = toml
        .replace(&format!("sqlite://{}", dir.join("ledger.db").display()), &postgres.database().await)
        .replace("[server]", "[server]\n        realm = \"bench\"\n        public_url = \"http://bench\"");
    let second_settler = pg_toml.replace(paygate_testkit::SETTLER_KEY, &dev_account(9).to_bytes().to_string());
    let pg_a = ServedGateway::start(&pg_toml, build_options.clone()).await;
    let pg_b = ServedGateway::start(&second_settler, build_options.clone()).await;
    let (stats, pg_earned) = paid_run(&chain, &[pg_a.url("/v1/quote")], paid, paid_connections).await;
    print_row("(d2) paid, PostgreSQL store", &stats);
    rows.push(("(d2) paid, PostgreSQL store", stats));
    let (stats, pair_earned) =
        paid_run(&chain, &[pg_a.url("/v1/quote"), pg_b.url("/v1/quote")], paid, paid_connections).await;
    print_row("(d3) paid, PostgreSQL, 2 instances", &stats);
    rows.push(("(d3) paid, PostgreSQL, 2 instances", stats));
    let rate = |i: usize| rows[i].1.per_second();
    println!("(d2)/(d) = {:.2}  (paid throughput, PostgreSQL store over SQLite)", rate(2) / rate(0));
    println!("(d3)/(d2) = {:.2}  (paid throughput, two instances over one, one PostgreSQL)", rate(3) / rate(2));
    println!(
        "(d2), (d3): {pg_earned} and {pair_earned} atomic units settled to the seller (expected {} and {})",
        rows[2].1.requests as u128 * 10_000,
        rows[3].1.requests as u128 * 10_000
    );
    print!("(d) mean time per phase:");
    for (phase, mean) in phases {
        print!("  {} {}", phase.as_str(), show(mean));
    }
    println!();
    let ledger = gateway.store().payments(&Default::default()).await.expect("ledger");
    let mut states = std::collections::BTreeMap::new();
    for row in &ledger {
        *states.entry(row.state.as_str()).or_insert(0) += 1;
        if row.state != paygate_store::PaymentState::Settled {
            println!("  not settled: #{} {} {:?} {:?}", row.id, row.state, row.reason, row.tx_hash);
        }
    }
    println!("(d) and (d') ledger: {states:?}");

    println!("\n{rail_paid} paid requests per rail over {paid_connections} connections, proofs made beforehand:");
    let card = stripe.card_payment_method(paygate_testkit::stripe::cards::SUCCEEDS).await;
    let rails = [
        ("(e) tx-hash proof (anvil)", "/rail/txhash", Rail::TxHash),
        ("(f) MPP tempo hash (anvil)", "/rail/tempo", Rail::Tempo(&tip20)),
        ("(g) MPP stripe (localstripe)", "/rail/stripe", Rail::Stripe(&card)),
    ];
    for (name, path, rail) in rails {
        let url = format!("{base}{path}");
        let proofs = Arc::new(rail_proofs(&chain, &url, rail, rail_paid).await);
        let make: paygate_bench::MakeRequest = Arc::new(move |i| {
            let (header, value) = &proofs[i];
            Request::get(&url).header(*header, value).body(Full::new(Bytes::new())).expect("request")
        });
        let stats = run(make, StatusCode::OK, paid_connections, Duration::from_secs(600), Some(rail_paid)).await;
        print_row(name, &stats);
    }
    let ledger = gateway.store().payments(&Default::default()).await.expect("ledger");
    let mut by_rail = std::collections::BTreeMap::new();
    for row in &ledger {
        *by_rail.entry((row.rail.clone(), row.state.as_str())).or_insert(0) += 1;
    }
    println!("ledger by rail and state: {by_rail:?}");
    channels::bench(&chain, &upstream, channel_paid, paid_connections, paid).await;
    streams::bench(&chain, stream_tokens, stream_rounds).await;
    mcp::bench(mcp_calls).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// How the proofs of one rail are made.
#[derive(Clone, Copy)]
enum Rail<'a> {
    /// A transfer of the test USDC, named by its hash in `X-Payment-Hash`.
    TxHash,
    /// A TIP-20 `transferWithMemo` bound to a fresh challenge, answered with an MPP `hash` credential.
    Tempo(&'a Tip20),
    /// A fresh challenge answered with the card's PaymentMethod id.
    Stripe(&'a str),
}

/// `n` proofs for `url`, as `(header, value)`; payers rotate over dev accounts 1 to 8.
async fn rail_proofs(chain: &Devchain, url: &str, rail: Rail<'_>, n: usize) -> Vec<(&'static str, String)> {
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let senders: Vec<TxSender> = (1..=8).map(|i| TxSender::new(chain.chain.clone(), dev_account(i))).collect();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let payer = dev_account(1 + (i % 8) as u32);
        if let Rail::TxHash = rail {
            let call = Eip3009Token::transferCall { to: dev_account(9).address(), value: U256::from(10_000u64) };
            let hash = senders[i % 8].send(chain.token, call.abi_encode().into()).await.expect("transfer");
            let mined =
                wait_for_receipt(chain.chain.as_ref(), hash, Duration::from_secs(30), Duration::from_millis(10));
            assert!(mined.await.expect("receipt").expect("mined").status());
            out.push(("x-payment-hash", hash.to_string()));
            continue;
        }
        let request = Request::get(url).body(Full::new(Bytes::new())).expect("request");
        let response = client.request(request).await.expect("402");
        let header = response.headers()["www-authenticate"].to_str().expect("ascii").to_owned();
        let challenge = parse_challenge(&header).expect("an MPP challenge");
        let payload = match rail {
            Rail::Tempo(tip20) => {
                let memo = encode_memo(&challenge.realm, &challenge.id, None);
                let hash =
                    tip20.transfer_with_memo(&payer, dev_account(9).address(), U256::from(10_000u64), memo).await;
                json!({"type": "hash", "hash": format!("{hash:#x}")})
            }
            Rail::Stripe(card) => json!({"spt": card}),
            Rail::TxHash => unreachable!("handled above"),
        };
        out.push(("authorization", Credential { challenge, payload, source: None }.to_header()));
    }
    out
}

/// The inner service of the in-process 402 measurement: an unpaid request never reaches it.
fn unreachable_upstream() -> Result<http::Response<axum::body::Body>, std::convert::Infallible> {
    Ok(http::Response::builder().status(500).body(axum::body::Body::from("upstream called")).expect("response"))
}

fn print_header() {
    println!("{:<30} {:>10} {:>10} {:>10} {:>10}", "scenario", "req/s", "p50", "p99", "errors");
}

fn print_row(name: &str, s: &Stats) {
    println!("{name:<30} {:>10.0} {:>10} {:>10} {:>10}", s.per_second(), show(s.p50), show(s.p99), s.unexpected);
}

/// Pays `n` times with credentials signed beforehand (one fresh 402 each from the first of `urls`, dev accounts 1
/// to 8 in turn), request `i` sent to `urls[i % urls.len()]`; returns the run's figures and what the seller earned
/// on `chain`.
async fn paid_run(chain: &Devchain, urls: &[String], n: usize, connections: usize) -> (Stats, u128) {
    let credentials = Arc::new(sign_credentials(&urls[0], n).await);
    let urls = urls.to_vec();
    let make: paygate_bench::MakeRequest = Arc::new(move |i| {
        Request::get(&urls[i % urls.len()])
            .header("payment-signature", &credentials[i])
            .body(Full::new(Bytes::new()))
            .expect("request")
    });
    let before = chain.balance(dev_account(9).address()).await;
    let stats = run(make, StatusCode::OK, connections, Duration::from_secs(600), Some(n)).await;
    (stats, chain.balance(dev_account(9).address()).await - before)
}

/// The body of (d''): 1,000 characters of `$.input`, priced at $0.01.
fn tts_body() -> Bytes {
    Bytes::from(json!({ "input": "a".repeat(1000), "voice": "alto" }).to_string())
}

/// [`paid_run`] for a route priced from its body: `n` POSTs of `body` to `url`, each with a credential for the
/// 402 of that very body.
async fn paid_post_run(chain: &Devchain, url: &str, body: Bytes, n: usize, connections: usize) -> (Stats, u128) {
    let credentials = Arc::new(sign_credentials_for(url, Some(body.clone()), n).await);
    let url = url.to_owned();
    let make: paygate_bench::MakeRequest = Arc::new(move |i| {
        Request::post(&url)
            .header("content-type", "application/json")
            .header("payment-signature", &credentials[i])
            .body(Full::new(body.clone()))
            .expect("request")
    });
    let before = chain.balance(dev_account(9).address()).await;
    let stats = run(make, StatusCode::OK, connections, Duration::from_secs(600), Some(n)).await;
    (stats, chain.balance(dev_account(9).address()).await - before)
}

/// Fetches `n` 402s from `url` and signs an x402 v2 `exact` credential for each.
async fn sign_credentials(url: &str, n: usize) -> Vec<String> {
    sign_credentials_for(url, None, n).await
}

/// [`sign_credentials`] for the 402s of POSTing `body` (a GET without one).
async fn sign_credentials_for(url: &str, body: Option<Bytes>, n: usize) -> Vec<String> {
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let now = paygate_core::clock::SystemClock;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let request = match &body {
            None => Request::get(url).body(Full::new(Bytes::new())),
            Some(body) => Request::post(url).header("content-type", "application/json").body(Full::new(body.clone())),
        }
        .expect("request");
        let response = client.request(request).await.expect("402");
        let header = response.headers()["payment-required"].to_str().expect("ascii").to_owned();
        let required: x402::PaymentRequired = x402::decode_header(&header).expect("PAYMENT-REQUIRED");
        let offer = required.accepts[0].clone();
        let signer = dev_account(1 + (i % 8) as u32);
        let extra = offer.extra.clone().expect("extra");
        let valid_before = paygate_core::clock::Clock::now_unix(&now) + 600;
        let auth = SignedAuthorization {
            from: signer.address(),
            to: offer.pay_to.parse().expect("payTo"),
            value: offer.amount.parse().expect("amount"),
            valid_after: U256::ZERO,
            valid_before: U256::from(valid_before),
            nonce: B256::random(),
            signature: Default::default(),
        };
        let chain_id = x402::v1::chain_id(&offer.network).expect("eip155 network");
        let d = domain(
            extra["name"].as_str().expect("name"),
            extra["version"].as_str().expect("version"),
            chain_id,
            offer.asset.parse().expect("asset"),
        );
        let signature = signer.sign_hash_sync(&auth.signing_hash(&d)).expect("sign");
        let auth = SignedAuthorization { signature: signature.as_bytes().to_vec().into(), ..auth };
        let payload = x402::PaymentPayload {
            x402_version: 2,
            resource: Some(required.resource.clone()),
            accepted: offer,
            payload: json!(auth.to_x402()),
            extensions: None,
        };
        out.push(x402::encode_header(&payload));
    }
    out
}
