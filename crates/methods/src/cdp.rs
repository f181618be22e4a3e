//! Coinbase Developer Platform API keys: a fresh signed JWT per request, as the CDP facilitator
//! (`https://api.cdp.coinbase.com/platform/v2/x402`) requires and `@coinbase/cdp-sdk`'s `generateJwt` makes.
//!
//! A key is its id (`organizations/.../apiKeys/...`) and its secret: an EC P-256 private key in PEM (SEC1 or
//! PKCS#8), signed ES256, or an Ed25519 key as base64 of its 32-byte seed and 32-byte public key, signed EdDSA.
//! Each token is valid for two minutes, names the one request it authorizes (`uris: ["POST host/path"]`), and
//! carries a random nonce in its header.

use std::fmt;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;

/// How long a token is valid, as the CDP SDK makes them.
pub const TOKEN_LIFETIME_SECS: u64 = 120;

/// A key that cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CDP API key secret: {0}")]
pub struct CdpKeyError(String);

enum Signer {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// A CDP API key, ready to sign request tokens. Its `Debug` shows the id only.
pub struct CdpKey {
    id: String,
    signer: Signer,
    random: SystemRandom,
}

impl fmt::Debug for CdpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CdpKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl CdpKey {
    /// Reads key `id`'s `secret`: a PEM EC key, or base64 of an Ed25519 seed and public key.
    pub fn new(id: &str, secret: &str) -> Result<CdpKey, CdpKeyError> {
        let secret = secret.trim();
        let signer = if secret.starts_with("-----BEGIN") {
            let der = PrivateKeyDer::from_pem_slice(secret.as_bytes())
                .map_err(|e| CdpKeyError(format!("not a PEM private key ({e})")))?;
            let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_der())
                .map_err(|_| CdpKeyError("not an EC P-256 private key".into()))?;
            Signer::Es256(pair)
        } else {
            let bytes = STANDARD.decode(secret).map_err(|_| CdpKeyError("neither PEM nor base64".into()))?;
            if bytes.len() != 64 {
                return Err(CdpKeyError(format!("an Ed25519 secret is 64 bytes, this is {}", bytes.len())));
            }
            let pair = Ed25519KeyPair::from_seed_and_public_key(&bytes[..32], &bytes[32..])
                .map_err(|_| CdpKeyError("the Ed25519 seed and public key do not match".into()))?;
            Signer::EdDsa(pair)
        };
        Ok(CdpKey { id: id.to_owned(), signer, random: SystemRandom::new() })
    }

    /// The key's public half: SEC1 uncompressed point (P-256) or the 32 raw bytes (Ed25519).
    pub fn public_key(&self) -> Vec<u8> {
        match &self.signer {
            Signer::Es256(pair) => pair.public_key().as_ref().to_vec(),
            Signer::EdDsa(pair) => pair.public_key().as_ref().to_vec(),
        }
    }

    /// A token for `method host path` (`POST`, `api.cdp.coinbase.com`, `/platform/v2/x402/verify`) issued at
    /// `now` (Unix seconds).
    pub fn token(&self, method: &str, host: &str, path: &str, now: u64) -> Result<String, CdpKeyError> {
        let mut nonce = [0u8; 16];
        self.random.fill(&mut nonce).map_err(|_| CdpKeyError("no randomness for the nonce".into()))?;
        let alg = match self.signer {
            Signer::Es256(_) => "ES256",
            Signer::EdDsa(_) => "EdDSA",
        };
        let header = json!({ "alg": alg, "kid": self.id, "typ": "JWT", "nonce": hex::encode(nonce) });
        let claims = json!({
            "sub": self.id,
            "iss": "cdp",
            "uris": [format!("{method} {host}{path}")],
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_SECS,
        });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = match &self.signer {
            Signer::Es256(pair) => pair
                .sign(&self.random, signing_input.as_bytes())
                .map_err(|_| CdpKeyError("ES256 signing failed".into()))?
                .as_ref()
                .to_vec(),
            Signer::EdDsa(pair) => pair.sign(signing_input.as_bytes()).as_ref().to_vec(),
        };
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One throwaway P-256 key (made with `openssl ecparam -genkey`), in the SEC1 form the CDP portal hands out
    /// and in PKCS#8 (`openssl pkcs8 -topk8`), the form `@coinbase/cdp-sdk` reads and `tests/cdp_token.rs`
    /// checks against it.
    const SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIAOjMXnbjKsvI5GWzZvQYPsPJBTn3jdExTo8iEulDaCToAoGCCqGSM49
AwEHoUQDQgAEslIxQXcx+Rsh/9unEHU66DAN9rv/51OIHoH1K4Py865Da9RTC5fk
qlGS4YousyTmJgtB0sM+Q0tSPbEahE2F4A==
-----END EC PRIVATE KEY-----";
    const PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgA6MxeduMqy8jkZbN
m9Bg+w8kFOfeN0TFOjyIS6UNoJOhRANCAASyUjFBdzH5GyH/26cQdTroMA32u//n
U4gegfUrg/LzrkNr1FMLl+SqUZLhii6zJOYmC0HSwz5DS1I9sRqETYXg
-----END PRIVATE KEY-----";

    #[test]
    fn sec1_and_pkcs8_forms_of_one_key_sign_alike() {
        let sec1 = CdpKey::new("k", SEC1).unwrap();
        assert_eq!(sec1.public_key(), CdpKey::new("k", PKCS8).unwrap().public_key());
        let token = sec1.token("POST", "api.cdp.coinbase.com", "/platform/v2/x402/settle", 1_800_000_000).unwrap();
        let (input, signature) = token.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED, sec1.public_key())
            .verify(input.as_bytes(), &signature)
            .expect("the ES256 signature verifies with the key's public half");
        assert!(CdpKey::new("k", "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----").is_err());
    }
}
