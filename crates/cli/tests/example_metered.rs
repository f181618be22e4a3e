//! `examples/metered.toml` works as documented, unchanged, with the real binary: anvil on 127.0.0.1:8545,
//! `paygate dev fund`, the sample API (`paygate dev upstream`) on 127.0.0.1:9000 and `paygate serve` on
//! 127.0.0.1:8402. `POST /v1/chat/completions` is priced by the tokens its answer reports: `paygate pay` paying
//! per request is charged the route's maximum; paying from a channel (`--session-deposit`) it is charged exactly
//! the tokens used, for a plain and for a streamed answer, and for a stream paid per token as it is delivered
//! (printed as it arrives, each voucher sent when asked), and the channel's close pays the seller exactly that
//! and refunds the rest.
//!
//! It uses the example's fixed ports, so it is the only test of this binary.

mod example;

use alloy::primitives::U256;
use example::*;
use paygate_chain::devtoken::{dev_account, test_usdc_address};
use paygate_testkit::workspace_root;
use serde_json::Value;

const URL: &str = "http://127.0.0.1:8402/v1/chat/completions";

/// `paygate pay` as dev account 2, with this test's spend log and the test token valued as USD.
fn pay(args: &[&str], dir: &std::path::Path) -> tokio::process::Command {
    let token = format!("31337:{}:6:USD Coin:2", test_usdc_address());
    let mut all = vec!["pay", "--usd-token", &token, "-X", "POST", "-H", "Content-Type: application/json"];
    all.extend_from_slice(args);
    let mut command = paygate(&all, dir);
    command
        .env("PAYGATE_WALLET_KEY", dev_account(2).to_bytes().to_string())
        .env("PAYGATE_SPEND_LOG", dir.join("spend.db"))
        .env_remove("PAYGATE_MAX_PER_PAYMENT")
        .env_remove("PAYGATE_DAILY_BUDGET")
        .env_remove("PAYGATE_SESSION_DEPOSIT");
    command
}

async fn paid(mut command: tokio::process::Command) -> (String, String) {
    let output = command.output().await.expect("paygate pay runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    (stdout.into_owned(), stderr.into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metered_example_charges_what_each_call_used() {
    assert_port_free(RPC_PORT, "anvil");
    assert_port_free(UPSTREAM_PORT, "the upstream");
    assert_port_free(GATEWAY_PORT, "paygate serve");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("metered.toml");
    std::fs::copy(workspace_root().join("examples/metered.toml"), &config).expect("copy the example");
    let (_anvil, chain) = start_anvil().await;
    run_ok(&["dev", "fund", "--rpc-url", RPC_URL], dir.path()).await;
    let _upstream = paygate(&["dev", "upstream"], dir.path()).spawn().expect("paygate dev upstream starts");
    let mut gateway = Gateway::start(&config, dir.path(), &[]);
    gateway.ready().await;
    let (buyer, seller, payee) = (dev_account(2).address(), dev_account(9).address(), dev_account(0).address());
    let before =
        [usdc_balance(&chain, buyer).await, usdc_balance(&chain, seller).await, usdc_balance(&chain, payee).await];

    // One 402 offers per-request `exact`, `upto` and the session, all at the maximum.
    let unpaid = reqwest::Client::new().post(URL).body("{}").send().await.expect("the 402");
    assert_eq!(unpaid.status(), 402);
    let required = unpaid.headers()["payment-required"].to_str().expect("ASCII");
    let required: Value =
        serde_json::from_slice(&paygate_proto::b64::std_decode(required).expect("base64")).expect("JSON");
    let schemes: Vec<&str> =
        required["accepts"].as_array().unwrap().iter().map(|a| a["scheme"].as_str().unwrap()).collect();
    assert_eq!(schemes, ["exact", "upto"], "{required}");
    let challenges: Vec<&str> =
        unpaid.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(
        challenges.iter().any(|c| c.contains("method=\"evm\"") && c.contains("intent=\"session\"")),
        "{challenges:?}"
    );

    // Per request: an authorization of a fixed amount pays the route's maximum, $0.001.
    let body = r#"{"messages":[{"role":"user","content":"Hello there"}]}"#;
    let (answer, stderr) = paid(pay(&["--max", "0.001", "-d", body, URL], dir.path())).await;
    assert!(stderr.contains("via x402 (exact)") || stderr.contains("(evm/charge)"), "{stderr}");
    let answer: Value = serde_json::from_str(&answer).expect("a JSON completion");
    assert_eq!(answer["usage"]["completion_tokens"], 16, "{answer}");
    assert_eq!(usdc_balance(&chain, seller).await - before[1], U256::from(1_000u64), "{}", gateway.log());

    // From a channel: 2 prompt tokens at 1 atomic unit and 16 completion tokens at 2: 34 units.
    let (answer, stderr) = paid(pay(&["--session-deposit", "0.05", "-d", body, URL], dir.path())).await;
    assert!(stderr.contains("(evm/session)"), "{stderr}");
    assert!(answer.contains("\"completion_tokens\":16"), "{answer}");
    // Streamed, 5 completion tokens: 2 + 10 units, read from the last event's usage.
    let streamed = r#"{"stream":true,"max_tokens":5,"messages":[{"role":"user","content":"Hello there"}]}"#;
    let (events, _) = paid(pay(&["--session-deposit", "0.05", "-d", streamed, URL], dir.path())).await;
    assert!(events.contains("\"completion_tokens\":5") && events.trim_end().ends_with("data: [DONE]"), "{events}");
    // Asked for as an event stream, the same completion is paid per token as it is delivered: `paygate pay` prints
    // the tokens as they come (the payment's own events aside) and signs each voucher the stream asks for.
    let accept = ["--session-deposit", "0.05", "-H", "Accept: text/event-stream", "-d", streamed, URL];
    let (printed, _) = paid(pay(&accept, dir.path())).await;
    assert_eq!(printed.matches("\"content\"").count(), 5, "{printed}");
    assert!(printed.trim_end().ends_with("data: [DONE]") && !printed.contains("payment-"), "{printed}");

    let ledger = run_ok(&["ledger", "--config", &config.display().to_string(), "--json"], dir.path()).await;
    let ledger: Value = serde_json::from_str(&ledger).expect("JSON");
    let mut amounts: Vec<u128> =
        ledger.as_array().unwrap().iter().map(|r| r["amount"].as_str().unwrap().parse().unwrap()).collect();
    amounts.sort();
    assert_eq!(amounts, [12, 12, 34, 1000], "what each call used, and the maximum per request: {ledger}");

    // The channel's close pays the payee exactly the 58 units used and refunds the rest of the $0.05 deposit.
    let mut list = paygate(&["channels", "list", "--json"], dir.path());
    list.env("PAYGATE_SPEND_LOG", dir.path().join("spend.db"));
    let channels: Value = serde_json::from_slice(&list.output().await.expect("list").stdout).expect("JSON");
    let id = channels[0]["channel_id"].as_str().expect("a channel").to_owned();
    assert_eq!(channels[0]["cumulative"], "58", "{channels}");
    let mut close = paygate(&["channels", "close", &id], dir.path());
    close
        .env("PAYGATE_SPEND_LOG", dir.path().join("spend.db"))
        .env("PAYGATE_WALLET_KEY", dev_account(2).to_bytes().to_string());
    let closed = close.output().await.expect("close");
    assert!(
        closed.status.success(),
        "{}{}",
        String::from_utf8_lossy(&closed.stdout),
        String::from_utf8_lossy(&closed.stderr)
    );
    let closed: Value = serde_json::from_slice(&closed.stdout).expect("JSON");
    assert_eq!((&closed["settled"], &closed["refunded"]), (&"58".into(), &"49942".into()));
    assert_eq!(usdc_balance(&chain, payee).await - before[2], U256::from(58u64));
    assert_eq!(before[0] - usdc_balance(&chain, buyer).await, U256::from(1_058u64));
}
