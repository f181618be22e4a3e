//! EVM access behind one trait.
//!
//! Everything paygate does on a chain (simulate a transfer, read a balance, broadcast a settlement, wait for
//! its receipt, read transfer logs) goes through [`Chain`], a small subset of Ethereum JSON-RPC. [`RpcChain`]
//! speaks it to a real node (anvil, Base, Ethereum, Polygon) through alloy; the embedded devnet implements the
//! same trait in-process, so the gateway and the payment methods never know which one they talk to.
//!
//! [`abi`] holds the token interfaces paygate calls, and [`devtoken`] the project's own EIP-3009 test token and
//! the dev accounts that tests, `paygate dev fund` and the devnet share; [`escrow`] the x402 `batch-settlement`
//! escrow that channel payments go through, [`session_escrow`] MPP's `evm` session escrow, and [`upto`] Permit2 and the x402 upto proxy.

pub mod abi;
pub mod devtoken;
mod eip712;
pub mod escrow;
pub mod nonce;
mod rpc;
pub mod sender;
pub mod session_escrow;
pub mod upto;

use std::fmt::Debug;

use alloy::primitives::{Address, Bytes, TxHash};
use alloy::rpc::types::{Filter, Log, TransactionReceipt, TransactionRequest};
use async_trait::async_trait;

pub use rpc::RpcChain;
pub use sender::{SendError, TxSender, wait_for_receipt};

/// Why a chain call failed. The distinction matters: a revert is the payer's problem (402), an unreachable
/// chain is ours (502), and neither message may leak the RPC URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The node could not be reached, timed out, or answered something that is not JSON-RPC.
    #[error("chain unreachable: {0}")]
    Unavailable(String),
    /// The call or transaction reverted; `message` is the node's revert message (for example
    /// `execution reverted: FiatTokenV2: invalid signature`), `data` the raw revert data.
    #[error("{message}")]
    Reverted { message: String, data: Option<Bytes> },
    /// The node answered a JSON-RPC error that is not a revert (nonce too low, underpriced, ...).
    #[error("rpc error {code}: {message}")]
    Rpc { code: i64, message: String },
}

/// EIP-1559 fee parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fees {
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
}

/// The subset of Ethereum JSON-RPC paygate needs.
#[async_trait]
pub trait Chain: Send + Sync + Debug {
    /// The EIP-155 chain id.
    fn chain_id(&self) -> u64;

    /// `eth_call` against the latest block.
    async fn call(&self, tx: TransactionRequest) -> Result<Bytes, ChainError>;

    /// `eth_estimateGas`.
    async fn estimate_gas(&self, tx: TransactionRequest) -> Result<u64, ChainError>;

    /// `eth_getTransactionCount(address, "pending")`.
    async fn pending_nonce(&self, address: Address) -> Result<u64, ChainError>;

    /// Fees that get a transaction into the next few blocks.
    async fn fees(&self) -> Result<Fees, ChainError>;

    /// `eth_sendRawTransaction`.
    async fn send_raw_transaction(&self, raw: Bytes) -> Result<TxHash, ChainError>;

    /// `eth_getTransactionReceipt`; `None` while the transaction is not mined.
    async fn receipt(&self, hash: TxHash) -> Result<Option<TransactionReceipt>, ChainError>;

    /// `eth_blockNumber`.
    async fn block_number(&self) -> Result<u64, ChainError>;

    /// The timestamp (Unix seconds) of block `number`; `None` when there is no such block yet.
    async fn block_timestamp(&self, number: u64) -> Result<Option<u64>, ChainError>;

    /// `eth_getLogs`.
    async fn logs(&self, filter: Filter) -> Result<Vec<Log>, ChainError>;

    /// `eth_getCode` at the latest block.
    async fn code(&self, address: Address) -> Result<Bytes, ChainError>;

    /// Places `code` at `address` (anvil's `anvil_setCode`), on development chains only: how the dev chains get
    /// contracts at the canonical addresses of their production deployments ([`escrow`]). Other chains refuse.
    async fn set_code_for_development(&self, _address: Address, _code: Bytes) -> Result<(), ChainError> {
        Err(ChainError::Rpc { code: -32601, message: "not a development chain".into() })
    }
}
