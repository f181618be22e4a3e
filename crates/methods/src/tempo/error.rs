//! Why a Tempo credential was refused, typed, and how each case maps to a paygate [`Rejection`].
//!
//! The messages name what is wrong with the payment, never a key, an RPC URL or a raw upstream answer. Where
//! the mpp-tools vectors pin a phrase (`no matching payment call found`, `contains unauthorized extra calls`,
//! `gas limit exceeds sponsor policy`, ...), the message contains it verbatim.

use alloy::primitives::U256;
use paygate_core::reject::{RejectKind, Rejection};

/// A refused Tempo credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TempoError {
    /// The payload is not one of the shapes of a `tempo` charge credential, or its bytes do not decode.
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    /// A zero-amount charge is proven with a `proof` credential only (mppx: "Zero-amount challenges require a
    /// proof credential").
    #[error("payment verification failed: zero-amount challenges require a proof credential")]
    ZeroAmountNeedsProof,
    /// A `proof` credential was sent for a charge that costs something.
    #[error("payment verification failed: proof credentials are only valid for zero-amount challenges")]
    ProofNeedsZeroAmount,
    /// The offer's `supportedModes` leaves this credential type out.
    #[error("payment verification failed: {0} credentials are not supported for this challenge")]
    ModeNotSupported(&'static str),
    /// The credential's `source` is not a `did:pkh:eip155` DID of this chain.
    #[error("payment verification failed: the credential source is not a did:pkh:eip155 DID on chain {chain_id}")]
    InvalidSource { chain_id: u64 },
    /// The credential's `source` names someone other than the payer.
    #[error("payment verification failed: the credential source is not the sender of the payment")]
    SourceMismatch,
    /// No receipt for the hash: unknown, or not mined yet.
    #[error("payment verification failed: transaction {0} not found (unknown or not mined yet)")]
    TransactionNotFound(String),
    /// The transaction was mined but reverted.
    #[error("payment verification failed: transaction {0} reverted")]
    TransactionReverted(String),
    /// The receipt has no transfer of the currency to the recipient.
    #[error("payment verification failed: no matching transfer found (currency {currency}, recipient {recipient})")]
    NoMatchingTransfer { currency: String, recipient: String },
    /// The transfer to the recipient moves another amount than the price.
    #[error("payment verification failed: the transfer pays {paid} atomic units, the price is exactly {expected}")]
    AmountMismatch { paid: U256, expected: U256 },
    /// The transfer carries no MPP attribution memo bound to this challenge and realm (or one bound to another).
    #[error("payment verification failed: memo is not bound to this challenge")]
    MemoNotBound,
    /// The signed transaction is for another chain.
    #[error("invalid transaction: chain id {got} does not match the offer's chain {expected}")]
    ChainMismatch { got: u64, expected: u64 },
    /// The transaction makes more calls than the one payment.
    #[error("invalid transaction: contains unauthorized extra calls ({count} calls, 1 allowed)")]
    ExtraCalls { count: usize },
    /// The transaction's call is not the payment the challenge asks for.
    #[error("invalid transaction: no matching payment call found ({0})")]
    NoMatchingPaymentCall(&'static str),
    /// The transaction's validity window has closed.
    #[error("invalid transaction: expired (validBefore {valid_before} is not after now, {now})")]
    TransactionExpired { valid_before: u64, now: u64 },
    /// A sponsorship request breaks the sponsor policy; the text says which rule.
    #[error("invalid transaction: {0}")]
    SponsorPolicy(String),
    /// The client asks for fee sponsorship but this offer has no fee payer.
    #[error("payment verification failed: fee sponsorship is not offered for this challenge")]
    SponsorshipNotOffered,
    /// A signature that does not verify, or that is not the expected signer's.
    #[error("payment verification failed: {0}")]
    InvalidSignature(String),
    /// The payer cannot cover the transfer.
    #[error("payment verification failed: the sender's balance is too low")]
    InsufficientFunds,
    /// Simulating the transfer reverts for another reason.
    #[error("payment verification failed: the transfer would revert: {0}")]
    WouldRevert(String),
    /// The chain could not be asked.
    #[error("the chain could not be asked: {0}")]
    ChainUnavailable(String),
    /// A fault in paygate (co-signing failed).
    #[error("internal error: {0}")]
    Internal(String),
}

impl TempoError {
    /// The kind of rejection this is.
    pub fn kind(&self) -> RejectKind {
        use TempoError::*;
        match self {
            InvalidPayload(_) => RejectKind::MalformedCredential,
            AmountMismatch { paid, expected } if paid < expected => RejectKind::PaymentInsufficient,
            InsufficientFunds => RejectKind::InsufficientFunds,
            ChainUnavailable(_) => RejectKind::ChainUnavailable,
            Internal(_) => RejectKind::Internal,
            _ => RejectKind::VerificationFailed,
        }
    }

    /// The stable reason code.
    pub fn reason(&self) -> &'static str {
        use TempoError::*;
        match self {
            InvalidPayload(_) => "invalid_payload",
            ZeroAmountNeedsProof => "zero_amount_needs_proof",
            ProofNeedsZeroAmount => "proof_needs_zero_amount",
            ModeNotSupported(_) => "mode_not_supported",
            InvalidSource { .. } => "invalid_source",
            SourceMismatch => "source_mismatch",
            TransactionNotFound(_) => "transaction_not_found",
            TransactionReverted(_) => "transaction_reverted",
            NoMatchingTransfer { .. } => "no_matching_transfer",
            AmountMismatch { .. } => "amount_mismatch",
            MemoNotBound => "memo_not_bound",
            ChainMismatch { .. } => "chain_mismatch",
            ExtraCalls { .. } => "extra_calls",
            NoMatchingPaymentCall(_) => "no_matching_payment_call",
            TransactionExpired { .. } => "transaction_expired",
            SponsorPolicy(_) => "sponsor_policy",
            SponsorshipNotOffered => "fee_payer_not_offered",
            InvalidSignature(_) => "invalid_signature",
            InsufficientFunds => "insufficient_funds",
            WouldRevert(_) => "simulation_failed",
            ChainUnavailable(_) => "chain_unavailable",
            Internal(_) => "internal",
        }
    }

    /// The paygate rejection.
    pub fn to_rejection(&self) -> Rejection {
        Rejection::new(self.kind(), self.reason(), self.to_string())
    }
}

impl From<TempoError> for Rejection {
    fn from(err: TempoError) -> Self {
        err.to_rejection()
    }
}

/// Keeps at most 200 printable characters of a node's message.
pub(crate) fn sanitize(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}
