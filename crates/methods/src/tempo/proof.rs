//! The `proof` credential of zero-amount charges: an EIP-712 signature over the challenge, by the account the
//! credential's `source` names.
//!
//! Two shapes are in use and both are accepted when verifying:
//!
//! * version `"3"` (mppx 0.11 `dist/tempo/internal/proof.js`, mpp-rs 0.18 `tempo/proof.rs`, what current
//!   clients sign): domain `{name: "MPP", version: "3", chainId}`,
//!   `Proof(address account, string challengeId, string realm)`, `account` = the source address;
//! * version `"2"` (the mpp-tools vector `tempo-proof.json`): domain `{name: "MPP", version: "2", chainId}`,
//!   `Proof(string challengeId, string realm)`.
//!
//! The spec draft's version `"1"` (`Proof(string challengeId)`, no realm) is not accepted: it does not bind
//! the realm. Signatures may be 65-byte secp256k1 or Tempo signature envelopes (P256, WebAuthn); keychain
//! (access-key) signatures are refused, because accepting one needs an on-chain check that the access key is
//! authorized and unrevoked, which mppx does and paygate does not (yet).

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::{Eip712Domain, SolStruct};
use serde_json::{Value, json};
use tempo_primitives::TempoSignature;

use super::error::TempoError;

mod v3 {
    alloy::sol! {
        /// The current SDKs' proof message.
        struct Proof {
            address account;
            string challengeId;
            string realm;
        }
    }
}

mod v2 {
    alloy::sol! {
        /// The mpp-tools vector's proof message.
        struct Proof {
            string challengeId;
            string realm;
        }
    }
}

/// The proof typed-data version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofVersion {
    /// Domain version `"2"`, `Proof(string challengeId, string realm)`.
    V2,
    /// Domain version `"3"`, `Proof(address account, string challengeId, string realm)`.
    V3,
}

impl ProofVersion {
    fn label(self) -> &'static str {
        match self {
            ProofVersion::V2 => "2",
            ProofVersion::V3 => "3",
        }
    }
}

/// What a proof signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofMessage<'a> {
    pub chain_id: u64,
    pub challenge_id: &'a str,
    pub realm: &'a str,
    /// The signer's account (the credential's source); part of the message from version 3 on.
    pub account: Address,
}

impl ProofMessage<'_> {
    fn domain(&self, version: ProofVersion) -> Eip712Domain {
        Eip712Domain::new(Some("MPP".into()), Some(version.label().into()), Some(U256::from(self.chain_id)), None, None)
    }

    /// The EIP-712 typed data, as JSON in viem's shape (`domain`, `types` without `EIP712Domain`,
    /// `primaryType`, `message`).
    pub fn typed_data(&self, version: ProofVersion) -> Value {
        let domain = json!({"name": "MPP", "version": version.label(), "chainId": self.chain_id});
        match version {
            ProofVersion::V2 => json!({
                "domain": domain,
                "types": {"Proof": [
                    {"name": "challengeId", "type": "string"},
                    {"name": "realm", "type": "string"},
                ]},
                "primaryType": "Proof",
                "message": {"challengeId": self.challenge_id, "realm": self.realm},
            }),
            ProofVersion::V3 => json!({
                "domain": domain,
                "types": {"Proof": [
                    {"name": "account", "type": "address"},
                    {"name": "challengeId", "type": "string"},
                    {"name": "realm", "type": "string"},
                ]},
                "primaryType": "Proof",
                "message": {
                    "account": self.account.to_checksum(None),
                    "challengeId": self.challenge_id,
                    "realm": self.realm,
                },
            }),
        }
    }

    /// The EIP-712 digest the signer signs.
    pub fn signing_hash(&self, version: ProofVersion) -> B256 {
        let domain = self.domain(version);
        match version {
            ProofVersion::V2 => v2::Proof { challengeId: self.challenge_id.into(), realm: self.realm.into() }
                .eip712_signing_hash(&domain),
            ProofVersion::V3 => {
                v3::Proof { account: self.account, challengeId: self.challenge_id.into(), realm: self.realm.into() }
                    .eip712_signing_hash(&domain)
            }
        }
    }

    /// Checks that `signature` is `account`'s over this message in either version; returns the version.
    pub fn verify(&self, signature: &[u8]) -> Result<ProofVersion, TempoError> {
        let signature = TempoSignature::from_bytes(signature)
            .map_err(|_| TempoError::InvalidPayload("the proof signature is not a signature".into()))?;
        if signature.is_keychain() {
            return Err(TempoError::InvalidSignature("access-key (keychain) proof signatures are not accepted".into()));
        }
        for version in [ProofVersion::V3, ProofVersion::V2] {
            if signature.recover_signer(&self.signing_hash(version)).is_ok_and(|signer| signer == self.account) {
                return Ok(version);
            }
        }
        Err(TempoError::InvalidSignature("proof signature does not match source".into()))
    }
}
