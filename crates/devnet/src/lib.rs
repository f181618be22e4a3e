//! An EVM chain inside the process, so paygate can take payments with nothing else installed.
//!
//! [`Devnet`] runs revm behind [`paygate_chain::Chain`], the same trait [`paygate_chain::RpcChain`] implements
//! over JSON-RPC: the gateway verifies (`eth_call` simulations, `balanceOf`, `authorizationState`) and settles
//! (a signed EIP-1559 `transferWithAuthorization`, then receipt polling) through it unchanged.
//!
//! * Genesis: the dev accounts of [`paygate_chain::devtoken::DEV_MNEMONIC`] hold ETH and the project's test
//!   USDC, which sits at [`paygate_chain::devtoken::test_usdc_address`] as on an anvil set up by
//!   `paygate dev fund`.
//! * Automine: every accepted transaction is mined at once in a block of its own. Block timestamps follow the
//!   wall clock and never go back, because EIP-3009 checks `validAfter`/`validBefore` against them;
//!   simulations run on a pending block stamped now.
//! * Fees: a fixed base fee of [`BASE_FEE_PER_GAS`], charged (and burned) like on any EIP-1559 chain.
//! * Persistence: with a state file, the chain is saved after every block and picked up again at start.
//!
//! One lock guards the chain: simulations and reads share it; a transaction takes it alone while it executes
//! (and, with a state file, while the snapshot is encoded). The file is written after the lock is released.

mod evm;
mod genesis;
mod ledger;
mod state_file;

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use alloy::consensus::TxEnvelope;
use alloy::consensus::crypto::SECP256K1N_HALF;
use alloy::eips::eip2718::Decodable2718;
use alloy::primitives::{Address, Bytes, TxHash, U256};
use alloy::rpc::types::{Filter, Log, TransactionReceipt, TransactionRequest};
use async_trait::async_trait;
use paygate_chain::{Chain, ChainError, Fees};
use revm::context::result::{ExecutionResult, HaltReason};
use revm::database_interface::WrapDatabaseRef;

pub use evm::{BASE_FEE_PER_GAS, BLOCK_GAS_LIMIT, COINBASE, PRIORITY_FEE_PER_GAS};

use ledger::Ledger;

/// The chain id of a devnet unless configured otherwise: distinct from anvil's 31337 and Hardhat's 1337, so
/// a signature made for one is never valid on the other.
pub const DEFAULT_CHAIN_ID: u64 = 402_402;

/// How many dev accounts (indexes `0..n` of the dev mnemonic) genesis funds by default.
pub const DEFAULT_DEV_ACCOUNTS: u32 = 10;

/// Test USDC each dev account holds at genesis by default, in atomic units (6 decimals): 1,000,000 USDC.
pub const DEFAULT_USDC_PER_ACCOUNT: u128 = 1_000_000 * 1_000_000;

/// ETH each dev account holds at genesis by default, in wei: 10,000 ETH.
pub const DEFAULT_ETH_PER_ACCOUNT: u128 = 10_000 * 1_000_000_000_000_000_000;

/// What a [`Devnet`] starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevnetConfig {
    /// The EIP-155 chain id.
    pub chain_id: u64,
    /// Dev accounts `0..dev_accounts` of the dev mnemonic are funded at genesis.
    pub dev_accounts: u32,
    /// Test USDC minted to each dev account at genesis, atomic units.
    pub usdc_per_account: U256,
    /// ETH given to each dev account at genesis, wei.
    pub eth_per_account: U256,
    /// Where the chain is saved after every block. If the file exists the chain continues from it and the
    /// genesis settings above are not used; otherwise a fresh chain is created and saved there.
    pub state_file: Option<PathBuf>,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        DevnetConfig {
            chain_id: DEFAULT_CHAIN_ID,
            dev_accounts: DEFAULT_DEV_ACCOUNTS,
            usdc_per_account: U256::from(DEFAULT_USDC_PER_ACCOUNT),
            eth_per_account: U256::from(DEFAULT_ETH_PER_ACCOUNT),
            state_file: None,
        }
    }
}

/// Why a devnet could not be created or saved.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// The genesis state could not be built (the test token did not deploy or mint).
    #[error("devnet genesis failed: {0}")]
    Genesis(String),
    /// The state file exists but could not be read.
    #[error("cannot read the devnet state file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The state file could not be written.
    #[error("cannot write the devnet state file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    /// The state file is not a devnet state this build understands.
    #[error("the devnet state file {path} is unusable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The state file holds another chain.
    #[error("the devnet state file {path} holds chain {file}, the config says {config}")]
    ChainIdMismatch { path: PathBuf, file: u64, config: u64 },
}

/// Where the chain is saved, and how far.
#[derive(Debug)]
struct StateFile {
    path: PathBuf,
    /// The latest block whose snapshot is on disk. Held while writing, so that a snapshot taken before a newer
    /// one was written is dropped instead of overwriting it.
    written: Mutex<Option<u64>>,
}

/// An in-process EVM chain; see the crate documentation.
pub struct Devnet {
    chain_id: u64,
    ledger: RwLock<Ledger>,
    state_file: Option<StateFile>,
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet")
            .field("chain_id", &self.chain_id)
            .field("block_number", &self.ledger.try_read().ok().map(|ledger| ledger.latest().number))
            .field("state_file", &self.state_file.as_ref().map(|file| &file.path))
            .finish()
    }
}

/// Unix seconds now.
fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

fn invalid_params(message: String) -> ChainError {
    ChainError::Rpc { code: -32602, message }
}

/// The sender of a signed transaction. High-`s` signatures are refused (EIP-2), as every node does.
fn signer(envelope: &TxEnvelope) -> Result<Address, ChainError> {
    let signature = envelope.signature();
    if signature.s() > SECP256K1N_HALF {
        return Err(invalid_params("invalid transaction signature: high s".into()));
    }
    signature
        .recover_address_from_prehash(&envelope.signature_hash())
        .map_err(|e| invalid_params(format!("invalid transaction signature: {e}")))
}

impl Devnet {
    /// Starts the chain `config` describes: from its state file when there is one, otherwise from genesis
    /// (and then saves the genesis state to the state file, if configured).
    pub fn new(config: DevnetConfig) -> Result<Devnet, DevnetError> {
        let saved = match &config.state_file {
            Some(path) => state_file::load(path, config.chain_id)?,
            None => None,
        };
        let fresh = saved.is_none();
        let ledger = match saved {
            Some(ledger) => ledger,
            None => genesis::build(&config, now()).map_err(DevnetError::Genesis)?,
        };
        tracing::info!(
            chain_id = config.chain_id,
            block = ledger.latest().number,
            state_file = ?config.state_file,
            fresh,
            "devnet started"
        );
        let devnet = Devnet {
            chain_id: config.chain_id,
            ledger: RwLock::new(ledger),
            state_file: config.state_file.map(|path| StateFile { path, written: Mutex::new(None) }),
        };
        if fresh {
            devnet.save()?;
        }
        Ok(devnet)
    }

    /// The ETH balance of `address` at the latest block, wei (what `eth_getBalance` answers; the
    /// [`Chain`] trait has no such call).
    pub fn balance(&self, address: Address) -> U256 {
        self.read().balance(address)
    }

    /// The state file, if the chain is saved.
    pub fn state_file(&self) -> Option<&Path> {
        self.state_file.as_ref().map(|file| file.path.as_path())
    }

    /// Writes the state file now (it is also written after every block). Does nothing without a state file.
    pub fn save(&self) -> Result<(), DevnetError> {
        self.save_from(self.read())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Ledger> {
        self.ledger.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Ledger> {
        self.ledger.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Snapshots the ledger held by `guard`, releases the guard, and writes the snapshot unless a newer one
    /// got to the file first.
    fn save_from(&self, guard: impl Deref<Target = Ledger>) -> Result<(), DevnetError> {
        let Some(file) = &self.state_file else { return Ok(()) };
        let block = guard.latest().number;
        let json = state_file::encode(&guard, self.chain_id);
        drop(guard);
        let json = json.map_err(|e| DevnetError::Write { path: file.path.clone(), source: e.into() })?;
        let mut written = file.written.lock().unwrap_or_else(PoisonError::into_inner);
        if written.is_some_and(|newest| newest > block) {
            return Ok(());
        }
        state_file::write(&file.path, &json)?;
        *written = Some(block);
        Ok(())
    }

    /// Runs `request` as a simulation on the latest state, in a pending block stamped now, with `gas_limit`
    /// instead of the request's own when given.
    fn simulate(
        &self,
        ledger: &Ledger,
        request: &TransactionRequest,
        gas_limit: Option<u64>,
    ) -> Result<ExecutionResult, ChainError> {
        let mut tx = evm::simulation_tx(request, self.chain_id);
        if let Some(gas_limit) = gas_limit {
            tx.gas_limit = gas_limit;
        }
        evm::simulate(WrapDatabaseRef(&ledger.state), self.chain_id, ledger.next_position(now()), tx)
    }

    /// `eth_estimateGas` as geth does it: run at the cap, then search for the smallest gas limit that still
    /// succeeds, to within 1.5 %. Every run sees the same state.
    fn estimate(&self, request: &TransactionRequest) -> Result<u64, ChainError> {
        let ledger = self.read();
        let cap = request.gas.map_or(BLOCK_GAS_LIMIT, |gas| gas.min(BLOCK_GAS_LIMIT));
        let at_cap = self.simulate(&ledger, request, Some(cap))?;
        match &at_cap {
            ExecutionResult::Success { .. } => {}
            ExecutionResult::Halt { reason: HaltReason::OutOfGas(_), .. } => {
                return Err(ChainError::Rpc {
                    code: -32000,
                    message: format!("gas required exceeds allowance ({cap})"),
                });
            }
            _ => return evm::call_outcome(at_cap).map(|_| cap),
        }
        let succeeds = |gas: u64| self.simulate(&ledger, request, Some(gas)).is_ok_and(|result| result.is_success());
        let gas = at_cap.gas();
        let mut lowest_failing = gas.tx_gas_used().saturating_sub(1);
        let mut highest_succeeding = cap;
        // Most calls succeed with what they spent plus the 1/64 each nested call must leave behind.
        let optimistic = (gas.total_gas_spent() + 2_300).saturating_mul(64) / 63;
        if optimistic < highest_succeeding {
            if succeeds(optimistic) {
                highest_succeeding = optimistic;
            } else {
                lowest_failing = optimistic;
            }
        }
        while highest_succeeding - lowest_failing > 1
            && (highest_succeeding - lowest_failing) * 1000 / highest_succeeding > 15
        {
            let middle = lowest_failing + (highest_succeeding - lowest_failing) / 2;
            if succeeds(middle) {
                highest_succeeding = middle;
            } else {
                lowest_failing = middle;
            }
        }
        Ok(highest_succeeding)
    }

    /// Decodes, checks and mines a signed transaction; then saves the chain.
    fn submit(&self, raw: &[u8]) -> Result<TxHash, ChainError> {
        let envelope =
            TxEnvelope::decode_2718_exact(raw).map_err(|e| invalid_params(format!("invalid transaction: {e}")))?;
        let sender = signer(&envelope)?;
        let tx = evm::signed_tx(&envelope, sender)?;
        let mut ledger = self.write();
        let hash = ledger.mine(self.chain_id, &envelope, sender, tx, now())?.transaction_hash;
        if let Err(e) = self.save_from(ledger) {
            tracing::error!(error = %e, "the devnet could not save its state");
        }
        Ok(hash)
    }
}

#[async_trait]
impl Chain for Devnet {
    fn chain_id(&self) -> u64 {
        self.chain_id
    }

    async fn call(&self, tx: TransactionRequest) -> Result<Bytes, ChainError> {
        let result = self.simulate(&self.read(), &tx, None)?;
        evm::call_outcome(result)
    }

    async fn estimate_gas(&self, tx: TransactionRequest) -> Result<u64, ChainError> {
        self.estimate(&tx)
    }

    async fn pending_nonce(&self, address: Address) -> Result<u64, ChainError> {
        // Transactions are mined as they arrive: the pending nonce is the latest one.
        Ok(self.read().nonce(address))
    }

    async fn fees(&self) -> Result<Fees, ChainError> {
        Ok(Fees {
            max_fee_per_gas: 2 * u128::from(BASE_FEE_PER_GAS) + PRIORITY_FEE_PER_GAS,
            max_priority_fee_per_gas: PRIORITY_FEE_PER_GAS,
        })
    }

    async fn send_raw_transaction(&self, raw: Bytes) -> Result<TxHash, ChainError> {
        self.submit(&raw)
    }

    async fn receipt(&self, hash: TxHash) -> Result<Option<TransactionReceipt>, ChainError> {
        Ok(self.read().receipts.get(&hash).cloned())
    }

    async fn block_number(&self) -> Result<u64, ChainError> {
        Ok(self.read().latest().number)
    }

    async fn block_timestamp(&self, number: u64) -> Result<Option<u64>, ChainError> {
        let ledger = self.read();
        Ok(usize::try_from(number).ok().and_then(|index| ledger.blocks.get(index)).map(|block| block.timestamp))
    }

    async fn logs(&self, filter: Filter) -> Result<Vec<Log>, ChainError> {
        self.read().logs(&filter)
    }

    async fn code(&self, address: Address) -> Result<Bytes, ChainError> {
        Ok(self.read().code(address))
    }
}
