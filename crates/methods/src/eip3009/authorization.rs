//! An EIP-3009 `TransferWithAuthorization`: parsed from either protocol's payload, hashed per EIP-712, and
//! its signer recovered.

use alloy::primitives::{Address, B256, Bytes, Signature, U256, keccak256};
use alloy::sol_types::SolCall;
use alloy::sol_types::{Eip712Domain, SolStruct};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use paygate_chain::abi::Eip3009Token;

use paygate_proto::x402::{Eip3009Authorization, ExactEvmPayload};

alloy::sol! {
    /// The EIP-712 message a payer signs.
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }
}

/// A signed authorization, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAuthorization {
    pub from: Address,
    pub to: Address,
    pub value: U256,
    pub valid_after: U256,
    pub valid_before: U256,
    pub nonce: B256,
    /// 65 bytes `r‖s‖v` for an EOA; longer for a smart wallet (ERC-1271).
    pub signature: Bytes,
}

/// The JSON the ledger keeps to settle later: the authorization in x402's string form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAuthorization {
    #[serde(flatten)]
    pub payload: ExactEvmPayload,
    /// The x402 requirements the authorization pays (sent to a facilitator with it).
    pub requirements: Value,
}

/// Why a payload is not a well-formed authorization.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

fn address(field: &str, text: &str) -> Result<Address, PayloadError> {
    text.parse().map_err(|_| PayloadError(format!("{field} is not an address")))
}

fn uint(field: &str, text: &str) -> Result<U256, PayloadError> {
    if text.is_empty() || text.len() > 78 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PayloadError(format!("{field} is not a decimal integer")));
    }
    U256::from_str_radix(text, 10).map_err(|_| PayloadError(format!("{field} is out of range")))
}

fn hex_bytes(field: &str, text: &str) -> Result<Vec<u8>, PayloadError> {
    let body = text.strip_prefix("0x").ok_or_else(|| PayloadError(format!("{field} is not 0x-hex")))?;
    alloy::hex::decode(body).map_err(|_| PayloadError(format!("{field} is not 0x-hex")))
}

impl SignedAuthorization {
    /// Calldata of `transferWithAuthorization` redeeming this authorization, in the `v,r,s` form for 65-byte
    /// signatures.
    pub fn transfer_call(&self) -> Bytes {
        let auth = self;
        if auth.signature.len() == 65 {
            let sig = &auth.signature;
            let v = if sig[64] < 27 { sig[64] + 27 } else { sig[64] };
            Eip3009Token::transferWithAuthorization_0Call {
                from: auth.from,
                to: auth.to,
                value: auth.value,
                validAfter: auth.valid_after,
                validBefore: auth.valid_before,
                nonce: auth.nonce,
                v,
                r: B256::from_slice(&sig[..32]),
                s: B256::from_slice(&sig[32..64]),
            }
            .abi_encode()
            .into()
        } else {
            Eip3009Token::transferWithAuthorization_1Call {
                from: auth.from,
                to: auth.to,
                value: auth.value,
                validAfter: auth.valid_after,
                validBefore: auth.valid_before,
                nonce: auth.nonce,
                signature: auth.signature.clone(),
            }
            .abi_encode()
            .into()
        }
    }

    /// From x402's `exact` EVM payload (`{signature, authorization}`).
    pub fn from_x402(payload: &Value) -> Result<Self, PayloadError> {
        let payload = ExactEvmPayload::deserialize(payload)
            .map_err(|_| PayloadError("payload is not {signature, authorization}".into()))?;
        Self::from_exact(&payload)
    }

    /// From the typed x402 form.
    pub fn from_exact(payload: &ExactEvmPayload) -> Result<Self, PayloadError> {
        Self::from_parts(&payload.authorization, &payload.signature)
    }

    /// From MPP's `evm` charge payload (`{type:"authorization", from, to, value, ..., signature}`).
    pub fn from_mpp(payload: &Value) -> Result<Self, PayloadError> {
        if payload.get("type").and_then(Value::as_str) != Some("authorization") {
            return Err(PayloadError("payload type is not \"authorization\"".into()));
        }
        let field = |name: &str| {
            payload.get(name).and_then(Value::as_str).ok_or_else(|| PayloadError(format!("payload lacks {name}")))
        };
        let authorization = Eip3009Authorization {
            from: field("from")?.to_owned(),
            to: field("to")?.to_owned(),
            value: field("value")?.to_owned(),
            valid_after: field("validAfter")?.to_owned(),
            valid_before: field("validBefore")?.to_owned(),
            nonce: field("nonce")?.to_owned(),
        };
        Self::from_parts(&authorization, field("signature")?)
    }

    fn from_parts(a: &Eip3009Authorization, signature: &str) -> Result<Self, PayloadError> {
        let nonce = hex_bytes("nonce", &a.nonce)?;
        if nonce.len() != 32 {
            return Err(PayloadError("nonce is not 32 bytes".into()));
        }
        let signature = hex_bytes("signature", signature)?;
        if signature.len() < 65 || signature.len() > 4096 {
            return Err(PayloadError("signature length is implausible".into()));
        }
        Ok(SignedAuthorization {
            from: address("from", &a.from)?,
            to: address("to", &a.to)?,
            value: uint("value", &a.value)?,
            valid_after: uint("validAfter", &a.valid_after)?,
            valid_before: uint("validBefore", &a.valid_before)?,
            nonce: B256::from_slice(&nonce),
            signature: signature.into(),
        })
    }

    /// The x402 string form.
    pub fn to_x402(&self) -> ExactEvmPayload {
        ExactEvmPayload {
            signature: self.signature.to_string(),
            authorization: Eip3009Authorization {
                from: self.from.to_checksum(None),
                to: self.to.to_checksum(None),
                value: self.value.to_string(),
                valid_after: self.valid_after.to_string(),
                valid_before: self.valid_before.to_string(),
                nonce: self.nonce.to_string(),
            },
        }
    }

    /// The EIP-712 digest the payer signed under `domain`.
    pub fn signing_hash(&self, domain: &Eip712Domain) -> B256 {
        TransferWithAuthorization {
            from: self.from,
            to: self.to,
            value: self.value,
            validAfter: self.valid_after,
            validBefore: self.valid_before,
            nonce: self.nonce,
        }
        .eip712_signing_hash(domain)
    }

    /// The address a 65-byte signature recovers to; `None` for other lengths or invalid signatures.
    pub fn recover_signer(&self, domain: &Eip712Domain) -> Option<Address> {
        if self.signature.len() != 65 {
            return None;
        }
        let signature = Signature::from_raw(&self.signature).ok()?;
        signature.recover_address_from_prehash(&self.signing_hash(domain)).ok()
    }
}

/// The EIP-3009 nonces an MPP `evm` credential may carry for a challenge: mppx 0.11 derives
/// `keccak256(id ‖ realm)`, pympp and mppx's next release `keccak256(JSON.stringify([id, realm]))`. Both are
/// accepted; they cannot collide in practice.
pub fn mpp_challenge_nonces(challenge_id: &str, realm: &str) -> [B256; 2] {
    let concatenated = keccak256(format!("{challenge_id}{realm}"));
    // Two strings always serialize.
    let json = serde_json::to_string(&[challenge_id, realm]).expect("strings serialize");
    [concatenated, keccak256(json)]
}

/// The EIP-712 domain of an EIP-3009 token.
pub fn domain(name: &str, version: &str, chain_id: u64, token: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some(name.to_owned().into()),
        Some(version.to_owned().into()),
        Some(U256::from(chain_id)),
        Some(token),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn malformed_payloads_are_errors() {
        let good = json!({"signature": format!("0x{}", "11".repeat(65)), "authorization": {
            "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66", "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "value": "10000", "validAfter": "0", "validBefore": "1740672154",
            "nonce": format!("0x{}", "ab".repeat(32))}});
        assert!(SignedAuthorization::from_x402(&good).is_ok());
        for (path, bad) in [
            ("value", json!("-1")),
            ("value", json!("1e5")),
            ("value", json!(10000)),
            ("nonce", json!("0x1234")),
            ("from", json!("0xnothex")),
            ("validBefore", json!("9".repeat(80))),
        ] {
            let mut p = good.clone();
            p["authorization"][path] = bad.clone();
            assert!(SignedAuthorization::from_x402(&p).is_err(), "{path} = {bad}");
        }
        let mut short = good.clone();
        short["signature"] = json!("0x1234");
        assert!(SignedAuthorization::from_x402(&short).is_err());
        assert!(SignedAuthorization::from_mpp(&json!({"type": "transaction"})).is_err());
    }

    #[test]
    fn mpp_nonces_follow_both_sdks() {
        let [concat, json] = mpp_challenge_nonces("abc", "api.example.com");
        assert_eq!(concat, keccak256("abcapi.example.com"));
        assert_eq!(json, keccak256(r#"["abc","api.example.com"]"#));
    }
}
