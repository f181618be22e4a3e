//! Pay first, prove with the transaction hash: a payer sends an ordinary ERC-20 transfer and names it in
//! `X-402-Payment-Proof` (JSON), `x-402-payment` (base64 JSON) or `X-Payment-Hash` (the bare hash). The 402
//! advertises the dialects' headers; a transfer pays once, only if it moves enough of the right token to the
//! seller recently enough; the ledger records it like any other payment.

mod common;

use alloy::primitives::{Address, TxHash, U256};
use alloy::sol_types::SolCall;
use common::{Harness, Options, kind, pay_to, payer, problem};
use paygate_chain::abi::Eip3009Token;
use paygate_chain::devtoken::dev_account;
use paygate_chain::{TxSender, wait_for_receipt};
use paygate_store::PaymentState;
use std::time::Duration;

/// The test token also taken as a plain ERC-20, paid by proving a transfer.
fn options() -> Options {
    Options {
        extra_toml: r#"
            [[accept]]
            name = "usdc-local-txhash"
            rail = "txhash"
            network = "local"
            asset = "USDC"
            pay_to = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"
            confirmations = 1
            proof_window_secs = 120
        "#
        .into(),
        ..Default::default()
    }
}

/// Sends `amount` of the token from dev account `from` to `to` and returns the mined transaction's hash.
async fn transfer(h: &Harness, from: u32, to: Address, amount: u64) -> TxHash {
    let sender = TxSender::new(h.chain.chain.clone(), dev_account(from));
    let call = Eip3009Token::transferCall { to, value: U256::from(amount) };
    let hash = sender.send(h.chain.token, call.abi_encode().into()).await.expect("transfer sent");
    let receipt =
        wait_for_receipt(h.chain.chain.as_ref(), hash, Duration::from_secs(10), Duration::from_millis(50)).await;
    assert!(receipt.expect("receipt").expect("mined").status());
    hash
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proven_transfer_pays_once_in_every_dialect() {
    let h = Harness::start_with(options()).await;
    let response = h.send("GET", "/v1/quote", None, None).await;
    assert_eq!(response.status(), 402);
    let headers = response.headers();
    assert_eq!(headers["x-402-amount"], "0.01");
    assert_eq!(headers["x-402-currency"], "USDC");
    assert_eq!(headers["x-402-network"], "eip155:31337");
    assert_eq!(headers["x-402-token"].to_str().unwrap(), h.chain.token.to_checksum(None));
    assert_eq!(headers["x-402-receiver"].to_str().unwrap(), pay_to().to_checksum(None));
    assert_eq!(headers["x-payment-payto"].to_str().unwrap(), pay_to().to_checksum(None));
    assert!(headers.contains_key("x-402-expires"));

    let first = transfer(&h, 1, pay_to(), 10_000).await;
    let json =
        format!(r#"{{"txHash":"{first}","network":"eip155:31337","token":"{}","amount":"10000"}}"#, h.chain.token);
    let paid = h.send("GET", "/v1/quote", Some(("X-402-Payment-Proof", &json)), None).await;
    assert_eq!(paid.status(), 200);
    // The same transfer again, in another dialect: already used.
    let (status, p) =
        problem(h.send("GET", "/v1/quote", Some(("X-Payment-Hash", &first.to_string())), None).await).await;
    assert_eq!((status, kind(&p).0), (403, "urn:paygate:problem:payment-replayed"));

    let second = transfer(&h, 1, pay_to(), 20_000).await;
    let b64 = paygate_proto::b64::std_encode(format!(r#"{{"txHash":"{second}"}}"#).as_bytes());
    assert_eq!(h.send("POST", "/v1/echo", Some(("x-402-payment", &b64)), Some("{}")).await.status(), 200);
    let third = transfer(&h, 2, pay_to(), 10_000).await;
    assert_eq!(h.send("GET", "/v1/quote", Some(("X-Payment-Hash", &third.to_string())), None).await.status(), 200);

    assert_eq!(h.upstream.hits(), 3);
    let ledger = h.ledger().await;
    assert_eq!(ledger.len(), 3);
    assert!(ledger.iter().all(|p| p.state == PaymentState::Settled && p.rail == "txhash"));
    assert_eq!(ledger[2].tx_hash.as_deref(), Some(first.to_string().as_str()));
    assert_eq!(ledger[2].payer, payer().to_checksum(None));
    assert_eq!(ledger[0].protocol, "x-payment-hash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_proofs_are_refused_without_side_effects() {
    let mut h = Harness::start_with(options()).await;
    let short = transfer(&h, 1, pay_to(), 9_999).await;
    let elsewhere = transfer(&h, 1, dev_account(7).address(), 10_000).await;
    let old = transfer(&h, 1, pay_to(), 10_000).await;
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        (
            "less than the price",
            short.to_string(),
            402,
            "https://paymentauth.org/problems/payment-insufficient",
            "amount_mismatch",
        ),
        (
            "paid to someone else",
            elsewhere.to_string(),
            402,
            "https://paymentauth.org/problems/verification-failed",
            "no_matching_transfer",
        ),
        (
            "unknown transaction",
            format!("0x{}", "12".repeat(32)),
            402,
            "https://paymentauth.org/problems/verification-failed",
            "transaction_not_found",
        ),
        (
            "not a hash",
            "0x1234".into(),
            400,
            "https://paymentauth.org/problems/malformed-credential",
            "invalid_payload",
        ),
    ];
    for (name, hash, status, type_uri, reason) in cases {
        let response = h.send("GET", "/v1/quote", Some(("X-Payment-Hash", &hash)), None).await;
        let (got_status, p) = problem(response).await;
        assert_eq!((got_status, kind(&p)), (status, (type_uri, reason)), "{name}");
    }
    let other_network = format!(r#"{{"txHash":"{old}","network":"eip155:8453"}}"#);
    let (status, p) =
        problem(h.send("GET", "/v1/quote", Some(("X-402-Payment-Proof", &other_network)), None).await).await;
    assert_eq!((status, kind(&p).1), (402, "network_mismatch"));
    // Past the proof window, a transfer cannot pay, whoever names it.
    h.clock.advance(600);
    let (status, p) = problem(h.send("GET", "/v1/quote", Some(("X-Payment-Hash", &old.to_string())), None).await).await;
    assert_eq!((status, kind(&p)), (402, ("https://paymentauth.org/problems/payment-expired", "transfer_too_old")));
    h.clock.advance(-600);
    h.chain.kill();
    let (status, p) = problem(h.send("GET", "/v1/quote", Some(("X-Payment-Hash", &old.to_string())), None).await).await;
    assert_eq!((status, kind(&p).0), (502, "urn:paygate:problem:chain-unavailable"));
    assert_eq!(h.upstream.hits(), 0);
    assert!(h.ledger().await.is_empty());
}

/// The pay-first dialect as its own documentation writes it: the token named by its symbol, the amount in units,
/// the hash with or without `0x`. A symbol or network that does not resolve to the offer's is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_may_name_the_token_by_its_symbol() {
    let h = Harness::start_with(options()).await;
    let first = transfer(&h, 1, pay_to(), 10_000).await;
    let documented = format!(r#"{{"txHash":"{first}","network":"eip155:31337","token":"USDC","amount":"0.01"}}"#);
    let paid = h.send("GET", "/v1/quote", Some(("X-402-Payment-Proof", &documented)), None).await;
    assert_eq!(paid.status(), 200);

    let second = transfer(&h, 1, pay_to(), 10_000).await;
    let bare = second.to_string().trim_start_matches("0x").to_owned();
    let lower = format!(r#"{{"txHash":"{bare}","network":"31337","token":"usdc"}}"#);
    let b64 = paygate_proto::b64::std_encode(lower.as_bytes());
    assert_eq!(h.send("GET", "/v1/quote", Some(("x-402-payment", &b64)), None).await.status(), 200);

    let third = transfer(&h, 1, pay_to(), 10_000).await;
    let other_token = format!(r#"{{"txHash":"{third}","network":"eip155:31337","token":"USDT"}}"#);
    let (status, p) =
        problem(h.send("GET", "/v1/quote", Some(("X-402-Payment-Proof", &other_token)), None).await).await;
    assert_eq!((status, kind(&p).1), (402, "asset_mismatch"));
    let other_network = format!(r#"{{"txHash":"{third}","network":"base","token":"USDC"}}"#);
    let (status, p) =
        problem(h.send("GET", "/v1/quote", Some(("X-402-Payment-Proof", &other_network)), None).await).await;
    assert_eq!((status, kind(&p).1), (402, "network_mismatch"));
    assert_eq!(h.upstream.hits(), 2);
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 3);
}

/// The MNNR x402 documentation's example client (Python, web3.py), run as written against the anvil chain: it
/// reads the price from the `X-402-*` headers, transfers, and proves the transfer naming the token `"USDC"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documentation_example_client_pays_end_to_end() {
    let h = Harness::start_with(options()).await;
    let report =
        paygate_testkit::payfirst::mnnr_client(&h.url("/v1/quote"), &h.chain.rpc_url, &payer().to_checksum(None)).await;
    assert_eq!(report["status"], 200, "{report}");
    assert_eq!(report["body"], r#"{"symbol":"PAY","price":"4.02"}"#);
    let proof: serde_json::Value = serde_json::from_str(report["proof"].as_str().unwrap()).unwrap();
    assert_eq!((proof["token"].as_str(), proof["amount"].as_str()), (Some("USDC"), Some("0.01")));
    let ledger = h.ledger().await;
    assert_eq!((ledger.len(), ledger[0].state, ledger[0].rail.as_str()), (1, PaymentState::Settled, "txhash"));
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1);
}
