//! Finding the payment a request carries, in whichever framing it came.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};

use paygate_core::method::TxHashProof;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_proto::mpp::{self, Credential, CredentialError};
use paygate_proto::{limits, x402};

/// A payment credential, decoded but not yet checked.
#[derive(Debug, Clone)]
pub enum Presented {
    /// x402 v2 `PAYMENT-SIGNATURE`.
    X402V2(x402::PaymentPayload),
    /// x402 v1 `X-PAYMENT`.
    X402V1(x402::v1::PaymentPayload),
    /// MPP `Authorization: Payment` (or `Payment-Authorization`).
    Mpp(Credential),
    /// A transfer the payer already made, named by its hash in one of the pay-first dialects.
    TxHash(TxHashProof),
}

impl Presented {
    /// The protocol name in the ledger.
    pub fn protocol(&self) -> &'static str {
        match self {
            Presented::X402V2(_) => "x402-v2",
            Presented::X402V1(_) => "x402-v1",
            Presented::Mpp(_) => "mpp",
            Presented::TxHash(proof) => proof.dialect,
        }
    }
}

/// The pay-first dialects' proof headers.
pub(crate) const TX_HASH_HEADERS: [&str; 3] = ["x-402-payment-proof", "x-402-payment", "x-payment-hash"];

/// The credential headers paygate reads, which the upstream never sees.
pub(crate) const CREDENTIAL_HEADERS: [HeaderName; 6] = [
    HeaderName::from_static(x402::PAYMENT_SIGNATURE),
    HeaderName::from_static(x402::X_PAYMENT),
    HeaderName::from_static(mpp::PAYMENT_AUTHORIZATION),
    HeaderName::from_static(TX_HASH_HEADERS[0]),
    HeaderName::from_static(TX_HASH_HEADERS[1]),
    HeaderName::from_static(TX_HASH_HEADERS[2]),
];

/// A tx-hash proof as the dialects send it: `{"txHash","network","token","amount"}` as JSON or base64 JSON,
/// or the bare hash.
fn tx_hash_proof(dialect: &'static str, value: &str) -> Result<TxHashProof, Rejection> {
    let value = value.trim();
    let bare_hash = value.starts_with("0x") || (value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()));
    let json: Option<serde_json::Value> = if value.starts_with('{') {
        Some(serde_json::from_str(value).map_err(|_| malformed(format!("{dialect}: not JSON")))?)
    } else if bare_hash {
        None
    } else {
        let bytes = paygate_proto::b64::std_decode(value)
            .map_err(|_| malformed(format!("{dialect}: neither a hash, JSON nor base64 JSON")))?;
        Some(serde_json::from_slice(&bytes).map_err(|_| malformed(format!("{dialect}: not JSON")))?)
    };
    let Some(json) = json else {
        return Ok(TxHashProof { dialect, tx_hash: value.to_owned(), network: None, token: None, amount: None });
    };
    let field = |names: &[&str]| {
        names.iter().find_map(|n| json.get(*n)).and_then(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let tx_hash = field(&["txHash", "tx_hash", "transactionHash", "hash"])
        .ok_or_else(|| malformed(format!("{dialect}: the proof has no txHash")))?;
    Ok(TxHashProof {
        dialect,
        tx_hash,
        network: field(&["network", "chainId", "chain_id"]),
        token: field(&["token", "asset"]),
        amount: field(&["amount", "value"]),
    })
}

fn malformed(detail: String) -> Rejection {
    Rejection::new(RejectKind::MalformedCredential, "malformed_credential", detail)
}

/// The one credential in `headers`, `None` when there is none.
pub fn extract(headers: &HeaderMap) -> Result<Option<Presented>, Rejection> {
    let mut found: Vec<Presented> = Vec::new();
    let value = |name: &str| -> Result<Option<&str>, Rejection> {
        let mut values = headers.get_all(name).iter();
        let Some(first) = values.next() else { return Ok(None) };
        if values.next().is_some() {
            return Err(Rejection::new(
                RejectKind::MultipleCredentials,
                "multiple_credentials",
                format!("{name} is repeated"),
            ));
        }
        if first.len() > limits::MAX_CREDENTIAL_HEADER_BYTES {
            return Err(Rejection::new(
                RejectKind::HeaderTooLarge,
                "header_too_large",
                format!("{name} is {} bytes; the limit is {}", first.len(), limits::MAX_CREDENTIAL_HEADER_BYTES),
            ));
        }
        first.to_str().map(Some).map_err(|_| malformed(format!("{name} is not visible ASCII")))
    };
    if let Some(v) = value(x402::PAYMENT_SIGNATURE)? {
        let payload = x402::decode_credential(v).map_err(|e| malformed(format!("PAYMENT-SIGNATURE: {e}")))?;
        found.push(Presented::X402V2(payload));
    }
    if let Some(v) = value(x402::X_PAYMENT)? {
        let payload = x402::decode_credential(v).map_err(|e| malformed(format!("X-PAYMENT: {e}")))?;
        found.push(Presented::X402V1(payload));
    }
    for dialect in TX_HASH_HEADERS {
        if let Some(v) = value(dialect)? {
            found.push(Presented::TxHash(tx_hash_proof(dialect, v)?));
        }
    }
    for name in [AUTHORIZATION.as_str(), mpp::PAYMENT_AUTHORIZATION] {
        let Some(v) = value(name)? else { continue };
        match mpp::find_payment_credential(v) {
            Ok(None) => {}
            Ok(Some(token)) => {
                let credential = Credential::decode(token).map_err(|e| malformed(format!("{name}: {e}")))?;
                found.push(Presented::Mpp(credential));
            }
            Err(CredentialError::Multiple) => {
                return Err(Rejection::new(
                    RejectKind::MultipleCredentials,
                    "multiple_credentials",
                    "several Payment credentials",
                ));
            }
            Err(CredentialError::Decode(e)) => return Err(malformed(format!("{name}: {e}"))),
        }
    }
    if found.len() > 1 {
        return Err(Rejection::new(
            RejectKind::MultipleCredentials,
            "multiple_credentials",
            "send one payment credential per request",
        ));
    }
    Ok(found.pop())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_hash_proofs_come_in_three_shapes() {
        let hash = format!("0x{}", "ab".repeat(32));
        let bare = tx_hash_proof("x-payment-hash", &hash).unwrap();
        assert_eq!((bare.tx_hash.as_str(), bare.network), (hash.as_str(), None));
        let json = format!(r#"{{"txHash":"{hash}","network":"eip155:8453","token":"0x1","amount":"10000"}}"#);
        let proof = tx_hash_proof("x-402-payment-proof", &json).unwrap();
        assert_eq!(
            (proof.network.as_deref(), proof.token.as_deref(), proof.amount.as_deref()),
            (Some("eip155:8453"), Some("0x1"), Some("10000"))
        );
        let b64 = paygate_proto::b64::std_encode(json.as_bytes());
        assert_eq!(tx_hash_proof("x-402-payment", &b64).unwrap().tx_hash, hash);
        assert!(tx_hash_proof("x-402-payment", "{not json").is_err());
        assert!(tx_hash_proof("x-402-payment", r#"{"network":"base"}"#).is_err());
        assert!(tx_hash_proof("x-402-payment", "%%%").is_err());
    }
}
