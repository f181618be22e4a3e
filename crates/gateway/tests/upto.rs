//! x402 `upto` on anvil, with Permit2 and the x402 upto proxy's stand-ins at the addresses the official client
//! signs for: the official `@x402/evm` 2.27.0 `upto` client authorizes a route's maximum, paygate settles what the
//! call used (a route priced by the tokens its answer reports), a call that used nothing moves nothing, reported
//! usage above the maximum is capped, and nothing above the signed maximum can ever be settled.

#[macro_use]
mod common;

use alloy::primitives::U256;
use alloy::sol_types::SolCall;
use common::{Harness, Options, decode_x402, pay_to, payer};
use paygate_chain::devtoken::dev_account;
use paygate_chain::upto;
use paygate_chain::{TxSender, wait_for_receipt};
use paygate_store::PaymentState;
use paygate_testkit::node;
use serde_json::{Value, json};

/// $0.01, the route's maximum, in the test token's atomic units.
const MAX: u128 = 10_000;

async fn harness() -> Harness {
    let settlement = format!("settler_key = \"{}\"", paygate_testkit::SETTLER_KEY);
    let extra = paygate_testkit::metered_upto_toml(pay_to(), &settlement);
    let h = Harness::start_with(Options { extra_toml: extra, ..Default::default() }).await;
    // The payer approves Permit2 once, as Permit2 payers do.
    h.chain.approve_permit2(&dev_account(1)).await;
    h
}

/// The official upto client pays `POST /v1/metered/<path>` whose answer (the echoed body) reports `usage`.
async fn pay(h: &Harness, path: &str, usage: Value) -> Value {
    let body = json!({ "usage": usage }).to_string();
    node::client(&["x402upto", "pay", &h.url(&format!("/v1/metered/{path}")), "--method", "POST", "--body", &body])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_upto_client_pays_what_each_call_used() {
    let h = harness().await;
    let (seller, buyer) = (h.chain.balance(pay_to()).await, h.chain.balance(payer()).await);

    // The 402 offers `upto` at the maximum, naming the facilitator that alone may settle.
    let offer = h.send("POST", "/v1/metered/a", None, Some("{}")).await;
    let required = decode_x402(offer.headers()["payment-required"].to_str().unwrap());
    let accepted = &required["accepts"][0];
    assert_eq!((&accepted["scheme"], &accepted["amount"]), (&json!("upto"), &json!(MAX.to_string())));
    assert_eq!(accepted["extra"]["facilitatorAddress"], dev_account(0).address().to_checksum(None));

    // 7 prompt tokens at 1 unit and 30 completion tokens at 2: 67 units move, far below the 10,000 signed.
    let answer = pay(&h, "a", json!({"prompt_tokens": 7, "completion_tokens": 30})).await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!((&answer["receipt"]["success"], &answer["receipt"]["amount"]), (&json!(true), &json!("67")), "{answer}");
    assert_eq!(h.chain.balance(pay_to()).await, seller + 67);
    assert_eq!(h.chain.balance(payer()).await, buyer - 67);

    // Nothing used: nothing moves and no transaction is sent.
    let sent = || async {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionCount",
            "params": [dev_account(0).address(), "latest"]});
        let got: Value =
            reqwest::Client::new().post(&h.chain.rpc_url).json(&body).send().await.unwrap().json().await.unwrap();
        got["result"].as_str().unwrap().to_owned()
    };
    let before = sent().await;
    let answer = pay(&h, "b", json!({"prompt_tokens": 0, "completion_tokens": 0})).await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(
        (&answer["receipt"]["amount"], &answer["receipt"]["transaction"]),
        (&json!("0"), &json!("")),
        "{answer}"
    );
    assert_eq!(sent().await, before, "the facilitator sent no transaction");
    assert_eq!(h.chain.balance(pay_to()).await, seller + 67);

    // Usage above the maximum (a tampered or runaway report) is capped at what the payer signed.
    let answer = pay(&h, "c", json!({"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000})).await;
    assert_eq!(answer["receipt"]["amount"], MAX.to_string(), "{answer}");
    assert_eq!(h.chain.balance(pay_to()).await, seller + 67 + MAX);

    let ledger = h.ledger().await;
    let mut amounts: Vec<u128> =
        ledger.iter().filter(|r| r.rail == "upto").map(|r| r.amount.parse().unwrap()).collect();
    amounts.sort();
    assert_eq!(amounts, [0, 67, MAX]);
    assert!(ledger.iter().filter(|r| r.rail == "upto").all(|r| r.state == PaymentState::Settled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_above_the_signed_maximum_can_be_settled() {
    let h = harness().await;
    // The official client's credential for the maximum, sent by paygate's own settle call for more.
    let signed = node::client(&["x402upto", "sign", &h.url("/v1/metered/d"), "--method", "POST", "--body", "{}"]).await;
    let header = signed["value"].as_str().unwrap_or_else(|| panic!("{signed}"));
    let payload = decode_x402(header);
    let authorization = &payload["payload"]["permit2Authorization"];
    let u = |v: &Value| v.as_str().unwrap().parse::<U256>().unwrap();
    let permit = upto::X402UptoPermit2Proxy::PermitTransferFrom {
        permitted: upto::X402UptoPermit2Proxy::TokenPermissions {
            token: h.chain.token,
            amount: u(&authorization["permitted"]["amount"]),
        },
        nonce: u(&authorization["nonce"]),
        deadline: u(&authorization["deadline"]),
    };
    let witness = upto::X402UptoPermit2Proxy::Witness {
        to: pay_to(),
        facilitator: dev_account(0).address(),
        validAfter: U256::ZERO,
    };
    let signature: alloy::primitives::Bytes =
        alloy::hex::decode(payload["payload"]["signature"].as_str().unwrap()).unwrap().into();
    let settle = |amount: u128| {
        upto::X402UptoPermit2Proxy::settleCall {
            permit: permit.clone(),
            amount: U256::from(amount),
            owner: payer(),
            witness: witness.clone(),
            signature: signature.clone(),
        }
        .abi_encode()
    };
    let facilitator = TxSender::new(h.chain.chain.clone(), dev_account(0));
    let over = facilitator.send(upto::UPTO_PROXY, settle(MAX + 1).into()).await;
    assert!(matches!(over, Err(paygate_chain::SendError::WouldRevert(_))), "{over:?}");
    // Nor by anyone but the named facilitator.
    let stranger = TxSender::new(h.chain.chain.clone(), dev_account(5));
    let other = stranger.send(upto::UPTO_PROXY, settle(1).into()).await;
    assert!(matches!(other, Err(paygate_chain::SendError::WouldRevert(_))), "{other:?}");
    // The maximum itself does settle.
    let before = h.chain.balance(pay_to()).await;
    let hash = facilitator.send(upto::UPTO_PROXY, settle(MAX).into()).await.unwrap();
    let mined = wait_for_receipt(
        h.chain.chain.as_ref(),
        hash,
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(20),
    );
    assert!(mined.await.unwrap().unwrap().status());
    assert_eq!(h.chain.balance(pay_to()).await, before + MAX);
}

/// paygate's paying client (behind `paygate pay`) pays `upto` offers: it signs the route's maximum, within its
/// policy's cap per payment, and its budgets then count only what was settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paying_client_signs_the_maximum_and_its_budgets_count_what_was_used() {
    use paygate_client::{AssetBook, KnownAsset, PayError, PayingClient, Policy, PolicyViolation, SpendLog, Wallet};

    let h = harness().await;
    let seller = h.chain.balance(pay_to()).await;
    let log = SpendLog::in_memory().await.unwrap();
    let client = |max: u128| {
        let policy = Policy { max_per_payment: Some(max), ..Default::default() };
        PayingClient::new(reqwest::Client::new(), Wallet::from_signer(dev_account(1)), policy, log.clone())
            .with_assets(AssetBook::builtin().with(KnownAsset::dev_test_usdc(31337)))
    };
    let body = json!({"usage": {"prompt_tokens": 5, "completion_tokens": 10}}).to_string().into_bytes();
    let url = h.url("/v1/metered/e");
    let headers = || {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        headers
    };

    // A cap below the maximum refuses before anything is signed.
    match client(MAX - 1).send("POST", &url, headers(), Some(body.clone())).await {
        Err(PayError::Policy(PolicyViolation::OverMaxPerPayment { .. })) => {}
        other => panic!("expected the cap to refuse, got {other:?}"),
    }
    let paid = client(MAX).send("POST", &url, headers(), Some(body)).await.unwrap();
    assert_eq!(paid.status, 200);
    assert_eq!(paid.payment.as_ref().unwrap().offer.scheme, "upto");
    assert_eq!(h.chain.balance(pay_to()).await, seller + 25);
    let rows = log.records().await.unwrap();
    assert_eq!((rows[0].amount_atomic.as_str(), rows[0].usd_micros), ("25", 25), "the row says what moved");
    assert!(rows[0].nonce.as_deref().is_some_and(|n| n.starts_with("permit2:")), "{:?}", rows[0].nonce);
    assert_eq!(log.spent("127.0.0.1", paygate_client::now_ms()).await.unwrap().total, 25);
}
