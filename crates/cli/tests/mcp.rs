//! `paygate mcp` driven by the official MCP SDK's client over stdio, as an agent starts it, against paygate on
//! the embedded devnet: the tools are listed with their schemas, `quote` shows the price and pays nothing,
//! `fetch` with a maximum below the price is refused with nothing signed, `fetch` pays and returns the answer,
//! and `spending` shows the payment and what the daily budget leaves.

use paygate_chain::devtoken::{dev_account, test_usdc_address};
use paygate_testkit::{Devchain, Seller, node};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_paygate");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_pays_through_paygate_mcp_within_its_limits() {
    let seller = Seller::around(Devchain::embedded(31337), "").await;
    let pay_to = dev_account(9).address();
    let (seller_before, buyer_before) =
        (seller.chain.balance(pay_to).await, seller.chain.balance(dev_account(1).address()).await);
    let dir = tempfile::tempdir().expect("temp dir");
    let spend_log = dir.path().join("spend.db").display().to_string();
    let key = dev_account(1).to_bytes().to_string();
    let token = format!("31337:{}:6:USD Coin:2", test_usdc_address());
    let env = [("PAYGATE_WALLET_KEY", key.as_str()), ("PAYGATE_LOG", "warn")];
    let args = ["--spend-log", &spend_log, "--usd-token", &token, "--daily-budget", "0.05"];
    let seen = node::mcp(BIN, &seller.url("/v1/quote"), &env, &args).await;

    let names: Vec<&str> = seen["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["fetch", "quote", "spending"], "{seen}");
    assert_eq!(seen["tools"][0]["required"], json!(["url"]));

    // What it costs, without paying.
    let quote = &seen["quote"]["value"];
    assert_eq!((&seen["quote"]["isError"], &quote["status"]), (&json!(false), &json!(402)), "{seen}");
    assert!(quote["wouldPay"].as_str().is_some_and(|o| o.starts_with("0.01 USD on eip155:31337")), "{quote}");

    // A maximum below the price: refused by the policy, nothing signed.
    assert_eq!(seen["tooCheap"]["isError"], true, "{seen}");
    assert!(seen["tooCheap"]["value"].as_str().is_some_and(|t| t.contains("not paid")), "{seen}");

    // Paid: the answer comes back, and the seller has exactly the price.
    let paid = &seen["paid"]["value"];
    assert_eq!((&seen["paid"]["isError"], &paid["status"]), (&json!(false), &json!(200)), "{seen}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(paid["body"].as_str().unwrap()).unwrap()["symbol"], "PAY");
    assert!(paid["paid"]["reference"].as_str().is_some_and(|r| r.starts_with("0x")), "{paid}");
    assert_eq!(seller.chain.balance(pay_to).await, seller_before + 10_000);
    assert_eq!(seller.chain.balance(dev_account(1).address()).await, buyer_before - 10_000);

    // The spend log has the one payment, and the budget what is left.
    let spending = &seen["spending"]["value"];
    assert_eq!(
        (&spending["spentLast24hUsd"], &spending["leftTodayUsd"]),
        (&json!("0.01"), &json!("0.04")),
        "{spending}"
    );
    let last = spending["last"].as_array().unwrap();
    assert_eq!(last.len(), 1, "the refused fetch recorded nothing: {spending}");
    assert_eq!((&last[0]["state"], &last[0]["amountAtomic"]), (&json!("paid"), &json!("10000")));
    let ms = seen["paidMs"].as_f64().unwrap();
    println!("an agent's paid fetch through paygate mcp on the devnet: {ms:.1} ms (the MCP call to its result)");
}
