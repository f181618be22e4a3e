//! Coinbase CDP API tokens, checked against the official `@coinbase/cdp-sdk`: they verify with the key's public
//! half, and their header and claims are the SDK's own for the same key and request, for both key types; and the
//! facilitator client sends a fresh one, for the request it makes, with every call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use paygate_methods::cdp::CdpKey;
use paygate_methods::facilitator::FacilitatorClient;
use paygate_testkit::node;
use serde_json::Value;

const KEY_ID: &str = "organizations/7d1f4a3e-0000-4000-8000-000000000001/apiKeys/0c5e2b1a-0000-4000-8000-000000000002";

/// A P-256 key as PKCS#8 PEM, the form the SDK reads.
fn ec_secret() -> String {
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    let body = STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"))
}

/// An Ed25519 key as CDP hands them out: base64 of the seed and the public key.
fn ed25519_secret() -> String {
    let mut seed = [0u8; 32];
    SystemRandom::new().fill(&mut seed).unwrap();
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    STANDARD.encode([&seed[..], pair.public_key().as_ref()].concat())
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Checks `token` of `secret` for `method host path` against the SDK.
async fn matches_the_sdk(secret: &str, token: &str, method: &str, host: &str, path: &str) {
    let answer = node::cdp_token_check(&[KEY_ID, secret, token, method, host, path]).await;
    assert_eq!(answer["verified"], true, "{answer}");
    let (ours, official) = (&answer["ours"], &answer["official"]);
    for field in ["alg", "kid", "typ"] {
        assert_eq!(ours["header"][field], official["header"][field], "header {field}: {answer}");
    }
    for jwt in [ours, official] {
        assert_eq!(jwt["header"]["nonce"].as_str().map(str::len), Some(32), "{answer}");
    }
    for claim in ["sub", "iss", "uris"] {
        assert_eq!(ours["payload"][claim], official["payload"][claim], "claim {claim}: {answer}");
    }
    let times = |jwt: &Value| {
        let claim = |name: &str| jwt["payload"][name].as_u64().unwrap();
        (claim("iat"), claim("nbf"), claim("exp"))
    };
    let ((iat, nbf, exp), (official_iat, _, official_exp)) = (times(ours), times(official));
    assert_eq!((iat, exp - nbf), (nbf, official_exp - official_iat), "{answer}");
    assert!(official_iat.abs_diff(iat) < 30, "{answer}");
}

#[tokio::test]
async fn tokens_are_the_sdks_for_both_key_types() {
    for (secret, alg) in [(ec_secret(), "ES256"), (ed25519_secret(), "EdDSA")] {
        let key = CdpKey::new(KEY_ID, &secret).unwrap();
        let token = key.token("POST", "api.cdp.coinbase.com", "/platform/v2/x402/verify", now()).unwrap();
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], alg);
        matches_the_sdk(&secret, &token, "POST", "api.cdp.coinbase.com", "/platform/v2/x402/verify").await;
        // A fresh nonce every time.
        assert_ne!(key.token("POST", "h", "/p", now()).unwrap(), key.token("POST", "h", "/p", now()).unwrap());
    }
    assert!(CdpKey::new(KEY_ID, "not a key").is_err());
    assert!(CdpKey::new(KEY_ID, &STANDARD.encode([7u8; 32])).is_err(), "32 bytes is no CDP Ed25519 secret");
}

#[tokio::test]
async fn the_facilitator_client_signs_each_request_it_makes() {
    let seen: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let recorded = seen.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let recorded = recorded.clone();
        async move {
            let auth = request.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            recorded.lock().unwrap().push((request.method().to_string(), request.uri().path().to_owned(), auth));
            axum::Json(serde_json::json!({ "kinds": [], "isValid": false, "invalidReason": "test" }))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let secret = ed25519_secret();
    let client = FacilitatorClient::new(&format!("http://{host}/platform/v2/x402/"), Duration::from_secs(5))
        .unwrap()
        .with_cdp_key(Arc::new(CdpKey::new(KEY_ID, &secret).unwrap()));
    client.supported().await.unwrap();
    let request = paygate_proto::x402::FacilitatorRequest {
        x402_version: 2,
        payment_payload: Value::Null,
        payment_requirements: Value::Null,
        wait_until: None,
    };
    client.verify(&request).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (method, path, auth) in &seen {
        let token = auth.strip_prefix("Bearer ").unwrap_or_else(|| panic!("no bearer token: {auth:?}"));
        matches_the_sdk(&secret, token, method, &host, path).await;
    }
    assert_eq!((seen[0].1.as_str(), seen[1].1.as_str()), ("/platform/v2/x402/supported", "/platform/v2/x402/verify"));
    assert_ne!(seen[0].2, seen[1].2);
}
