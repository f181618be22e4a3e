//! A bounded chaos soak: paid traffic through two `paygate serve` instances sharing one PostgreSQL ledger,
//! settling through a remote facilitator on anvil, while everything around them fails in turn: the facilitator
//! in each way the faults suite knows (settles but says failed, says failed then settles, 500, garbage, hangs,
//! refuses connections), the chain stalls and recovers, PostgreSQL restarts, and instance A is SIGKILLed and
//! restarted. Payers behave as the protocols tell them: they send a payment identifier, and resend the same
//! credential after a 409, a 5xx or a broken connection.
//!
//! Afterwards: every authorization the chain used is exactly one `settled` row with its transaction; no payer was
//! charged without a response (a resend of the same credential gets it: the identifier's kept answer or the
//! owed response); every call served without a charge on chain was answered `pending`, as documented; and the
//! surviving instance's memory stayed flat. It prints the figures: requests, faults, rows by state, RSS.
//!
//! `PAYGATE_SOAK_SECS` sets how long the traffic runs (60 s by default; `docs/operate.md` gives a longer run).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use paygate_chain::abi::{AuthorizationUse, authorization_use};
use paygate_chain::devtoken::dev_account;
use paygate_client::{AssetBook, KnownAsset, Protocol, Wallet, credential, parse_offers};
use paygate_proto::x402;
use paygate_store::{PaymentQuery, PaymentState};
use paygate_testkit::facilitator::{FacilitatorFault, FaultyFacilitator};
use paygate_testkit::postgres::PgServer;
use paygate_testkit::process::ServeProcess;
use paygate_testkit::{Devchain, MINING, Upstream};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_paygate");
const PAYERS: u32 = 6;

/// One paid request, followed through its resends.
#[derive(Debug, Clone)]
struct Attempt {
    header: (String, String),
    payer: Address,
    nonce: B256,
    /// The last status it got; `None` when every try lost its connection.
    status: Option<u16>,
    /// Answered 200 with `paygate-settlement: pending`.
    pending: bool,
    tries: u32,
}

/// The two instances' base URLs (A's changes when it restarts) and their processes.
struct Instances {
    bases: Mutex<[String; 2]>,
}

impl Instances {
    fn base(&self, i: usize) -> String {
        self.bases.lock().unwrap()[i % 2].clone()
    }
}

fn soak_secs() -> u64 {
    std::env::var("PAYGATE_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60)
}

fn write_config(
    dir: &Path,
    chain: &Devchain,
    upstream: &Upstream,
    store_url: &str,
    facilitator: &str,
) -> std::path::PathBuf {
    let path = dir.join("paygate.toml");
    let settlement =
        format!("settlement = \"facilitator\"\nfacilitator_url = \"{facilitator}\"\nfacilitator_timeout_secs = 3");
    let accept =
        paygate_testkit::local_usdc_toml(chain.chain_id, &chain.rpc_url, "", dev_account(9).address(), &settlement);
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
secret = "soak-test-secret-of-at-least-32-bytes-long"
realm = "api.test"
public_url = "http://api.test"
challenge_ttl_secs = 120

[upstream]
url = "{upstream}"
timeout_secs = 2

[store]
url = "{store_url}"

[reconciler]
interval_secs = 1
stale_after_secs = 8

{accept}

[[routes]]
method = "GET"
path = "/v1/quote"
price = "$0.01"
"#,
            upstream = upstream.url(),
        ),
    )
    .expect("write config");
    path
}

fn assets() -> AssetBook {
    AssetBook::builtin().with(KnownAsset::dev_test_usdc(31337))
}

/// A credential for `url`'s x402 v2 offer from `wallet`, with a payment identifier; `None` when no 402 came.
async fn sign(http: &reqwest::Client, url: &str, wallet: &Wallet) -> Option<paygate_client::CredentialHeader> {
    let unpaid = http.get(url).send().await.ok()?;
    if unpaid.status() != 402 {
        return None;
    }
    let headers = unpaid.headers().clone();
    let body = unpaid.bytes().await.ok()?;
    let offers = parse_offers(&headers, &body, &assets()).ok()?;
    let offer = offers.iter().find(|o| o.protocol == Protocol::X402 && o.x402_version == Some(2) && o.is_payable())?;
    let mut signed = credential(wallet, offer).ok()?;
    let mut payload: serde_json::Value = x402::decode_header(&signed.value).ok()?;
    payload["extensions"] = json!({ "payment-identifier": { "info": { "required": false, "id": format!("pay_{}", signed.nonce.trim_start_matches("0x")) } } });
    signed.value = x402::encode_header(&payload);
    Some(signed)
}

/// Pays again and again from dev account `payer` until `stop`, resending a credential as a client must.
async fn pay(instances: Arc<Instances>, payer: u32, stop: Arc<AtomicBool>, attempts: Arc<Mutex<Vec<Attempt>>>) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let wallet = Wallet::from_signer(dev_account(payer));
    let mut turn = payer as usize;
    while !stop.load(Ordering::SeqCst) {
        turn += 1;
        let Some(signed) = sign(&http, &format!("{}/v1/quote", instances.base(turn)), &wallet).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut attempt = Attempt {
            header: (signed.name.clone(), signed.value.clone()),
            payer: signed.payer,
            nonce: signed.nonce.parse().expect("an EIP-3009 nonce"),
            status: None,
            pending: false,
            tries: 0,
        };
        while attempt.tries < 20 {
            attempt.tries += 1;
            let url = format!("{}/v1/quote", instances.base(turn + attempt.tries as usize));
            let sent = http.get(&url).header(&signed.name, &signed.value).send().await;
            let response = match sent {
                Ok(response) => response,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
            };
            let status = response.status().as_u16();
            let pending = response.headers().get("paygate-settlement").is_some_and(|v| v == "pending");
            if response.bytes().await.is_err() {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            attempt.status = Some(status);
            attempt.pending = pending;
            if !matches!(status, 409 | 429 | 500..=599) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        attempts.lock().unwrap().push(attempt);
    }
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The faults, in the order the soak injects them.
#[derive(Debug, Clone, Copy)]
enum Chaos {
    Facilitator(FacilitatorFault),
    FacilitatorDown,
    ChainStall,
    PostgresRestart,
    KillInstanceA,
}

const SCHEDULE: [Chaos; 10] = [
    Chaos::Facilitator(FacilitatorFault::SettledButSaysFailed),
    Chaos::ChainStall,
    Chaos::Facilitator(FacilitatorFault::SaysFailedThenSettles),
    Chaos::FacilitatorDown,
    Chaos::Facilitator(FacilitatorFault::ServerError),
    Chaos::PostgresRestart,
    Chaos::Facilitator(FacilitatorFault::SettledButSaysFailedQuietly),
    Chaos::KillInstanceA,
    Chaos::Facilitator(FacilitatorFault::Garbage),
    Chaos::Facilitator(FacilitatorFault::Hang),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paid_traffic_survives_every_fault_in_turn() {
    let secs = soak_secs();
    let postgres = Arc::new(tokio::task::spawn_blocking(PgServer::start).await.expect("PostgreSQL starts"));
    let store_url = postgres.database().await;
    let chain = Devchain::start_with(31337, MINING).await;
    let mut facilitator = FaultyFacilitator::start(&chain).await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &chain, &upstream, &store_url, &facilitator.url());
    let mut a = ServeProcess::start(BIN, &config);
    let b = ServeProcess::start(BIN, &config);
    let instances =
        Arc::new(Instances { bases: Mutex::new([format!("http://{}", a.address), format!("http://{}", b.address)]) });
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let load: Vec<_> =
        (1..=PAYERS).map(|payer| tokio::spawn(pay(instances.clone(), payer, stop.clone(), attempts.clone()))).collect();

    let started = Instant::now();
    let mut injected: BTreeMap<String, u32> = BTreeMap::new();
    let mut rss: Vec<(u64, Option<u64>, Option<u64>)> = Vec::new();
    let mut next_sample = Duration::ZERO;
    let mut step = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        let chaos = SCHEDULE[step % SCHEDULE.len()];
        step += 1;
        *injected.entry(format!("{chaos:?}")).or_default() += 1;
        match chaos {
            Chaos::Facilitator(fault) => facilitator.set_fault(fault),
            Chaos::FacilitatorDown => facilitator.stop().await,
            Chaos::ChainStall => {
                chain.rpc("evm_setIntervalMining", json!([0])).await;
                chain.rpc("evm_setAutomine", json!([false])).await;
            }
            Chaos::PostgresRestart => {
                let postgres = postgres.clone();
                tokio::task::spawn_blocking(move || postgres.restart()).await.expect("PostgreSQL restarts");
            }
            Chaos::KillInstanceA => {
                a.child.kill().expect("SIGKILL");
                a.child.wait().expect("reaped");
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Recovery, then a quiet spell.
        match chaos {
            Chaos::Facilitator(_) => facilitator.set_fault(FacilitatorFault::None),
            Chaos::FacilitatorDown => facilitator.resume(),
            Chaos::ChainStall => {
                chain.rpc("evm_setAutomine", json!([true])).await;
                chain.rpc("evm_setIntervalMining", json!([1])).await;
            }
            Chaos::PostgresRestart => {}
            Chaos::KillInstanceA => {
                a = ServeProcess::start(BIN, &config);
                instances.bases.lock().unwrap()[0] = format!("http://{}", a.address);
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        if started.elapsed() >= next_sample {
            rss.push((started.elapsed().as_secs(), rss_kib(a.child.id()), rss_kib(b.child.id())));
            next_sample += Duration::from_secs(5);
        }
    }
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.expect("load task");
    }
    rss.push((started.elapsed().as_secs(), rss_kib(a.child.id()), rss_kib(b.child.id())));

    // Let the reconcilers decide what the faults left: nothing `verified` or `settling`, and every authorization
    // the chain used `settled`.
    let store = paygate_store::open(&store_url).await.expect("the ledger opens");
    let attempts = attempts.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (used, ledger) = loop {
        let ledger = store.payments(&PaymentQuery::default()).await.expect("ledger");
        let mut used = Vec::new();
        for attempt in &attempts {
            let on_chain = authorization_use(chain.chain.as_ref(), chain.token, attempt.payer, attempt.nonce).await;
            if let Ok(AuthorizationUse::Used { tx }) = on_chain {
                used.push((attempt.clone(), tx));
            }
        }
        let undecided =
            ledger.iter().filter(|row| matches!(row.state, PaymentState::Verified | PaymentState::Settling)).count();
        let used_unsettled = used
            .iter()
            .filter(|(attempt, _)| {
                let key = format!("eip155:31337:{:#x}:{:#x}", attempt.payer, attempt.nonce);
                !ledger.iter().any(|row| row.proof_key == key && row.state == PaymentState::Settled)
            })
            .count();
        if undecided == 0 && used_unsettled == 0 {
            break (used, ledger);
        }
        assert!(
            Instant::now() < deadline,
            "{undecided} rows undecided, {used_unsettled} used authorizations unsettled"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // Every used authorization is one settled row with the chain's transaction, and its payer was served: the
    // request's own 200, or the same credential resent now (the identifier's answer, or the owed response).
    let http = reqwest::Client::new();
    let mut served_on_resend = 0;
    for (attempt, tx) in &used {
        let key = format!("eip155:31337:{:#x}:{:#x}", attempt.payer, attempt.nonce);
        let rows: Vec<_> = ledger.iter().filter(|row| row.proof_key == key).collect();
        assert_eq!(rows.len(), 1, "{key}: {rows:?}");
        assert_eq!(rows[0].state, PaymentState::Settled, "{:?}", rows[0]);
        assert_eq!(rows[0].tx_hash, tx.map(|h| h.to_string()), "{:?}", rows[0]);
        if attempt.status != Some(200) {
            let resent = http
                .get(format!("{}/v1/quote", instances.base(1)))
                .header(&attempt.header.0, &attempt.header.1)
                .send()
                .await
                .expect("instance B answers");
            assert_eq!(resent.status(), 200, "charged without a response: {attempt:?}");
            served_on_resend += 1;
        }
    }
    // Served without a charge on chain: only as a documented `pending`.
    let served_free: Vec<&Attempt> =
        attempts.iter().filter(|a| a.status == Some(200) && !used.iter().any(|(u, _)| u.nonce == a.nonce)).collect();
    assert!(served_free.iter().all(|a| a.pending), "served free without `pending`: {served_free:?}");
    // No transfer the ledger does not know.
    let mut transfers = 0;
    for payer in 1..=PAYERS {
        transfers += chain.transfers(dev_account(payer).address(), dev_account(9).address()).await;
    }
    assert_eq!(transfers, used.len());
    assert_eq!(ledger.iter().filter(|row| row.state == PaymentState::Settled).count(), used.len());

    // Memory: the instance that ran throughout, after its warm-up, against its end.
    let b_rss: Vec<u64> = rss.iter().filter_map(|(_, _, b)| *b).collect();
    let (warm, last) = (b_rss[b_rss.len().min(2) - 1], *b_rss.last().expect("samples"));
    assert!(last < warm * 2 && last < warm + 64 * 1024, "instance B grew from {warm} KiB to {last} KiB: {rss:?}");

    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &ledger {
        *states.entry(row.state.as_str()).or_default() += 1;
    }
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for attempt in &attempts {
        *statuses.entry(attempt.status.map_or("none".into(), |s| s.to_string())).or_default() += 1;
    }
    let resends: u32 = attempts.iter().map(|a| a.tries - 1).sum();
    eprintln!(
        "soak: {secs} s of traffic, {} paid requests ({resends} resends); final statuses {statuses:?}",
        attempts.len()
    );
    eprintln!("soak: faults injected {injected:?}; facilitator answers by fault {:?}", facilitator.faults_served());
    eprintln!(
        "soak: {} authorizations used on chain = {} settled rows = {transfers} transfers; {served_on_resend} served on resend; {} served as pending and not (yet) charged",
        used.len(),
        states.get("settled").copied().unwrap_or(0),
        served_free.len()
    );
    eprintln!("soak: rows by state {states:?}");
    eprintln!("soak: RSS KiB (seconds, instance A, instance B) {rss:?}");
}
