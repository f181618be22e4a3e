//! A small sample API worth paying for, built into the binary so that the demo needs nothing else:
//! `GET /v1/quote` (a stock quote), `POST /v1/echo` (echoes its JSON body), `GET /v1/weather`,
//! `POST /v1/chat/completions` (an OpenAI-compatible completion with deterministic tokens, streamed or not, with
//! its `usage`), and a free `GET /health`.

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
        .route("/v1/chat/completions", post(chat))
}

/// The words the sample model answers with, one token each, in order.
const ANSWER: &str = "Paid calls reach this API only after paygate verified and claimed their payment; each word of \
this answer is one token, and the price of the call is read from the usage the API reports at the end.";

/// An OpenAI-compatible chat completion: the prompt's tokens are the words of its messages, the answer is the
/// first `max_tokens` (default 16) words of [`ANSWER`], repeated as needed; `stream: true` sends one server-sent
/// event per token, then one with the `usage`, then `[DONE]`.
async fn chat(body: String) -> Result<axum::response::Response, (StatusCode, &'static str)> {
    use axum::response::IntoResponse;
    let request: Value = serde_json::from_str(&body).map_err(|_| (StatusCode::BAD_REQUEST, "the body must be JSON"))?;
    let messages = request["messages"].as_array().ok_or((StatusCode::BAD_REQUEST, "`messages` is an array"))?;
    let prompt_tokens: usize =
        messages.iter().filter_map(|m| m["content"].as_str()).map(|c| c.split_whitespace().count()).sum();
    let max_tokens = request["max_tokens"].as_u64().unwrap_or(16).min(4096) as usize;
    let words: Vec<&str> = ANSWER.split_whitespace().cycle().take(max_tokens).collect();
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": words.len(),
        "total_tokens": prompt_tokens + words.len(),
    });
    let model = request["model"].as_str().unwrap_or("paygate-sample").to_owned();
    if request["stream"].as_bool() != Some(true) {
        return Ok(Json(json!({
            "id": "chatcmpl-paygate",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": words.join(" ")}, "finish_reason": "stop"}],
            "usage": usage,
        }))
        .into_response());
    }
    let mut events: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, word)| {
            let content = if i == 0 { (*word).to_owned() } else { format!(" {word}") };
            let chunk = json!({
                "id": "chatcmpl-paygate", "object": "chat.completion.chunk", "model": model,
                "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}],
            });
            format!("data: {chunk}\n\n")
        })
        .collect();
    let last = json!({"id": "chatcmpl-paygate", "object": "chat.completion.chunk", "model": model, "choices": [], "usage": usage});
    events.push(format!("data: {last}\n\n"));
    events.push("data: [DONE]\n\n".to_owned());
    // One body chunk per event, as a model's server sends them.
    let stream = futures_util::stream::iter(events.into_iter().map(Ok::<_, std::convert::Infallible>));
    Ok(([(axum::http::header::CONTENT_TYPE, "text/event-stream")], axum::body::Body::from_stream(stream))
        .into_response())
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
