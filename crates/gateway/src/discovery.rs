//! What agents find without paying, generated from the config: each 402's x402 `bazaar` extension (what the
//! route takes and answers, `specs/extensions/bazaar.md`), and three free documents that never reach the
//! upstream:
//!
//! - `GET /.well-known/x402`: every priced resource with its x402 offers, in the shape of a facilitator's
//!   discovery list (`@x402/extensions`' `DiscoveryResourcesResponse`);
//! - `GET /openapi.json`: the routes as OpenAPI 3.1, each priced operation with MPP's `x-payment-info` (its
//!   offers) and a `402` response (`draft-payment-discovery-00`, as `mppx/discovery` validates it);
//! - `GET /llms.txt`: the same in plain words, with how to pay.
//!
//! A configured route on one of those paths wins: the operator's API answers it. The 402 stays authoritative:
//! these documents list the route's offers as configured, not a quote for any one request.

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use paygate_core::money::format_atomic;
use paygate_proto::x402;
use serde_json::{Map, Value, json};

use crate::body::Body;
use crate::config::DiscoveryConfig;
use crate::engine::{Gateway, Pricing, Route};
use crate::offers::RouteOffer;

/// The paths the documents are served at.
const WELL_KNOWN: &str = "/.well-known/x402";
const OPENAPI: &str = "/openapi.json";
const LLMS: &str = "/llms.txt";

/// The x402 extensions a route's 402 declares: `payment-identifier` (optional; `identifier.rs` honours it) and
/// `bazaar`, describing the route's input and output.
pub(crate) fn extensions(method: Option<&Method>, config: Option<&DiscoveryConfig>) -> Map<String, Value> {
    let mut extensions = Map::new();
    extensions.insert(x402::payment_identifier::KEY.into(), x402::payment_identifier::declaration(false));
    extensions.insert("bazaar".into(), bazaar(method, config));
    extensions
}

/// The x402 extensions of a priced MCP tool's refusal: `payment-identifier` and `bazaar` with an `mcp` input (the
/// tool's name and the JSON Schema of its arguments), as `@x402/extensions`' `declareDiscoveryExtension` writes
/// it for a tool.
pub(crate) fn tool_extensions(tool: &str, config: Option<&DiscoveryConfig>) -> Map<String, Value> {
    let config = config.cloned().unwrap_or_default();
    let mut input = json!({
        "type": "mcp",
        "toolName": tool,
        "transport": "streamable-http",
        "inputSchema": config.input_schema.clone().unwrap_or_else(|| json!({"type": "object"})),
    });
    let mut input_schema = json!({
        "type": {"type": "string", "const": "mcp"},
        "toolName": {"type": "string"},
        "transport": {"type": "string", "enum": ["streamable-http"]},
        "inputSchema": {"type": "object"},
    });
    if let Some(example) = &config.input {
        input["example"] = example.clone();
        input_schema["example"] = json!({"type": "object"});
    }
    let mut info = json!({"input": input});
    let mut properties = json!({
        "input": {
            "type": "object",
            "properties": input_schema,
            "required": ["type", "toolName", "inputSchema"],
            "additionalProperties": false,
        },
    });
    if let Some(example) = &config.output {
        info["output"] = json!({"type": "json", "example": example});
        properties["output"] = json!({
            "type": "object",
            "properties": {"type": {"type": "string"}, "example": {"type": "object"}},
            "required": ["type"],
        });
    }
    let bazaar = json!({
        "info": info,
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "required": ["input"],
        },
    });
    let mut extensions = Map::new();
    extensions.insert(x402::payment_identifier::KEY.into(), x402::payment_identifier::declaration(false));
    extensions.insert("bazaar".into(), bazaar);
    extensions
}

/// The `bazaar` extension of a route, as `@x402/extensions`' `declareDiscoveryExtension` writes it once the
/// resource server added the route's method: `info` (an example input and output) and the JSON Schema it follows.
fn bazaar(method: Option<&Method>, config: Option<&DiscoveryConfig>) -> Value {
    let method = method.unwrap_or(&Method::GET).as_str().to_owned();
    let config = config.cloned().unwrap_or_default();
    let with_body = matches!(method.as_str(), "POST" | "PUT" | "PATCH");
    let (mut input, mut input_schema) = (json!({"type": "http", "method": method}), Map::new());
    input_schema.insert("type".into(), json!({"type": "string", "const": "http"}));
    let required: Vec<&str> = if with_body {
        input_schema.insert("method".into(), json!({"type": "string", "enum": ["POST", "PUT", "PATCH"]}));
        input_schema.insert("bodyType".into(), json!({"type": "string", "enum": ["json", "form-data", "text"]}));
        input_schema.insert("body".into(), config.input_schema.clone().unwrap_or_else(|| json!({})));
        input["bodyType"] = config.body_type.clone().unwrap_or_else(|| "json".into()).into();
        input["body"] = config.input.clone().unwrap_or_else(|| json!({}));
        vec!["type", "method", "bodyType", "body"]
    } else {
        input_schema.insert("method".into(), json!({"type": "string", "enum": ["GET", "HEAD", "DELETE"]}));
        if let Some(query) = &config.input {
            let mut schema = json!({"type": "object"});
            if let Some(Value::Object(given)) = &config.input_schema {
                schema.as_object_mut().into_iter().for_each(|s| s.extend(given.clone()));
            }
            input_schema.insert("queryParams".into(), schema);
            input["queryParams"] = query.clone();
        }
        vec!["type", "method"]
    };
    let mut output = json!({"type": "json"});
    if let Some(example) = &config.output {
        output["example"] = example.clone();
    }
    json!({
        "info": {"input": input, "output": output},
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "input": {
                    "type": "object",
                    "properties": input_schema,
                    "required": required,
                    "additionalProperties": false,
                },
                "output": {
                    "type": "object",
                    "properties": {"type": {"type": "string"}, "example": {}},
                    "required": ["type"],
                },
            },
            "required": ["input"],
        },
    })
}

/// The answer to a request for one of the documents, when no route claims its path.
pub(crate) fn answer(gateway: &Gateway, request: &Request<Body>, path: &str) -> Option<Response<Body>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return None;
    }
    let origin = gateway.origin(request.headers(), request.uri());
    let (content_type, body) = match path {
        WELL_KNOWN => ("application/json", well_known(gateway.routes(), &origin, gateway.started()).to_string()),
        OPENAPI => {
            ("application/json", openapi(gateway.routes(), &origin, gateway.realm(request.headers())).to_string())
        }
        LLMS => ("text/plain; charset=utf-8", llms(gateway.routes(), &origin, &gateway.realm(request.headers()))),
        _ => return None,
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    Some(response)
}

/// The priced routes, each with the offers it lists.
fn priced(routes: &[Route]) -> impl Iterator<Item = (&Route, &[RouteOffer])> {
    routes.iter().filter(|r| !r.is_free()).map(|r| (r, r.listed_offers()))
}

/// `/items/:id` and `/items/{id}` as OpenAPI writes them (`/items/{id}`), `/files/*` as `/files/{path}`.
fn openapi_path(pattern: &str) -> String {
    let mut path: Vec<String> = pattern
        .split('/')
        .map(|s| s.strip_prefix(':').map_or_else(|| s.to_owned(), |name| format!("{{{name}}}")))
        .collect();
    if path.last().is_some_and(|s| s == "*") {
        path.pop();
        path.push("{path}".into());
    }
    path.join("/")
}

/// How a route's listed amounts are to be read.
fn price_words(route: &Route) -> &'static str {
    match route.pricing.as_ref().map(|p| &p.price) {
        Some(Pricing::Flat(_)) | None => "a call",
        Some(Pricing::PerUnit { .. }) => "a unit of the request",
        Some(Pricing::Metered { .. }) => "a call at most, charged by use",
        Some(Pricing::Hook(_)) => "a call when the seller's pricing service does not answer",
        Some(Pricing::Tiered(_)) => "a call in the first usage tier",
    }
}

/// An offer in words: `0.01 USDC on eip155:8453 (x402 exact, MPP evm/charge)`.
pub(crate) fn offer_words(offer: &RouteOffer) -> String {
    let option = offer.method.option();
    let amount = format_atomic(offer.amount, option.asset.decimals);
    let mut ways = Vec::new();
    if let Some(r) = &offer.x402 {
        ways.push(format!("x402 {}", r.scheme));
    }
    if let Some((method, intent)) = offer.mpp {
        ways.push(format!("MPP {method}/{intent}"));
    }
    format!("{amount} {} on {} ({})", option.asset.symbol, option.network, ways.join(", "))
}

fn well_known(routes: &[Route], origin: &str, started: &str) -> Value {
    let items: Vec<Value> = priced(routes)
        .filter_map(|(route, offers)| {
            let accepts: Vec<&x402::PaymentRequirements> = offers.iter().filter_map(|o| o.x402.as_ref()).collect();
            if accepts.is_empty() {
                return None;
            }
            let (resource, kind) = match &route.matcher.tool {
                Some(tool) => (crate::mcp::tool_resource(tool), "mcp"),
                None => (format!("{origin}{}", route.matcher.pattern_text()), "http"),
            };
            let mut item = json!({
                "resource": resource,
                "type": kind,
                "x402Version": 2,
                "accepts": accepts,
                "lastUpdated": started,
                "extensions": {"bazaar": route.resource.extensions.get("bazaar")},
            });
            if let Some(description) = &route.resource.description {
                item["description"] = description.clone().into();
            }
            if let Some(mime_type) = &route.resource.mime_type {
                item["mimeType"] = mime_type.clone().into();
            }
            Some(item)
        })
        .collect();
    let total = items.len();
    json!({"x402Version": 2, "items": items, "pagination": {"limit": total, "offset": 0, "total": total}})
}

fn openapi(routes: &[Route], origin: &str, realm: String) -> Value {
    let mut paths = Map::new();
    // A tool is no HTTP operation: its endpoint is described by MCP's own `tools/list`.
    for route in routes.iter().filter(|r| r.matcher.tool.is_none()) {
        let method = route.matcher.method.as_ref().unwrap_or(&Method::GET).as_str().to_ascii_lowercase();
        let mut operation = json!({"responses": {"200": {"description": "Successful response"}}});
        if let Some(description) = &route.resource.description {
            operation["summary"] = description.clone().into();
        }
        if let Some(pricing) = &route.pricing {
            let offers: Vec<Value> = route
                .listed_offers()
                .iter()
                .map(|offer| {
                    let (method, intent) = match (offer.mpp, &offer.x402) {
                        (Some((method, intent)), _) => (method.to_owned(), intent.to_owned()),
                        (None, Some(r)) => ("x402".to_owned(), r.scheme.clone()),
                        (None, None) => ("transfer".to_owned(), "charge".to_owned()),
                    };
                    let amount = (!matches!(pricing.price, Pricing::Hook(_))).then(|| offer.amount.to_string());
                    json!({
                        "method": method,
                        "intent": intent,
                        "amount": amount,
                        "currency": offer.method.option().asset.address,
                        "description": format!("{} {}", offer_words(offer), price_words(route)),
                    })
                })
                .collect();
            operation["x-payment-info"] = json!({"offers": offers});
            operation["responses"]["402"] = json!({"description": "Payment Required"});
        }
        if matches!(method.as_str(), "post" | "put" | "patch") {
            let bazaar = route.resource.extensions.get("bazaar");
            let schema = bazaar.and_then(|b| b.pointer("/schema/properties/input/properties/body")).cloned();
            let example = bazaar.and_then(|b| b.pointer("/info/input/body")).cloned();
            let mut media =
                json!({"schema": schema.filter(|s| s != &json!({})).unwrap_or_else(|| json!({"type": "object"}))});
            if let Some(example) = example {
                media["example"] = example;
            }
            operation["requestBody"] = json!({"content": {"application/json": media}});
        }
        let item = paths.entry(openapi_path(route.matcher.pattern_text())).or_insert_with(|| json!({}));
        item[method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": realm, "version": "1"},
        "servers": [{"url": origin}],
        "x-service-info": {"docs": {"llms": format!("{origin}{LLMS}")}},
        "paths": paths,
    })
}

fn llms(routes: &[Route], origin: &str, realm: &str) -> String {
    let mut text = format!(
        "# {realm}\n\n> A paid HTTP API: each priced route answers an unpaid request with `402 Payment Required` \
         offering its payments in x402 and in MPP; pay one, send the request again with the credential, and the \
         answer carries a receipt.\n\n## How to pay\n\n\
         - x402: read the `PAYMENT-REQUIRED` header (base64 JSON), sign one of its `accepts`, and send it back in \
         `PAYMENT-SIGNATURE`; the answer's `PAYMENT-RESPONSE` names the settlement.\n\
         - MPP: pick a `WWW-Authenticate: Payment` challenge and send `Authorization: Payment <credential>`; the \
         answer carries `Payment-Receipt`.\n\
         - A client that does both: `paygate pay URL`, or any x402 or MPP client.\n\n\
         Offers as JSON: {origin}{WELL_KNOWN} (x402) and {origin}{OPENAPI} (OpenAPI with `x-payment-info`).\n\n\
         ## Priced routes\n\n"
    );
    for (route, offers) in priced(routes) {
        let method = route.matcher.method.as_ref().map_or("ANY", |m| m.as_str());
        match &route.matcher.tool {
            Some(tool) => text.push_str(&format!(
                "- MCP tool `{tool}` of the MCP server at `{origin}{}` (streamable HTTP; pay in the call's \
                 `_meta`: `{}` or `{}`)",
                route.matcher.pattern_text(),
                paygate_proto::mcp::X402_PAYMENT,
                paygate_proto::mcp::MPP_CREDENTIAL,
            )),
            None => text.push_str(&format!("- `{method} {origin}{}`", route.matcher.pattern_text())),
        }
        if let Some(description) = &route.resource.description {
            text.push_str(&format!(": {description}"));
        }
        text.push_str(&format!("\n  Price, {}: ", price_words(route)));
        let words: Vec<String> = offers.iter().map(offer_words).collect();
        text.push_str(&words.join("; or "));
        text.push('\n');
    }
    let free: Vec<String> = routes
        .iter()
        .filter(|r| r.is_free())
        .map(|r| format!("`{} {}`", r.matcher.method.as_ref().map_or("ANY", |m| m.as_str()), r.matcher.pattern_text()))
        .collect();
    if !free.is_empty() {
        text.push_str(&format!("\n## Free routes\n\n{}\n", free.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_patterns_become_openapi_paths() {
        assert_eq!(openapi_path("/v1/quote"), "/v1/quote");
        assert_eq!(openapi_path("/items/:id"), "/items/{id}");
        assert_eq!(openapi_path("/items/{id}/x"), "/items/{id}/x");
        assert_eq!(openapi_path("/files/*"), "/files/{path}");
    }

    #[test]
    fn a_get_route_declares_its_query_and_a_post_route_its_body() {
        let config = DiscoveryConfig {
            input: Some(json!({"symbol": "PAY"})),
            input_schema: Some(json!({"properties": {"symbol": {"type": "string"}}})),
            body_type: None,
            output: Some(json!({"price": "4.02"})),
        };
        let get = bazaar(Some(&Method::GET), Some(&config));
        assert_eq!(get["info"]["input"], json!({"type": "http", "method": "GET", "queryParams": {"symbol": "PAY"}}));
        assert_eq!(
            get["schema"]["properties"]["input"]["properties"]["queryParams"]["properties"]["symbol"]["type"],
            "string"
        );
        let post = bazaar(Some(&Method::POST), None);
        assert_eq!(post["info"]["input"], json!({"type": "http", "method": "POST", "bodyType": "json", "body": {}}));
        assert_eq!(post["schema"]["properties"]["input"]["required"], json!(["type", "method", "bodyType", "body"]));
    }
}
