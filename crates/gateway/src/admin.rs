//! The admin listener: what an operator watches and asks, on its own address, never on the public one.
//!
//! * `GET /metrics`: the Prometheus exposition of [`Metrics`](crate::metrics::Metrics), for scrapers;
//! * `GET /health`: whether the ledger and every chain answer (200, or 503 naming what does not);
//! * `GET /api/payments`, `/api/revenue`, `/api/routes`, `/api/channels`: the ledger, revenue over time, the
//!   price list and the payment channels (deposit, charged, claimed and unclaimed value), as JSON, behind `Authorization: Bearer <admin token>` (compared in constant time);
//! * `GET /dashboard`: one page (`assets/dashboard.html`, embedded in the binary, no external assets) that
//!   draws the admin API: revenue over time, payments per rail, recent payments, pending settlements. It holds
//!   no data itself; the browser asks the API with the token the operator gives it.
//!
//! Revenue is summed from ledger rows in integer atomic units per asset and returned as decimal strings; nothing
//! here rounds money.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use paygate_chain::Chain;
use paygate_core::error::Causes;
use paygate_core::money::{AtomicAmount, format_atomic};
use paygate_proto::problem::Problem;
use paygate_store::{PaymentQuery, PaymentRecord, PaymentState, StoreError};

use crate::engine::Gateway;

/// The most payments one page returns.
pub(crate) const MAX_PAGE: u32 = 500;

/// How long `/health` waits for each dependency.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// What the admin endpoints read.
#[derive(Debug)]
pub struct Admin {
    pub gateway: Arc<Gateway>,
    /// Chains by network name, each asked for its block number by `/health`.
    pub chains: BTreeMap<String, Arc<dyn Chain>>,
    /// The bearer token of `/api/*`.
    pub token: String,
}

/// The admin endpoints as an axum router.
pub fn router(admin: Arc<Admin>) -> axum::Router {
    let api = axum::Router::new()
        .route("/payments", get(payments))
        .route("/revenue", get(revenue))
        .route("/routes", get(routes))
        .route("/channels", get(channels))
        .layer(middleware::from_fn_with_state(admin.clone(), require_token));
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/dashboard", get(dashboard))
        .nest("/api", api)
        .with_state(admin)
}

fn problem(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Response {
    let problem = Problem::new(format!("urn:paygate:problem:{kind}"), title, status.as_u16()).with_detail(detail);
    let mut response = (status, problem.to_json()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}

fn bad_query(detail: impl Into<String>) -> Response {
    problem(StatusCode::BAD_REQUEST, "admin-invalid-query", "Invalid Query", detail)
}

fn store_down(e: &StoreError) -> Response {
    tracing::error!(error = %Causes(e), "admin: store unavailable");
    problem(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", "Store Unavailable", "the ledger is unavailable")
}

async fn require_token(State(admin): State<Arc<Admin>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(admin.token.as_bytes())) {
        return next.run(request).await;
    }
    let mut response = problem(
        StatusCode::UNAUTHORIZED,
        "admin-unauthorized",
        "Unauthorized",
        "the admin API needs `Authorization: Bearer <admin token>`",
    );
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"paygate-admin\""));
    response
}

/// The dashboard page.
const DASHBOARD: &str = include_str!("../assets/dashboard.html");

async fn dashboard() -> Response {
    let mut response = axum::response::Html(DASHBOARD).into_response();
    let headers = response.headers_mut();
    // Everything it loads is itself and the admin API: no CDN, no third party sees the operator's figures.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    let mut response = admin.gateway.metrics().encode().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}

async fn health(State(admin): State<Arc<Admin>>) -> Response {
    let probe = PaymentQuery { limit: Some(1), ..Default::default() };
    let store = match tokio::time::timeout(HEALTH_TIMEOUT, admin.gateway.store().payments(&probe)).await {
        Ok(Ok(_)) => json!({ "ok": true }),
        Ok(Err(e)) => json!({ "ok": false, "error": e.to_string() }),
        Err(_) => json!({ "ok": false, "error": "timed out" }),
    };
    let mut healthy = store["ok"] == true;
    let mut chains = serde_json::Map::new();
    for (name, chain) in &admin.chains {
        let answer = match tokio::time::timeout(HEALTH_TIMEOUT, chain.block_number()).await {
            Ok(Ok(block)) => json!({ "ok": true, "block": block }),
            Ok(Err(e)) => json!({ "ok": false, "error": e.to_string() }),
            Err(_) => json!({ "ok": false, "error": "timed out" }),
        };
        healthy &= answer["ok"] == true;
        chains.insert(name.clone(), answer);
    }
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({ "status": if healthy { "ok" } else { "degraded" }, "store": store, "chains": chains });
    (status, Json(body)).into_response()
}

#[derive(Debug, Deserialize)]
struct PaymentsParams {
    state: Option<String>,
    payer: Option<String>,
    route: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

/// `GET /api/payments?state=&payer=&route=&limit=&offset=`: newest first, a page at a time.
async fn payments(State(admin): State<Arc<Admin>>, Query(params): Query<PaymentsParams>) -> Response {
    let state = match params.state.as_deref().map(str::parse::<PaymentState>).transpose() {
        Ok(state) => state,
        Err(_) => {
            let states: Vec<&str> = PaymentState::ALL.iter().map(|s| s.as_str()).collect();
            return bad_query(format!("state is one of {}", states.join(", ")));
        }
    };
    let limit = params.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return bad_query(format!("limit is 1 to {MAX_PAGE}"));
    }
    let offset = params.offset.unwrap_or(0);
    let query = PaymentQuery {
        state,
        payer: params.payer,
        route: params.route,
        limit: Some(limit),
        offset: Some(offset),
        ..Default::default()
    };
    match admin.gateway.store().payments(&query).await {
        Ok(rows) => {
            let next_offset = (rows.len() == limit as usize).then_some(offset + limit);
            Json(json!({ "payments": rows, "next_offset": next_offset })).into_response()
        }
        Err(e) => store_down(&e),
    }
}

#[derive(Debug, Deserialize)]
struct RevenueParams {
    /// `hour` or `day` (default).
    bucket: Option<String>,
    /// Only payments made at or after this time (Unix milliseconds); default 30 days ago.
    since_ms: Option<i64>,
}

/// The amounts and count of some ledger rows, in one asset.
#[derive(Debug, Default)]
struct Sum {
    atomic: u128,
    payments: u64,
}

/// `rows` summed per `key`, exactly.
fn sum_by<K: Ord>(rows: &[PaymentRecord], key: impl Fn(&PaymentRecord) -> K) -> BTreeMap<K, Sum> {
    let mut sums = BTreeMap::new();
    for row in rows {
        let Ok(atomic) = row.amount.parse::<u128>() else {
            tracing::error!(payment = row.id, amount = %row.amount, "admin: unreadable amount in the ledger");
            continue;
        };
        let sum: &mut Sum = sums.entry(key(row)).or_default();
        sum.atomic = sum.atomic.saturating_add(atomic);
        sum.payments += 1;
    }
    sums
}

/// `GET /api/revenue?bucket=day&since_ms=`: settled revenue per period and asset, the totals, and the metered
/// usage of API-key customers (`usage`, per customer and asset, counted apart from revenue).
async fn revenue(State(admin): State<Arc<Admin>>, Query(params): Query<RevenueParams>) -> Response {
    let bucket_ms: i64 = match params.bucket.as_deref().unwrap_or("day") {
        "hour" => 3_600_000,
        "day" => 86_400_000,
        other => return bad_query(format!("bucket {other:?} is not `hour` or `day`")),
    };
    let since = params.since_ms.unwrap_or_else(|| paygate_store::now_ms() - 30 * 86_400_000);
    let (rows, metered) = match tokio::try_join!(
        rows_since(&admin, PaymentState::Settled, since),
        rows_since(&admin, PaymentState::Metered, since)
    ) {
        Ok(found) => found,
        Err(e) => return store_down(&e),
    };
    let asset = |row: &PaymentRecord| (row.network.clone(), row.asset_symbol.clone(), row.decimals);
    // (period start, network, asset, decimals) → sum, ordered by time.
    let series = sum_by(&rows, |row| (row.created_at_ms - row.created_at_ms.rem_euclid(bucket_ms), asset(row)));
    let totals = sum_by(&rows, asset);
    // API-key customers' metered calls, per customer and asset: usage beside revenue, never added to it.
    let usage = sum_by(&metered, |row| (row.payer.clone(), asset(row)));
    let entry = |network: &str, asset: &str, decimals: u8, sum: &Sum| {
        json!({
            "network": network,
            "asset": asset,
            "decimals": decimals,
            "amount": sum.atomic.to_string(),
            "formatted": format_atomic(AtomicAmount(sum.atomic), decimals),
            "payments": sum.payments,
        })
    };
    let series: Vec<Value> = series
        .iter()
        .map(|((start, (network, asset, decimals)), sum)| {
            let mut value = entry(network, asset, *decimals, sum);
            value["start_ms"] = json!(start);
            value
        })
        .collect();
    let totals: Vec<Value> =
        totals.iter().map(|((network, asset, decimals), sum)| entry(network, asset, *decimals, sum)).collect();
    let usage: Vec<Value> = usage
        .iter()
        .map(|((customer, (network, asset, decimals)), sum)| {
            let mut value = entry(network, asset, *decimals, sum);
            value["customer"] = json!(customer);
            value
        })
        .collect();
    let mut per_rail: HashMap<&str, u64> = HashMap::new();
    for row in &rows {
        *per_rail.entry(row.rail.as_str()).or_default() += 1;
    }
    Json(json!({
        "bucket_ms": bucket_ms,
        "since_ms": since,
        "series": series,
        "totals": totals,
        "payments_per_rail": per_rail,
        "usage": usage,
    }))
    .into_response()
}

/// Every row in `state` made at or after `since` (Unix ms), read a page at a time, newest first.
async fn rows_since(admin: &Admin, state: PaymentState, since: i64) -> Result<Vec<PaymentRecord>, StoreError> {
    const PAGE: u32 = 1000;
    let mut rows = Vec::new();
    let mut offset = 0;
    loop {
        let query = PaymentQuery { state: Some(state), limit: Some(PAGE), offset: Some(offset), ..Default::default() };
        let page = admin.gateway.store().payments(&query).await?;
        let full = page.len() == PAGE as usize;
        let before = rows.len();
        rows.extend(page.into_iter().filter(|row| row.created_at_ms >= since));
        // Newest first: a page with nothing recent enough ends the scan.
        if !full || rows.len() == before {
            return Ok(rows);
        }
        offset += PAGE;
    }
}

/// `GET /api/channels?limit=`: the payment channels, most recently active first, each with its deposit and what
/// was charged, claimed on chain and not yet claimed; the unclaimed total per token; and the channel transactions
/// (claims, sweeps, settlements, refunds, closes), most recent first, with their state.
async fn channels(State(admin): State<Arc<Admin>>, Query(params): Query<PaymentsParams>) -> Response {
    let limit = params.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return bad_query(format!("limit is 1 to {MAX_PAGE}"));
    }
    let book: &dyn paygate_core::channel::ChannelBook = admin.gateway.store().as_ref();
    let listed = async {
        Ok::<_, paygate_core::channel::ChannelBookError>((
            book.channels(limit).await?,
            book.channel_transactions(limit).await?,
        ))
    };
    match listed.await {
        Ok((channels, transactions)) => {
            let mut unclaimed: BTreeMap<&str, u128> = BTreeMap::new();
            for c in &channels {
                *unclaimed.entry(c.token.as_str()).or_default() += c.unclaimed();
            }
            let unclaimed: BTreeMap<&str, String> = unclaimed.into_iter().map(|(t, v)| (t, v.to_string())).collect();
            let list: Vec<Value> = channels.iter().map(|c| c.summary()).collect();
            let transactions: Vec<Value> = transactions.iter().map(|t| t.summary()).collect();
            Json(json!({ "channels": list, "unclaimed": unclaimed, "transactions": transactions })).into_response()
        }
        Err(e) => {
            tracing::error!(error = %Causes(&e), "admin: store unavailable");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "Store Unavailable",
                "the ledger is unavailable",
            )
        }
    }
}

/// `GET /api/routes`: every route with what it charges in each option.
async fn routes(State(admin): State<Arc<Admin>>) -> Response {
    let routes: Vec<Value> = admin
        .gateway
        .routes()
        .iter()
        .map(|route| {
            let offers: Vec<Value> = route
                .listed_offers()
                .iter()
                .map(|offer| {
                    let option = offer.method.option();
                    json!({
                        "option": option.name,
                        "rail": offer.method.rail(),
                        "network": option.network.to_string(),
                        "asset": option.asset.symbol,
                        "amount": offer.amount.0.to_string(),
                        "formatted": format_atomic(offer.amount, option.asset.decimals),
                        "pay_to": option.pay_to,
                    })
                })
                .collect();
            json!({ "route": route.name, "free": route.is_free(), "offers": offers })
        })
        .collect();
    Json(json!({ "routes": routes })).into_response()
}
