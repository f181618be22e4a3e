//! The devnet's state file: a JSON snapshot of everything a restart must keep (accounts with balance, nonce,
//! code and storage; blocks; receipts with their logs), read at start and rewritten after every block through a
//! temporary file and a rename, so a crash leaves the previous snapshot whole.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use alloy::primitives::{Address, Bytes, U256};
use alloy::rpc::types::TransactionReceipt;
use revm::bytecode::Bytecode;
use revm::database::AccountState;
use revm::state::AccountInfo;
use serde::{Deserialize, Serialize};

use crate::DevnetError;
use crate::evm::WorldState;
use crate::ledger::{Block, Ledger};

/// Bumped whenever the layout changes incompatibly.
const FORMAT_VERSION: u32 = 1;

/// An account as the file keeps it. Storage slots holding zero are left out.
#[derive(Debug, Serialize, Deserialize)]
struct AccountRecord {
    balance: U256,
    nonce: u64,
    #[serde(default, skip_serializing_if = "<[u8]>::is_empty")]
    code: Bytes,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    storage: BTreeMap<U256, U256>,
}

/// The file, written from borrowed data so that saving copies nothing but account records.
#[derive(Debug, Serialize)]
struct SnapshotOut<'a> {
    version: u32,
    chain_id: u64,
    accounts: BTreeMap<Address, AccountRecord>,
    blocks: &'a [Block],
    /// In block order.
    receipts: Vec<&'a TransactionReceipt>,
}

/// The file, read back.
#[derive(Debug, Deserialize)]
struct SnapshotIn {
    version: u32,
    chain_id: u64,
    accounts: BTreeMap<Address, AccountRecord>,
    blocks: Vec<Block>,
    receipts: Vec<TransactionReceipt>,
}

/// The JSON of `ledger`'s snapshot.
pub(crate) fn encode(ledger: &Ledger, chain_id: u64) -> Result<Vec<u8>, serde_json::Error> {
    let accounts = ledger
        .state
        .cache
        .accounts
        .iter()
        .filter(|(_, account)| account.account_state != AccountState::NotExisting)
        .map(|(address, account)| {
            let code = match &account.info.code {
                Some(code) if !code.is_empty() => code.original_bytes(),
                _ => ledger
                    .state
                    .cache
                    .contracts
                    .get(&account.info.code_hash)
                    .map(Bytecode::original_bytes)
                    .unwrap_or_default(),
            };
            let storage = account.storage.iter().filter(|(_, value)| !value.is_zero()).map(|(k, v)| (*k, *v)).collect();
            (*address, AccountRecord { balance: account.info.balance, nonce: account.info.nonce, code, storage })
        })
        .collect();
    let receipts = ledger
        .blocks
        .iter()
        .flat_map(|block| &block.transactions)
        .filter_map(|hash| ledger.receipts.get(hash))
        .collect();
    serde_json::to_vec(&SnapshotOut { version: FORMAT_VERSION, chain_id, accounts, blocks: &ledger.blocks, receipts })
}

/// Reads the ledger saved at `path`; `Ok(None)` when there is no file yet.
pub(crate) fn load(path: &Path, chain_id: u64) -> Result<Option<Ledger>, DevnetError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(DevnetError::Read { path: path.to_owned(), source }),
    };
    let corrupt = |reason: String| DevnetError::Corrupt { path: path.to_owned(), reason };
    let snapshot: SnapshotIn = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if snapshot.version != FORMAT_VERSION {
        return Err(corrupt(format!("format version {} (this build reads {FORMAT_VERSION})", snapshot.version)));
    }
    if snapshot.chain_id != chain_id {
        return Err(DevnetError::ChainIdMismatch { path: path.to_owned(), file: snapshot.chain_id, config: chain_id });
    }
    if snapshot.blocks.is_empty() {
        return Err(corrupt("no blocks".into()));
    }
    for (index, block) in snapshot.blocks.iter().enumerate() {
        if block.number != index as u64 {
            return Err(corrupt(format!("block {} is at position {index}", block.number)));
        }
    }

    let mut state = WorldState::default();
    for (address, record) in snapshot.accounts {
        let mut info = AccountInfo { balance: record.balance, nonce: record.nonce, ..AccountInfo::default() };
        if !record.code.is_empty() {
            let code =
                Bytecode::new_raw_checked(record.code).map_err(|e| corrupt(format!("code of {address}: {e:?}")))?;
            info = info.with_code(code);
        }
        state.insert_account_info(address, info);
        if let Err(never) = state.replace_account_storage(address, record.storage.into_iter().collect()) {
            match never {}
        }
    }
    let receipts: HashMap<_, _> =
        snapshot.receipts.into_iter().map(|receipt| (receipt.transaction_hash, receipt)).collect();
    Ok(Some(Ledger::new(state, snapshot.blocks, receipts)))
}

/// Writes `json` to `path` through `<path>.tmp` and a rename.
pub(crate) fn write(path: &Path, json: &[u8]) -> Result<(), DevnetError> {
    let temporary = temporary_path(path);
    let failed = |source| DevnetError::Write { path: path.to_owned(), source };
    std::fs::write(&temporary, json).map_err(failed)?;
    std::fs::rename(&temporary, path).map_err(failed)
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}
