//! The chain's data and the rules that grow it: the world state, the blocks and the receipts, one block mined
//! per transaction, and the queries (`eth_getLogs`, `eth_getCode`, nonces) that read them back.

use std::collections::HashMap;

use alloy::consensus::{Eip658Value, Receipt, ReceiptEnvelope, ReceiptWithBloom, Transaction, TxEnvelope};
use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256, Bytes, TxHash, TxKind, U256, keccak256, logs_bloom};
use alloy::rpc::types::{Filter, FilterBlockOption, Log, TransactionReceipt};
use paygate_chain::ChainError;
use revm::DatabaseRef;
use revm::context::TxEnv;
use serde::{Deserialize, Serialize};

use crate::evm::{self, BASE_FEE_PER_GAS, BlockPosition, WorldState};

/// A mined block: what the devnet remembers of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Block {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    /// Unix seconds.
    pub timestamp: u64,
    pub transactions: Vec<TxHash>,
}

impl Block {
    /// Block 0, at `timestamp`.
    pub fn genesis(chain_id: u64, timestamp: u64) -> Block {
        let mut seed = b"paygate-devnet genesis".to_vec();
        seed.extend_from_slice(&chain_id.to_be_bytes());
        seed.extend_from_slice(&timestamp.to_be_bytes());
        Block { number: 0, hash: keccak256(seed), parent_hash: B256::ZERO, timestamp, transactions: Vec::new() }
    }

    /// The block after `parent` holding `transactions`. Its hash commits to the parent, the number, the time
    /// and the transactions, which is all a block here is.
    fn child(parent: &Block, timestamp: u64, transactions: Vec<TxHash>) -> Block {
        let number = parent.number + 1;
        let mut preimage = parent.hash.to_vec();
        preimage.extend_from_slice(&number.to_be_bytes());
        preimage.extend_from_slice(&timestamp.to_be_bytes());
        for hash in &transactions {
            preimage.extend_from_slice(hash.as_slice());
        }
        Block { number, hash: keccak256(preimage), parent_hash: parent.hash, timestamp, transactions }
    }
}

/// World state, blocks (index = number, never empty) and receipts by transaction hash.
#[derive(Debug)]
pub(crate) struct Ledger {
    pub state: WorldState,
    pub blocks: Vec<Block>,
    pub receipts: HashMap<TxHash, TransactionReceipt>,
}

impl Ledger {
    /// A ledger of `state` and `blocks` (which must start at 0 and be contiguous) with `receipts`.
    pub fn new(mut state: WorldState, blocks: Vec<Block>, receipts: HashMap<TxHash, TransactionReceipt>) -> Self {
        for block in &blocks {
            state.cache.block_hashes.insert(U256::from(block.number), block.hash);
        }
        Ledger { state, blocks, receipts }
    }

    pub fn latest(&self) -> &Block {
        // `blocks` always holds at least the genesis block.
        self.blocks.last().expect("a ledger has a genesis block")
    }

    /// Where the next block goes if it is made at `now`: timestamps follow the wall clock and never go back.
    pub fn next_position(&self, now: u64) -> BlockPosition {
        let latest = self.latest();
        BlockPosition { number: latest.number + 1, timestamp: latest.timestamp.max(now), parent_hash: latest.hash }
    }

    /// Executes a signed transaction in a new block of its own and records its receipt. A transaction that
    /// reverts is mined with status 0; one the EVM refuses (nonce, fees, balance, chain id) is not mined.
    pub fn mine(
        &mut self,
        chain_id: u64,
        envelope: &TxEnvelope,
        sender: Address,
        tx: TxEnv,
        now: u64,
    ) -> Result<&TransactionReceipt, ChainError> {
        let hash = *envelope.tx_hash();
        if self.receipts.contains_key(&hash) {
            return Err(ChainError::Rpc { code: -32000, message: "already known".into() });
        }
        let position = self.next_position(now);
        let result = evm::execute_and_commit(&mut self.state, chain_id, position, tx)?;
        let block = Block::child(self.latest(), position.timestamp, vec![hash]);

        let success = result.is_success();
        let gas_used = result.tx_gas_used();
        let contract_address = result.created_address();
        let logs: Vec<Log> = result
            .into_logs()
            .into_iter()
            .enumerate()
            .map(|(index, inner)| Log {
                inner,
                block_hash: Some(block.hash),
                block_number: Some(block.number),
                block_timestamp: Some(block.timestamp),
                transaction_hash: Some(hash),
                transaction_index: Some(0),
                log_index: Some(index as u64),
                removed: false,
            })
            .collect();
        let bloom = logs_bloom(logs.iter().map(|log| &log.inner));
        let receipt = Receipt { status: Eip658Value::Eip658(success), cumulative_gas_used: gas_used, logs };
        let receipt = TransactionReceipt {
            inner: ReceiptEnvelope::from_typed(envelope.tx_type(), ReceiptWithBloom::new(receipt, bloom)),
            transaction_hash: hash,
            transaction_index: Some(0),
            block_hash: Some(block.hash),
            block_number: Some(block.number),
            gas_used,
            effective_gas_price: envelope.effective_gas_price(Some(BASE_FEE_PER_GAS)),
            blob_gas_used: None,
            blob_gas_price: None,
            from: sender,
            to: match envelope.kind() {
                TxKind::Call(to) => Some(to),
                TxKind::Create => None,
            },
            contract_address,
        };
        tracing::debug!(block = block.number, tx = %hash, success, gas_used, "devnet mined a transaction");
        self.state.cache.block_hashes.insert(U256::from(block.number), block.hash);
        self.blocks.push(block);
        Ok(self.receipts.entry(hash).or_insert(receipt))
    }

    /// The account's nonce (0 for an account that does not exist).
    pub fn nonce(&self, address: Address) -> u64 {
        self.state.basic_ref(address).ok().flatten().map_or(0, |info| info.nonce)
    }

    /// The account's ETH balance, wei.
    pub fn balance(&self, address: Address) -> U256 {
        self.state.basic_ref(address).ok().flatten().map_or(U256::ZERO, |info| info.balance)
    }

    /// The account's code (empty for an account without).
    pub fn code(&self, address: Address) -> Bytes {
        let Ok(Some(info)) = self.state.basic_ref(address) else { return Bytes::new() };
        match info.code {
            Some(code) if !code.is_empty() => code.original_bytes(),
            _ => self.state.code_by_hash_ref(info.code_hash).map(|code| code.original_bytes()).unwrap_or_default(),
        }
    }

    /// `eth_getLogs`: logs of the blocks the filter selects (a missing bound is the latest block) that match
    /// its addresses and topics, in chain order.
    pub fn logs(&self, filter: &Filter) -> Result<Vec<Log>, ChainError> {
        let latest = self.latest().number;
        let blocks: &[Block] = match filter.block_option {
            FilterBlockOption::AtBlockHash(hash) => {
                let block = self
                    .blocks
                    .iter()
                    .find(|block| block.hash == hash)
                    .ok_or_else(|| ChainError::Rpc { code: -32000, message: format!("unknown block {hash}") })?;
                std::slice::from_ref(block)
            }
            FilterBlockOption::Range { from_block, to_block } => {
                let resolve = |tag: Option<BlockNumberOrTag>| match tag {
                    Some(BlockNumberOrTag::Number(number)) => number,
                    Some(BlockNumberOrTag::Earliest) => 0,
                    _ => latest,
                };
                if let (Some(from), Some(to)) =
                    (from_block.and_then(|tag| tag.as_number()), to_block.and_then(|tag| tag.as_number()))
                    && from > to
                {
                    return Err(ChainError::Rpc { code: -32602, message: "invalid block range params".into() });
                }
                // A range starting after the latest block is empty, not an error: pollers ask for what is new.
                let (from, to) = (resolve(from_block), resolve(to_block));
                let from = usize::try_from(from).unwrap_or(usize::MAX).min(self.blocks.len());
                let to = usize::try_from(to.min(latest)).unwrap_or(usize::MAX).min(self.blocks.len() - 1);
                self.blocks.get(from..=to).unwrap_or_default()
            }
        };
        let logs = blocks
            .iter()
            .flat_map(|block| &block.transactions)
            .filter_map(|hash| self.receipts.get(hash))
            .flat_map(|receipt| receipt.inner.logs())
            .filter(|log| filter.matches(&log.inner))
            .cloned()
            .collect();
        Ok(logs)
    }
}
