//! EIP-712 signing hashes with the domain separator and the type hash computed once.
//!
//! A channel-paid call checks a voucher: it hashes the channel's config (its id) and the voucher, each in the
//! escrow's domain. alloy's `SolStruct::eip712_signing_hash` hashes the domain (its type string, name and version:
//! four keccaks) and the struct's type string again for every value: ten of the fourteen keccaks of its two hashes,
//! and a few string allocations, for hashes that never change. The escrows keep them here, per chain and contract.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};

use alloy::primitives::{Address, B256, Keccak256, keccak256};
use alloy::sol_types::{Eip712Domain, SolStruct};

/// The separators of one contract's domain, by chain and contract address, each computed on first use.
#[derive(Debug, Default)]
pub(crate) struct Separators(RwLock<HashMap<(u64, Address), B256>>);

impl Separators {
    /// The separator of the domain `make` builds for `(chain_id, contract)`.
    pub fn get(&self, chain_id: u64, contract: Address, make: impl FnOnce() -> Eip712Domain) -> B256 {
        let key = (chain_id, contract);
        if let Some(separator) = self.0.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return *separator;
        }
        let separator = make().separator();
        self.0.write().unwrap_or_else(|p| p.into_inner()).insert(key, separator);
        separator
    }
}

/// A struct type's EIP-712 type hash, computed once.
pub(crate) struct TypeHash(LazyLock<B256>);

impl TypeHash {
    pub const fn of<S: SolStruct>() -> TypeHash {
        fn hash<S: SolStruct>() -> B256 {
            keccak256(S::eip712_encode_type().as_bytes())
        }
        TypeHash(LazyLock::new(hash::<S>))
    }
}

/// `value`'s EIP-712 signing hash in the domain whose separator is `separator`, `type_hash` being its type's:
/// what `value.eip712_signing_hash(&domain)` answers.
pub(crate) fn signing_hash<S: SolStruct>(separator: B256, type_hash: &TypeHash, value: &S) -> B256 {
    let mut hasher = Keccak256::new();
    hasher.update(*type_hash.0);
    hasher.update(value.eip712_encode_data());
    let mut input = [0u8; 2 + 32 + 32];
    input[..2].copy_from_slice(&[0x19, 0x01]);
    input[2..34].copy_from_slice(separator.as_slice());
    input[34..].copy_from_slice(hasher.finalize().as_slice());
    keccak256(input)
}
