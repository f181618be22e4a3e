//! Signs and broadcasts transactions from one local key, handing out nonces in order.
//!
//! Concurrent settlements from one settler key must not collide on nonces (the reference x402 facilitator
//! loses about half of concurrent settlements to "nonce too low" without this). The nonce is held in a mutex
//! across sign-and-send, so broadcasts from this process are strictly ordered; any doubt about the node's view
//! (an RPC error, an unknown outcome) drops the cached nonce. Each send also asks the node's pending count (with
//! the gas estimate, so it adds no wait) and signs with the larger of the two: instances sharing a key take turns
//! without reusing each other's nonces. (Two instances signing at the very same moment can still collide; the
//! loser's transaction is refused by the node, nothing is sent, and its caller answers as for any refusal.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::TxSignerSync;
use alloy::primitives::{Address, Bytes, TxHash, TxKind, U256};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use tokio::sync::Mutex;

use crate::{Chain, ChainError, Fees};

/// Why a transaction was not (certainly) broadcast.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// It would revert (gas estimation failed with a revert): nothing was broadcast.
    #[error("{0}")]
    WouldRevert(String),
    /// The node refused it or could not be asked before sending: nothing was broadcast.
    #[error("not sent: {0}")]
    NotSent(ChainError),
    /// The caller could not record the signed transaction: nothing was broadcast.
    #[error("not sent: the transaction could not be recorded: {0}")]
    NotRecorded(String),
    /// The broadcast may or may not have reached the node; the transaction, if it exists, has this hash.
    #[error("broadcast outcome unknown: {reason}")]
    Unknown { hash: TxHash, reason: String },
}

/// A key that sends transactions on one chain.
#[derive(Debug)]
pub struct TxSender {
    chain: Arc<dyn Chain>,
    signer: PrivateKeySigner,
    next_nonce: Mutex<Option<u64>>,
    fee_cache: std::sync::Mutex<Option<(Instant, Fees)>>,
}

/// How long fee estimates are reused: fees move per block, and asking costs two round trips per send.
const FEE_CACHE: Duration = Duration::from_secs(3);

impl TxSender {
    pub fn new(chain: Arc<dyn Chain>, signer: PrivateKeySigner) -> Self {
        TxSender { chain, signer, next_nonce: Mutex::new(None), fee_cache: std::sync::Mutex::new(None) }
    }

    pub fn address(&self) -> Address {
        self.signer.address()
    }

    pub fn chain(&self) -> &Arc<dyn Chain> {
        &self.chain
    }

    async fn fees(&self) -> Result<Fees, ChainError> {
        if let Some((at, fees)) = *self.fee_cache.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < FEE_CACHE
        {
            return Ok(fees);
        }
        let fees = self.chain.fees().await?;
        *self.fee_cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), fees));
        Ok(fees)
    }

    /// Estimates gas, signs with the next nonce and broadcasts a call of `data` on `to`.
    pub async fn send(&self, to: Address, data: Bytes) -> Result<TxHash, SendError> {
        self.send_recorded(to, data, async |_, _| Ok(())).await
    }

    /// [`TxSender::send`], calling `record` with the transaction's hash and signed bytes after signing and before
    /// broadcasting, so a payer can write down what it is about to spend (and find it after a crash, or send the
    /// very same bytes again if the node lost them). When `record` fails,
    /// nothing is broadcast: [`SendError::NotRecorded`].
    pub async fn send_recorded(
        &self,
        to: Address,
        data: Bytes,
        record: impl AsyncFnOnce(TxHash, Bytes) -> Result<(), String>,
    ) -> Result<TxHash, SendError> {
        let request = TransactionRequest::default().from(self.address()).to(to).input(data.clone().into());
        // The node's count is asked alongside the estimate (no added wait): another process sending from this key
        // (a second gateway instance) moves it, and a nonce it took must not be signed again.
        let (gas, node_nonce) =
            tokio::join!(self.chain.estimate_gas(request), self.chain.pending_nonce(self.address()));
        let gas = match gas {
            Ok(gas) => gas,
            Err(ChainError::Reverted { message, .. }) => return Err(SendError::WouldRevert(message)),
            Err(e) => return Err(SendError::NotSent(e)),
        };
        let node_nonce = node_nonce.map_err(SendError::NotSent)?;
        let fees = self.fees().await.map_err(SendError::NotSent)?;

        let mut next_nonce = self.next_nonce.lock().await;
        // This process's own count runs ahead of the node's while its transactions reach the node's pool.
        let nonce = next_nonce.map_or(node_nonce, |n| n.max(node_nonce));
        let mut tx = TxEip1559 {
            chain_id: self.chain.chain_id(),
            nonce,
            // A fifth more than estimated: the state may move between estimate and inclusion.
            gas_limit: gas + gas / 5,
            max_fee_per_gas: fees.max_fee_per_gas,
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
            to: TxKind::Call(to),
            value: U256::ZERO,
            access_list: Default::default(),
            input: data,
        };
        let signature = self
            .signer
            .sign_transaction_sync(&mut tx)
            .map_err(|e| SendError::NotSent(ChainError::Rpc { code: 0, message: format!("signing: {e}") }))?;
        let envelope: TxEnvelope = tx.into_signed(signature).into();
        let hash = *envelope.tx_hash();
        let raw: Bytes = envelope.encoded_2718().into();
        record(hash, raw.clone()).await.map_err(SendError::NotRecorded)?;
        match self.chain.send_raw_transaction(raw).await {
            Ok(_) => {
                *next_nonce = Some(nonce + 1);
                Ok(hash)
            }
            Err(ChainError::Unavailable(reason)) => {
                *next_nonce = None;
                Err(SendError::Unknown { hash, reason })
            }
            Err(e) => {
                *next_nonce = None;
                Err(SendError::NotSent(e))
            }
        }
    }
}

/// Polls for a receipt until `timeout`: every `poll` (first after a few milliseconds, for fast devnets).
/// `Ok(None)` when the timeout passed with the transaction unmined.
pub async fn wait_for_receipt(
    chain: &dyn Chain,
    hash: TxHash,
    timeout: Duration,
    poll: Duration,
) -> Result<Option<TransactionReceipt>, ChainError> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(5).min(poll);
    loop {
        let last_error = match chain.receipt(hash).await {
            Ok(Some(receipt)) => return Ok(Some(receipt)),
            Ok(None) => None,
            Err(e) => Some(e),
        };
        if Instant::now() + delay > deadline {
            return last_error.map_or(Ok(None), Err);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(poll);
    }
}
