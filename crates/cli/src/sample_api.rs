//! A small sample API worth paying for, built into the binary so that the demo needs nothing else:
//! `GET /v1/quote` (a stock quote), `POST /v1/echo` (echoes its JSON body), `GET /v1/weather`, and a free
//! `GET /health`.

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The sample API's routes.
pub fn router() -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/v1/quote", get(quote))
        .route("/v1/weather", get(|| async { Json(json!({"city": "Lisbon", "celsius": 21, "sky": "clear"})) }))
        .route("/v1/echo", post(echo))
}

async fn quote() -> Json<Value> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // A price that moves with the clock, in integer cents.
    let cents = 40_000 + (now % 600);
    Json(json!({"symbol": "PAY", "price": format!("{}.{:02}", cents / 100, cents % 100), "at": now}))
}

async fn echo(body: String) -> Result<Json<Value>, (StatusCode, &'static str)> {
    serde_json::from_str::<Value>(&body)
        .map(|value| Json(json!({"echo": value})))
        .map_err(|_| (StatusCode::BAD_REQUEST, "the body must be JSON"))
}

/// Serves the sample API on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router()).await
}
