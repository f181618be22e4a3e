//! [`ChannelJournal`]: how channel settlers send their transactions (claims, sweeps, settlements, refunds,
//! closes) so that none is lost or sent twice. Each is signed, written down with its bytes before it is broadcast
//! ([`paygate_core::channel_journal`]), and decided from the chain: at once when its receipt comes in time, or
//! by the next settlement pass ([`ChannelJournal::decide`]), after a crash too.
//!
//! A pass decides the journal before it sends anything, and sends nothing while a transaction of its option is
//! undecided: the state a new transaction would be computed from may be about to change. An undecided
//! transaction the node does not know is sent again as the very same signed bytes: it has the same hash and
//! nonce, so it executes at most once. Once its nonce was taken by another transaction, it failed. One that waits
//! behind a nonce the node lost is freed by the key's sender filling it ([`TxSender::fill_lost_nonce`]).
//!
//! (A relayed deposit is not journaled: it spends the payer's EIP-3009 authorization, which the token accepts
//! once, and a retry reads whether it was used.)

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, Bytes, TxHash};

use paygate_chain::sender::{SendError, TxSender};
use paygate_chain::{ChainError, wait_for_receipt};
use paygate_core::channel::{Channel, ChannelBook, ChannelBookError};
use paygate_core::channel_journal::{ChannelTransaction, TransactionKind, TransactionState};

/// Sends one option's channel transactions through the journal.
pub(crate) struct ChannelJournal {
    pub sender: Arc<TxSender>,
    pub book: Arc<dyn ChannelBook>,
    /// The escrow every transaction goes to.
    pub escrow: Address,
    pub option: String,
    pub receipt_timeout: Duration,
    pub poll_interval: Duration,
}

/// What a channel transaction is for.
pub(crate) struct Intent<'a> {
    pub kind: TransactionKind,
    pub channel: Option<&'a str>,
    pub amount: u128,
    pub data: Vec<u8>,
    /// The channel's change that goes with it (a refund lowering the deposit): the row's version it was computed
    /// from, and the row after. Written with the journal entry, or nothing is sent.
    pub change: Option<(i64, &'a Channel)>,
}

/// Why a channel transaction did not (yet) succeed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotDone {
    /// Nothing went out (it would revert, the node refused it, the store could not journal it): nothing changed.
    #[error("not sent: {0}")]
    NotSent(String),
    /// The channel changed between the read its change was computed from and the journal: nothing was sent.
    #[error("the channel changed meanwhile")]
    ChannelChanged,
    /// It went out and failed (reverted): decided, and its channel change given back.
    #[error("{0}")]
    Failed(String),
    /// It went out and is not decided yet: the next pass decides it from the chain.
    #[error("transaction {0} was sent and is not mined yet")]
    Pending(String),
}

/// What [`ChannelJournal::decide`] found.
#[derive(Debug, Default)]
pub(crate) struct Decided {
    /// Transactions the chain mined since they were sent.
    pub mined: Vec<ChannelTransaction>,
    /// Transactions still undecided: the pass sends nothing new.
    pub undecided: usize,
}

impl ChannelJournal {
    /// Journals, broadcasts and waits for the transaction `intent`; its hash once mined successfully.
    pub async fn send(&self, intent: Intent<'_>) -> Result<String, NotDone> {
        let (mut journaled, mut changed) = (None, false);
        let record = async |hash: TxHash, raw: Bytes| {
            let entry = ChannelTransaction {
                hash: format!("{hash:#x}"),
                option: self.option.clone(),
                kind: intent.kind,
                channel: intent.channel.map(str::to_owned),
                amount: intent.amount,
                raw: format!("0x{}", alloy::hex::encode(&raw)),
                state: TransactionState::Sent,
                created_at_ms: now_ms(),
            };
            match self.book.journal_transaction(&entry, intent.change).await {
                Ok(true) => {
                    journaled = Some(entry);
                    Ok(())
                }
                Ok(false) => {
                    changed = true;
                    Err("the channel changed meanwhile".to_owned())
                }
                Err(e) => Err(e.to_string()),
            }
        };
        let sent = self.sender.send_recorded(self.escrow, intent.data.into(), record).await;
        let hash = match sent {
            Ok(hash) => hash,
            Err(SendError::NotRecorded(_)) if changed => return Err(NotDone::ChannelChanged),
            Err(SendError::Unknown { hash, .. }) => return Err(NotDone::Pending(format!("{hash:#x}"))),
            Err(e) => {
                // The node refused what was journaled: it never went out.
                if let Some(entry) = &journaled {
                    self.failed(entry).await.map_err(|e| NotDone::NotSent(e.to_string()))?;
                }
                return Err(NotDone::NotSent(e.to_string()));
            }
        };
        let Some(entry) = journaled else { return Err(NotDone::Pending(format!("{hash:#x}"))) };
        match wait_for_receipt(self.sender.chain().as_ref(), hash, self.receipt_timeout, self.poll_interval).await {
            Ok(Some(receipt)) if receipt.status() => {
                self.book
                    .decide_transaction(&entry.hash, TransactionState::Mined, None)
                    .await
                    .map_err(pending(&entry))?;
                Ok(entry.hash)
            }
            Ok(Some(_)) => {
                self.failed(&entry).await.map_err(pending(&entry))?;
                Err(NotDone::Failed(format!("{} reverted", entry.hash)))
            }
            Ok(None) | Err(_) => Err(NotDone::Pending(entry.hash)),
        }
    }

    /// Decides every undecided transaction of the option from the chain.
    pub async fn decide(&self) -> Result<Decided, ChannelBookError> {
        let mut decided = Decided::default();
        for entry in self.book.undecided_transactions(&self.option).await? {
            match self.outcome(&entry).await {
                Some(TransactionState::Mined) => {
                    if self.book.decide_transaction(&entry.hash, TransactionState::Mined, None).await? {
                        decided.mined.push(entry);
                    }
                }
                Some(TransactionState::Failed) => {
                    if !self.failed(&entry).await? {
                        decided.undecided += 1;
                    }
                }
                Some(TransactionState::Sent) | None => decided.undecided += 1,
            }
        }
        if decided.undecided > 0 {
            // Transactions behind a nonce the node lost are never mined, and the pass sends nothing new while
            // they are undecided: only filling that nonce frees them.
            if let Err(e) = self.sender.fill_lost_nonce().await {
                tracing::warn!(option = %self.option, error = %e, "filling a nonce the node lost failed");
            }
        }
        Ok(decided)
    }

    /// What the chain says of `entry`: mined or failed by its receipt; if the node has none, the same bytes are
    /// sent again, and the transaction failed if its nonce was taken by another. `None` while undecided.
    async fn outcome(&self, entry: &ChannelTransaction) -> Option<TransactionState> {
        let chain = self.sender.chain();
        let hash: TxHash = entry.hash.parse().ok()?;
        let by_receipt = async || match chain.receipt(hash).await {
            Ok(Some(receipt)) if receipt.status() => Some(TransactionState::Mined),
            Ok(Some(_)) => Some(TransactionState::Failed),
            Ok(None) | Err(_) => None,
        };
        if let Some(state) = by_receipt().await {
            return Some(state);
        }
        let raw: Bytes = alloy::hex::decode(&entry.raw).ok()?.into();
        match chain.send_raw_transaction(raw).await {
            Err(ChainError::Rpc { message, .. }) if message.to_ascii_lowercase().contains("nonce too low") => {
                // Its nonce is spent: by this transaction (mined meanwhile) or by another one.
                Some(by_receipt().await.unwrap_or(TransactionState::Failed))
            }
            Ok(_) | Err(_) => None,
        }
    }

    /// Decides `entry` failed and gives back what it took from its channel (a refund's amount, to the deposit),
    /// in one write. `false` when the channel changed meanwhile (the next pass tries again) or it was decided.
    async fn failed(&self, entry: &ChannelTransaction) -> Result<bool, ChannelBookError> {
        let channel = match (entry.kind, &entry.channel) {
            (TransactionKind::Refund, Some(id)) => self.book.channel(id).await?,
            _ => None,
        };
        let given_back = channel.as_ref().map(|c| (c.version, c.refund_failed(entry.amount)));
        let change = given_back.as_ref().map(|(version, next)| (*version, next));
        self.book.decide_transaction(&entry.hash, TransactionState::Failed, change).await
    }
}

fn pending(entry: &ChannelTransaction) -> impl Fn(ChannelBookError) -> NotDone + '_ {
    move |_| NotDone::Pending(entry.hash.clone())
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
