//! API keys of known customers, beside paying agents: a route with `api_keys = true` also serves
//! `Authorization: Bearer <key>` for keys made with `paygate keys create`. Keys are 32 random bytes; the store
//! keeps only their SHA-256 (a fast hash is enough for keys that cannot be guessed), so a leaked ledger leaks
//! no key. A customer's successful call is a `metered` ledger row at the price the route asks of that request.

use alloy::primitives::B256;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// What every key starts with, so that a key is recognizable in a config or a log.
pub const KEY_PREFIX: &str = "pgk_";

/// How many characters of a key listings show.
pub const SHOWN_CHARS: usize = 12;

/// A fresh key: `pgk_` and 43 base64url characters.
pub fn generate() -> String {
    format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(B256::random()))
}

/// What the store keeps of `key`: its SHA-256, hex.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The part of `key` listings show.
pub fn shown(key: &str) -> &str {
    key.get(..SHOWN_CHARS).unwrap_or(key)
}

/// The bearer token of an `Authorization` header value, when it is one that looks like a paygate key.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && token.starts_with(KEY_PREFIX)).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hashed() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 43, "{a}");
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(bearer(&format!("Bearer {a}")), Some(a.as_str()));
        assert_eq!(bearer(&format!("bearer  {a}")), Some(a.as_str()));
        assert_eq!(bearer("Bearer something-else"), None);
        assert_eq!(bearer(&format!("Payment {a}")), None);
        assert_eq!(shown(&a).len(), SHOWN_CHARS);
    }
}
