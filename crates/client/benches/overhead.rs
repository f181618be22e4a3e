//! The client's own cost per paid request, network and server excluded: read the 402's offers, choose one,
//! sign the credential. Run with `cargo bench -p paygate-client`; prints the mean per protocol.

use std::time::Instant;

use paygate_client::{AssetBook, CheapestOffer, OfferChooser, Protocol, Wallet, credential, parse_offers};
use paygate_proto::{mpp, x402};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::json;

const USDC_BASE: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

/// A 402 as our gateway writes it for a one-cent route on Base: the x402 v2 header and one MPP challenge.
fn payment_required() -> HeaderMap {
    let required = x402::PaymentRequired {
        x402_version: 2,
        error: None,
        resource: x402::ResourceInfo {
            url: "https://api.example.com/v1/quote".into(),
            description: None,
            mime_type: None,
        },
        accepts: vec![x402::PaymentRequirements {
            scheme: "exact".into(),
            network: "eip155:8453".into(),
            amount: "10000".into(),
            asset: USDC_BASE.into(),
            pay_to: PAY_TO.into(),
            max_timeout_seconds: 60,
            extra: json!({"name": "USD Coin", "version": "2"}).as_object().cloned(),
        }],
        extensions: None,
    };
    let challenge = mpp::Challenge {
        id: "x7Tg2pLqR9mKvNwY3hBcZa".into(),
        realm: "api.example.com".into(),
        method: "evm".into(),
        intent: "charge".into(),
        request: json!({"amount": "10000", "currency": USDC_BASE, "recipient": PAY_TO,
            "methodDetails": {"chainId": 8453, "credentialTypes": ["authorization"], "decimals": 6}}),
        description: None,
        digest: None,
        expires: Some("2030-01-01T00:00:00Z".into()),
        header: None,
        opaque: None,
    };
    let mut headers = HeaderMap::new();
    headers.insert("payment-required", HeaderValue::from_str(&x402::encode_header(&required)).expect("ascii"));
    headers
        .insert("www-authenticate", HeaderValue::from_str(&challenge.to_header().expect("challenge")).expect("ascii"));
    headers
}

fn main() {
    let headers = payment_required();
    let assets = AssetBook::builtin();
    let wallet = Wallet::random();
    const N: u32 = 2_000;
    for protocol in [Protocol::X402, Protocol::Mpp] {
        let chooser = CheapestOffer::only(protocol);
        let run = || {
            let offers = parse_offers(&headers, b"", &assets).expect("offers");
            let views: Vec<_> = offers.iter().filter(|o| o.is_payable()).collect();
            let chosen = chooser.choose(&views).expect("a payable offer");
            credential(&wallet, views[chosen]).expect("signed")
        };
        for _ in 0..100 {
            std::hint::black_box(run());
        }
        let start = Instant::now();
        for _ in 0..N {
            std::hint::black_box(run());
        }
        let mean = start.elapsed() / N;
        println!(
            "{protocol}: parse 402 + choose + sign = {:.1} µs per paid request (mean of {N})",
            mean.as_secs_f64() * 1e6
        );
    }
}
