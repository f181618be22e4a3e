//! `Authorization: Payment <base64url JSON>` credentials.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Challenge;
use crate::{DecodeError, b64, limits};

/// What a client sends back: the challenge it answers, echoed, and the method's proof of payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub challenge: Challenge,
    /// Method-specific proof (for `evm`: an EIP-3009 authorization and its signature).
    pub payload: Value,
    /// Who pays, as a DID (`did:pkh:eip155:<chain>:<address>`), when the method says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Why an `Authorization` value did not yield one credential.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CredentialError {
    /// The header holds more than one `Payment` credential (MPP: answer 400).
    #[error("more than one Payment credential")]
    Multiple,
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl Credential {
    /// The header value: `Payment ` and base64url (no padding) of the JSON.
    pub fn to_header(&self) -> String {
        // Plain data always serializes.
        let json = serde_json::to_vec(self).expect("credential serializes");
        format!("{} {}", super::SCHEME, b64::url_encode(&json))
    }

    /// Decodes the token68 part of the header.
    pub fn decode(token: &str) -> Result<Credential, DecodeError> {
        limits::check_len(token, limits::MAX_CREDENTIAL_HEADER_BYTES)?;
        let bytes = b64::url_decode(token)?;
        limits::check_json_depth(&bytes)?;
        serde_json::from_slice(&bytes).map_err(DecodeError::json)
    }

    /// Parses a whole header value that must be exactly one `Payment` credential.
    pub fn from_header(value: &str) -> Result<Credential, CredentialError> {
        match find_payment_credential(value)? {
            Some(token) => Ok(Credential::decode(token)?),
            None => Err(DecodeError::Grammar("no Payment credential".into()).into()),
        }
    }
}

/// Finds the `Payment` credential token in an `Authorization` value, which may list other schemes
/// (`Bearer x, Payment eyJ...`). `Ok(None)` when there is none.
pub fn find_payment_credential(value: &str) -> Result<Option<&str>, CredentialError> {
    let mut found = None;
    for part in value.split(',') {
        let part = part.trim_start();
        let Some((scheme, rest)) = part.split_once([' ', '\t']) else { continue };
        if !scheme.eq_ignore_ascii_case(super::SCHEME) {
            continue;
        }
        let token = rest.trim();
        if found.replace(token).is_some() {
            return Err(CredentialError::Multiple);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_payment_among_other_schemes() {
        assert_eq!(find_payment_credential("Bearer abc, Payment e30").unwrap(), Some("e30"));
        assert_eq!(find_payment_credential("payment   e30 ").unwrap(), Some("e30"));
        assert_eq!(find_payment_credential("Bearer abc").unwrap(), None);
        assert_eq!(find_payment_credential("Payment a, Payment b"), Err(CredentialError::Multiple));
    }
}
