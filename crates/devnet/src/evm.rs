//! Everything that touches revm: the environments a block and a simulation run in, the translation of alloy's
//! transactions and requests into revm's, and of revm's outcomes and refusals into [`ChainError`]s shaped like
//! a geth or anvil node's answers (so code written against [`paygate_chain::RpcChain`] reads them the same way).

use alloy::consensus::{Transaction, TxEnvelope};
use alloy::primitives::{Address, B256, Bytes, TxKind, U256};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::{Panic, Revert, SolError};
use paygate_chain::ChainError;
use revm::context::result::{EVMError, ExecutionResult, HaltReason, InvalidTransaction, OutOfGasError};
use revm::context::{BlockEnv, CfgEnv, TxEnv};
use revm::database::{CacheDB, EmptyDB};
use revm::primitives::hardfork::SpecId;
use revm::{Context, Database, ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext};

/// The devnet's world state: every account lives in the cache, nothing behind it.
pub(crate) type WorldState = CacheDB<EmptyDB>;

/// The hard fork the devnet runs (what anvil runs by default).
const SPEC: SpecId = SpecId::PRAGUE;

/// Gas limit of every block, and the most a simulation may use.
pub const BLOCK_GAS_LIMIT: u64 = 30_000_000;

/// The base fee of every block, in wei per gas: fixed, since blocks never fill up.
pub const BASE_FEE_PER_GAS: u64 = 1_000_000_000;

/// The priority fee [`paygate_chain::Chain::fees`] suggests, in wei per gas; it goes to [`COINBASE`].
pub const PRIORITY_FEE_PER_GAS: u128 = 1_000_000_000;

/// The block beneficiary, which receives priority fees.
pub const COINBASE: Address = Address::ZERO;

/// Where a block (mined or simulated on top of the latest) sits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockPosition {
    pub number: u64,
    pub timestamp: u64,
    /// The previous block's hash, used as `prevrandao`.
    pub parent_hash: B256,
}

fn cfg(chain_id: u64, check_nonce: bool) -> CfgEnv {
    let mut cfg = CfgEnv::new_with_spec(SPEC);
    cfg.chain_id = chain_id;
    cfg.disable_nonce_check = !check_nonce;
    cfg
}

fn block_env(position: BlockPosition, base_fee: u64) -> BlockEnv {
    BlockEnv {
        number: U256::from(position.number),
        beneficiary: COINBASE,
        timestamp: U256::from(position.timestamp),
        gas_limit: BLOCK_GAS_LIMIT,
        basefee: base_fee,
        prevrandao: Some(position.parent_hash),
        ..BlockEnv::default()
    }
}

/// Runs a transaction that will be mined: nonce, chain id, fees and balance are checked, and the state
/// changes are committed to `state` whether the transaction succeeds or reverts (a refused one changes
/// nothing).
pub(crate) fn execute_and_commit(
    state: &mut WorldState,
    chain_id: u64,
    position: BlockPosition,
    tx: TxEnv,
) -> Result<ExecutionResult, ChainError> {
    let mut evm = Context::mainnet()
        .with_db(state)
        .with_cfg(cfg(chain_id, true))
        .with_block(block_env(position, BASE_FEE_PER_GAS))
        .build_mainnet();
    evm.transact_commit(tx).map_err(refusal)
}

/// Runs a genesis step (a deployment or a mint) free of charge and without nonce checks, and commits it.
pub(crate) fn execute_genesis_step(
    state: &mut WorldState,
    chain_id: u64,
    position: BlockPosition,
    tx: TxEnv,
) -> Result<ExecutionResult, String> {
    let mut evm = Context::mainnet()
        .with_db(state)
        .with_cfg(cfg(chain_id, false))
        .with_block(block_env(position, 0))
        .build_mainnet();
    evm.transact_commit(tx).map_err(|e| e.to_string())
}

/// Runs a simulation (`eth_call`, `eth_estimateGas`) on `state` and throws its changes away. Simulations are
/// free: gas price and base fee are zero, and the caller's nonce is not checked.
pub(crate) fn simulate<DB: Database>(
    state: DB,
    chain_id: u64,
    position: BlockPosition,
    tx: TxEnv,
) -> Result<ExecutionResult, ChainError> {
    let mut evm = Context::mainnet()
        .with_db(state)
        .with_cfg(cfg(chain_id, false))
        .with_block(block_env(position, 0))
        .build_mainnet();
    evm.transact(tx).map(|outcome| outcome.result).map_err(refusal)
}

/// The revm transaction of a simulation request. Fee fields and the nonce are ignored (simulations are
/// free and unordered); a missing `from` is the zero address, a missing `gas` (or one above the block gas
/// limit) is the block gas limit.
pub(crate) fn simulation_tx(request: &TransactionRequest, chain_id: u64) -> TxEnv {
    let gas_limit = request.gas.map_or(BLOCK_GAS_LIMIT, |gas| gas.min(BLOCK_GAS_LIMIT));
    let mut builder = TxEnv::builder()
        .caller(request.from.unwrap_or_default())
        .kind(request.to.unwrap_or(TxKind::Create))
        .value(request.value.unwrap_or_default())
        .data(request.input.input().cloned().unwrap_or_default())
        .gas_limit(gas_limit)
        .gas_price(0)
        .chain_id(Some(chain_id));
    if let Some(access_list) = &request.access_list {
        builder = builder.access_list(access_list.clone());
    }
    builder.build_fill()
}

/// The revm transaction of a signed one, sent by `sender`. Blob transactions are refused: the devnet keeps
/// no blobs.
pub(crate) fn signed_tx(envelope: &TxEnvelope, sender: Address) -> Result<TxEnv, ChainError> {
    if matches!(envelope, TxEnvelope::Eip4844(_)) {
        return Err(ChainError::Rpc { code: -32000, message: "transaction type not supported".into() });
    }
    let mut builder = TxEnv::builder()
        .tx_type(Some(envelope.tx_type() as u8))
        .caller(sender)
        .kind(envelope.kind())
        .value(envelope.value())
        .data(envelope.input().clone())
        .nonce(envelope.nonce())
        .gas_limit(envelope.gas_limit())
        .gas_price(envelope.max_fee_per_gas())
        .gas_priority_fee(envelope.max_priority_fee_per_gas())
        .chain_id(envelope.chain_id());
    if let Some(access_list) = envelope.access_list() {
        builder = builder.access_list(access_list.clone());
    }
    if let Some(authorizations) = envelope.authorization_list() {
        builder = builder.authorization_list_signed(authorizations.to_vec());
    }
    builder.build().map_err(|e| ChainError::Rpc { code: -32602, message: format!("invalid transaction: {e:?}") })
}

/// A transaction the EVM refused to run, as a node says it (geth's wording, which anvil shares).
fn refusal<DbError: std::fmt::Display>(error: EVMError<DbError, InvalidTransaction>) -> ChainError {
    let message = match error {
        EVMError::Transaction(invalid) => match invalid {
            InvalidTransaction::NonceTooLow { .. } => "nonce too low".to_owned(),
            InvalidTransaction::NonceTooHigh { .. } => "nonce too high".to_owned(),
            InvalidTransaction::LackOfFundForMaxFee { .. } => "insufficient funds for gas * price + value".to_owned(),
            InvalidTransaction::GasPriceLessThanBasefee => "max fee per gas less than block base fee".to_owned(),
            InvalidTransaction::PriorityFeeGreaterThanMaxFee => {
                "max priority fee per gas higher than max fee per gas".to_owned()
            }
            InvalidTransaction::CallerGasLimitMoreThanBlock => "exceeds block gas limit".to_owned(),
            InvalidTransaction::CallGasCostMoreThanGasLimit { .. } => "intrinsic gas too low".to_owned(),
            InvalidTransaction::InvalidChainId => "invalid chain id for signer".to_owned(),
            InvalidTransaction::RejectCallerWithCode => "sender not an eoa".to_owned(),
            other => other.to_string(),
        },
        EVMError::Header(header) => format!("invalid block: {header}"),
        EVMError::Database(db) => format!("state: {db}"),
        EVMError::Custom(text) => text,
        EVMError::CustomAny(any) => any.to_string(),
    };
    ChainError::Rpc { code: -32000, message }
}

/// What a simulation returns to its caller: the output, or the revert as a node reports it.
pub(crate) fn call_outcome(result: ExecutionResult) -> Result<Bytes, ChainError> {
    match result {
        ExecutionResult::Success { output, .. } => Ok(output.into_data()),
        ExecutionResult::Revert { output, .. } => {
            Err(ChainError::Reverted { message: revert_message(&output), data: Some(output) })
        }
        ExecutionResult::Halt { reason, .. } => Err(halted(&reason)),
    }
}

/// A halt (out of gas, invalid opcode, ...) undoes the call like a revert, without revert data.
pub(crate) fn halted(reason: &HaltReason) -> ChainError {
    let message = match reason {
        HaltReason::OutOfGas(OutOfGasError::Basic | OutOfGasError::Memory | OutOfGasError::MemoryLimit) => {
            "out of gas".to_owned()
        }
        other => format!("execution halted: {other}"),
    };
    ChainError::Reverted { message, data: None }
}

/// `execution reverted: <reason>` for `Error(string)` and `Panic(uint256)` data, `execution reverted`
/// otherwise (custom errors, empty data), as geth and anvil word it.
pub(crate) fn revert_message(data: &[u8]) -> String {
    if let Ok(revert) = Revert::abi_decode(data) {
        return format!("execution reverted: {}", revert.reason());
    }
    if let Ok(panic) = Panic::abi_decode(data) {
        return format!("execution reverted: {panic}");
    }
    "execution reverted".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revert_messages_follow_geth() {
        let reason = Revert::from("FiatTokenV2: authorization is used or canceled").abi_encode();
        assert_eq!(revert_message(&reason), "execution reverted: FiatTokenV2: authorization is used or canceled");
        assert_eq!(revert_message(&[]), "execution reverted");
        assert_eq!(revert_message(&[0xde, 0xad, 0xbe, 0xef]), "execution reverted");
        let panic = Panic::from(0x11).abi_encode();
        assert!(revert_message(&panic).starts_with("execution reverted: panic: arithmetic underflow or overflow"));
    }
}
