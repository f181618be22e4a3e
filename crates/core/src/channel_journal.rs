//! The journal of channel transactions: every transaction a channel settler signs (a claim, a sweep, a
//! settlement, a refund, a close) is written down with its signed bytes before it is broadcast, and stays
//! `sent` until the chain decides it. So a crash between broadcasting and hearing back loses nothing: the next
//! settlement pass finds the transaction, asks the chain, and only ever sends the very same signed bytes again
//! (the same hash and nonce, which cannot execute twice), never a second transaction for the same money.
//!
//! Invariant: a refund lowers its channel's deposit in the same store write that journals it
//! ([`crate::channel::ChannelBook::journal_transaction`]), and a failed refund gives the amount back in the same
//! write that decides it; so the deposit is lowered exactly while a refund may still reach the chain.

use serde::{Deserialize, Serialize};

/// What a journaled transaction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    /// Claims charged value from one or more channels (x402 `claimWithSignature`).
    Claim,
    /// Moves claimed value to the seller (x402 `settle(receiver, token)`).
    Sweep,
    /// Settles one channel with a voucher (MPP `settle`).
    Settle,
    /// Returns what a channel did not charge to its payer (x402 `refund`); `amount` was taken off the deposit.
    Refund,
    /// Closes a channel: settles and refunds the rest (MPP `close`).
    Close,
}

impl TransactionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionKind::Claim => "claim",
            TransactionKind::Sweep => "sweep",
            TransactionKind::Settle => "settle",
            TransactionKind::Refund => "refund",
            TransactionKind::Close => "close",
        }
    }

    pub fn parse(text: &str) -> Option<TransactionKind> {
        [Self::Claim, Self::Sweep, Self::Settle, Self::Refund, Self::Close].into_iter().find(|k| k.as_str() == text)
    }
}

/// Where a journaled transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionState {
    /// Signed and (perhaps) broadcast; the chain has not decided it yet.
    Sent,
    /// Mined and succeeded.
    Mined,
    /// Reverted, refused by the node, or replaced by another transaction of its nonce: it changed nothing.
    Failed,
}

impl TransactionState {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionState::Sent => "sent",
            TransactionState::Mined => "mined",
            TransactionState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<TransactionState> {
        [Self::Sent, Self::Mined, Self::Failed].into_iter().find(|s| s.as_str() == text)
    }
}

/// One journaled transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelTransaction {
    /// `0x` + 64 hex digits.
    pub hash: String,
    /// The option (`[[accept]]` name) whose settler sent it.
    pub option: String,
    pub kind: TransactionKind,
    /// The channel it is about, when it is about one.
    pub channel: Option<String>,
    /// A refund's amount (given back to the deposit if the refund fails); what a claim or settlement claims.
    pub amount: u128,
    /// The signed transaction, `0x` + hex of its EIP-2718 bytes: what is sent again if the node lost it.
    pub raw: String,
    pub state: TransactionState,
    pub created_at_ms: i64,
}

impl ChannelTransaction {
    /// What an operator sees of it (its signed bytes left out): amounts as decimal strings of atomic units.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "hash": self.hash, "option": self.option, "kind": self.kind, "channel": self.channel,
            "amount": self.amount.to_string(), "state": self.state, "created_at_ms": self.created_at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in [
            TransactionKind::Claim,
            TransactionKind::Sweep,
            TransactionKind::Settle,
            TransactionKind::Refund,
            TransactionKind::Close,
        ] {
            assert_eq!(TransactionKind::parse(kind.as_str()), Some(kind));
        }
        for state in [TransactionState::Sent, TransactionState::Mined, TransactionState::Failed] {
            assert_eq!(TransactionState::parse(state.as_str()), Some(state));
        }
        assert_eq!(TransactionKind::parse("Claim"), None);
    }
}
