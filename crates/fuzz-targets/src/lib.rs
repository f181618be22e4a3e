//! The fuzz targets, as plain functions over bytes: every parser that reads untrusted input, and the properties
//! it must keep on any input. Nothing here may panic on any input; a panic is a finding.
//!
//! Two harnesses call them: the libFuzzer binaries of `fuzz/` (coverage-guided, built apart with instrumentation
//! by `scripts/fuzz`), and this crate's test, which replays the seed corpora (`fuzz/corpus/<target>/`, from the
//! published vectors) and every input a fuzzer ever crashed (`fuzz/regressions/<target>/`) on each `cargo
//! test`, so a crash found once stays fixed.

use paygate_proto::{jcs, mpp, x402};

/// A target: its name (the corpus directory and the fuzz binary) and what it does with one input.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("x402", x402),
    ("mpp", mpp),
    ("jcs", jcs),
    ("credential", credential),
    ("config", config),
    ("facilitator_answer", facilitator_answer),
    ("stripe_answer", stripe_answer),
    ("lnd_answer", lnd_answer),
    ("channel_payload", channel_payload),
    ("mcp_call", mcp_call),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// x402 headers and bodies, v2 and v1: whatever decodes re-encodes to something that decodes to the same.
pub fn x402(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(payload) = x402::decode_credential::<x402::PaymentPayload>(text) {
        let again: x402::PaymentPayload =
            x402::decode_credential(&x402::encode_header(&payload)).expect("a decoded payload re-encodes");
        assert_eq!(again, payload);
        let _ = x402::payment_identifier::id(payload.extensions.as_ref());
    }
    if let Ok(required) = x402::decode_header::<x402::PaymentRequired>(text) {
        let again: x402::PaymentRequired =
            x402::decode_header(&x402::encode_header(&required)).expect("a decoded 402 re-encodes");
        assert_eq!(again, required);
    }
    let _ = x402::decode_header::<x402::SettleResponse>(text);
    let _ = x402::decode_credential::<x402::v1::PaymentPayload>(text);
    let _ = serde_json::from_slice::<x402::v1::PaymentRequired>(data);
}

/// MPP: `WWW-Authenticate` challenges, `Authorization: Payment` credentials, receipts, and the challenge scope
/// paygate puts in `opaque`.
pub fn mpp(data: &[u8]) {
    let Some(text) = text(data) else { return };
    for challenge in mpp::parse_challenges(text).into_iter().flatten() {
        if let Some(opaque) = &challenge.opaque {
            let _ = paygate_core::binding::scope_route(opaque);
        }
    }
    if let Ok(Some(token)) = mpp::find_payment_credential(text) {
        let _ = mpp::Credential::decode(token);
    }
    if let Ok(credential) = mpp::Credential::from_header(text) {
        let again = mpp::Credential::from_header(&credential.to_header()).expect("a decoded credential re-encodes");
        assert_eq!(again, credential);
    }
    let _ = mpp::Receipt::from_header(text);
}

/// RFC 8785: canonical JSON is canonical again, and means the same document.
pub fn jcs(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let canonical = jcs::canonicalize(&value);
    let reparsed: serde_json::Value = serde_json::from_str(&canonical).expect("canonical JSON parses");
    assert_eq!(jcs::canonicalize(&reparsed), canonical);
}

/// A request's headers (`name: value` lines) as the gateway reads them for a credential: every framing, the
/// pay-first dialects' proofs among them.
pub fn credential(data: &[u8]) {
    let mut headers = http::HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(&line[..colon]), http::HeaderValue::from_bytes(trim(&line[colon + 1..])))
        else {
            continue;
        };
        headers.append(name, value);
    }
    let _ = paygate_gateway::extract_credential(&headers);
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// An operator's config file: parsed and validated, or refused with an error naming where.
pub fn config(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Err(e) = paygate_gateway::Config::parse_with_env(text, "fuzz.toml", &|_| None) {
        assert!(!e.to_string().is_empty());
    }
}

/// A facilitator's answers: parsed, and a refusal's reason mapped to paygate's own words, never repeated.
pub fn facilitator_answer(data: &[u8]) {
    let _ = serde_json::from_slice::<x402::SettleResponse>(data);
    let _ = serde_json::from_slice::<x402::Supported>(data);
    if let Ok(answer) = serde_json::from_slice::<x402::VerifyResponse>(data)
        && let Some(reason) = answer.invalid_reason
    {
        let refusal = paygate_methods::eip3009::facilitator_refusal(&reason);
        assert!(reason.len() < 12 || !refusal.detail.contains(&reason), "{reason:?} reached the detail");
    }
}

/// Stripe's answer (a status byte, then the body): a PaymentIntent, or a refusal whose detail holds only
/// paygate's words and Stripe's documented codes.
pub fn stripe_answer(data: &[u8]) {
    let Some((status, body)) = data.split_first() else { return };
    let status = 100 + u16::from(*status) * 2;
    if let Err(refusal) = paygate_methods::stripe::read_answer(status, body) {
        let safe = |c: char| c.is_ascii_alphanumeric() || " _()-.,:;'".contains(c);
        assert!(refusal.detail.chars().all(safe), "{:?}", refusal.detail);
    }
}

/// LND's answer to `AddInvoice` (a status byte, then the body): an invoice, or an error whose message holds no
/// control character and at most 300 of the node's characters.
pub fn lnd_answer(data: &[u8]) {
    let Some((status, body)) = data.split_first() else { return };
    let status = 100 + u16::from(*status) * 2;
    if let Err(paygate_methods::lightning::BackendError::Refused { message, .. }) =
        paygate_methods::lightning::read_add_invoice(status, body)
    {
        assert!(message.chars().count() <= 300 && !message.chars().any(char::is_control), "{message:?}");
    }
}

/// x402 `batch-settlement` payloads (deposits and vouchers): checked against a channel offer, or refused.
pub fn channel_payload(data: &[u8]) {
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let address = |byte: u8| alloy::primitives::Address::repeat_byte(byte);
    let checked = paygate_methods::batch_settlement::check_payload(&payload, 31337, address(9), address(0), address(5));
    if let Err(refusal) = checked {
        assert!(!refusal.reason.is_empty());
    }
}

/// A body sent to an MCP endpoint: a `tools/call` becomes the request the engine prices (its arguments as
/// canonical JSON, its `_meta` payment as the one header of its protocol, which the credential reader then
/// takes or refuses) and the body the MCP server gets (valid JSON, without the payment).
pub fn mcp_call(data: &[u8]) {
    let Some((request, forwarded)) = paygate_gateway::mcp_tool_call_request(data) else { return };
    let (x402, mpp) =
        (request.headers().contains_key("payment-signature"), request.headers().contains_key("authorization"));
    assert!(!(x402 && mpp), "one payment per call");
    let _ = paygate_gateway::extract_credential(request.headers());
    let forwarded: serde_json::Value = serde_json::from_slice(&forwarded).expect("the forwarded call is JSON");
    let meta = forwarded.pointer("/params/_meta");
    assert!(meta.and_then(|m| m.get("x402/payment")).is_none(), "the payment is taken out");
    assert!(meta.and_then(|m| m.get("org.paymentauth/credential")).is_none(), "the credential is taken out");
}
