//! API-key customers beside paying agents: a valid key is served and metered into the ledger at the price the
//! request has on the route; an unknown or revoked key is 401 and never reaches the upstream; agents still pay.

mod common;

use common::{Backend, Harness, Options};
use paygate_gateway::api_keys;
use paygate_store::{PaymentQuery, PaymentState};
use serde_json::Value;

const ROUTE: &str = r#"
[[routes]]
method = "GET"
path = "/v1/transcribe"
price = "$0.006"
per = "minute"
query = "duration_seconds"
api_keys = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_served_and_metered_and_bad_keys_are_401() {
    let h =
        Harness::start_with(Options { backend: Backend::Devnet, extra_toml: ROUTE.into(), ..Default::default() }).await;
    let store = h.gateway.store();
    let key = api_keys::generate();
    store.create_api_key("acme", &api_keys::hash(&key), api_keys::shown(&key)).await.unwrap().expect("created");
    assert!(store.create_api_key("acme", &api_keys::hash(&api_keys::generate()), "x").await.unwrap().is_none());
    let url = h.url("/v1/transcribe?duration_seconds=90");

    // A customer's call: served, and metered at this request's price (two started minutes).
    let served = h.http.get(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(h.upstream.hits(), 1);
    let metered =
        store.payments(&PaymentQuery { state: Some(PaymentState::Metered), ..Default::default() }).await.unwrap();
    assert_eq!(metered.len(), 1);
    let row = &metered[0];
    assert_eq!((row.payer.as_str(), row.amount.as_str(), row.protocol.as_str()), ("key:acme", "12000", "api-key"));
    assert_eq!(row.route, "GET /v1/transcribe");
    assert_eq!(row.tx_hash, None);

    // The admin API counts the customer's usage apart from revenue.
    let admin = h.serve_admin("admin-token-for-the-tests").await;
    let revenue: Value = h
        .http
        .get(format!("{admin}/api/revenue"))
        .bearer_auth("admin-token-for-the-tests")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(revenue["totals"], serde_json::json!([]), "{revenue}");
    let usage = &revenue["usage"][0];
    assert_eq!(
        (usage["customer"].as_str(), usage["amount"].as_str(), usage["formatted"].as_str(), usage["payments"].as_u64()),
        (Some("key:acme"), Some("12000"), Some("0.012"), Some(1)),
        "{revenue}"
    );

    // Agents without a key still get the 402 and pay as before.
    assert_eq!(h.http.get(&url).send().await.unwrap().status(), 402);

    // Unknown and revoked keys: 401, the upstream never sees them, nothing is metered.
    assert!(store.revoke_api_key("acme").await.unwrap());
    assert!(!store.revoke_api_key("acme").await.unwrap(), "revoked once");
    for (bad, reason) in [(api_keys::generate(), "unknown_api_key"), (key.clone(), "revoked_api_key")] {
        let refused = h.http.get(&url).bearer_auth(&bad).send().await.unwrap();
        assert_eq!(refused.status(), 401, "{reason}");
        assert_eq!(refused.headers()["www-authenticate"], "Bearer");
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(
            (problem["type"].as_str(), problem["reason"].as_str()),
            (Some("urn:paygate:problem:invalid-api-key"), Some(reason))
        );
    }
    assert_eq!(h.upstream.hits(), 1);
    assert_eq!(
        store.payments(&PaymentQuery { state: Some(PaymentState::Metered), ..Default::default() }).await.unwrap().len(),
        1
    );

    // Only the hash is kept: the key appears nowhere in the database file.
    let keys = store.api_keys().await.unwrap();
    assert_eq!((keys[0].name.as_str(), keys[0].prefix.as_str()), ("acme", api_keys::shown(&key)));
    assert!(keys[0].revoked_at_ms.is_some());
    let mut database = Vec::new();
    for entry in std::fs::read_dir(h.data_dir()).unwrap() {
        database.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
    }
    let secret_part = &key[api_keys::SHOWN_CHARS..];
    assert!(!database.windows(secret_part.len()).any(|w| w == secret_part.as_bytes()), "the key is stored in clear");
}
