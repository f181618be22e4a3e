//! A JSON-RPC `tools/call` read for what the engine needs: the tool, its arguments (what the call is priced by
//! and its challenges bind, in their canonical JSON so that a client's retry binds the same), and the payment of
//! `params._meta` turned into the HTTP header of its protocol, which the engine reads as from any client.

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Request};
use paygate_proto::{b64, jcs, mcp, x402};
use serde_json::Value;

use super::{ToolResource, tool_resource};
use crate::body::Body;

/// What a `POST` to an MCP endpoint holds.
pub(super) enum Read {
    /// One `tools/call`.
    Tool(ToolCall),
    /// A JSON-RPC batch: the names of the tools it calls.
    Batch(Vec<String>),
    /// Any other message, or no JSON-RPC at all: the MCP server answers it.
    Other,
}

/// A `tools/call` request.
pub(super) struct ToolCall {
    /// The JSON-RPC id, which the answer repeats.
    pub id: Value,
    pub name: String,
    /// The arguments as canonical JSON.
    arguments: String,
    /// The payment of `params._meta`, as its protocol's header.
    payment: Option<(HeaderName, String)>,
    /// The MPP challenge a credential answered, which its receipt names.
    pub challenge_id: Option<String>,
    /// The request without its payment, when `_meta` carried one.
    without_payment: Option<Value>,
}

/// Reads a request body sent to an MCP endpoint.
pub(super) fn read(body: &[u8]) -> Read {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(batch)) => Read::Batch(batch.iter().filter_map(|m| tool_name(m).map(str::to_owned)).collect()),
        Ok(message) => match tool_name(&message) {
            Some(name) => Read::Tool(ToolCall::new(name.to_owned(), message)),
            None => Read::Other,
        },
        Err(_) => Read::Other,
    }
}

/// The tool a `tools/call` message calls.
fn tool_name(message: &Value) -> Option<&str> {
    (message.get("method")? == "tools/call").then_some(())?;
    message.pointer("/params/name")?.as_str()
}

impl ToolCall {
    fn new(name: String, mut message: Value) -> ToolCall {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        let arguments =
            message.pointer("/params/arguments").cloned().unwrap_or_else(|| Value::Object(Default::default()));
        let mut payment = None;
        let mut challenge_id = None;
        let mut without_payment = None;
        if let Some(Value::Object(meta)) = message.pointer_mut("/params/_meta") {
            if let Some(credential) = meta.remove(mcp::MPP_CREDENTIAL) {
                challenge_id = credential.pointer("/challenge/id").and_then(Value::as_str).map(str::to_owned);
                // An undecodable credential goes on as it is: the engine refuses it as it would the header.
                let header = mcp::credential_header(&credential).unwrap_or_else(|_| {
                    format!("{} {}", paygate_proto::mpp::SCHEME, b64::url_encode(credential.to_string().as_bytes()))
                });
                payment = Some((AUTHORIZATION, header));
            }
            if let Some(x402_payment) = meta.remove(mcp::X402_PAYMENT) {
                payment = Some((HeaderName::from_static(x402::PAYMENT_SIGNATURE), x402::encode_header(&x402_payment)));
            }
            if payment.is_some() {
                if meta.is_empty()
                    && let Some(Value::Object(params)) = message.get_mut("params")
                {
                    params.remove("_meta");
                }
                without_payment = Some(message);
            }
        }
        ToolCall { id, name, arguments: jcs::canonicalize(&arguments), payment, challenge_id, without_payment }
    }

    /// The request the engine prices and binds: `POST` to the endpoint with the arguments as its body and the
    /// payment in its header, naming the tool's resource. The client's other headers stay (its address, an API
    /// key, its own `Authorization`, to which an MPP credential is added).
    pub(super) fn engine_request(&self, parts: &Parts) -> Request<Body> {
        let mut headers = parts.headers.clone();
        headers.remove(CONTENT_LENGTH);
        // JSON, not the paywall's page nor a stream quoted per part: the answer is JSON-RPC.
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some((name, value)) = &self.payment {
            let value = match headers.get(name).and_then(|v| v.to_str().ok()) {
                Some(theirs) if name == AUTHORIZATION => format!("{theirs}, {value}"),
                _ => value.clone(),
            };
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name.clone(), value);
            }
        }
        let mut request = Request::new(Body::from(self.arguments.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = parts.uri.clone();
        *request.version_mut() = parts.version;
        *request.headers_mut() = headers;
        *request.extensions_mut() = parts.extensions.clone();
        request.extensions_mut().insert(ToolResource(tool_resource(&self.name)));
        request
    }

    /// The body the MCP server gets: the client's, without the payment in `_meta`.
    pub(super) fn forwarded(&self, body: Bytes) -> Bytes {
        match &self.without_payment {
            Some(message) => Bytes::from(message.to_string()),
            None => body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(body: &Value) -> ToolCall {
        match read(body.to_string().as_bytes()) {
            Read::Tool(call) => call,
            _ => panic!("not a tool call: {body}"),
        }
    }

    #[test]
    fn a_tool_call_is_read_and_its_payment_taken_out_of_what_is_forwarded() {
        let call = tool(&json!({
            "jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "forecast", "arguments": {"city": "Oslo", "days": 2},
                       "_meta": {"x402/payment": {"x402Version": 2}, "progressToken": 3}},
        }));
        assert_eq!((call.id.clone(), call.name.as_str()), (json!(7), "forecast"));
        assert_eq!(call.arguments, r#"{"city":"Oslo","days":2}"#);
        let (name, value) = call.payment.clone().unwrap();
        assert_eq!(name, x402::PAYMENT_SIGNATURE);
        assert_eq!(x402::decode_header::<Value>(&value).unwrap(), json!({"x402Version": 2}));
        let forwarded: Value = serde_json::from_slice(&call.forwarded(Bytes::new())).unwrap();
        assert_eq!(forwarded["params"]["_meta"], json!({"progressToken": 3}));
        assert_eq!(forwarded["params"]["arguments"]["city"], "Oslo");
    }

    #[test]
    fn an_unpaid_call_is_forwarded_byte_for_byte_and_other_messages_are_not_calls() {
        let body = br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"t"}}"#;
        let Read::Tool(call) = read(body) else { panic!("a tool call") };
        assert_eq!(call.arguments, "{}");
        assert!(call.payment.is_none());
        assert_eq!(call.forwarded(Bytes::from_static(body)), Bytes::from_static(body));
        assert!(matches!(read(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#), Read::Other));
        assert!(matches!(read(b"not json"), Read::Other));
        let Read::Batch(names) = read(br#"[{"method":"tools/call","params":{"name":"t"}},{"method":"ping"}]"#) else {
            panic!("a batch")
        };
        assert_eq!(names, ["t"]);
    }

    #[test]
    fn the_engine_request_carries_the_credential_beside_the_clients_authorization() {
        let challenge =
            json!({"id": "c1", "realm": "r", "method": "evm", "intent": "charge", "request": {"amount": "1"}});
        let call = tool(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "t", "arguments": {}, "_meta": {"org.paymentauth/credential": {"challenge": challenge, "payload": {}}}},
        }));
        assert_eq!(call.challenge_id.as_deref(), Some("c1"));
        let (parts, ()) = Request::builder()
            .method("POST")
            .uri("/mcp")
            .header(AUTHORIZATION, "Bearer upstream-token")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(())
            .unwrap()
            .into_parts();
        let request = call.engine_request(&parts);
        let authorization = request.headers()[AUTHORIZATION].to_str().unwrap();
        assert!(authorization.starts_with("Bearer upstream-token, Payment "), "{authorization}");
        assert_eq!(request.headers()[ACCEPT], "application/json");
        assert_eq!(request.extensions().get::<ToolResource>().unwrap().0, "mcp://tool/t");
        let forwarded: Value = serde_json::from_slice(&call.forwarded(Bytes::new())).unwrap();
        assert!(forwarded["params"].get("_meta").is_none());
    }
}
