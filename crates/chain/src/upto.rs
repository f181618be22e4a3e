//! x402 `upto` on EVM: Permit2 and the x402 upto proxy, at the addresses the official `@x402/evm` client signs
//! for, the calls paygate makes on them, and the EIP-712 hash the payer signs (`PermitWitnessTransferFrom` with
//! the upto witness, in Permit2's domain, which has no version).
//!
//! Neither contract's compiled code is in a package registry, so on the dev chains (anvil through
//! `paygate dev fund`, the embedded devnet at genesis) the project's test-only stand-ins (`contracts/Permit2.sol`,
//! `contracts/X402UptoPermit2Proxy.sol`) are placed at those addresses.

use alloy::primitives::{Address, B256, Bytes, U256, address};
use alloy::sol_types::{Eip712Domain, SolStruct, eip712_domain};

/// Permit2, at the same address on every chain.
pub const PERMIT2: Address = address!("000000000022D473030F116dDEE9F6B43aC78BA3");
/// `x402UptoPermit2Proxy`, where the official client's authorizations name it as spender.
pub const UPTO_PROXY: Address = address!("4020A4f3b7b90ccA423B9fabCc0CE57C6C240002");

const PERMIT2_ARTIFACT: &str = include_str!("../../../contracts/Permit2.json");
const UPTO_PROXY_ARTIFACT: &str = include_str!("../../../contracts/X402UptoPermit2Proxy.json");

/// The stand-ins' runtime code, at their addresses (no constructor, no immutables).
pub fn dev_code() -> [(Address, Bytes); 2] {
    let runtime = |artifact: &str| -> Bytes {
        let artifact: serde_json::Value = serde_json::from_str(artifact).expect("committed artifact is JSON");
        let hex = artifact["deployedBytecode"].as_str().expect("artifact has deployedBytecode");
        alloy::hex::decode(hex).expect("artifact bytecode is hex").into()
    };
    [(PERMIT2, runtime(PERMIT2_ARTIFACT)), (UPTO_PROXY, runtime(UPTO_PROXY_ARTIFACT))]
}

alloy::sol! {
    /// The calls paygate makes on the upto proxy.
    #[derive(Debug, PartialEq, Eq)]
    interface X402UptoPermit2Proxy {
        struct TokenPermissions {
            address token;
            uint256 amount;
        }
        struct PermitTransferFrom {
            TokenPermissions permitted;
            uint256 nonce;
            uint256 deadline;
        }
        struct Witness {
            address to;
            address facilitator;
            uint256 validAfter;
        }

        function settle(PermitTransferFrom permit, uint256 amount, address owner, Witness witness, bytes signature) external;
    }

    /// What paygate reads of Permit2.
    interface Permit2 {
        function nonceBitmap(address owner, uint256 wordPos) external view returns (uint256);
    }
}

mod typed {
    alloy::sol! {
        struct TokenPermissions {
            address token;
            uint256 amount;
        }
        struct Witness {
            address to;
            address facilitator;
            uint256 validAfter;
        }
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted;
            address spender;
            uint256 nonce;
            uint256 deadline;
            Witness witness;
        }
    }
}

/// Whether Permit2 has used `owner`'s unordered `nonce` (its bit in `nonceBitmap`): a transfer signed with it
/// happened (or the owner cancelled it); either way it can never move money again.
pub async fn permit2_nonce_used(
    chain: &dyn crate::Chain,
    owner: Address,
    nonce: U256,
) -> Result<bool, crate::ChainError> {
    use alloy::sol_types::SolCall;
    let word = nonce >> 8;
    let bit = U256::from(1) << (nonce & U256::from(0xff)).to::<usize>();
    let call = Permit2::nonceBitmapCall { owner, wordPos: word }.abi_encode();
    let tx = alloy::rpc::types::TransactionRequest::default().to(PERMIT2).input(Bytes::from(call).into());
    let out = chain.call(tx).await?;
    let bitmap = Permit2::nonceBitmapCall::abi_decode_returns(&out)
        .map_err(|e| crate::ChainError::Unavailable(format!("nonceBitmap answered {out}: {e}")))?;
    Ok(bitmap & bit != U256::ZERO)
}

/// Permit2's EIP-712 domain on chain `chain_id`.
pub fn domain(chain_id: u64) -> Eip712Domain {
    eip712_domain! {
        name: "Permit2",
        chain_id: chain_id,
        verifying_contract: PERMIT2,
    }
}

/// What the payer signs: a Permit2 transfer of at most `permit.permitted.amount` by the upto proxy, bound to the
/// `witness` (receiver, facilitator, not before).
pub fn permit_digest(
    permit: &X402UptoPermit2Proxy::PermitTransferFrom,
    witness: &X402UptoPermit2Proxy::Witness,
    chain_id: u64,
) -> B256 {
    typed::PermitWitnessTransferFrom {
        permitted: typed::TokenPermissions { token: permit.permitted.token, amount: permit.permitted.amount },
        spender: UPTO_PROXY,
        nonce: permit.nonce,
        deadline: permit.deadline,
        witness: typed::Witness { to: witness.to, facilitator: witness.facilitator, validAfter: witness.validAfter },
    }
    .eip712_signing_hash(&domain(chain_id))
}
