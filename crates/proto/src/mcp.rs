//! Payments inside MCP tool calls: where each protocol puts its payment, its refusal and its receipt in a
//! JSON-RPC `tools/call`, and the conversions between those objects and the HTTP headers of the same protocol.
//!
//! - x402 (`specs/transports-v2/mcp.md`): an unpaid call gets a tool result with `isError: true` whose
//!   `content[0].text` is `{"x402/error": {"code": 402, "message", "data": PaymentRequired}}`; the payment comes
//!   back in `params._meta["x402/payment"]` (a `PaymentPayload`), the settlement in the result's
//!   `_meta["x402/payment-response"]`.
//! - MPP (`draft-payment-transport-mcp-00`, as `mppx` 0.11 reads it): the challenges go in the result's
//!   `_meta["org.paymentauth/payment-required"]` (`{challenges, httpStatus, problem}`, each challenge with its
//!   `request` decoded), the credential comes back in `params._meta["org.paymentauth/credential"]` (the
//!   credential object, its challenge's `request` decoded too), the receipt in `_meta["org.paymentauth/receipt"]`.

use serde_json::{Map, Value, json};

use crate::mpp::{Challenge, Credential, Receipt};
use crate::{DecodeError, b64, jcs};

/// `params._meta` key of an x402 payment.
pub const X402_PAYMENT: &str = "x402/payment";
/// Result `_meta` key of an x402 settlement.
pub const X402_PAYMENT_RESPONSE: &str = "x402/payment-response";
/// `content[0].text` wrapper key of an x402 refusal.
pub const X402_ERROR: &str = "x402/error";
/// `params._meta` key of an MPP credential.
pub const MPP_CREDENTIAL: &str = "org.paymentauth/credential";
/// Result `_meta` key of MPP's challenges.
pub const MPP_PAYMENT_REQUIRED: &str = "org.paymentauth/payment-required";
/// Result `_meta` key of an MPP receipt.
pub const MPP_RECEIPT: &str = "org.paymentauth/receipt";

/// JSON-RPC error codes of MPP's MCP binding and of JSON-RPC itself.
pub mod code {
    /// Payment required.
    pub const PAYMENT_REQUIRED: i64 = -32042;
    /// The payment was refused.
    pub const VERIFICATION_FAILED: i64 = -32043;
    /// The request's parameters are wrong.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The server failed.
    pub const INTERNAL_ERROR: i64 = -32603;
}

/// An MPP challenge as MCP carries it: the header's parameters as fields, `request` decoded.
pub fn challenge_object(challenge: &Challenge) -> Value {
    let mut object = match serde_json::to_value(challenge) {
        Ok(Value::Object(object)) => object,
        _ => Map::new(),
    };
    object.insert("request".into(), challenge.request.clone());
    Value::Object(object)
}

/// The `Authorization` value of an MPP credential sent in `_meta` (its challenge's `request` decoded, as mppx
/// sends it, or still encoded).
pub fn credential_header(meta: &Value) -> Result<String, DecodeError> {
    let mut meta = meta.clone();
    if let Some(request) = meta.pointer_mut("/challenge/request").filter(|r| r.is_object()) {
        *request = Value::String(b64::url_encode(jcs::canonicalize(request).as_bytes()));
    }
    let credential: Credential = serde_json::from_value(meta).map_err(DecodeError::json)?;
    Ok(credential.to_header())
}

/// An MPP receipt as MCP carries it: the receipt's fields and the id of the challenge it answers.
pub fn receipt_object(receipt: &Receipt, challenge_id: Option<&str>) -> Value {
    let mut object = match serde_json::to_value(receipt) {
        Ok(Value::Object(object)) => object,
        _ => Map::new(),
    };
    if let Some(id) = challenge_id {
        object.insert("challengeId".into(), id.into());
    }
    Value::Object(object)
}

/// The tool result that asks for payment in both protocols: x402's `isError` result with its `x402/error`
/// text, and MPP's challenges in `_meta`. `x402` is the `PaymentRequired` (absent when no x402 offer is made),
/// `challenges` MPP's, `problem` why the call was not served.
///
/// It carries no `structuredContent`: the MCP SDK's client checks a result's `structuredContent` against the
/// tool's `outputSchema` even when `isError` is set, so a tool with an output schema could not be paid at all.
/// x402 clients read the same object from `content[0].text` (the spec's third place to look).
pub fn payment_required_result(x402: Option<&Value>, challenges: &[Challenge], problem: &Value) -> Value {
    let message = problem.get("detail").or_else(|| problem.get("title")).and_then(Value::as_str);
    let message = message.unwrap_or("Payment required");
    let text = match x402 {
        Some(required) => json!({X402_ERROR: {"code": 402, "message": message, "data": required}}).to_string(),
        None => problem.to_string(),
    };
    let mut result = json!({"isError": true, "content": [{"type": "text", "text": text}]});
    if !challenges.is_empty() {
        let challenges: Vec<Value> = challenges.iter().map(challenge_object).collect();
        result["_meta"] =
            json!({MPP_PAYMENT_REQUIRED: {"challenges": challenges, "httpStatus": 402, "problem": problem}});
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge() -> Challenge {
        Challenge {
            id: "id-1".into(),
            realm: "api.example.com".into(),
            method: "evm".into(),
            intent: "charge".into(),
            request: json!({"amount": "10", "currency": "0x1", "recipient": "0x2"}),
            description: None,
            digest: Some("sha-256=abc".into()),
            expires: Some("2026-12-03T00:00:00Z".into()),
            header: None,
            opaque: None,
        }
    }

    #[test]
    fn a_credential_with_its_request_decoded_is_the_same_header_as_encoded() {
        let credential = Credential { challenge: challenge(), payload: json!({"signature": "0xab"}), source: None };
        let encoded = serde_json::to_value(&credential).unwrap();
        let mut decoded = encoded.clone();
        decoded["challenge"] = challenge_object(&credential.challenge);
        assert!(decoded["challenge"]["request"].is_object());
        assert_eq!(credential_header(&decoded).unwrap(), credential.to_header());
        assert_eq!(credential_header(&encoded).unwrap(), credential.to_header());
        assert!(credential_header(&json!({"challenge": {"id": ""}})).is_err());
        assert!(credential_header(&json!("Payment x")).is_err());
    }

    #[test]
    fn the_payment_required_result_serves_both_protocols() {
        let required = json!({"x402Version": 2, "accepts": []});
        let problem = json!({"title": "Payment Required", "detail": "pay 0.01 USDC"});
        let result = payment_required_result(Some(&required), &[challenge()], &problem);
        assert_eq!(result["isError"], true);
        let text: Value = serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(text[X402_ERROR]["code"], 402);
        assert_eq!(text[X402_ERROR]["data"], required);
        assert_eq!(text[X402_ERROR]["message"], "pay 0.01 USDC");
        let mpp = &result["_meta"][MPP_PAYMENT_REQUIRED];
        assert_eq!(mpp["httpStatus"], 402);
        assert_eq!(mpp["challenges"][0]["request"]["amount"], "10");
        assert_eq!(mpp["challenges"][0]["id"], "id-1");
        assert!(result.get("structuredContent").is_none());
    }
}
