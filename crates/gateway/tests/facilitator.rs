//! `paygate facilitator` against the official x402 packages and paygate's own gateway, on anvil: the
//! `@x402/core` resource server (whose `HTTPFacilitatorClient` asks `/supported`, `/verify` and `/settle`)
//! sells through it, paygate settles through it as a remote facilitator, and its answers to bad and repeated
//! requests are the reference facilitator's.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Harness, Options, decode_x402, pay_to, payer};
use paygate_core::clock::SystemClock;
use paygate_gateway::config::FacilitatorFile;
use paygate_gateway::{Facilitator, facilitator_router as router};
use paygate_store::PaymentState;
use paygate_testkit::{Devchain, Upstream, node};
use serde_json::{Value, json};

/// Dev account 2: the facilitator's transactions are nobody else's.
const FACILITATOR_KEY: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";

/// Serves a facilitator settling on `chain` with dev account 2; its base URL.
async fn facilitator(chain: &Devchain) -> String {
    let toml = format!(
        r#"
[facilitator]
settler_key = "{FACILITATOR_KEY}"
networks = ["local"]

[networks.local]
chain_id = {chain_id}
rpc_url = "{rpc}"
receipt_poll_ms = 50
"#,
        chain_id = chain.chain_id,
        rpc = chain.rpc_url,
    );
    let file = FacilitatorFile::parse_with(&toml, "facilitator.toml", &|_| None, &[]).expect("parses");
    let facilitator =
        Facilitator::build(&file, "facilitator.toml", Arc::new(SystemClock), BTreeMap::new()).await.expect("builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(Arc::new(facilitator))).await.unwrap() });
    base
}

async fn post(url: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new().post(url).json(body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_x402_server_sells_through_it() {
    let chain = Devchain::start(31337).await;
    let base = facilitator(&chain).await;
    let supported: Value = reqwest::get(format!("{base}/supported")).await.unwrap().json().await.unwrap();
    let settler = paygate_chain::devtoken::dev_account(2).address().to_checksum(None);
    assert_eq!(
        supported["kinds"],
        json!([
            { "x402Version": 2, "scheme": "exact", "network": "eip155:31337" },
            { "x402Version": 2, "scheme": "upto", "network": "eip155:31337", "extra": { "facilitatorAddress": settler } },
        ])
    );
    assert_eq!(supported["signers"]["eip155:*"], json!([settler]));

    let server =
        node::Server::start("x402", &chain.rpc_url, &chain.token.to_string(), &pay_to().to_string(), &base).await;
    let before = chain.balance(pay_to()).await;
    let answer = node::client(&["x402", "pay", &format!("{}/paid", server.url)]).await;
    assert_eq!(answer["status"], 200, "{answer}");
    let settle = decode_x402(answer["headers"]["payment-response"].as_str().expect("PAYMENT-RESPONSE"));
    assert_eq!(settle["success"], true, "{settle}");
    let tx: alloy::primitives::TxHash = settle["transaction"].as_str().unwrap().parse().unwrap();
    let receipt = chain.chain.receipt(tx).await.unwrap().expect("mined");
    assert_eq!(receipt.from.to_checksum(None), settler);
    assert_eq!(chain.balance(pay_to()).await - before, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paygate_settles_through_it_as_a_remote_facilitator() {
    let chain = Devchain::start(31337).await;
    let base = facilitator(&chain).await;
    let h =
        Harness::around(chain, Upstream::start().await, Options { facilitator_url: Some(base), ..Default::default() })
            .await;
    for protocol in ["x402", "mppx"] {
        let answer = node::client(&[protocol, "pay", &h.url("/v1/quote")]).await;
        assert_eq!(answer["status"], 200, "{protocol}: {answer}");
    }
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 2);
    let ledger = h.ledger().await;
    assert!(
        ledger.iter().all(|p| p.state == PaymentState::Settled && p.tx_hash.as_ref().is_some_and(|t| t.len() == 66)),
        "{ledger:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_repeated_requests_are_refused_as_the_reference_does() {
    let chain = Devchain::start(31337).await;
    let base = facilitator(&chain).await;
    let server =
        node::Server::start("x402", &chain.rpc_url, &chain.token.to_string(), &pay_to().to_string(), &base).await;
    let (_, header) = node::sign("x402", &format!("{}/paid", server.url), &[]).await;
    let payload = decode_x402(&header);
    let request = json!({ "x402Version": 2, "paymentPayload": payload, "paymentRequirements": payload["accepted"] });

    let (status, verified) = post(&format!("{base}/verify"), &request).await;
    assert_eq!(
        (status, &verified["isValid"], &verified["payer"]),
        (200, &json!(true), &json!(payer().to_checksum(None)))
    );

    // Another amount than signed, another network, a tampered signature: refused, with the reason.
    let mut dearer = request.clone();
    dearer["paymentRequirements"]["amount"] = json!("20000");
    let (status, answer) = post(&format!("{base}/verify"), &dearer).await;
    assert_eq!(
        (status, &answer["isValid"], answer["invalidReason"].as_str()),
        (200, &json!(false), Some("amount_mismatch"))
    );
    let mut elsewhere = request.clone();
    elsewhere["paymentRequirements"]["network"] = json!("eip155:8453");
    elsewhere["paymentPayload"]["accepted"]["network"] = json!("eip155:8453");
    let (_, answer) = post(&format!("{base}/verify"), &elsewhere).await;
    assert_eq!(answer["invalidReason"], "unsupported_network", "{answer}");
    let mut tampered = request.clone();
    let signature = tampered["paymentPayload"]["payload"]["signature"].as_str().unwrap().to_owned();
    let flipped = if signature.ends_with('b') { "c" } else { "b" };
    tampered["paymentPayload"]["payload"]["signature"] =
        json!(format!("{}{flipped}", &signature[..signature.len() - 1]));
    let (_, answer) = post(&format!("{base}/verify"), &tampered).await;
    assert_eq!(
        (answer["isValid"].as_bool(), answer["invalidReason"].as_str()),
        (Some(false), Some("invalid_signature"))
    );
    let (_, answer) = post(&format!("{base}/settle"), &tampered).await;
    assert_eq!((answer["success"].as_bool(), answer["errorReason"].as_str()), (Some(false), Some("invalid_signature")));
    let garbage = reqwest::Client::new().post(format!("{base}/verify")).body("{").send().await.unwrap();
    assert_eq!(garbage.status(), 400);
    assert_eq!(garbage.json::<Value>().await.unwrap()["invalidReason"], "invalid_request");
    assert_eq!(chain.transfers(payer(), pay_to()).await, 0);

    // Settled once, with its transaction; the same authorization again is a replay, and nothing moves twice.
    let (status, settled) = post(&format!("{base}/settle"), &request).await;
    assert_eq!(
        (status, &settled["success"], &settled["network"]),
        (200, &json!(true), &json!("eip155:31337")),
        "{settled}"
    );
    assert_eq!(settled["transaction"].as_str().map(str::len), Some(66));
    let (_, again) = post(&format!("{base}/settle"), &request).await;
    assert_eq!((again["success"].as_bool(), again["errorReason"].as_str()), (Some(false), Some("nonce_already_used")));
    let (_, verify_again) = post(&format!("{base}/verify"), &request).await;
    assert_eq!(verify_again["isValid"], false);
    assert_eq!(chain.transfers(payer(), pay_to()).await, 1);
}

/// x402 `upto` through the facilitator: `/supported` names the settler as the facilitator, `/verify` takes the
/// official `upto` client's Permit2 authorization at its maximum, and `/settle` moves exactly the amount its
/// requirements carry, never more than was signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upto_is_verified_at_its_maximum_and_settled_for_what_was_used() {
    use paygate_chain::devtoken::dev_account;

    // A gateway whose `upto` offer names the facilitator's settler (dev account 2), to get the official client's
    // authorization for it.
    let upto = format!(
        "[[accept]]\nname = \"upto\"\nrail = \"upto\"\nnetwork = \"local\"\nasset = \"USDC\"\npay_to = \"{}\"\n\
         settler_key = \"{FACILITATOR_KEY}\"\n\n[[routes]]\nmethod = \"POST\"\npath = \"/v1/metered/*\"\n\
         max_price = \"$0.01\"\naccept = [\"upto\"]\n\n[routes.meter]\nusage = \"bytes\"\nunit_price = \"$0.000001\"\n",
        pay_to()
    );
    let h = Harness::start_with(Options { extra_toml: upto, ..Default::default() }).await;
    let base = facilitator(&h.chain).await;
    h.chain.approve_permit2(&dev_account(1)).await;

    let supported: Value = reqwest::get(format!("{base}/supported")).await.unwrap().json().await.unwrap();
    let kind =
        supported["kinds"].as_array().unwrap().iter().find(|k| k["scheme"] == "upto").expect("upto is supported");
    assert_eq!(kind["extra"]["facilitatorAddress"], dev_account(2).address().to_checksum(None));

    let signed = node::client(&["x402upto", "sign", &h.url("/v1/metered/f"), "--method", "POST", "--body", "{}"]).await;
    let payload = decode_x402(signed["value"].as_str().unwrap_or_else(|| panic!("{signed}")));
    let request = json!({ "x402Version": 2, "paymentPayload": payload, "paymentRequirements": payload["accepted"] });
    let (status, verified) = post(&format!("{base}/verify"), &request).await;
    assert_eq!((status, &verified["isValid"]), (200, &json!(true)), "{verified}");

    // More than signed is refused; the amount used is settled, exactly.
    let mut over = request.clone();
    over["paymentRequirements"]["amount"] = json!("10001");
    let (_, refused) = post(&format!("{base}/settle"), &over).await;
    assert_eq!(refused["errorReason"], "invalid_upto_evm_payload_settlement_exceeds_amount", "{refused}");
    let seller = h.chain.balance(pay_to()).await;
    let mut used = request.clone();
    used["paymentRequirements"]["amount"] = json!("42");
    let (status, settled) = post(&format!("{base}/settle"), &used).await;
    assert_eq!((status, &settled["success"], &settled["amount"]), (200, &json!(true), &json!("42")), "{settled}");
    assert_eq!(h.chain.balance(pay_to()).await, seller + 42);
    // The same authorization again: Permit2's nonce is used, nothing moves twice.
    let (_, again) = post(&format!("{base}/settle"), &used).await;
    assert_eq!(again["success"], false, "{again}");
    assert_eq!(h.chain.balance(pay_to()).await, seller + 42);
}

/// paygate's gateway settling `upto` through `paygate facilitator`: its offer names the address the facilitator's
/// `/supported` gives, the official client pays, and the facilitator's key settles exactly what the call used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paygate_settles_upto_through_it_for_what_was_used() {
    use paygate_chain::devtoken::dev_account;

    let chain = Devchain::start(31337).await;
    let base = facilitator(&chain).await;
    let upto = paygate_testkit::metered_upto_toml(pay_to(), &format!("facilitator_url = \"{base}\""));
    let h = Harness::around(chain, Upstream::start().await, Options { extra_toml: upto, ..Default::default() }).await;
    h.chain.approve_permit2(&dev_account(1)).await;

    let offer = h.send("POST", "/v1/metered/a", None, Some("{}")).await;
    let required = decode_x402(offer.headers()["payment-required"].to_str().unwrap());
    let settler = dev_account(2).address().to_checksum(None);
    assert_eq!(required["accepts"][0]["extra"]["facilitatorAddress"], settler.as_str());

    // 7 prompt tokens at 1 unit and 30 completion tokens at 2: 67 units of the 10,000 signed.
    let before = h.chain.balance(pay_to()).await;
    let body = json!({"usage": {"prompt_tokens": 7, "completion_tokens": 30}}).to_string();
    let url = h.url("/v1/metered/a");
    let answer = node::client(&["x402upto", "pay", &url, "--method", "POST", "--body", &body]).await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!((&answer["receipt"]["success"], &answer["receipt"]["amount"]), (&json!(true), &json!("67")), "{answer}");
    assert_eq!(h.chain.balance(pay_to()).await, before + 67);
    let tx: alloy::primitives::TxHash = answer["receipt"]["transaction"].as_str().unwrap().parse().unwrap();
    let receipt = h.chain.chain.receipt(tx).await.unwrap().expect("mined");
    assert_eq!(receipt.from.to_checksum(None), settler, "the facilitator's key settled it");
    let row = h.ledger().await.into_iter().find(|r| r.rail == "upto").expect("a ledger row");
    assert_eq!((row.state, row.amount.as_str()), (PaymentState::Settled, "67"));
}

/// `wait = "submitted"` through a facilitator: paygate asks `/settle` with thirdweb's `waitUntil: "submitted"`,
/// `paygate facilitator` answers once the node took the transfer, and the call is answered before its block
/// (anvil mining every four seconds); the ledger row is `pending` until the reconciler finds it mined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paygate_answers_when_its_facilitator_says_submitted() {
    let chain = Devchain::start_with(31337, &["--block-time", "4"]).await;
    let base = facilitator(&chain).await;
    let extra = format!(
        r#"
        [[accept]]
        name = "usdc-fast"
        network = "local"
        asset = "USDC"
        pay_to = "{}"
        settlement = "facilitator"
        facilitator_url = "{base}"
        wait = "submitted"

        [[routes]]
        method = "GET"
        path = "/v1/transcribe"
        price = "$0.01"
        accept = ["usdc-fast"]
        "#,
        pay_to()
    );
    let options = Options { facilitator_url: Some(base), extra_toml: extra, ..Default::default() };
    let h = Harness::around(chain, Upstream::start().await, options).await;
    let before = h.chain.balance(pay_to()).await;

    let (name, value) = node::sign("x402", &h.url("/v1/transcribe"), &[]).await;
    let answer = h.send("GET", "/v1/transcribe", Some((&name, &value)), None).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["paygate-settlement"], "submitted");
    let settle = decode_x402(answer.headers()["payment-response"].to_str().unwrap());
    let tx = settle["transaction"].as_str().unwrap().to_owned();
    let row = h.ledger().await.into_iter().next().unwrap();
    assert_eq!((row.state, row.tx_hash.as_deref()), (PaymentState::Pending, Some(tx.as_str())));
    assert_eq!(h.chain.balance(pay_to()).await, before, "answered before its block");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while h.ledger().await[0].state != PaymentState::Settled {
        assert!(std::time::Instant::now() < deadline, "{:?}", h.ledger().await);
        h.gateway.reconciler(std::time::Duration::from_secs(60)).run_once().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert_eq!(h.chain.balance(pay_to()).await - before, 10_000);
    let receipt = h.chain.chain.receipt(tx.parse().unwrap()).await.unwrap().expect("mined");
    assert_eq!(receipt.from, paygate_chain::devtoken::dev_account(2).address(), "the facilitator's key sent it");
}
