//! x402 wire types, v2 and v1, and their header codecs.
//!
//! Field order follows the specification's examples so that encoding a decoded header reproduces it byte
//! for byte (the vectors in `tests/vectors/x402` check this). Unknown fields are ignored and `null` is
//! accepted for optional ones, as the reference client does.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{DecodeError, b64, limits};

pub mod borrowed;
pub mod payment_identifier;

/// v2 402 header: base64 JSON [`PaymentRequired`].
pub const PAYMENT_REQUIRED: &str = "payment-required";
/// v2 credential header: base64 JSON [`PaymentPayload`].
pub const PAYMENT_SIGNATURE: &str = "payment-signature";
/// v2 settlement header: base64 JSON [`SettleResponse`].
pub const PAYMENT_RESPONSE: &str = "payment-response";
/// v1 credential header: base64 JSON [`v1::PaymentPayload`].
pub const X_PAYMENT: &str = "x-payment";
/// v1 settlement header: base64 JSON [`SettleResponse`].
pub const X_PAYMENT_RESPONSE: &str = "x-payment-response";

/// The only scheme paygate offers: an exact amount, paid by an EIP-3009 authorization on EVM chains.
pub const SCHEME_EXACT: &str = "exact";

/// What one offer asks for (v2 `accepts[]` entry, echoed back as `accepted`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    pub scheme: String,
    /// CAIP-2 network id, for example `eip155:8453`.
    pub network: String,
    /// Atomic units of `asset`, as a decimal string.
    pub amount: String,
    /// Token contract address.
    pub asset: String,
    pub pay_to: String,
    pub max_timeout_seconds: u64,
    /// Scheme data: EIP-712 `name` and `version` of the token for `exact` on EVM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
}

/// The resource a 402 is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// The decoded `PAYMENT-REQUIRED` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    pub x402_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub resource: ResourceInfo,
    pub accepts: Vec<PaymentRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Map<String, Value>>,
}

/// The decoded `PAYMENT-SIGNATURE` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    pub x402_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceInfo>,
    pub accepted: PaymentRequirements,
    /// Scheme-specific; [`ExactEvmPayload`] for `exact` on EVM.
    #[serde(serialize_with = "serialize_scheme_payload")]
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Map<String, Value>>,
}

/// The `payload` of an `exact` EVM payment: an EIP-3009 authorization and its signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExactEvmPayload {
    pub signature: String,
    pub authorization: Eip3009Authorization,
}

/// Writes a scheme `payload`. A `Value` keeps no key order, so an `exact` EVM payload (nothing more, nothing
/// less) is written as [`ExactEvmPayload`], in the specification's field order, for a decoded header to
/// re-encode byte for byte; any other value is written as it is.
fn serialize_scheme_payload<S: serde::Serializer>(payload: &Value, serializer: S) -> Result<S::Ok, S::Error> {
    if let Ok(exact) = ExactEvmPayload::deserialize(payload)
        && serde_json::to_value(&exact).is_ok_and(|typed| typed == *payload)
    {
        return exact.serialize(serializer);
    }
    payload.serialize(serializer)
}

/// The fields of an EIP-3009 `TransferWithAuthorization`, all strings on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Eip3009Authorization {
    pub from: String,
    pub to: String,
    pub value: String,
    pub valid_after: String,
    pub valid_before: String,
    pub nonce: String,
}

/// `PAYMENT-RESPONSE` / `X-PAYMENT-RESPONSE`, also the facilitator's `/settle` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    /// Transaction hash; empty on failure.
    #[serde(default)]
    pub transaction: String,
    #[serde(default)]
    pub network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Human detail the reference SDKs add on failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The amount settled, where the scheme says it (`batch-settlement`, `upto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// Scheme-specific fields (`batch-settlement`: `chargedAmount`, `channelState`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

/// A facilitator's `/verify` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    pub is_valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
}

/// The body of `POST /verify` and `POST /settle`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FacilitatorRequest {
    pub x402_version: u32,
    pub payment_payload: Value,
    pub payment_requirements: Value,
    /// How long `/settle` waits before it answers: `"submitted"` (once the node took the transaction) or, when
    /// absent, until it is confirmed. thirdweb's facilitator names it so; facilitators that do not know it wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_until: Option<String>,
}

/// One `(version, scheme, network)` a facilitator settles, from `GET /supported`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedKind {
    pub x402_version: u32,
    pub scheme: String,
    pub network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
}

/// `GET /supported`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Supported {
    pub kinds: Vec<SupportedKind>,
    #[serde(default)]
    pub extensions: Vec<String>,
    #[serde(default)]
    pub signers: Map<String, Value>,
}

/// The legacy v1 framing: requirements in the 402 body, credential in `X-PAYMENT`.
pub mod v1 {
    use super::*;

    /// One v1 `accepts[]` entry.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct PaymentRequirements {
        pub scheme: String,
        /// A v1 network name (`base-sepolia`), or CAIP-2 where the chain has none.
        pub network: String,
        pub max_amount_required: String,
        pub asset: String,
        pub pay_to: String,
        pub resource: String,
        #[serde(default)]
        pub description: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub mime_type: Option<String>,
        #[serde(default)]
        pub output_schema: Option<Value>,
        pub max_timeout_seconds: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub extra: Option<Map<String, Value>>,
    }

    /// The v1 402 body.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct PaymentRequired {
        pub x402_version: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub error: Option<String>,
        pub accepts: Vec<PaymentRequirements>,
    }

    /// The decoded `X-PAYMENT` header.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct PaymentPayload {
        pub x402_version: u32,
        pub scheme: String,
        pub network: String,
        #[serde(serialize_with = "super::serialize_scheme_payload")]
        pub payload: Value,
    }

    /// v1 network names of the chains the reference SDK knows (`@x402/evm` `EVM_NETWORK_CHAIN_ID_MAP`).
    pub const NETWORK_NAMES: &[(&str, u64)] = &[
        ("ethereum", 1),
        ("sepolia", 11155111),
        ("base", 8453),
        ("base-sepolia", 84532),
        ("avalanche", 43114),
        ("avalanche-fuji", 43113),
        ("polygon", 137),
        ("polygon-amoy", 80002),
        ("iotex", 4689),
        ("sei", 1329),
        ("sei-testnet", 1328),
        ("abstract", 2741),
        ("abstract-testnet", 11124),
        ("peaq", 3338),
        ("story", 1514),
        ("educhain", 41923),
        ("megaeth", 4326),
        ("monad", 143),
        ("celo", 42220),
    ];

    /// The v1 name of an EVM chain, if it has one.
    pub fn network_name(chain_id: u64) -> Option<&'static str> {
        NETWORK_NAMES.iter().find(|(_, id)| *id == chain_id).map(|(name, _)| *name)
    }

    /// The chain id behind a v1 network name, or behind a CAIP-2 `eip155:<id>` string.
    pub fn chain_id(network: &str) -> Option<u64> {
        if let Some(id) = network.strip_prefix("eip155:") {
            return id.parse().ok();
        }
        NETWORK_NAMES.iter().find(|(name, _)| *name == network).map(|(_, id)| *id)
    }
}

/// Encodes any x402 object as a header value: standard padded base64 of compact JSON.
pub fn encode_header<T: Serialize>(value: &T) -> String {
    // Plain data structs always serialize.
    b64::std_encode(&serde_json::to_vec(value).expect("x402 types serialize"))
}

/// Decodes an x402 header value into `T`, bounded in size and depth.
pub fn decode_header<T: for<'de> Deserialize<'de>>(value: &str) -> Result<T, DecodeError> {
    limits::check_len(value, limits::MAX_CREDENTIAL_HEADER_BYTES.max(limits::MAX_CHALLENGE_HEADER_BYTES))?;
    let bytes = b64::std_decode(value)?;
    limits::check_json_depth(&bytes)?;
    serde_json::from_slice(&bytes).map_err(DecodeError::json)
}

/// Decodes a credential header (`PAYMENT-SIGNATURE` or `X-PAYMENT`) with the tighter credential size limit.
pub fn decode_credential<T: for<'de> Deserialize<'de>>(value: &str) -> Result<T, DecodeError> {
    limits::check_len(value, limits::MAX_CREDENTIAL_HEADER_BYTES)?;
    decode_header(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_names_map_both_ways() {
        assert_eq!(v1::network_name(84532), Some("base-sepolia"));
        assert_eq!(v1::chain_id("base-sepolia"), Some(84532));
        assert_eq!(v1::chain_id("eip155:31337"), Some(31337));
        assert_eq!(v1::network_name(31337), None);
        assert_eq!(v1::chain_id("mars"), None);
    }

    #[test]
    fn settle_response_tolerates_nulls_and_unknown_fields() {
        let json =
            br#"{"success":false,"errorReason":null,"transaction":"","network":"eip155:1","payer":null,"extra":1}"#;
        let r: SettleResponse = serde_json::from_slice(json).unwrap();
        assert!(!r.success);
        assert_eq!(r.error_reason, None);
    }

    #[test]
    fn exact_payloads_keep_the_spec_field_order_and_other_payloads_every_field() {
        let exact = concat!(
            r#"{"signature":"0x1","authorization":{"from":"0xa","to":"0xb","value":"1","#,
            r#""validAfter":"0","validBefore":"9","nonce":"0x2"}}"#
        );
        let json = format!(r#"{{"x402Version":1,"scheme":"exact","network":"base","payload":{exact}}}"#);
        let payload: v1::PaymentPayload = serde_json::from_str(&json).expect("a v1 payload");
        assert_eq!(serde_json::to_string(&payload).expect("serializes"), json);
        let mut other = payload.clone();
        other.payload["memo"] = Value::from("kept");
        assert_eq!(serde_json::to_value(&other).expect("serializes")["payload"], other.payload);
    }

    #[test]
    fn decode_rejects_garbage_without_panicking() {
        assert!(decode_credential::<PaymentPayload>("!!!").is_err());
        assert!(decode_credential::<PaymentPayload>(&b64::std_encode(b"[1,2")).is_err());
        assert!(decode_credential::<PaymentPayload>(&b64::std_encode(b"{}")).is_err());
        let huge = "A".repeat(limits::MAX_CREDENTIAL_HEADER_BYTES + 4);
        assert!(matches!(decode_credential::<PaymentPayload>(&huge), Err(DecodeError::TooLarge { .. })));
    }
}
