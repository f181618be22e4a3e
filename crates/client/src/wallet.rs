//! The payer's key. It signs EIP-3009 authorizations locally and is never printed: `Debug` shows the
//! address only.

use std::fmt;

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

    /// A wallet from [`crate::WALLET_KEY_ENV`].
    pub fn from_env() -> Result<Wallet, WalletError> {
        let key = std::env::var(crate::WALLET_KEY_ENV).map_err(|_| WalletError::MissingKey(crate::WALLET_KEY_ENV))?;
        Wallet::from_hex(&key)
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

    pub(crate) fn sign_hash(&self, hash: &B256) -> Result<Signature, WalletError> {
        self.signer.sign_hash_sync(hash).map_err(|e| WalletError::Signing(e.to_string()))
    }
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
}
