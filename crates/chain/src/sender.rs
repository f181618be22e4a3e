//! Signs and broadcasts transactions from one local key, handing out nonces in order.
//!
//! Concurrent settlements from one settler key must not collide on nonces (the reference x402 facilitator
//! loses about half of concurrent settlements to "nonce too low" without this). The nonce is held in a mutex
//! across sign-and-send, so broadcasts from this process are strictly ordered; any doubt about the node's view
//! (an RPC error, an unknown outcome) drops the cached nonce. Each send also asks the node's pending count (with
//! the gas estimate, so it adds no wait) and signs with the larger of the two: instances sharing a key take turns
//! without reusing each other's nonces. (Two instances signing at the very same moment can still collide; the
//! loser's transaction is refused by the node, nothing is sent, and its caller answers as for any refusal.)
//! A nonce the node lost after accepting it would hold every later transaction of the key for ever; the
//! [`NonceBook`] notices and the next transaction fills it ([`TxSender::fill_lost_nonce`] does when there is none).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::TxSignerSync;
use alloy::primitives::{Address, Bytes, TxHash, TxKind, U256};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use tokio::sync::Mutex;

use crate::nonce::{Assigned, LOST_NONCE_GRACE, NonceBook};
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
    nonces: Mutex<NonceBook>,
    /// Broadcasts that reached the node, counted under `nonces`' lock: a pending count read while this did not
    /// move includes every one of them.
    broadcasts: AtomicU64,
    fee_cache: std::sync::Mutex<Option<(Instant, Fees)>>,
}

/// How long fee estimates are reused: fees move per block, and asking costs two round trips per send.
const FEE_CACHE: Duration = Duration::from_secs(3);

impl TxSender {
    pub fn new(chain: Arc<dyn Chain>, signer: PrivateKeySigner) -> Self {
        Self::with_lost_nonce_grace(chain, signer, LOST_NONCE_GRACE)
    }

    /// A sender that believes a node that lost one of its nonces after `grace` (see [`NonceBook`]).
    pub fn with_lost_nonce_grace(chain: Arc<dyn Chain>, signer: PrivateKeySigner, grace: Duration) -> Self {
        TxSender {
            chain,
            signer,
            nonces: Mutex::new(NonceBook::new(grace)),
            broadcasts: AtomicU64::new(0),
            fee_cache: std::sync::Mutex::new(None),
        }
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
        let seen = self.broadcasts.load(Ordering::Acquire);
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

        let mut nonces = self.nonces.lock().await;
        let assigned = self.assign(&mut nonces, node_nonce, seen);
        // A fifth more gas than estimated: the state may move between estimate and inclusion.
        let tx = self.transaction(assigned.nonce(), to, data, gas + gas / 5, fees);
        let (hash, raw) = self.sign(tx)?;
        record(hash, raw.clone()).await.map_err(SendError::NotRecorded)?;
        self.broadcast(&mut nonces, assigned.nonce(), hash, raw).await
    }

    /// Fills a nonce the node lost (see [`NonceBook`]) with a transaction that does nothing (no value, to this
    /// key's own address), for a caller whose transactions wait behind it and that has nothing new to send (a
    /// settlement pass finding its transactions unmined). Its hash when it sent one; `None` when the node is not
    /// (or not yet believed) behind.
    pub async fn fill_lost_nonce(&self) -> Result<Option<TxHash>, SendError> {
        let seen = self.broadcasts.load(Ordering::Acquire);
        let node_nonce = self.chain.pending_nonce(self.address()).await.map_err(SendError::NotSent)?;
        let mut nonces = self.nonces.lock().await;
        let Assigned::FillGap { nonce, .. } = self.assign(&mut nonces, node_nonce, seen) else { return Ok(None) };
        let fees = self.fees().await.map_err(SendError::NotSent)?;
        let (hash, raw) = self.sign(self.transaction(nonce, self.address(), Bytes::new(), 21_000, fees))?;
        self.broadcast(&mut nonces, nonce, hash, raw).await.map(Some)
    }

    /// The nonce for a transaction, from the node's count read after `seen` broadcasts.
    fn assign(&self, nonces: &mut NonceBook, node_nonce: u64, seen: u64) -> Assigned {
        let fresh = self.broadcasts.load(Ordering::Acquire) == seen;
        let assigned = nonces.assign(node_nonce, fresh, Instant::now());
        if let Assigned::FillGap { nonce, signed_up_to } = assigned {
            tracing::warn!(
                sender = %self.address(),
                nonce,
                signed_up_to,
                "the node lost a transaction of this key (its pending count stays below what was sent): signing \
                 its nonce again, so that those after it can be mined"
            );
        }
        assigned
    }

    fn transaction(&self, nonce: u64, to: Address, data: Bytes, gas_limit: u64, fees: Fees) -> TxEip1559 {
        TxEip1559 {
            chain_id: self.chain.chain_id(),
            nonce,
            gas_limit,
            max_fee_per_gas: fees.max_fee_per_gas,
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
            to: TxKind::Call(to),
            value: U256::ZERO,
            access_list: Default::default(),
            input: data,
        }
    }

    /// The signed transaction's hash and bytes.
    fn sign(&self, mut tx: TxEip1559) -> Result<(TxHash, Bytes), SendError> {
        let signature = self
            .signer
            .sign_transaction_sync(&mut tx)
            .map_err(|e| SendError::NotSent(ChainError::Rpc { code: 0, message: format!("signing: {e}") }))?;
        let envelope: TxEnvelope = tx.into_signed(signature).into();
        Ok((*envelope.tx_hash(), envelope.encoded_2718().into()))
    }

    /// Broadcasts `raw` (signed with `nonce`) and books the outcome; the caller holds the nonce lock throughout.
    async fn broadcast(
        &self,
        nonces: &mut NonceBook,
        nonce: u64,
        hash: TxHash,
        raw: Bytes,
    ) -> Result<TxHash, SendError> {
        match self.chain.send_raw_transaction(raw).await {
            Ok(_) => {
                nonces.sent(nonce);
                self.broadcasts.fetch_add(1, Ordering::Release);
                Ok(hash)
            }
            Err(ChainError::Unavailable(reason)) => {
                nonces.forget();
                Err(SendError::Unknown { hash, reason })
            }
            Err(e) => {
                nonces.forget();
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
