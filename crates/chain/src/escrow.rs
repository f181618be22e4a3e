//! The x402 `batch-settlement` escrow: its canonical addresses, the interface paygate calls, and the EIP-712
//! hashes that name a channel and sign its vouchers.
//!
//! The official contracts (`x402BatchSettlement`, `ERC3009DepositCollector`, `Permit2DepositCollector`) sit at the same CREATE2 address on
//! every chain that has them, and the official clients have those addresses built in. Their compiled code is in
//! no package registry, so on the dev chains (anvil through `paygate dev fund`, the embedded devnet at genesis)
//! the project's test-only stand-ins (`contracts/BatchSettlement.sol`, `contracts/Permit2DepositCollector.sol`:
//! same interface, same EIP-712 domains and types) are placed at the canonical addresses.

use std::sync::LazyLock;

use alloy::primitives::{Address, B256, Bytes, address};
use alloy::sol_types::{Eip712Domain, SolStruct, eip712_domain};

use crate::eip712::{self, Separators, TypeHash};

/// `x402BatchSettlement`, at the same address on every chain that has it.
pub const BATCH_SETTLEMENT: Address = address!("4020074e9dF2ce1deE5A9C1b5c3f541D02a10003");
/// `ERC3009DepositCollector`: pulls a deposit with the payer's `ReceiveWithAuthorization`.
pub const ERC3009_DEPOSIT_COLLECTOR: Address = address!("4020806089470a89826cB9fB1f4059150b550004");
/// `Permit2DepositCollector`: pulls a deposit with the payer's Permit2 `PermitWitnessTransferFrom`.
pub const PERMIT2_DEPOSIT_COLLECTOR: Address = address!("4020425FAf3B746C082C2f942b4E5159887B0005");

/// The compiled stand-ins (`abi`, `bytecode`, `deployedBytecode`).
const BATCH_SETTLEMENT_ARTIFACT: &str = include_str!("../../../contracts/BatchSettlement.json");
const ERC3009_DEPOSIT_COLLECTOR_ARTIFACT: &str = include_str!("../../../contracts/ERC3009DepositCollector.json");
const PERMIT2_DEPOSIT_COLLECTOR_ARTIFACT: &str = include_str!("../../../contracts/Permit2DepositCollector.json");

/// The runtime code the dev chains hold at each stand-in contract's address: x402's escrow at its canonical
/// addresses, MPP `evm` session's at [`crate::session_escrow::DEV_ESCROW`], Permit2 and the x402 upto proxy at
/// theirs ([`crate::upto`]). The stand-ins have no constructor and no immutables, so their runtime code works
/// wherever it is placed.
pub fn dev_escrow_code() -> [(Address, Bytes); 6] {
    let runtime = |artifact: &str| -> Bytes {
        let artifact: serde_json::Value = serde_json::from_str(artifact).expect("committed artifact is JSON");
        let hex = artifact["deployedBytecode"].as_str().expect("artifact has deployedBytecode");
        alloy::hex::decode(hex).expect("artifact bytecode is hex").into()
    };
    [
        (BATCH_SETTLEMENT, runtime(BATCH_SETTLEMENT_ARTIFACT)),
        (ERC3009_DEPOSIT_COLLECTOR, runtime(ERC3009_DEPOSIT_COLLECTOR_ARTIFACT)),
        (PERMIT2_DEPOSIT_COLLECTOR, runtime(PERMIT2_DEPOSIT_COLLECTOR_ARTIFACT)),
        crate::session_escrow::dev_code(),
        crate::upto::dev_code()[0].clone(),
        crate::upto::dev_code()[1].clone(),
    ]
}

alloy::sol! {
    /// The calls paygate makes on the escrow (`x402BatchSettlement`).
    #[derive(Debug, PartialEq, Eq)]
    interface BatchSettlement {
        struct ChannelConfig {
            address payer;
            address payerAuthorizer;
            address receiver;
            address receiverAuthorizer;
            address token;
            uint40 withdrawDelay;
            bytes32 salt;
        }
        struct Voucher {
            ChannelConfig channel;
            uint128 maxClaimableAmount;
        }
        struct VoucherClaim {
            Voucher voucher;
            bytes signature;
            uint128 totalClaimed;
        }

        event Deposited(bytes32 indexed channelId, address indexed sender, uint128 amount, uint128 newBalance);
        event Claimed(bytes32 indexed channelId, address indexed sender, uint128 claimAmount, uint128 newTotalClaimed);
        event Settled(address indexed receiver, address indexed token, address indexed sender, uint128 amount);
        event Refunded(bytes32 indexed channelId, address indexed sender, uint128 amount);

        function deposit(ChannelConfig config, uint128 amount, address collector, bytes collectorData) external;
        function claim(VoucherClaim[] voucherClaims) external;
        function claimWithSignature(VoucherClaim[] voucherClaims, bytes authorizerSignature) external;
        function settle(address receiver, address token) external;
        function refund(ChannelConfig config, uint128 amount) external;
        function channels(bytes32 channelId) external view returns (uint128 balance, uint128 totalClaimed);
        function receivers(address receiver, address token) external view returns (uint128 totalClaimed, uint128 totalSettled);
        function getChannelId(ChannelConfig config) external view returns (bytes32);
        function getVoucherDigest(bytes32 channelId, uint128 maxClaimableAmount) external view returns (bytes32);
    }
}

/// The EIP-712 types the escrow hashes that are not ABI structs, as the payer and the receiver's authorizer sign
/// them (`Voucher` here is not the ABI's `Voucher`).
mod typed {
    alloy::sol! {
        struct Voucher {
            bytes32 channelId;
            uint128 maxClaimableAmount;
        }
        struct ClaimEntry {
            bytes32 channelId;
            uint128 maxClaimableAmount;
            uint128 totalClaimed;
        }
        struct ClaimBatch {
            ClaimEntry[] claims;
        }
        struct TokenPermissions {
            address token;
            uint256 amount;
        }
        struct DepositWitness {
            bytes32 channelId;
        }
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted;
            address spender;
            uint256 nonce;
            uint256 deadline;
            DepositWitness witness;
        }
    }
}

alloy::sol! {
    /// A deposit's authorization, which the deposit collector pulls with the token's EIP-3009
    /// `receiveWithAuthorization` (`to` is [`ERC3009_DEPOSIT_COLLECTOR`], `nonce` is [`deposit_nonce`]); signed in
    /// the token's EIP-712 domain.
    #[derive(Debug)]
    struct ReceiveWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }
}

/// The escrow's EIP-712 domain on chain `chain_id`.
pub fn domain(chain_id: u64) -> Eip712Domain {
    eip712_domain! {
        name: "x402 Batch Settlement",
        version: "1",
        chain_id: chain_id,
        verifying_contract: BATCH_SETTLEMENT,
    }
}

/// A channel's id: the EIP-712 hash of its config in the escrow's domain (`getChannelId`). The ABI's struct is
/// the EIP-712 type as well (the same name and fields).
pub fn channel_id(config: &BatchSettlement::ChannelConfig, chain_id: u64) -> B256 {
    static CONFIG: TypeHash = TypeHash::of::<BatchSettlement::ChannelConfig>();
    eip712::signing_hash(separator(chain_id), &CONFIG, config)
}

/// The escrow's domain separator on chain `chain_id` (a voucher's check hashes in it twice).
fn separator(chain_id: u64) -> B256 {
    static SEPARATORS: LazyLock<Separators> = LazyLock::new(Separators::default);
    SEPARATORS.get(chain_id, BATCH_SETTLEMENT, || domain(chain_id))
}

/// A channel's config as x402 payloads carry it (`channelConfig`: checksummed addresses, the salt in hex).
pub fn config_json(c: &BatchSettlement::ChannelConfig) -> serde_json::Value {
    serde_json::json!({
        "payer": c.payer.to_checksum(None),
        "payerAuthorizer": c.payerAuthorizer.to_checksum(None),
        "receiver": c.receiver.to_checksum(None),
        "receiverAuthorizer": c.receiverAuthorizer.to_checksum(None),
        "token": c.token.to_checksum(None),
        "withdrawDelay": c.withdrawDelay.to::<u64>(),
        "salt": format!("{:#x}", c.salt),
    })
}

/// What a payer signs to allow claims up to `max_claimable` on a channel (`getVoucherDigest`).
pub fn voucher_digest(channel_id: B256, max_claimable: u128, chain_id: u64) -> B256 {
    static VOUCHER: TypeHash = TypeHash::of::<typed::Voucher>();
    let voucher = typed::Voucher { channelId: channel_id, maxClaimableAmount: max_claimable };
    eip712::signing_hash(separator(chain_id), &VOUCHER, &voucher)
}

/// What the receiver's authorizer signs to have a batch of claims applied by anyone (`getClaimBatchDigest`);
/// each entry is `(channel id, voucher's max claimable, total claimed)`.
pub fn claim_batch_digest(entries: &[(B256, u128, u128)], chain_id: u64) -> B256 {
    let claims = entries
        .iter()
        .map(|&(channel_id, max, total)| typed::ClaimEntry {
            channelId: channel_id,
            maxClaimableAmount: max,
            totalClaimed: total,
        })
        .collect();
    typed::ClaimBatch { claims }.eip712_signing_hash(&domain(chain_id))
}

/// What a payer signs to deposit `amount` of `token` into `channel_id` through Permit2: a
/// `PermitWitnessTransferFrom` for [`PERMIT2_DEPOSIT_COLLECTOR`] with the witness `DepositWitness(channelId)`, in
/// Permit2's domain.
pub fn permit2_deposit_digest(
    token: Address,
    amount: u128,
    nonce: alloy::primitives::U256,
    deadline: u64,
    channel_id: B256,
    chain_id: u64,
) -> B256 {
    typed::PermitWitnessTransferFrom {
        permitted: typed::TokenPermissions { token, amount: alloy::primitives::U256::from(amount) },
        spender: PERMIT2_DEPOSIT_COLLECTOR,
        nonce,
        deadline: alloy::primitives::U256::from(deadline),
        witness: typed::DepositWitness { channelId: channel_id },
    }
    .eip712_signing_hash(&crate::upto::domain(chain_id))
}

/// A channel as the escrow at `escrow` holds it (`channels`): its `balance` (what was deposited, less what was
/// refunded or withdrawn to the payer) and its `totalClaimed` (what the receiver claimed from it).
pub async fn channel_state(
    chain: &dyn crate::Chain,
    escrow: Address,
    channel_id: B256,
) -> Result<BatchSettlement::channelsReturn, crate::ChainError> {
    use alloy::sol_types::SolCall;
    let call = BatchSettlement::channelsCall { channelId: channel_id }.abi_encode();
    let out = chain.call(alloy::rpc::types::TransactionRequest::default().to(escrow).input(call.into())).await?;
    BatchSettlement::channelsCall::abi_decode_returns(&out)
        .map_err(|e| crate::ChainError::Unavailable(format!("channels answered {out}: {e}")))
}

/// The ERC-3009 nonce of a deposit into `channel_id`: `keccak256(abi.encode(channelId, salt))`.
pub fn deposit_nonce(channel_id: B256, salt: B256) -> B256 {
    alloy::primitives::keccak256([channel_id.as_slice(), salt.as_slice()].concat())
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{address, b256, uint};

    use super::*;

    /// Vectors computed by the official `@x402/evm` 2.27.0 batch-settlement client (viem) on chain 31337.
    fn config() -> BatchSettlement::ChannelConfig {
        BatchSettlement::ChannelConfig {
            payer: address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
            payerAuthorizer: address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
            receiver: address!("70997970C51812dc3A010C7d01b50e0d17dc79C8"),
            receiverAuthorizer: address!("3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"),
            token: address!("5FbDB2315678afecb367f032d93F642f64180aa3"),
            withdrawDelay: uint!(900_U40),
            salt: B256::ZERO,
        }
    }

    #[test]
    fn hashes_match_the_official_client() {
        let id = channel_id(&config(), 31337);
        assert_eq!(id, b256!("3dba7b750189e416712e643b7f71b0f6a79d0cce7f84596a48d48205120ffbce"));
        assert_eq!(
            voucher_digest(id, 1000, 31337),
            b256!("d48e132c94dcd17b21fe7470534f023f2faebbb8db6b5391f5b8d6f75e463053")
        );
        assert_eq!(
            claim_batch_digest(&[(id, 3000, 3000)], 31337),
            b256!("afaa3c81c7529537ef28e0b9b093c6327256244c8869259e3d10c4bd22edb18d")
        );
        let salt = b256!("900802f790af8d34ea7942a3a9de7c0825e5cd047f7dd10fd7170b28fdc81ed9");
        assert_eq!(deposit_nonce(id, salt), b256!("7f041645214d10001eb61c76f0e328773f79e4aee63258eb58cc34077857c973"));
    }

    /// The remembered separator and type hashes answer what alloy computes from scratch, on each chain in turn.
    #[test]
    fn remembered_hashes_are_alloys_on_every_chain() {
        use alloy::sol_types::SolStruct;
        for chain_id in [31337, 8453, 31337, 84532] {
            let id = channel_id(&config(), chain_id);
            assert_eq!(id, config().eip712_signing_hash(&domain(chain_id)), "chain {chain_id}");
            let voucher = typed::Voucher { channelId: id, maxClaimableAmount: 7 };
            assert_eq!(voucher_digest(id, 7, chain_id), voucher.eip712_signing_hash(&domain(chain_id)));
        }
    }
}
