//! Finding the payment a request carries, in whichever framing it came.

use http::HeaderMap;
use http::header::AUTHORIZATION;

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
}

impl Presented {
    /// The protocol name in the ledger.
    pub fn protocol(&self) -> &'static str {
        match self {
            Presented::X402V2(_) => "x402-v2",
            Presented::X402V1(_) => "x402-v1",
            Presented::Mpp(_) => "mpp",
        }
    }
}

/// The credential headers paygate reads, which the upstream never sees.
pub const CREDENTIAL_HEADERS: [&str; 3] = [x402::PAYMENT_SIGNATURE, x402::X_PAYMENT, mpp::PAYMENT_AUTHORIZATION];

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
