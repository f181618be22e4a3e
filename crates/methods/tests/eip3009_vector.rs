//! The published x402 EIP-3009 example (`crates/proto/tests/vectors/x402/examples.json`, from the x402 spec)
//! through the rail: its EIP-712 digest, its signer, the negative controls under other domains, and
//! `Eip3009Method::verify`'s local checks with the clock pinned inside (and outside) its one-minute window.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use paygate_core::clock::FixedClock;
use paygate_core::method::{Asset, Eip712Domain, PaymentMethod, PaymentOption, Proof};
use paygate_core::money::AtomicAmount;
use paygate_core::network::Network;
use paygate_core::reject::RejectKind;
use paygate_methods::eip3009::{Eip3009Method, Settlement, SignedAuthorization, domain};
use paygate_methods::facilitator::FacilitatorClient;
use serde_json::{Value, json};

fn vector() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/tests/vectors/x402/examples.json");
    let text = std::fs::read_to_string(path).expect("the copied x402 vectors");
    serde_json::from_str::<Value>(&text).expect("JSON")["eip3009"].clone()
}

fn signed(v: &Value) -> SignedAuthorization {
    SignedAuthorization::from_x402(&json!({"signature": v["signature"], "authorization": v["authorization"]})).unwrap()
}

fn vector_domain(d: &Value) -> alloy::sol_types::Eip712Domain {
    domain(
        d["name"].as_str().unwrap(),
        d["version"].as_str().unwrap(),
        d["chainId"].as_u64().unwrap(),
        d["verifyingContract"].as_str().unwrap().parse().unwrap(),
    )
}

#[test]
fn the_published_signature_recovers_to_its_signer_and_only_under_its_domain() {
    let v = vector();
    let auth = signed(&v);
    let d = vector_domain(&v["domain"]);
    let digest: B256 = v["hashes"]["digest"].as_str().unwrap().parse().unwrap();
    assert_eq!(auth.signing_hash(&d), digest);
    let expected: Address = v["expectedSigner"].as_str().unwrap().parse().unwrap();
    assert_eq!(auth.recover_signer(&d), Some(expected));
    for control in v["negativeControls"].as_array().unwrap() {
        let recovered = auth.recover_signer(&vector_domain(&control["domain"]));
        let listed: Address = control["recovers"].as_str().unwrap().parse().unwrap();
        assert_eq!(recovered, Some(listed));
        assert_ne!(recovered, Some(expected), "another domain must not verify");
    }
}

/// A method for the vector's token and recipient, whose remote checks go to a facilitator that is not there:
/// reaching it proves every local check passed.
fn method(now: u64, name: &str) -> Eip3009Method {
    let v = vector();
    let option = PaymentOption {
        name: "usdc-base-sepolia".into(),
        network: Network::Evm(84532),
        asset: Asset {
            address: v["domain"]["verifyingContract"].as_str().unwrap().into(),
            symbol: "USDC".into(),
            decimals: 6,
            usd: true,
            eip712: Some(Eip712Domain { name: name.into(), version: "2".into() }),
        },
        pay_to: v["authorization"]["to"].as_str().unwrap().into(),
        max_timeout_secs: 60,
    };
    let nowhere = FacilitatorClient::new("http://127.0.0.1:9", Duration::from_millis(500)).unwrap();
    Eip3009Method::new(option, None, Settlement::Facilitator(nowhere), Arc::new(FixedClock(now))).unwrap()
}

#[tokio::test]
async fn local_checks_accept_the_vector_inside_its_window_only() {
    let v = vector();
    let payload = json!({"signature": v["signature"], "authorization": v["authorization"]});
    let proof = Proof::X402 { version: 2, payload: &payload };
    let [start, end] = [v["validWindowNow"][0].as_u64().unwrap(), v["validWindowNow"][1].as_u64().unwrap()];

    // Inside the window, with the 6 s margin the reference facilitators keep: local checks pass.
    let inside = method(start, "USDC").verify(proof, AtomicAmount(10_000)).await.unwrap_err();
    assert_eq!(inside.kind, RejectKind::FacilitatorUnavailable, "{inside:?}");
    // Too close to validBefore, or after it.
    let late = method(end, "USDC").verify(proof, AtomicAmount(10_000)).await.unwrap_err();
    assert_eq!((late.kind, late.reason), (RejectKind::PaymentExpired, "authorization_expired"));
    // The token's real EIP-712 name on Base Sepolia is "USDC": under "USD Coin" the signature is not the payer's.
    let wrong_domain = method(start, "USD Coin").verify(proof, AtomicAmount(10_000)).await.unwrap_err();
    assert_eq!((wrong_domain.kind, wrong_domain.reason), (RejectKind::VerificationFailed, "invalid_signature"));
    // Another price.
    let cheap = method(start, "USDC").verify(proof, AtomicAmount(20_000)).await.unwrap_err();
    assert_eq!((cheap.kind, cheap.reason), (RejectKind::PaymentInsufficient, "amount_mismatch"));
}
