//! Request-body digests for MPP's `digest` parameter.
//!
//! The draft says RFC 9530 (`sha-256=:<base64>:`); every SDK emits `sha-256=<base64>` with no colons. paygate
//! emits the SDK form and accepts both.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

/// `sha-256=<standard base64 of SHA-256(body)>`.
pub fn body_digest(body: &[u8]) -> String {
    format!("sha-256={}", STANDARD.encode(Sha256::digest(body)))
}

/// Whether `digest` (either syntax) is the digest of `body`.
pub fn digest_matches(digest: &str, body: &[u8]) -> bool {
    let Some(value) = digest.strip_prefix("sha-256=") else { return false };
    let value = value.strip_prefix(':').and_then(|v| v.strip_suffix(':')).unwrap_or(value);
    let Ok(bytes) = STANDARD.decode(value) else { return false };
    bytes[..] == Sha256::digest(body)[..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_syntaxes_match() {
        let d = body_digest(b"{\"hello\":\"world\"}");
        assert_eq!(d, "sha-256=k6I5cakU5erL8KjSUVTNownDwccvu5kU1Hxg88toFYg=");
        assert!(digest_matches(&d, b"{\"hello\":\"world\"}"));
        assert!(digest_matches("sha-256=:k6I5cakU5erL8KjSUVTNownDwccvu5kU1Hxg88toFYg=:", b"{\"hello\":\"world\"}"));
        assert!(!digest_matches(&d, b"{\"hello\":\"World\"}"));
        assert!(!digest_matches("md5=abc", b""));
    }
}
