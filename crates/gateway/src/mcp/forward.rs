//! The upstream of a paid tool call, as the engine sees it: the MCP server gets the client's JSON-RPC request
//! (its payment taken out), and its answer (JSON, or server-sent events as streamable HTTP allows) is read for
//! the call's response. A tool that failed (a result with `isError`, a JSON-RPC error, no response at all)
//! answers with status 422, so that the engine settles nothing, as it settles nothing for an HTTP route that
//! answered 4xx; the MCP server's own status goes with the answer ([`ToolAnswer`]) for `answer.rs` to restore.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use paygate_proto::sse;
use serde_json::Value;
use tower::{Service, ServiceExt};

use crate::body::Body;
use crate::engine::Inner;

/// The most of an MCP server's answer to one call that is read.
const MAX_TOOL_ANSWER: usize = 32 * 1024 * 1024;

/// What the MCP server answered, on the response the engine passes back.
#[derive(Debug, Clone, Copy)]
pub(super) struct ToolAnswer {
    /// Its status, which the client gets.
    pub status: StatusCode,
}

/// The engine's inner service for one tool call.
pub(super) struct ToolForward<S> {
    /// The MCP server and the client's request, taken by the one call.
    call: Option<(S, Request<Body>)>,
    id: Value,
}

impl<S> ToolForward<S> {
    pub(super) fn new(inner: S, parts: Parts, body: Bytes, id: &Value) -> ToolForward<S> {
        let mut parts = parts;
        parts.headers.remove(header::CONTENT_LENGTH);
        ToolForward { call: Some((inner, Request::from_parts(parts, Body::from(body)))), id: id.clone() }
    }
}

impl<S: Inner + 'static> Service<Request<Body>> for ToolForward<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    /// Sends the client's request, whatever the engine's (which stands for it) became.
    fn call(&mut self, _engine_request: Request<Body>) -> Self::Future {
        let call = self.call.take();
        let id = self.id.clone();
        Box::pin(async move {
            // The engine calls its upstream once; a second call would have nothing to send.
            let Some((inner, request)) = call else { return Ok(failed(StatusCode::BAD_GATEWAY)) };
            let response = match inner.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok(read_answer(response, &id).await)
        })
    }
}

/// A failed call with nothing from the MCP server to pass on.
fn failed(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// The MCP server's answer, read and marked: 422 when the call failed.
async fn read_answer(response: Response<Body>, id: &Value) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let answer = ToolAnswer { status: parts.status };
    if !parts.status.is_success() {
        parts.extensions.insert(answer);
        return Response::from_parts(parts, body);
    }
    let event_stream = is_event_stream(&parts.headers);
    let read = match event_stream {
        true => read_events(body, id).await,
        false => Limited::new(body, MAX_TOOL_ANSWER).collect().await.map(|b| b.to_bytes()).ok(),
    };
    let Some(bytes) = read else {
        // Cut off or too large: nothing can be delivered, nothing is charged.
        return failed(StatusCode::BAD_GATEWAY);
    };
    let succeeded = response_message(&bytes, event_stream, id).is_some_and(|m| tool_succeeded(&m));
    if !succeeded {
        parts.status = StatusCode::UNPROCESSABLE_ENTITY;
    }
    parts.extensions.insert(answer);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}

/// The events of a streamed answer up to the one that carries the call's response: a server may keep the stream
/// open after it (or never send it), and the call is answered as soon as its response came. `None` when the
/// stream broke or grew past [`MAX_TOOL_ANSWER`] first.
async fn read_events(mut body: Body, id: &Value) -> Option<Bytes> {
    let mut read = Vec::new();
    let mut events = sse::Events::new(MAX_TOOL_ANSWER);
    // The bytes of the whole events read so far: the answer ends with the response's event, nothing after.
    let mut whole = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.ok()?.into_data() else { continue };
        read.extend_from_slice(&data);
        if read.len() > MAX_TOOL_ANSWER {
            return None;
        }
        for event in events.push(&data) {
            whole += event.len();
            if response_message(&event, true, id).is_some() {
                read.truncate(whole);
                return Some(Bytes::from(read));
            }
        }
    }
    Some(Bytes::from(read))
}

pub(super) fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"))
}

/// The JSON-RPC response to the call `id` in an answer: the JSON body, or the event that carries it.
pub(super) fn response_message(bytes: &[u8], event_stream: bool, id: &Value) -> Option<Value> {
    let answers = |message: &Value| {
        message.get("id") == Some(id) && (message.get("result").is_some() || message.get("error").is_some())
    };
    if !event_stream {
        return serde_json::from_slice::<Value>(bytes).ok().filter(answers);
    }
    sse::Events::new(bytes.len())
        .push(bytes)
        .iter()
        .filter_map(|event| sse::Event::read(event))
        .filter_map(|event| serde_json::from_str::<Value>(&event.data).ok())
        .find(answers)
}

/// Whether a response says the tool ran: a result that is not an error.
fn tool_succeeded(message: &Value) -> bool {
    message.get("error").is_none() && message.pointer("/result/isError") != Some(&Value::Bool(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_response_is_found_in_json_and_among_events() {
        let id = json!(3);
        let ok = json!({"jsonrpc": "2.0", "id": 3, "result": {"content": []}});
        assert_eq!(response_message(ok.to_string().as_bytes(), false, &id), Some(ok.clone()));
        assert_eq!(response_message(ok.to_string().as_bytes(), false, &json!(4)), None);
        let stream = format!(
            "event: message\ndata: {}\n\nid: 9\nevent: message\ndata: {}\n\n",
            json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}),
            ok
        );
        assert_eq!(response_message(stream.as_bytes(), true, &id), Some(ok));
    }

    #[test]
    fn errors_and_error_results_are_failed_calls() {
        assert!(tool_succeeded(&json!({"result": {"content": []}})));
        assert!(tool_succeeded(&json!({"result": {"isError": false}})));
        assert!(!tool_succeeded(&json!({"result": {"isError": true}})));
        assert!(!tool_succeeded(&json!({"error": {"code": -32602, "message": "unknown tool"}})));
    }
}
