//! The escrow of MPP's `evm` session method (`draft-evm-session-00`): the interface paygate calls, the channel
//! id and EIP-712 voucher hashes, and the ERC-3009 nonces that bind a relayed open or top-up to its channel.
//!
//! The draft names no canonical deployment, so a seller names its escrow in config. On the dev chains (anvil
//! through `paygate dev fund`, the embedded devnet at genesis) the project's test-only stand-in
//! (`contracts/EvmPaymentChannel.sol`: the draft's interface, domain and types) is placed at [`DEV_ESCROW`].

use std::sync::LazyLock;

use alloy::primitives::{Address, B256, Bytes, address, keccak256};
use alloy::sol_types::{Eip712Domain, SolValue, eip712_domain};

use crate::eip712::{self, Separators, TypeHash};

/// Where the dev chains hold the stand-in escrow.
pub const DEV_ESCROW: Address = address!("e5c0000000000000000000000000000000000402");

const ARTIFACT: &str = include_str!("../../../contracts/EvmPaymentChannel.json");

/// The stand-in's runtime code (no constructor, no immutables: it works wherever it is placed).
pub fn dev_code() -> (Address, Bytes) {
    let artifact: serde_json::Value = serde_json::from_str(ARTIFACT).expect("committed artifact is JSON");
    let hex = artifact["deployedBytecode"].as_str().expect("artifact has deployedBytecode");
    (DEV_ESCROW, alloy::hex::decode(hex).expect("artifact bytecode is hex").into())
}

alloy::sol! {
    /// The calls paygate makes on an `evm` session escrow.
    #[derive(Debug, PartialEq, Eq)]
    interface EvmPaymentChannel {
        struct Channel {
            address payer;
            address payee;
            address token;
            address authorizedSigner;
            uint128 deposit;
            uint128 settled;
            uint64 closeRequestedAt;
            bool finalized;
        }

        event ChannelOpened(bytes32 indexed channelId, address indexed payer, address indexed payee, address token, address authorizedSigner, uint128 deposit);
        event Settled(bytes32 indexed channelId, address indexed payer, address indexed payee, uint128 cumulativeAmount, uint128 deltaPaid, uint128 newSettled);
        event ChannelClosed(bytes32 indexed channelId, address indexed payer, address indexed payee, uint128 settledToPayee, uint128 refundedToPayer);

        function open(address payee, address token, uint128 deposit, bytes32 salt, address authorizedSigner) external returns (bytes32);
        function openWithAuthorization(address payee, address token, uint128 deposit, bytes32 salt, address authorizedSigner, address from, uint256 validAfter, uint256 validBefore, bytes32 nonce, bytes signature) external returns (bytes32);
        function topUp(bytes32 channelId, uint128 additionalDeposit) external;
        function topUpWithAuthorization(bytes32 channelId, uint128 additionalDeposit, address from, uint256 validAfter, uint256 validBefore, bytes32 salt, bytes signature) external;
        function settle(bytes32 channelId, uint128 cumulativeAmount, bytes signature) external;
        function close(bytes32 channelId, uint128 cumulativeAmount, bytes signature) external;
        function requestClose(bytes32 channelId) external;
        function withdraw(bytes32 channelId) external;
        function getChannel(bytes32 channelId) external view returns (Channel);
        function getVoucherDigest(bytes32 channelId, uint128 cumulativeAmount) external view returns (bytes32);
    }
}

mod typed {
    alloy::sol! {
        struct Voucher {
            bytes32 channelId;
            uint128 cumulativeAmount;
        }
    }
}

/// The escrow's EIP-712 domain.
pub fn domain(chain_id: u64, escrow: Address) -> Eip712Domain {
    eip712_domain! {
        name: "EVM Payment Channel",
        version: "1",
        chain_id: chain_id,
        verifying_contract: escrow,
    }
}

/// Who opens a channel, to whom, in what, and who signs its vouchers: what its id is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelTerms {
    pub payer: Address,
    pub payee: Address,
    pub token: Address,
    pub salt: B256,
    /// The voucher signer; the zero address means the payer.
    pub authorized_signer: Address,
}

impl ChannelTerms {
    /// `keccak256(abi.encode(payer, payee, token, salt, authorizedSigner, escrow, chainId))`.
    pub fn channel_id(&self, escrow: Address, chain_id: u64) -> B256 {
        let chain = alloy::primitives::U256::from(chain_id);
        keccak256((self.payer, self.payee, self.token, self.salt, self.authorized_signer, escrow, chain).abi_encode())
    }

    /// The ERC-3009 nonce of a relayed open: `keccak256(abi.encode(from, payee, token, salt, authorizedSigner))`.
    pub fn open_nonce(&self) -> B256 {
        keccak256((self.payer, self.payee, self.token, self.salt, self.authorized_signer).abi_encode())
    }

    /// Who signs the vouchers.
    pub fn signer(&self) -> Address {
        if self.authorized_signer == Address::ZERO { self.payer } else { self.authorized_signer }
    }
}

/// A channel as the escrow at `escrow` holds it (`getChannel`): its deposit, what was settled to the payee, and
/// whether it is finalized (closed, with the rest of its deposit refunded to the payer).
pub async fn channel(
    chain: &dyn crate::Chain,
    escrow: Address,
    channel_id: B256,
) -> Result<EvmPaymentChannel::Channel, crate::ChainError> {
    use alloy::sol_types::SolCall;
    let call = EvmPaymentChannel::getChannelCall { channelId: channel_id }.abi_encode();
    let out = chain.call(alloy::rpc::types::TransactionRequest::default().to(escrow).input(call.into())).await?;
    EvmPaymentChannel::getChannelCall::abi_decode_returns(&out)
        .map_err(|e| crate::ChainError::Unavailable(format!("getChannel answered {out}: {e}")))
}

/// The ERC-3009 nonce of a relayed top-up: `keccak256(abi.encode(channelId, additionalDeposit, from, salt))`.
pub fn top_up_nonce(channel_id: B256, additional: u128, from: Address, salt: B256) -> B256 {
    keccak256((channel_id, alloy::primitives::U256::from(additional), from, salt).abi_encode())
}

/// What a payer signs to allow `cumulative` in total from a channel.
pub fn voucher_digest(channel_id: B256, cumulative: u128, chain_id: u64, escrow: Address) -> B256 {
    static SEPARATORS: LazyLock<Separators> = LazyLock::new(Separators::default);
    static VOUCHER: TypeHash = TypeHash::of::<typed::Voucher>();
    let separator = SEPARATORS.get(chain_id, escrow, || domain(chain_id, escrow));
    eip712::signing_hash(separator, &VOUCHER, &typed::Voucher { channelId: channel_id, cumulativeAmount: cumulative })
}

#[cfg(test)]
mod tests {
    use alloy::primitives::b256;
    use alloy::sol_types::SolStruct;

    use super::*;

    /// The remembered separator and type hash answer what alloy computes from scratch, for each escrow and chain.
    #[test]
    fn voucher_digests_are_alloys_for_every_escrow_and_chain() {
        let channel = b256!("3dba7b750189e416712e643b7f71b0f6a79d0cce7f84596a48d48205120ffbce");
        let other = address!("00000000000000000000000000000000000e5c00");
        for (chain_id, escrow) in [(31337, DEV_ESCROW), (31337, other), (8453, DEV_ESCROW), (31337, DEV_ESCROW)] {
            let voucher = typed::Voucher { channelId: channel, cumulativeAmount: 9 };
            assert_eq!(
                voucher_digest(channel, 9, chain_id, escrow),
                voucher.eip712_signing_hash(&domain(chain_id, escrow)),
                "chain {chain_id}, escrow {escrow}"
            );
        }
    }
}
