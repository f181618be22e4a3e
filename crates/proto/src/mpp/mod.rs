//! MPP, the `Payment` HTTP authentication scheme (draft-httpauth-payment).
//!
//! A server answers 402 with one `WWW-Authenticate: Payment ...` [`Challenge`] per offer; the client answers
//! with `Authorization: Payment <base64url JSON>` carrying a [`Credential`] that echoes the challenge it paid;
//! a paid response carries `Payment-Receipt: <base64url JSON>` ([`Receipt`]).
//!
//! Where the draft and the SDKs disagree (the digest syntax, where the `header` slot sits in the challenge
//! id) the SDKs and the conformance vectors in `tests/vectors/mpp` win.

mod challenge;
mod credential;
mod receipt;

pub use challenge::{Challenge, ChallengeParams, FormatError, parse_challenge, parse_challenges};
pub use credential::{Credential, CredentialError, find_payment_credential};
pub use receipt::Receipt;

/// The authentication scheme name.
pub const SCHEME: &str = "Payment";
/// The receipt header.
pub const PAYMENT_RECEIPT: &str = "payment-receipt";
/// The alternate credential header a challenge may select with `header="Payment-Authorization"`.
pub const PAYMENT_AUTHORIZATION: &str = "payment-authorization";

/// Decodes base64url (lenient as the SDKs are) into UTF-8 text.
pub fn decode_text(encoded: &str) -> Result<String, crate::DecodeError> {
    String::from_utf8(crate::b64::url_decode(encoded)?).map_err(|_| crate::DecodeError::Base64)
}
