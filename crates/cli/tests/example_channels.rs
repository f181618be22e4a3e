//! `examples/channels.toml` works as documented, unchanged, with the real binary: anvil on 127.0.0.1:8545,
//! `paygate dev fund` (the test token, and the escrows), the upstream on 127.0.0.1:9000 and `paygate serve` on
//! 127.0.0.1:8402. One 402 offers per-request `exact`, x402 `batch-settlement` and MPP `evm` session (as mppx
//! reads it); the official client deposits once and pays five calls by voucher; the gateway's own schedule claims
//! them on chain, and the seller receives exactly five prices; `paygate ledger --channels` shows
//! the channel.
//!
//! It uses the example's fixed ports, so it is the only test of this binary.

mod example;

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use example::*;
use paygate_chain::devtoken::dev_account;
use paygate_testkit::{Upstream, node, workspace_root};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channels_example_works_as_documented() {
    assert_port_free(RPC_PORT, "anvil");
    assert_port_free(UPSTREAM_PORT, "the upstream");
    assert_port_free(GATEWAY_PORT, "paygate serve");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("channels.toml");
    std::fs::copy(workspace_root().join("examples/channels.toml"), &config).expect("copy the example");
    let config_arg = config.display().to_string();

    let (_anvil, chain) = start_anvil().await;
    run_ok(&["dev", "fund", "--rpc-url", RPC_URL], dir.path()).await;
    let _upstream = Upstream::start_on(([127, 0, 0, 1], UPSTREAM_PORT).into()).await;
    let mut gateway = Gateway::start(&config, dir.path(), &[]);
    gateway.ready().await;

    // One 402 offers both: per request and through a channel.
    let base = format!("http://127.0.0.1:{GATEWAY_PORT}");
    let offers = node::parse402(&format!("{base}/v1/quote")).await;
    assert_eq!(offers["x402"]["schemes"], serde_json::json!(["exact", "batch-settlement"]), "{offers}");
    let mpp: Vec<_> =
        offers["mpp"].as_array().unwrap().iter().map(|c| (c["method"].clone(), c["intent"].clone())).collect();
    assert!(
        mpp.contains(&(serde_json::json!("evm"), serde_json::json!("session"))),
        "mppx reads the session offer: {offers}"
    );

    let seller = dev_account(9).address();
    let seller_before = usdc_balance(&chain, seller).await;
    let paid = node::channel(&format!("{base}/v1/quote"), RPC_URL, &["--calls", "5", "--deposit", "100000"]).await;
    assert_eq!(paid["statuses"], serde_json::json!([200, 200, 200, 200, 200]), "{paid}\n{}", gateway.log());
    assert!(paid["bodies"].as_array().unwrap().iter().all(|b| b == QUOTE_BODY), "{paid}");

    // The schedule (every 10 s, on the reconciler's 5 s pass) claims the five calls and sweeps them.
    let deadline = Instant::now() + Duration::from_secs(40);
    while usdc_balance(&chain, seller).await == seller_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(usdc_balance(&chain, seller).await - seller_before, U256::from(50_000u64), "{}", gateway.log());

    let channels = run_ok(&["ledger", "--config", &config_arg, "--channels", "--json"], dir.path()).await;
    let channels: Value = serde_json::from_str(&channels).expect("JSON");
    let channel = &channels[0];
    assert_eq!(channels.as_array().map(Vec::len), Some(1), "{channels}");
    assert_eq!(channel["payer"], dev_account(1).address().to_checksum(None));
    let amounts = ["deposit", "charged", "claimed", "unclaimed"].map(|k| channel[k].as_str().unwrap_or("?").to_owned());
    assert_eq!(amounts, ["100000", "50000", "50000", "0"], "{channels}");
    let table = run_ok(&["ledger", "--config", &config_arg, "--channels"], dir.path()).await;
    assert!(table.starts_with("id "), "{table}");
    assert!(table.contains("usdc-anvil-channel"), "{table}");

    // The claim and the sweep, journaled before they were broadcast and decided from the chain.
    let journal = run_ok(&["ledger", "--config", &config_arg, "--transactions", "--json"], dir.path()).await;
    let journal: Value = serde_json::from_str(&journal).expect("JSON");
    let mut kinds: Vec<(&str, &str)> = journal
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["kind"].as_str().unwrap_or("?"), t["state"].as_str().unwrap_or("?")))
        .collect();
    kinds.sort();
    assert_eq!(kinds, [("claim", "mined"), ("sweep", "mined")], "{journal}");
    assert!(journal[0].get("raw").is_none(), "the signed bytes are not printed");
    let table = run_ok(&["ledger", "--config", &config_arg, "--transactions"], dir.path()).await;
    assert!(table.starts_with("hash ") && table.contains(" mined"), "{table}");
}
