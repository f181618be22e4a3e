//! The payer's key. It signs EIP-3009 authorizations locally and is never printed: `Debug` shows the
//! address only. It comes from a hex key in the environment or from an encrypted keystore file (Web3 Secret
//! Storage v3: scrypt and AES-128-CTR, the format geth, foundry and alloy share), so a key at rest need not be
//! plain text.

use std::fmt;
use std::path::Path;

use alloy::primitives::{Address, B256, Signature};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;

/// Why a wallet could not be loaded or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("environment variable {0} is not set")]
    MissingKey(&'static str),
    /// The key text is not a 32-byte hex private key (the text itself is not repeated).
    #[error("the wallet key is not a 32-byte hex private key")]
    InvalidKey,
    #[error("signing failed: {0}")]
    Signing(String),
    /// The keystore file could not be read or written, or is not a v3 keystore.
    #[error("keystore {path}: {reason}")]
    Keystore { path: String, reason: String },
    /// The password does not open the keystore (its MAC does not match).
    #[error("keystore {0}: wrong password")]
    WrongPassword(String),
}

/// A local EVM wallet.
#[derive(Clone)]
pub struct Wallet {
    signer: PrivateKeySigner,
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wallet").field("address", &self.address()).finish_non_exhaustive()
    }
}

impl Wallet {
    /// A wallet from a hex private key (with or without `0x`).
    pub fn from_hex(key: &str) -> Result<Wallet, WalletError> {
        let signer = key.trim().parse::<PrivateKeySigner>().map_err(|_| WalletError::InvalidKey)?;
        Ok(Wallet { signer })
    }

    /// The wallet the environment names: the keystore file in [`crate::WALLET_KEYSTORE_ENV`] opened with the
    /// password in [`crate::WALLET_PASSWORD_ENV`], or else the hex key in [`crate::WALLET_KEY_ENV`].
    pub fn from_env() -> Result<Wallet, WalletError> {
        if let Ok(path) = std::env::var(crate::WALLET_KEYSTORE_ENV) {
            let password = std::env::var(crate::WALLET_PASSWORD_ENV)
                .map_err(|_| WalletError::MissingKey(crate::WALLET_PASSWORD_ENV))?;
            return Wallet::from_keystore(Path::new(&path), &password);
        }
        let key = std::env::var(crate::WALLET_KEY_ENV).map_err(|_| WalletError::MissingKey(crate::WALLET_KEY_ENV))?;
        Wallet::from_hex(&key)
    }

    /// Opens an encrypted keystore file.
    pub fn from_keystore(path: &Path, password: &str) -> Result<Wallet, WalletError> {
        match PrivateKeySigner::decrypt_keystore(path, password) {
            Ok(signer) => Ok(Wallet { signer }),
            // alloy does not re-export eth-keystore's error type; `wrong_password_is_told_apart` pins the text.
            Err(e) if e.to_string() == "Mac Mismatch" => Err(WalletError::WrongPassword(path.display().to_string())),
            Err(e) => Err(keystore_error(path, e)),
        }
    }

    /// Writes the key to `path` as an encrypted keystore file, which must not exist yet.
    pub fn save_keystore(&self, path: &Path, password: &str) -> Result<(), WalletError> {
        let (dir, name) = match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
            (Some(dir), Some(name)) => (if dir.as_os_str().is_empty() { Path::new(".") } else { dir }, name),
            _ => return Err(keystore_error(path, "not a file path")),
        };
        if path.exists() {
            return Err(keystore_error(path, "already exists; not overwritten"));
        }
        let key = self.signer.to_bytes();
        PrivateKeySigner::encrypt_keystore(dir, &mut rand::rngs::OsRng, key, password, Some(name))
            .map_err(|e| keystore_error(path, e))?;
        Ok(())
    }

    pub fn from_signer(signer: PrivateKeySigner) -> Wallet {
        Wallet { signer }
    }

    /// A fresh random key.
    pub fn random() -> Wallet {
        Wallet { signer: PrivateKeySigner::random() }
    }

    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The private key as `0x` hex, for `paygate wallet new` to hand to its owner once.
    pub fn key_hex(&self) -> String {
        self.signer.to_bytes().to_string()
    }

    pub(crate) fn signer(&self) -> &PrivateKeySigner {
        &self.signer
    }

    pub(crate) fn sign_hash(&self, hash: &B256) -> Result<Signature, WalletError> {
        self.signer.sign_hash_sync(hash).map_err(|e| WalletError::Signing(e.to_string()))
    }
}

fn keystore_error(path: &Path, reason: impl fmt::Display) -> WalletError {
    WalletError::Keystore { path: path.display().to_string(), reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_address_not_the_key() {
        let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
        let wallet = Wallet::from_hex(key).unwrap();
        let shown = format!("{wallet:?}");
        assert!(!shown.contains("59c6995e"), "{shown}");
        assert!(shown.contains(&format!("{:?}", wallet.address())), "{shown}");
        assert_eq!(wallet.key_hex(), key);
        assert!(matches!(Wallet::from_hex("0x1234"), Err(WalletError::InvalidKey)));
    }

    /// The test vectors of the Web3 Secret Storage Definition (`tests/vectors/README.md`): a keystore from
    /// another implementation opens to its key; the one whose scrypt parameters break RFC 7914 is refused
    /// as unusable, not opened wrongly and not a panic.
    #[test]
    fn opens_the_web3_secret_storage_test_vectors() {
        let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
        let wallet = Wallet::from_keystore(&vectors.join("keystore-v3-pbkdf2.json"), "testpassword").unwrap();
        assert_eq!(wallet.key_hex(), "0x7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d");
        let refused = Wallet::from_keystore(&vectors.join("keystore-v3-scrypt.json"), "testpassword").unwrap_err();
        assert!(matches!(&refused, WalletError::Keystore { reason, .. } if reason.contains("scrypt")), "{refused:?}");
    }

    #[test]
    fn saved_keystore_opens_to_the_same_key_and_keeps_it_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buyer.json");
        let wallet = Wallet::random();
        wallet.save_keystore(&path, "correct horse").unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["version"], 3);
        assert_eq!(json["crypto"]["kdf"], "scrypt");
        assert!(!text.contains(wallet.key_hex().trim_start_matches("0x")), "the key is not in the file in clear");

        let opened = Wallet::from_keystore(&path, "correct horse").unwrap();
        assert_eq!(opened.key_hex(), wallet.key_hex());
        let again = wallet.save_keystore(&path, "other");
        assert!(matches!(again, Err(WalletError::Keystore { .. })), "an existing keystore is never overwritten");
        assert_eq!(Wallet::from_keystore(&path, "correct horse").unwrap().address(), wallet.address());
    }

    #[test]
    fn wrong_password_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        Wallet::random().save_keystore(&path, "right").unwrap();
        let err = Wallet::from_keystore(&path, "wrong").unwrap_err();
        assert!(matches!(err, WalletError::WrongPassword(_)), "{err:?}");
        assert!(!err.to_string().contains("wrong\""), "the password is not repeated: {err}");
        let missing = Wallet::from_keystore(&dir.path().join("none.json"), "right").unwrap_err();
        assert!(matches!(missing, WalletError::Keystore { .. }), "{missing:?}");
    }
}
