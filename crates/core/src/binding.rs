//! The challenge id: an HMAC-SHA256 that binds an offer to everything it was issued for.
//!
//! `id = base64url(HMAC-SHA256(secret, realm|method|intent|request|expires|digest|[header|]opaque))`, where
//! `request` and `opaque` are base64url of JCS JSON and absent slots are empty. This is exactly the MPP
//! conformance vectors' algorithm (the SDKs put `header` before `opaque`, the draft after; the SDKs win).
//!
//! paygate uses the same id for both protocols: an MPP challenge carries it as `id`, an x402 offer carries it
//! in `extra`. A paid retry is then checked without server state: recompute the id over what the request
//! should have been offered *now* (same route, same body digest, same amount) and compare in constant time.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use paygate_proto::{b64, jcs};

/// The shortest secret accepted, as the MPP SDKs require.
pub const MIN_SECRET_BYTES: usize = 32;

/// The HMAC key. Never printed: its `Debug` is redacted.
#[derive(Clone)]
pub struct ChallengeSecret(Vec<u8>);

impl std::fmt::Debug for ChallengeSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChallengeSecret(<redacted>)")
    }
}

/// A secret shorter than [`MIN_SECRET_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the challenge secret must be at least {MIN_SECRET_BYTES} bytes, it is {0}")]
pub struct SecretTooShort(pub usize);

impl ChallengeSecret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, SecretTooShort> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(SecretTooShort(bytes.len()));
        }
        Ok(ChallengeSecret(bytes))
    }
}

/// The bound parameters of one challenge.
#[derive(Debug, Clone, Copy)]
pub struct BindingInput<'a> {
    pub realm: &'a str,
    pub method: &'a str,
    pub intent: &'a str,
    /// The `request` parameter as sent: base64url of the request's JCS text ([`encode_request`]).
    pub request: &'a str,
    pub expires: Option<&'a str>,
    pub digest: Option<&'a str>,
    /// The credential header, when it is not the default `Authorization`.
    pub header: Option<&'a str>,
    /// base64url of the JCS opaque object.
    pub opaque: Option<&'a str>,
}

impl BindingInput<'_> {
    /// The pipe-joined HMAC input.
    pub fn message(&self) -> String {
        let mut slots: Vec<&str> = vec![
            self.realm,
            self.method,
            self.intent,
            self.request,
            self.expires.unwrap_or(""),
            self.digest.unwrap_or(""),
        ];
        if let Some(header) = self.header.filter(|h| !h.eq_ignore_ascii_case("authorization")) {
            slots.push(header);
        }
        slots.push(self.opaque.unwrap_or(""));
        slots.join("|")
    }
}

impl ChallengeSecret {
    fn mac(&self, input: &BindingInput<'_>) -> [u8; 32] {
        // HMAC accepts keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(input.message().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The challenge id for these parameters.
    pub fn challenge_id(&self, input: &BindingInput<'_>) -> String {
        b64::url_encode(&self.mac(input))
    }

    /// Whether `id` is the challenge id of these parameters, compared in constant time.
    pub fn verify(&self, input: &BindingInput<'_>, id: &str) -> bool {
        let Ok(presented) = b64::url_decode(id) else { return false };
        presented.len() == 32 && bool::from(presented.ct_eq(&self.mac(input)))
    }
}

/// A challenge's `request` parameter: base64url (no padding) of the JCS text of the request object.
pub fn encode_request(request: &Value) -> String {
    b64::url_encode(jcs::canonicalize(request).as_bytes())
}

/// The `opaque` object paygate binds into every challenge: the request it was issued for (`GET /path?query`), so
/// that an offer made for one route cannot pay for another, and a random nonce, so that two 402s for the same
/// request in the same second still carry different (single-use) challenges.
pub fn challenge_scope(route: &str, nonce: &str) -> String {
    let scope = serde_json::json!({ "n": nonce, "route": route });
    b64::url_encode(jcs::canonicalize(&scope).as_bytes())
}

/// The route a [`challenge_scope`] was issued for; `None` when `opaque` is not one.
pub fn scope_route(opaque: &str) -> Option<String> {
    let bytes = b64::url_decode(opaque).ok()?;
    let scope: Value = serde_json::from_slice(&bytes).ok()?;
    scope.get("route")?.as_str().map(str::to_owned)
}

/// A fresh challenge nonce, unique across processes and calls: 8 random bytes chosen once per process and a
/// counter, base64url. It need not be secret or unpredictable (the HMAC makes ids unforgeable), only unique, and
/// this way costs no system call per 402.
pub fn new_nonce() -> String {
    static PREFIX: std::sync::OnceLock<[u8; 8]> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| alloy::primitives::B64::random().0);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(prefix);
    bytes[8..].copy_from_slice(&COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_be_bytes());
    b64::url_encode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret() -> ChallengeSecret {
        ChallengeSecret::new(b"test-vector-secret-minimum-32-byte-secret".to_vec()).unwrap()
    }

    #[test]
    fn scopes_carry_the_route_and_differ_by_nonce() {
        let a = challenge_scope("GET /v1/quote", &new_nonce());
        let b = challenge_scope("GET /v1/quote", &new_nonce());
        assert_ne!(a, b);
        assert_eq!(scope_route(&a).as_deref(), Some("GET /v1/quote"));
        assert_eq!(scope_route("e30"), None);
        assert_eq!(scope_route("!!"), None);
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(ChallengeSecret::new(b"short".to_vec()).unwrap_err(), SecretTooShort(5));
        assert!(!format!("{:?}", secret()).contains("test-vector"));
    }

    #[test]
    fn verify_accepts_the_id_and_nothing_else() {
        let request = encode_request(&json!({"amount": "1000000"}));
        let input = BindingInput {
            realm: "api.example.com",
            method: "tempo",
            intent: "charge",
            request: &request,
            expires: None,
            digest: None,
            header: None,
            opaque: None,
        };
        let id = secret().challenge_id(&input);
        assert_eq!(id, "6QDs0BmhrI_v67iWeCMvGqQJEFQ6ErWKlk7zi5xL6t0");
        assert!(secret().verify(&input, &id));
        let other = encode_request(&json!({"amount": "1000001"}));
        assert!(!secret().verify(&BindingInput { request: &other, ..input }, &id));
        assert!(!secret().verify(&input, "not base64 !"));
        assert!(!secret().verify(&input, &id[..20]));
    }
}
