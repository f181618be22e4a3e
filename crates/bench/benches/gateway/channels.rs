//! Channel payments (x402 `batch-settlement`) against the free route and against per-request `exact` settled on
//! anvil, in one run: (h) channel-paid calls (a voucher checked locally and one compare-and-swap in the store per
//! call, no chain call) with the ledger in SQLite and (h') in PostgreSQL, (b) the free route through the same
//! gateway, (i) per-request `exact` on anvil, answered when confirmed, and (i') answered when submitted, and the
//! same two, (j) and (j'), on an anvil that mines a block a second; (k) calls paid by MPP `evm` session vouchers
//! (SQLite); the CPU cost of checking one voucher's signature, against the time budget the 0.8 target leaves; then
//! the on-chain transactions and gas per 1,000 paid calls of both models, from the receipts of this run.
//!
//! Each of the load's connections pays from its own channel (dev accounts 1 to 8, one salt per connection), opened
//! beforehand with one deposit through the gateway. The vouchers are signed beforehand too; each allows a
//! cumulative just below the deposit, less its index, so that every voucher covers whatever its channel charged
//! before it, whichever order the connections send them in (a client with calls in flight signs ahead).

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256, aliases::U40};
use alloy::rpc::types::Filter;
use alloy::signers::SignerSync;
use alloy::sol_types::{SolEvent, SolStruct};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use paygate_bench::{Stats, run};
use paygate_chain::devtoken::dev_account;
use paygate_chain::escrow::{self, BatchSettlement, ReceiveWithAuthorization};
use paygate_gateway::BuildOptions;
use paygate_testkit::postgres::PgServer;
use paygate_testkit::{Devchain, ServedGateway};
use serde_json::{Value, json};

use super::{paid_run, print_header, print_row};

/// $0.001 of the test USDC.
const PRICE: u128 = 1_000;
/// What each channel deposits ($10): enough for every voucher of a run.
const DEPOSIT: u128 = 10_000_000;

fn config(upstream: &str, store: &str, chain: &Devchain, settler: u32) -> String {
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
        name = "channel"
        rail = "batch-settlement"
        network = "local"
        asset = "USDC"
        pay_to = "{pay_to}"
        settler_key = "{key}"
        claim_every_secs = 3600
        [[accept]]
        name = "usdc-submitted"
        network = "local"
        asset = "USDC"
        pay_to = "{pay_to}"
        settlement = "builtin"
        settler_key = "{exact_key}"
        wait = "submitted"
        [[accept]]
        name = "session"
        rail = "evm-session"
        network = "local"
        asset = "USDC"
        pay_to = "{payee}"
        settler_key = "{key}"
        settle_every_secs = 3600
        [[routes]]
        method = "GET"
        path = "/v1/session"
        price = "$0.001"
        accept = ["session"]
        [[routes]]
        path = "/free"
        [[routes]]
        method = "GET"
        path = "/v1/submitted"
        price = "$0.001"
        accept = ["usdc-submitted"]
        [[routes]]
        method = "GET"
        path = "/v1/channel"
        price = "$0.001"
        accept = ["channel"]
        [[routes]]
        method = "GET"
        path = "/v1/exact"
        price = "$0.001"
        accept = ["usdc-local"]
        "#,
        usdc = paygate_testkit::local_usdc_toml(
            chain.chain_id,
            &chain.rpc_url,
            "receipt_poll_ms = 20",
            dev_account(9).address(),
            &paygate_testkit::builtin_settlement()
        ),
        pay_to = dev_account(9).address(),
        payee = dev_account(settler).address(),
        key = dev_account(settler).to_bytes(),
        exact_key = paygate_testkit::SETTLER_KEY,
    )
}

/// One payer's channel with the bench's gateway.
struct Channel {
    signer: alloy::signers::local::PrivateKeySigner,
    config: BatchSettlement::ChannelConfig,
    id: B256,
}

impl Channel {
    fn new(index: usize, token: Address, authorizer: Address) -> Channel {
        let signer = dev_account(1 + (index % 8) as u32);
        let config = BatchSettlement::ChannelConfig {
            payer: signer.address(),
            payerAuthorizer: signer.address(),
            receiver: dev_account(9).address(),
            receiverAuthorizer: authorizer,
            token,
            withdrawDelay: U40::from(900),
            salt: B256::from(U256::from(index as u64 + 1)),
        };
        let id = escrow::channel_id(&config, 31337);
        Channel { signer, config, id }
    }

    fn config_json(&self) -> Value {
        let c = &self.config;
        json!({
            "payer": c.payer.to_checksum(None), "payerAuthorizer": c.payerAuthorizer.to_checksum(None),
            "receiver": c.receiver.to_checksum(None), "receiverAuthorizer": c.receiverAuthorizer.to_checksum(None),
            "token": c.token.to_checksum(None), "withdrawDelay": 900, "salt": format!("{:#x}", c.salt),
        })
    }

    fn voucher(&self, max: u128) -> Value {
        let signature = self.signer.sign_hash_sync(&escrow::voucher_digest(self.id, max, 31337)).expect("sign");
        json!({
            "channelId": format!("{:#x}", self.id),
            "maxClaimableAmount": max.to_string(),
            "signature": format!("0x{}", alloy::hex::encode(signature.as_bytes())),
        })
    }

    /// The payload that opens the channel with [`DEPOSIT`] and pays one call.
    fn deposit(&self, token_domain: &alloy::sol_types::Eip712Domain) -> Value {
        let salt = B256::random();
        let valid_before = paygate_core::clock::Clock::now_unix(&paygate_core::clock::SystemClock) + 600;
        let authorization = ReceiveWithAuthorization {
            from: self.signer.address(),
            to: escrow::ERC3009_DEPOSIT_COLLECTOR,
            value: U256::from(DEPOSIT),
            validAfter: U256::ZERO,
            validBefore: U256::from(valid_before),
            nonce: escrow::deposit_nonce(self.id, salt),
        };
        let signature = self.signer.sign_hash_sync(&authorization.eip712_signing_hash(token_domain)).expect("sign");
        json!({
            "type": "deposit",
            "channelConfig": self.config_json(),
            "voucher": self.voucher(DEPOSIT),
            "deposit": {
                "amount": DEPOSIT.to_string(),
                "authorization": { "erc3009Authorization": {
                    "validAfter": "0", "validBefore": valid_before.to_string(), "salt": format!("{salt:#x}"),
                    "signature": format!("0x{}", alloy::hex::encode(signature.as_bytes())),
                }},
            },
        })
    }
}

/// The `batch-settlement` offer of a fresh 402 of `url`, and its resource.
async fn offer(url: &str) -> (Value, Value) {
    let response = reqwest::get(url).await.expect("402");
    let required = response.headers()["payment-required"].to_str().expect("ascii").to_owned();
    let required: Value =
        serde_json::from_slice(&paygate_proto::b64::std_decode(&required).expect("b64")).expect("JSON");
    (required["accepts"][0].clone(), required["resource"].clone())
}

fn envelope(payload: Value, accepted: &Value, resource: &Value) -> String {
    let envelope = json!({"x402Version": 2, "payload": payload, "resource": resource, "accepted": accepted});
    paygate_proto::b64::std_encode(envelope.to_string().as_bytes())
}

/// Opens one channel per connection through `base` and signs `n` vouchers spread over them, in request order.
async fn vouchers(
    base: &str,
    token: Address,
    settler: u32,
    first_salt: usize,
    connections: usize,
    n: usize,
) -> Vec<String> {
    let url = format!("{base}/v1/channel");
    let (accepted, resource) = offer(&url).await;
    let domain = paygate_methods::eip3009::domain("USD Coin", "2", 31337, token);
    let channels: Vec<Channel> =
        (0..connections).map(|i| Channel::new(first_salt + i, token, dev_account(settler).address())).collect();
    let client = reqwest::Client::new();
    for channel in &channels {
        let opened = client
            .get(&url)
            .header("payment-signature", envelope(channel.deposit(&domain), &accepted, &resource))
            .send()
            .await
            .expect("the deposit call");
        assert_eq!(opened.status(), 200, "{}", opened.text().await.unwrap_or_default());
    }
    (0..n)
        .map(|i| {
            let channel = &channels[i % connections];
            let max = DEPOSIT - 1 - (i / connections) as u128;
            let payload =
                json!({"type": "voucher", "channelConfig": channel.config_json(), "voucher": channel.voucher(max)});
            envelope(payload, &accepted, &resource)
        })
        .collect()
}

/// Opens one MPP `evm` session per connection through `base` (payers from dev account 1 on, one salt each) and
/// signs `n` voucher credentials spread over them, in request order (cumulatives just below the deposit, less
/// their index, as for the x402 channels).
async fn session_vouchers(base: &str, connections: usize, n: usize) -> Vec<String> {
    use paygate_client::session::EvmSession;
    let url = format!("{base}/v1/session");
    let response = reqwest::get(&url).await.expect("402");
    let challenge = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .flat_map(|v| paygate_proto::mpp::parse_challenges(v.to_str().expect("ascii")))
        .filter_map(Result::ok)
        .find(|c| c.intent == "session")
        .expect("a session challenge");
    let valid_before = paygate_core::clock::Clock::now_unix(&paygate_core::clock::SystemClock) + 600;
    let client = reqwest::Client::new();
    let mut sessions = Vec::new();
    for i in 0..connections {
        let signer = dev_account(1 + (i % 8) as u32);
        let salt = B256::from(U256::from(1000 + i as u64));
        let mut session =
            EvmSession::new(signer, &challenge, ("USD Coin".into(), "2".into()), salt).expect("a session challenge");
        let open = session.open(DEPOSIT, PRICE, valid_before).expect("the deposit covers a call");
        let opened =
            client.get(&url).header("authorization", session.credential(&challenge, open)).send().await.expect("open");
        assert_eq!(opened.status(), 200, "{}", opened.text().await.unwrap_or_default());
        sessions.push(session);
    }
    (0..n)
        .map(|i| {
            let session = &sessions[i % connections];
            let cumulative = DEPOSIT - 1 - (i / connections) as u128;
            session.credential(&challenge, session.voucher_for(cumulative))
        })
        .collect()
}

async fn channel_run(url: &str, vouchers: Vec<String>, connections: usize) -> Stats {
    header_run(url, "payment-signature", vouchers, connections).await
}

async fn header_run(url: &str, header: &'static str, values: Vec<String>, connections: usize) -> Stats {
    let n = values.len();
    let values = Arc::new(values);
    let url = url.to_owned();
    let make: paygate_bench::MakeRequest = Arc::new(move |i| {
        Request::get(&url).header(header, &values[i]).body(Full::new(Bytes::new())).expect("request")
    });
    run(make, StatusCode::OK, connections, Duration::from_secs(600), Some(n)).await
}

/// Prints the mean wall time of each phase of a paid call (`totals`: each phase's count and total, in the order
/// of [`paygate_gateway::Phase::ALL`]); claim and settle include the wait for the commit they join.
fn print_phases(scenario: &str, totals: &[(u64, Duration)]) {
    print!("{scenario} mean time per phase:");
    for (phase, (count, total)) in paygate_gateway::Phase::ALL.iter().zip(totals) {
        let mean = if *count == 0 { Duration::ZERO } else { *total / *count as u32 };
        print!("  {} {}", phase.as_str(), paygate_bench::show(mean));
    }
    println!();
}

/// The mean CPU time of checking one x402 voucher payload (reading it, its EIP-712 hashes and its signature's
/// recovery), and of the recovery alone, on one core.
fn voucher_check_time(token: Address, authorizer: Address) -> (Duration, Duration) {
    let channel = Channel::new(0, token, authorizer);
    let payload = json!({"type": "voucher", "channelConfig": channel.config_json(), "voucher": channel.voucher(PRICE)});
    let receiver = dev_account(9).address();
    let rounds = 2_000;
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        paygate_methods::batch_settlement::check_payload(&payload, 31337, receiver, authorizer, token)
            .expect("a valid voucher");
    }
    let check = started.elapsed() / rounds;
    let digest = escrow::voucher_digest(channel.id, PRICE, 31337);
    let signature = channel.signer.sign_hash_sync(&digest).expect("sign");
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        assert_eq!(signature.recover_address_from_prehash(&digest).ok(), Some(channel.signer.address()));
    }
    (check, started.elapsed() / rounds)
}

async fn free_run(url: &str, n: usize, connections: usize) -> Stats {
    let url = url.to_owned();
    let make: paygate_bench::MakeRequest =
        Arc::new(move |_| Request::get(&url).body(Full::new(Bytes::new())).expect("request"));
    run(make, StatusCode::OK, connections, Duration::from_secs(600), Some(n)).await
}

/// Gas of every transaction that emitted `E` from the escrow, and how many there were.
async fn escrow_gas<E: SolEvent>(chain: &Devchain) -> (usize, u64) {
    let filter = Filter::new().address(escrow::BATCH_SETTLEMENT).event_signature(E::SIGNATURE_HASH).from_block(0);
    let logs = chain.chain.logs(filter).await.expect("logs");
    let mut hashes: Vec<_> = logs.iter().filter_map(|l| l.transaction_hash).collect();
    hashes.dedup();
    let mut gas = 0;
    for hash in &hashes {
        gas += chain.chain.receipt(*hash).await.expect("receipt").expect("mined").gas_used;
    }
    (hashes.len(), gas)
}

pub(super) async fn bench(chain: &Devchain, upstream: &str, n: usize, connections: usize, exact_n: usize) {
    println!("\nchannel payments, {n} calls over {connections} connections (one channel each), $0.001 a call:");
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = format!("sqlite://{}", dir.path().join("channels.db").display());
    // Dev account 0 settles (and authorizes the channels) for the SQLite gateway, dev account 9 for the PostgreSQL
    // one: one nonce sequence per key and gateway.
    let gateway = ServedGateway::start(&config(upstream, &sqlite, chain, 0), BuildOptions::default()).await;
    let base = gateway.base.clone();
    let signed = vouchers(&base, chain.token, 0, 0, connections, 2 * n).await;
    // And one channel more, paid over one connection: what a voucher adds to a call's latency when no other call
    // waits (over `connections` on 2 cores, a call's latency is mostly its wait: connections / throughput).
    let alone = n / 4;
    let one_connection = vouchers(&base, chain.token, 0, 2 * connections, 1, alone).await;
    let (deposits, deposit_gas) = escrow_gas::<BatchSettlement::Deposited>(chain).await;
    let (first, second) = signed.split_at(n);
    print_header();
    free_run(&format!("{base}/free"), n, connections).await;
    let mut rounds = Vec::new();
    for vouchers in [first, second] {
        let free = free_run(&format!("{base}/free"), n, connections).await;
        print_row("(b) free route via paygate", &free);
        let paid = channel_run(&format!("{base}/v1/channel"), vouchers.to_vec(), connections).await;
        print_row("(h) channel-paid, SQLite", &paid);
        rounds.push((free, paid));
    }
    let phase_totals = || paygate_gateway::Phase::ALL.map(|phase| gateway.gateway.metrics().phase_total(phase));
    let until_h1 = phase_totals();
    print_phases("(h)", &until_h1);
    let free_alone = free_run(&format!("{base}/free"), alone, 1).await;
    print_row("(b1) free route, 1 connection", &free_alone);
    let paid_alone = channel_run(&format!("{base}/v1/channel"), one_connection, 1).await;
    print_row("(h1) channel-paid, 1 connection", &paid_alone);
    let h1: Vec<_> = phase_totals().iter().zip(&until_h1).map(|(now, then)| (now.0 - then.0, now.1 - then.1)).collect();
    print_phases("(h1)", &h1);
    let sessions = session_vouchers(&base, connections, n).await;
    let session_paid = header_run(&format!("{base}/v1/session"), "authorization", sessions, connections).await;
    print_row("(k) session-paid (MPP evm), SQLite", &session_paid);
    let (exact, _) = paid_run(chain, &[format!("{base}/v1/exact")], exact_n, connections).await;
    print_row("(i) per-request exact, anvil", &exact);
    let (submitted, _) = paid_run(chain, &[format!("{base}/v1/submitted")], exact_n, connections).await;
    print_row("(i') same, wait = submitted", &submitted);
    // The same two on an anvil that mines a block every second and not on arrival, as chains with block times do.
    let interval = Devchain::start_with(31337, &["--block-time", "1"]).await;
    let interval_dir = format!("sqlite://{}", dir.path().join("interval.db").display());
    let on_interval =
        ServedGateway::start(&config(upstream, &interval_dir, &interval, 0), BuildOptions::default()).await;
    let (confirmed_1s, _) =
        paid_run(&interval, &[format!("{}/v1/exact", on_interval.base)], exact_n, connections).await;
    print_row("(j) exact, 1 s blocks, confirmed", &confirmed_1s);
    let (submitted_1s, _) =
        paid_run(&interval, &[format!("{}/v1/submitted", on_interval.base)], exact_n, connections).await;
    print_row("(j') same, wait = submitted", &submitted_1s);
    let postgres = tokio::task::spawn_blocking(PgServer::start).await.expect("PostgreSQL starts");
    let pg =
        ServedGateway::start(&config(upstream, &postgres.database().await, chain, 9), BuildOptions::default()).await;
    let pg_vouchers = vouchers(&pg.base, chain.token, 9, connections, connections, n).await;
    let pg_paid = channel_run(&format!("{}/v1/channel", pg.base), pg_vouchers, connections).await;
    print_row("(h') channel-paid, PostgreSQL", &pg_paid);

    for (free, paid) in &rounds {
        println!(
            "(h)/(b) = {:.2} throughput (target >= 0.80), p50 {} added (target <= 1 ms)",
            paid.per_second() / free.per_second(),
            paygate_bench::show(paid.p50.saturating_sub(free.p50)),
        );
    }
    println!(
        "(h1)-(b1): p50 {} added on one connection, no call waiting for another (p99 {} added)",
        paygate_bench::show(paid_alone.p50.saturating_sub(free_alone.p50)),
        paygate_bench::show(paid_alone.p99.saturating_sub(free_alone.p99))
    );
    let free = &rounds[1].0;
    println!(
        "(k)/(b) = {:.2} throughput, p50 {} added (MPP evm session, SQLite)",
        session_paid.per_second() / free.per_second(),
        paygate_bench::show(session_paid.p50.saturating_sub(free.p50))
    );
    // What the 0.8 target leaves per call: the free route's wall time per request at 0.8 of its rate, less at its
    // rate, on both cores of this machine; the signature check alone is measured on one.
    let (check, recovery) = voucher_check_time(chain.token, dev_account(0).address());
    let budget = Duration::from_secs_f64(2.0 * (1.0 / (0.8 * free.per_second()) - 1.0 / free.per_second()));
    println!(
        "one voucher check (payload, EIP-712 hashes and signature recovery): {} of CPU, of which the recovery {}; the \
         0.80 target leaves {} of CPU per call on this machine's 2 cores for everything a paid call adds",
        paygate_bench::show(check),
        paygate_bench::show(recovery),
        paygate_bench::show(budget)
    );
    println!(
        "(h')/(b) = {:.2} throughput, p50 {} added (PostgreSQL)",
        pg_paid.per_second() / free.per_second(),
        paygate_bench::show(pg_paid.p50.saturating_sub(free.p50))
    );
    println!(
        "paid p50 answered when submitted against when confirmed: {} against {} (anvil mining on arrival), {} against \
         {} (anvil mining a block a second)",
        paygate_bench::show(submitted.p50),
        paygate_bench::show(exact.p50),
        paygate_bench::show(submitted_1s.p50),
        paygate_bench::show(confirmed_1s.p50)
    );
    println!(
        "(h)/(i) = {:.1}  (channel-paid over per-request exact on anvil; target >= 10)",
        rounds[1].1.per_second() / exact.per_second()
    );

    // On chain: the deposits of this run, then one claim batch and one sweep for every channel charged.
    let answered = |stats: &Stats| stats.requests - stats.unexpected;
    let charged: usize =
        rounds.iter().map(|(_, paid)| answered(paid)).sum::<usize>() + answered(&paid_alone) + connections + 1;
    let claimed = gateway.gateway.reconciler(Duration::from_secs(3600)).run_once().await.expect("claim");
    let (claims, claim_gas) = escrow_gas::<BatchSettlement::Claimed>(chain).await;
    let (sweeps, sweep_gas) = escrow_gas::<BatchSettlement::Settled>(chain).await;
    let exact_row = gateway.gateway.store().payments(&Default::default()).await.expect("ledger");
    let exact_tx =
        exact_row.iter().find_map(|r| r.tx_hash.as_ref().filter(|h| h.len() == 66)).expect("an exact payment");
    let exact_gas =
        chain.chain.receipt(exact_tx.parse().expect("hash")).await.expect("receipt").expect("mined").gas_used;
    // The x402 channels only: the sessions of (k) share the store.
    let channels = gateway.gateway.store().channels(100).await.expect("channels");
    let (total_charged, total_claimed): (u128, u128) = channels
        .iter()
        .filter(|c| c.option == "channel")
        .fold((0, 0), |(charged, claimed), c| (charged + c.charged, claimed + c.claimed));
    println!(
        "(h): {charged} calls charged {total_charged} atomic units and {total_claimed} were claimed (expected {})",
        charged as u128 * PRICE
    );
    let per_thousand = |total: u64| total as f64 * 1000.0 / charged as f64;
    println!(
        "on chain, channels: {deposits} deposits ({deposit_gas} gas), {claims} claim batch ({claim_gas} gas, {} channels), \
         {sweeps} sweep ({sweep_gas} gas) for {charged} calls on the SQLite gateway",
        claimed.channels_claimed
    );
    println!(
        "per 1,000 paid calls: channels {:.2} transactions and {:.0} gas (the SQLite gateway's deposits, claim and sweep); \
         per-request exact 1,000 transactions and {} gas ({exact_gas} each)",
        per_thousand((deposits + claims + sweeps) as u64),
        per_thousand(deposit_gas + claim_gas + sweep_gas),
        exact_gas * 1000,
    );
}
