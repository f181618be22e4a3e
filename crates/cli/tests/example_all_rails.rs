//! `examples/all-rails.toml` works as documented, unchanged, with the real binary: anvil on 127.0.0.1:8545 funded
//! by `paygate dev fund`, localstripe on 127.0.0.1:8420, the upstream on 127.0.0.1:9000 and `paygate serve` on
//! 127.0.0.1:8402 with `STRIPE_SECRET_KEY` set. `GET /v1/quote` offers EIP-3009 (x402 and MPP `evm`), the card
//! (MPP `stripe`) and the tx-hash dialects in one 402, which the official parsers read; a card and a proven
//! transfer each pay, and the ledger shows both.
//!
//! It uses the example's fixed ports, so it is the only test of this binary.

mod example;

use alloy::primitives::U256;
use alloy::sol_types::SolCall;
use example::*;
use paygate_chain::abi::Eip3009Token;
use paygate_chain::devtoken::{dev_account, test_usdc_address};
use paygate_chain::{TxSender, wait_for_receipt};
use paygate_proto::mpp::{Credential, parse_challenges};
use paygate_testkit::stripe::{LocalStripe, SECRET_KEY, cards};
use paygate_testkit::{Upstream, node, workspace_root};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const STRIPE_PORT: u16 = 8420;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_rails_example_offers_every_rail_and_takes_a_card_and_a_transfer() {
    for (port, what) in [(RPC_PORT, "anvil"), (UPSTREAM_PORT, "the upstream"), (GATEWAY_PORT, "paygate serve")] {
        assert_port_free(port, what);
    }
    assert_port_free(STRIPE_PORT, "localstripe");
    let example = std::fs::read_to_string(workspace_root().join("examples/all-rails.toml")).expect("the example");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("all-rails.toml");
    std::fs::write(&config, &example).expect("copy the example");

    let (_anvil, chain) = start_anvil().await;
    run_ok(&["dev", "fund", "--rpc-url", RPC_URL], dir.path()).await;
    let stripe = LocalStripe::start_on(STRIPE_PORT).await;
    let upstream = Upstream::start_on(([127, 0, 0, 1], UPSTREAM_PORT).into()).await;
    let mut gateway = Gateway::start(&config, dir.path(), &[("STRIPE_SECRET_KEY", SECRET_KEY)]);
    gateway.ready().await;

    let base = format!("http://127.0.0.1:{GATEWAY_PORT}");
    let http_client = reqwest::Client::new();
    let unpaid = http_client.get(format!("{base}/v1/quote")).send().await.expect("the gateway answers");
    assert_eq!(unpaid.status(), 402, "{}", gateway.log());
    let headers = unpaid.headers();
    let challenges: Vec<_> = headers
        .get_all("www-authenticate")
        .iter()
        .flat_map(|v| parse_challenges(v.to_str().unwrap()))
        .map(|c| c.expect("a challenge"))
        .collect();
    let methods: Vec<&str> = challenges.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["evm", "stripe"], "{headers:?}");
    assert!(headers.contains_key("payment-required"), "no x402 offer: {headers:?}");
    assert_eq!(headers["x-402-amount"], "0.01", "the tx-hash dialects are advertised");
    assert_eq!(headers["x-payment-payto"], "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720");
    let parsed = node::parse402(&format!("{base}/v1/quote")).await;
    assert!(parsed.get("error").is_none(), "an official parser refused the example's 402: {parsed}");
    assert_eq!(parsed["x402"]["schemes"], json!(["exact"]));

    // A card, answering the stripe challenge.
    let stripe_challenge = challenges.into_iter().find(|c| c.method == "stripe").expect("a stripe offer");
    let card = stripe.card_payment_method(cards::SUCCEEDS).await;
    let credential = Credential { challenge: stripe_challenge, payload: json!({"spt": card}), source: None };
    let paid = http_client
        .get(format!("{base}/v1/quote"))
        .header("authorization", credential.to_header())
        .send()
        .await
        .expect("paid");
    assert_eq!(paid.status(), 200, "{}", gateway.log());

    // A plain transfer of $0.01 to the example's seller, proven by its hash.
    let seller = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720".parse().unwrap();
    let sender = TxSender::new(Arc::new(chain), dev_account(1));
    let call = Eip3009Token::transferCall { to: seller, value: U256::from(10_000u64) };
    let hash = sender.send(test_usdc_address(), call.abi_encode().into()).await.expect("transfer");
    let mined = wait_for_receipt(sender.chain().as_ref(), hash, Duration::from_secs(20), Duration::from_millis(50));
    assert!(mined.await.expect("receipt").expect("mined").status());
    let proven = http_client
        .get(format!("{base}/v1/quote"))
        .header("x-payment-hash", hash.to_string())
        .send()
        .await
        .expect("proven");
    assert_eq!(proven.status(), 200, "{}", gateway.log());
    assert_eq!(upstream.hits(), 2);

    let config_arg = config.display().to_string();
    let json: Value = serde_json::from_str(&run_ok(&["ledger", "--config", &config_arg, "--json"], dir.path()).await)
        .expect("ledger --json prints JSON");
    let rails: Vec<(&str, &str)> = json
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| (r["rail"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    assert_eq!(rails, [("txhash", "settled"), ("stripe", "settled")], "{json:#}");
    drop(gateway);
}
