//! Selling the tools of an MCP server (streamable HTTP transport). The server's endpoint is proxied as it is,
//! free (`initialize`, `tools/list`, notifications, the `GET` stream, other tools), except the JSON-RPC
//! `tools/call` of a tool a route prices (`[[routes]]` with `tool = "name"`). Such a call is one more framing of
//! a paid request, in three steps:
//!
//! ```text
//! call.rs     the JSON-RPC request read: the tool, its arguments, the payment in `params._meta` as the HTTP
//!             header of its protocol ─► the engine's request: POST, body = the arguments (JCS), resource
//!             `mcp://tool/<name>`, priced and paid exactly like an HTTP route (Gateway::priced)
//! forward.rs  the engine's upstream: the original JSON-RPC request (its payment taken out) to the MCP server;
//!             a tool result with `isError` or a JSON-RPC error is a failed call (not settled)
//! answer.rs   the engine's answer as JSON-RPC: a refusal becomes the payment-required tool result of both
//!             protocols or a JSON-RPC error; a served call gets its receipt in the result's `_meta`
//! ```
//!
//! The engine never knows: challenges bind the tool's resource and its arguments, claims, ledger rows, free
//! calls and settlement are those of any route.

mod answer;
mod call;
mod forward;

use http::{Request, Response};
use paygate_core::reject::{RejectKind, Rejection};

use crate::body::Body;
use crate::engine::{Gateway, Inner, Route};
use crate::metrics::Outcome;
use crate::routes::canonical_path;

/// The resource a tool's challenges and x402 offers name.
pub(crate) fn tool_resource(tool: &str) -> String {
    format!("mcp://tool/{tool}")
}

/// What the engine's request for a tool call binds instead of its URL: the tool's resource.
#[derive(Debug, Clone)]
pub(crate) struct ToolResource(pub String);

/// The MCP endpoints of the configured tool routes: which route prices which tool at which path.
#[derive(Debug, Default)]
pub(crate) struct Tools {
    /// `(canonical path, tool name, route index)`.
    priced: Vec<(String, String, usize)>,
}

impl Tools {
    pub(crate) fn new(routes: &[Route]) -> Tools {
        let priced = routes
            .iter()
            .enumerate()
            .filter_map(|(index, route)| {
                let tool = route.matcher.tool.clone()?;
                Some((route.matcher.pattern_text().to_owned(), tool, index))
            })
            .collect();
        Tools { priced }
    }

    /// Whether `path` (canonical) is the endpoint of an MCP server some of whose tools are priced.
    pub(crate) fn is_endpoint(&self, path: &str) -> bool {
        self.priced.iter().any(|(endpoint, _, _)| endpoint == path)
    }

    /// The route that prices `tool` at `path`.
    fn route(&self, path: &str, tool: &str) -> Option<usize> {
        self.priced.iter().find(|(endpoint, name, _)| endpoint == path && name == tool).map(|(_, _, route)| *route)
    }
}

/// The request the engine would price for a body sent to an MCP endpoint, and the body the MCP server would
/// get; `None` when the body is no `tools/call`. What the `mcp_call` fuzz target drives with untrusted bodies.
pub fn tool_call_request(body: &[u8]) -> Option<(Request<Body>, bytes::Bytes)> {
    let call::Read::Tool(tool_call) = call::read(body) else { return None };
    let (parts, ()) = Request::post("/mcp").body(()).ok()?.into_parts();
    Some((tool_call.engine_request(&parts), tool_call.forwarded(bytes::Bytes::copy_from_slice(body))))
}

impl Gateway {
    /// Serves a `POST` to an MCP endpoint: a priced tool's call is paid for, anything else passes free.
    pub(crate) async fn serve_mcp<S: Inner + 'static>(
        &self,
        request: Request<Body>,
        request_id: String,
        inner: S,
    ) -> Response<Body> {
        let (parts, body) = match self.read_body(request).await {
            Ok(read) => read,
            Err(rejection) => return self.reject(&rejection, &request_id),
        };
        let path = canonical_path(parts.uri.path()).unwrap_or_default();
        match call::read(&body) {
            call::Read::Tool(tool_call) => {
                if let Some(route) = self.mcp_tools().route(&path, &tool_call.name) {
                    let engine_request = tool_call.engine_request(&parts);
                    let forward = forward::ToolForward::new(inner, parts, tool_call.forwarded(body), &tool_call.id);
                    let response = self.priced(route, engine_request, request_id, forward).await;
                    return answer::jsonrpc(response, &tool_call).await;
                }
            }
            call::Read::Batch(tools) if tools.iter().any(|tool| self.mcp_tools().route(&path, tool).is_some()) => {
                let rejection = Rejection::new(
                    RejectKind::MalformedRequest,
                    "mcp_batched_tool_call",
                    "a priced tool cannot be called inside a JSON-RPC batch: send its tools/call on its own",
                );
                return self.reject(&rejection, &request_id);
            }
            _ => {}
        }
        self.metrics().outcome(Outcome::Free);
        crate::engine::call(inner, Request::from_parts(parts, Body::from(body))).await
    }
}
