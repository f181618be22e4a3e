//! The engine's answer to a tool call, as the MCP client reads it.
//!
//! - What the MCP server answered goes back with its own status; when the call was paid, its receipt is added to
//!   the result's `_meta` (`x402/payment-response` from `PAYMENT-RESPONSE`, `org.paymentauth/receipt` from
//!   `Payment-Receipt`), in the JSON body or in the event that carries the response.
//! - paygate's 402 becomes the tool result that asks for payment in both protocols
//!   (`paygate_proto::mcp::payment_required_result`); any other refusal a JSON-RPC error whose `data` holds the
//!   problem. Both are `200 OK`, as JSON-RPC over HTTP answers.

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use paygate_proto::mcp::{self, code};
use paygate_proto::mpp::{self, Receipt};
use paygate_proto::{sse, x402};
use serde_json::{Map, Value, json};

use super::call::ToolCall;
use super::forward::{ToolAnswer, is_event_stream, response_message};
use crate::body::Body;

/// The JSON-RPC answer to `call`.
pub(super) async fn jsonrpc(response: Response<Body>, call: &ToolCall) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    // Bodies here were read whole already: the MCP server's by `forward.rs`, paygate's own are small.
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if let Some(answer) = parts.extensions.remove::<ToolAnswer>() {
        parts.status = answer.status;
        let receipts = receipts(&parts.headers, call);
        if !answer.status.is_success() || receipts.is_empty() {
            return Response::from_parts(parts, Body::from(bytes));
        }
        let with_receipts = with_meta(&bytes, is_event_stream(&parts.headers), &call.id, receipts);
        parts.headers.remove(CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from(with_receipts));
    }
    let problem: Value = serde_json::from_slice(&bytes).unwrap_or_else(
        |_| json!({"title": parts.status.canonical_reason().unwrap_or("Error"), "status": parts.status.as_u16()}),
    );
    let message = match parts.status {
        StatusCode::PAYMENT_REQUIRED => {
            let required = parts.headers.get(x402::PAYMENT_REQUIRED).and_then(|v| v.to_str().ok());
            let required = required.and_then(|v| x402::decode_header::<Value>(v).ok());
            let challenges: Vec<mpp::Challenge> = parts
                .headers
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(mpp::parse_challenges)
                .filter_map(Result::ok)
                .collect();
            json!({"jsonrpc": "2.0", "id": call.id, "result": mcp::payment_required_result(required.as_ref(), &challenges, &problem)})
        }
        status => {
            let text = problem.get("detail").or_else(|| problem.get("title")).and_then(Value::as_str);
            let error = json!({
                "code": error_code(status),
                "message": text.unwrap_or("the call was refused"),
                "data": {"httpStatus": status.as_u16(), "problem": problem},
            });
            json!({"jsonrpc": "2.0", "id": call.id, "error": error})
        }
    };
    for name in [WWW_AUTHENTICATE, http::HeaderName::from_static(x402::PAYMENT_REQUIRED), CONTENT_LENGTH] {
        parts.headers.remove(name);
    }
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.status = StatusCode::OK;
    Response::from_parts(parts, Body::from(message.to_string()))
}

/// The JSON-RPC error code of a refusal that is not a 402.
fn error_code(status: StatusCode) -> i64 {
    match status.as_u16() {
        500.. => code::INTERNAL_ERROR,
        400 | 413 | 414 | 422 => code::INVALID_PARAMS,
        _ => code::VERIFICATION_FAILED,
    }
}

/// The receipts of a paid answer, as the result's `_meta` carries them.
fn receipts(headers: &HeaderMap, call: &ToolCall) -> Map<String, Value> {
    let mut meta = Map::new();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(settled) = header(x402::PAYMENT_RESPONSE).and_then(|v| x402::decode_header::<Value>(v).ok()) {
        meta.insert(mcp::X402_PAYMENT_RESPONSE.into(), settled);
    }
    if let Some(receipt) = header(mpp::PAYMENT_RECEIPT).and_then(|v| Receipt::from_header(v).ok()) {
        meta.insert(mcp::MPP_RECEIPT.into(), mcp::receipt_object(&receipt, call.challenge_id.as_deref()));
    }
    meta
}

/// The answer with `meta` added to the response's `result._meta`: in the JSON body, or in the event that
/// carries the response (its other lines, an event id among them, kept).
fn with_meta(bytes: &[u8], event_stream: bool, id: &Value, meta: Map<String, Value>) -> Vec<u8> {
    let add = |mut message: Value| {
        if let Some(Value::Object(result)) = message.get_mut("result") {
            let existing = result.entry("_meta").or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(existing) = existing {
                existing.extend(meta.clone());
            }
        }
        message.to_string()
    };
    if !event_stream {
        return match response_message(bytes, false, id) {
            Some(message) => add(message).into_bytes(),
            None => bytes.to_vec(),
        };
    }
    let mut out = Vec::with_capacity(bytes.len() + 512);
    let events = sse::Events::new(bytes.len()).push(bytes);
    let consumed: usize = events.iter().map(Vec::len).sum();
    for event in events {
        match response_message(&event, true, id) {
            Some(message) => {
                let text = String::from_utf8_lossy(&event);
                for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with("data")) {
                    out.extend_from_slice(line.as_bytes());
                    out.push(b'\n');
                }
                out.extend_from_slice(format!("data: {}\n\n", add(message)).as_bytes());
            }
            None => out.extend_from_slice(&event),
        }
    }
    out.extend_from_slice(&bytes[consumed..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_go_into_the_response_event_and_nothing_else_changes() {
        let id = json!("r1");
        let note = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {}});
        let response = json!({"jsonrpc": "2.0", "id": "r1", "result": {"content": [], "_meta": {"theirs": 1}}});
        let stream = format!("event: message\ndata: {note}\n\nid: 5\nevent: message\ndata: {response}\n\n");
        let meta: Map<String, Value> =
            [("x402/payment-response".to_owned(), json!({"success": true}))].into_iter().collect();
        let out = String::from_utf8(with_meta(stream.as_bytes(), true, &id, meta.clone())).unwrap();
        assert!(out.starts_with(&format!("event: message\ndata: {note}\n\nid: 5\nevent: message\ndata: ")), "{out}");
        let answered = response_message(out.as_bytes(), true, &id).unwrap();
        assert_eq!(answered["result"]["_meta"], json!({"theirs": 1, "x402/payment-response": {"success": true}}));
        let json_out = with_meta(response.to_string().as_bytes(), false, &id, meta);
        let answered: Value = serde_json::from_slice(&json_out).unwrap();
        assert_eq!(answered["result"]["_meta"]["x402/payment-response"]["success"], true);
    }

    #[test]
    fn refusals_map_to_json_rpc_codes() {
        assert_eq!(error_code(StatusCode::CONFLICT), code::VERIFICATION_FAILED);
        assert_eq!(error_code(StatusCode::BAD_REQUEST), code::INVALID_PARAMS);
        assert_eq!(error_code(StatusCode::SERVICE_UNAVAILABLE), code::INTERNAL_ERROR);
    }
}
