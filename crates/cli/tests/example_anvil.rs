//! `examples/anvil.toml` works as documented, unchanged, with the real binary: anvil on 127.0.0.1:8545 (chain
//! 31337), `paygate dev fund` (deploys the test token at the address the example names, tops dev accounts 1-9
//! up to 1,000 USDC, and is idempotent), the upstream on 127.0.0.1:9000 and `paygate serve` on 127.0.0.1:8402.
//! Unpaid requests get 402, the official x402 and mppx clients pay, the seller receives exactly the prices, and
//! `paygate ledger` shows both settled payments as a table, JSON and CSV.
//!
//! It uses the example's fixed ports, so it is the only test of this binary.

mod example;

use alloy::primitives::{TxHash, U256};
use example::*;
use paygate_chain::Chain;
use paygate_chain::devtoken::{dev_account, test_usdc_address};
use paygate_proto::mpp::Receipt;
use paygate_testkit::{Upstream, node, workspace_root};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anvil_example_works_as_documented() {
    assert_port_free(RPC_PORT, "anvil");
    assert_port_free(UPSTREAM_PORT, "the upstream");
    assert_port_free(GATEWAY_PORT, "paygate serve");
    let example = std::fs::read_to_string(workspace_root().join("examples/anvil.toml")).expect("the example");
    let token = test_usdc_address();
    let token_text = token.to_checksum(None);
    assert!(example.contains(&format!("address = \"{token_text}\"")), "the example does not name {token_text}");
    // The commands run elsewhere than the config: its relative store path must follow the file, not the cwd.
    let dir = tempfile::tempdir().expect("temp dir");
    let cwd = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("anvil.toml");
    std::fs::write(&config, &example).expect("copy the example");
    let config_arg = config.display().to_string();

    let (_anvil, chain) = start_anvil().await;

    // `paygate dev fund`: prints the token address, and can run again.
    let fund = ["dev", "fund", "--rpc-url", RPC_URL];
    for run in ["first", "second"] {
        let stdout = run_ok(&fund, cwd.path()).await;
        assert_eq!(stdout, format!("{token_text}\n"), "{run} run of dev fund");
        for i in 1..=9 {
            let balance = usdc_balance(&chain, dev_account(i).address()).await;
            assert_eq!(balance, U256::from(1000 * USDC), "{run} run: dev account {i} holds {balance}");
        }
    }
    assert!(!chain.code(token).await.expect("eth_getCode").is_empty(), "no token at {token_text}");

    let upstream = Upstream::start_on(([127, 0, 0, 1], UPSTREAM_PORT).into()).await;
    let mut gateway = Gateway::start(&config, cwd.path(), &[]);
    gateway.ready().await;

    let seller = dev_account(9).address();
    let payer = dev_account(1).address();
    let (seller_before, payer_before) = (usdc_balance(&chain, seller).await, usdc_balance(&chain, payer).await);

    // Unpaid: 402 with offers in both protocols, and the upstream is not called.
    let (status, head, _) = http("GET", "/v1/quote", None).await.expect("the gateway answers");
    assert_eq!(status, 402, "{head}");
    assert!(head.contains("\r\npayment-required: "), "no x402 offer: {head}");
    assert!(head.contains("\r\nwww-authenticate: payment "), "no MPP challenge: {head}");
    assert_eq!(upstream.hits(), 0);

    let base = format!("http://127.0.0.1:{GATEWAY_PORT}");
    let x402 = node::client(&["x402", "pay", &format!("{base}/v1/quote")]).await;
    assert_eq!(x402["status"], 200, "x402: {x402}\ngateway log:\n{}", gateway.log());
    assert_eq!(x402["body"], QUOTE_BODY);
    let settled = x402["headers"]["payment-response"].as_str().expect("PAYMENT-RESPONSE header");
    let settled: Value =
        serde_json::from_slice(&paygate_proto::b64::std_decode(settled).expect("base64")).expect("JSON");
    assert_eq!(settled["success"], true, "{settled}");
    let x402_tx = settled["transaction"].as_str().expect("transaction").to_owned();

    let echo = r#"{"hello":"anvil"}"#;
    let mppx = node::client(&["mppx", "pay", &format!("{base}/v1/echo"), "--method", "POST", "--body", echo]).await;
    assert_eq!(mppx["status"], 200, "mppx: {mppx}\ngateway log:\n{}", gateway.log());
    assert_eq!(mppx["body"], echo);
    let receipt = Receipt::from_header(mppx["headers"]["payment-receipt"].as_str().expect("Payment-Receipt header"))
        .expect("a receipt");
    assert_eq!(receipt.status, "success");
    let mpp_tx = receipt.reference.clone();
    assert_eq!(upstream.hits(), 2);

    // $0.01 + $0.02, exactly, from the payer to dev account 9.
    assert_eq!(usdc_balance(&chain, seller).await - seller_before, U256::from(30_000u64));
    assert_eq!(payer_before - usdc_balance(&chain, payer).await, U256::from(30_000u64));
    for tx in [&x402_tx, &mpp_tx] {
        let hash: TxHash = tx.parse().unwrap_or_else(|_| panic!("{tx} is not a transaction hash"));
        let mined = chain.receipt(hash).await.expect("eth_getTransactionReceipt");
        assert!(mined.is_some_and(|r| r.status()), "{tx} is not a successful transaction");
    }

    // The ledger is next to the config, whatever the working directory.
    assert!(dir.path().join("paygate-anvil.db").exists(), "no ledger next to the config");
    assert!(!cwd.path().join("paygate-anvil.db").exists(), "the ledger followed the working directory");

    // JSON: newest first.
    let json: Value = serde_json::from_str(&run_ok(&["ledger", "--config", &config_arg, "--json"], cwd.path()).await)
        .expect("ledger --json prints JSON");
    let rows = json.as_array().expect("an array");
    assert_eq!(rows.len(), 2, "{json:#}");
    let field = |row: &Value, name: &str| row[name].as_str().unwrap_or_else(|| panic!("no {name}: {row}")).to_owned();
    for row in rows {
        assert_eq!(field(row, "state"), "settled", "{row}");
        assert_eq!(field(row, "tx_hash").len(), 66, "{row}");
        assert!(field(row, "tx_hash").starts_with("0x"), "{row}");
        assert_eq!(field(row, "payer"), payer.to_checksum(None), "{row}");
        assert_eq!(field(row, "pay_to"), seller.to_checksum(None), "{row}");
        assert_eq!(field(row, "asset"), token_text, "{row}");
        assert_eq!(row["upstream_status"], 200, "{row}");
    }
    let summary: Vec<[String; 3]> =
        rows.iter().map(|r| [field(r, "amount"), field(r, "protocol"), field(r, "tx_hash")]).collect();
    assert_eq!(
        summary,
        [["20000".to_owned(), "mpp".to_owned(), mpp_tx.clone()], ["10000".to_owned(), "x402-v2".to_owned(), x402_tx]],
        "{json:#}"
    );
    let newest =
        run_ok(&["ledger", "--config", &config_arg, "--json", "--state", "settled", "--limit", "1"], cwd.path()).await;
    let newest: Value = serde_json::from_str(&newest).expect("JSON");
    assert_eq!(newest.as_array().map(Vec::len), Some(1), "{newest}");
    assert_eq!(newest[0]["tx_hash"], mpp_tx.as_str());

    // CSV: a header and one line per payment.
    let csv = run_ok(&["ledger", "--config", &config_arg, "--csv"], cwd.path()).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert_eq!(lines[0], "id,time,state,route,amount,atomic,asset,network,payer,tx_hash,protocol");
    let rows: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split(',').collect()).collect();
    for (row, json) in rows.iter().zip(json.as_array().unwrap()) {
        assert_eq!(row.len(), 11, "{csv}");
        assert_eq!(row[0], json["id"].to_string().trim_matches('"'), "{csv}");
        assert_eq!(row[2], "settled", "{csv}");
        assert_eq!(row[6], token_text, "{csv}");
        assert_eq!(row[7], field(json, "network"), "{csv}");
        assert_eq!(row[8], payer.to_checksum(None), "{csv}");
        assert_eq!(row[9], field(json, "tx_hash"), "{csv}");
        assert_eq!(row[10], field(json, "protocol"), "{csv}");
    }
    assert_eq!(rows[0][3..6], ["POST /v1/echo", "0.02 USDC", "20000"], "{csv}");
    assert_eq!(rows[1][3..6], ["GET /v1/quote", "0.01 USDC", "10000"], "{csv}");

    // The default table.
    let table = run_ok(&["ledger", "--config", &config_arg], cwd.path()).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].contains("state") && lines[0].contains("amount") && lines[0].contains("tx_hash"), "{table}");
    assert!(lines[1].contains("settled") && lines[1].contains("0.02 USDC") && lines[1].contains(&mpp_tx), "{table}");
    assert!(lines[2].contains("settled") && lines[2].contains("0.01 USDC"), "{table}");

    drop(gateway);
}
