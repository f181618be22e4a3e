//! What the devnet tests share: EIP-3009 authorizations signed with the repository's own signing code
//! (`paygate_methods::eip3009`), the calldata that redeems them, and hand-made raw transactions for the
//! refusal cases `TxSender` never produces.

#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::TxSignerSync;
use alloy::primitives::{Address, B256, Bytes, TxHash, TxKind, U256};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use paygate_chain::abi::Eip3009Token;
use paygate_chain::{Chain, devtoken, wait_for_receipt};
use paygate_methods::eip3009::{SignedAuthorization, domain};

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// An authorization by dev account `from` to pay `value` to `to`, valid from now for an hour, with a random
/// nonce, signed for the test token on chain `chain_id`.
pub fn authorization(from: u32, to: Address, value: u64, chain_id: u64) -> SignedAuthorization {
    let signer = devtoken::dev_account(from);
    let unsigned = SignedAuthorization {
        from: signer.address(),
        to,
        value: U256::from(value),
        valid_after: U256::ZERO,
        valid_before: U256::from(now() + 3600),
        nonce: B256::random(),
        signature: Bytes::new(),
    };
    let token_domain =
        domain(devtoken::TEST_USDC_NAME, devtoken::TEST_USDC_VERSION, chain_id, devtoken::test_usdc_address());
    let signature = signer.sign_hash_sync(&unsigned.signing_hash(&token_domain)).expect("signing");
    SignedAuthorization { signature: signature.as_bytes().to_vec().into(), ..unsigned }
}

/// `transfer(to, value)` on the test token.
pub fn transfer(to: Address, value: u64) -> Bytes {
    Eip3009Token::transferCall { to, value: U256::from(value) }.abi_encode().into()
}

/// An EIP-1559 transaction calling `to` with `data`, signed by `signer`, EIP-2718 encoded.
pub fn raw_transaction(signer: &PrivateKeySigner, chain_id: u64, nonce: u64, to: Address, data: Bytes) -> Bytes {
    let mut tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: 200_000,
        max_fee_per_gas: 3_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(to),
        value: U256::ZERO,
        access_list: Default::default(),
        input: data,
    };
    let signature = signer.sign_transaction_sync(&mut tx).expect("signing");
    let envelope: TxEnvelope = tx.into_signed(signature).into();
    envelope.encoded_2718().into()
}

/// The receipt of `hash`, waited for as the gateway waits.
pub async fn mined(chain: &dyn Chain, hash: TxHash) -> TransactionReceipt {
    wait_for_receipt(chain, hash, Duration::from_secs(10), Duration::from_millis(20))
        .await
        .expect("receipt query")
        .expect("mined in time")
}
