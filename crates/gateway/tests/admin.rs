//! The admin listener against a gateway that was paid: metrics, health, and the bearer-token admin API agree
//! with the ledger and the chain.

mod common;

use std::time::Duration;

use common::Harness;
use paygate_testkit::node;
use serde_json::Value;

const TOKEN: &str = "admin-token-for-the-tests";

async fn admin(h: &Harness) -> String {
    h.serve_admin(TOKEN).await
}

async fn get(url: &str, token: Option<&str>) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.headers().clone(), response.text().await.unwrap())
}

async fn api(base: &str, path: &str) -> Value {
    let (status, _, body) = get(&format!("{base}{path}"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_the_admin_api_agree_with_the_ledger() {
    let mut h = Harness::start().await;
    let base = admin(&h).await;
    let paid = node::client(&["x402", "pay", &h.url("/v1/quote")]).await;
    assert_eq!(paid["status"], 200, "{paid}");
    let unpaid = reqwest::get(h.url("/v1/quote")).await.unwrap();
    assert_eq!(unpaid.status(), 402);

    let (status, headers, metrics) = get(&format!("{base}/metrics"), None).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert!(metrics.contains("paygate_requests_total{outcome=\"paid\"} 1"), "{metrics}");
    // The node client asks once unpaid, and so did this test.
    assert!(metrics.contains("paygate_requests_total{outcome=\"challenged\"} 2"), "{metrics}");
    assert!(
        metrics.contains(
            "paygate_revenue_atomic_total{asset=\"USDC\",network=\"eip155:31337\",route=\"GET /v1/quote\"} 10000"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("paygate_phase_seconds_count{phase=\"settle\"} 1"), "{metrics}");

    // The admin API: its token only.
    for token in [None, Some("admin-token-for-the-test"), Some("wrong")] {
        let (status, headers, body) = get(&format!("{base}/api/payments"), token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(headers["www-authenticate"], "Bearer realm=\"paygate-admin\"");
        assert_eq!(headers["content-type"], "application/problem+json");
        let problem: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["type"], "urn:paygate:problem:admin-unauthorized");
    }
    let payments = api(&base, "/api/payments?state=settled").await;
    let rows = payments["payments"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let ledger = h.ledger().await;
    assert_eq!(rows[0]["id"], ledger[0].id);
    assert_eq!(
        (rows[0]["amount"].as_str(), rows[0]["tx_hash"].as_str()),
        (Some("10000"), ledger[0].tx_hash.as_deref())
    );
    assert_eq!(payments["next_offset"], Value::Null);
    assert_eq!(api(&base, "/api/payments?state=pending").await["payments"].as_array().unwrap().len(), 0);
    for bad in
        ["/api/payments?state=lost", "/api/payments?limit=0", "/api/payments?limit=501", "/api/revenue?bucket=week"]
    {
        let (status, _, body) = get(&format!("{base}{bad}"), Some(TOKEN)).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["type"], "urn:paygate:problem:admin-invalid-query");
    }

    let revenue = api(&base, "/api/revenue?bucket=hour").await;
    let totals = revenue["totals"].as_array().unwrap();
    assert_eq!(totals.len(), 1, "{revenue}");
    assert_eq!(
        (
            totals[0]["asset"].as_str(),
            totals[0]["amount"].as_str(),
            totals[0]["formatted"].as_str(),
            totals[0]["payments"].as_u64()
        ),
        (Some("USDC"), Some("10000"), Some("0.01"), Some(1))
    );
    let series = revenue["series"].as_array().unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0]["start_ms"].as_i64().unwrap() % 3_600_000, 0);
    assert_eq!(revenue["payments_per_rail"]["eip3009"], 1);
    // Nothing since a moment in the future.
    let later = paygate_store::now_ms() + 60_000;
    assert_eq!(api(&base, &format!("/api/revenue?since_ms={later}")).await["totals"], serde_json::json!([]));

    let routes = api(&base, "/api/routes").await;
    let quote = routes["routes"].as_array().unwrap().iter().find(|r| r["route"] == "GET /v1/quote").unwrap().clone();
    assert_eq!(
        (quote["offers"][0]["amount"].as_str(), quote["offers"][0]["formatted"].as_str()),
        (Some("10000"), Some("0.01"))
    );
    assert!(routes["routes"].as_array().unwrap().iter().any(|r| r["free"] == true));

    // Health: the ledger and the chain answer; then the chain is gone.
    let (status, _, body) = get(&format!("{base}/health"), None).await;
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((health["status"].as_str(), health["chains"]["local"]["ok"].as_bool()), (Some("ok"), Some(true)));
    h.chain.kill();
    let (status, _, body) = get(&format!("{base}/health"), None).await;
    assert_eq!(status, 503, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((health["status"].as_str(), health["chains"]["local"]["ok"].as_bool()), (Some("degraded"), Some(false)));
    assert_eq!(health["store"]["ok"], true);
}

/// The dashboard in headless Chromium: the page loads with no external asset, draws a bar per day of revenue,
/// and shows the totals, rails, recent and pending payments the admin API gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_what_the_admin_api_says() {
    let h = Harness::start_with(common::Options { backend: common::Backend::Devnet, ..Default::default() }).await;
    let base = admin(&h).await;
    for protocol in ["x402", "mppx"] {
        let paid = node::client(&[protocol, "pay", &h.url("/v1/quote")]).await;
        assert_eq!(paid["status"], 200, "{paid}");
    }
    let (status, headers, _) = get(&format!("{base}/dashboard"), None).await;
    assert_eq!(status, 200);
    assert!(headers["content-security-policy"].to_str().unwrap().starts_with("default-src 'self'"));

    let url = format!("{base}/dashboard#token={TOKEN}");
    let dom = tokio::task::spawn_blocking(move || paygate_testkit::browser::dump_dom(&url, Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(dom.contains(r#"data-loaded="true""#), "the page did not load its data:\n{dom}");

    let revenue = api(&base, "/api/revenue?bucket=day").await;
    let total = &revenue["totals"][0];
    let id = format!("total-{}-{}", total["asset"].as_str().unwrap(), total["network"].as_str().unwrap());
    let shown = format!(r#"id="{id}" data-amount="{}""#, total["amount"].as_str().unwrap());
    assert!(dom.contains(&shown), "{shown} not in:\n{dom}");
    assert!(dom.contains(&format!("{} USDC</span>", total["formatted"].as_str().unwrap())), "{dom}");
    assert_eq!(total["formatted"], "0.02");
    // One bar per day with revenue, carrying the API's exact amount.
    let series = revenue["series"].as_array().unwrap();
    assert_eq!(dom.matches(r#"<rect class="bar""#).count(), series.len(), "{dom}");
    for point in series {
        assert!(dom.contains(&format!(r#"data-amount="{}""#, point["amount"].as_str().unwrap())), "{dom}");
    }
    assert!(dom.contains(r#"<tr data-rail="eip3009"><td>eip3009</td><td class="num">2</td></tr>"#), "{dom}");
    for row in api(&base, "/api/payments?limit=20").await["payments"].as_array().unwrap() {
        assert!(dom.contains(&format!(r#"<tr data-id="{}">"#, row["id"])), "payment {} not listed:\n{dom}", row["id"]);
    }
    assert!(dom.contains(r#"<span id="pending-count" class="muted">(0)</span>"#), "{dom}");
}
