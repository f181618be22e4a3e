//! Finding the payment in a transaction receipt: TIP-20 `Transfer` / `TransferWithMemo` logs on the currency,
//! to the recipient, of exactly the price, from the payer, carrying a memo bound to the challenge.
//!
//! This is the check of the `hash` credential (the payer broadcast) and the last step of the `transaction`
//! credential (after paygate broadcast). As in mppx (`dist/tempo/server/Charge.js` `getTransferLogEffects`,
//! `assertTransferLogs`, `assertChallengeBoundMemo`), a TIP-20 `transferWithMemo` emits a `Transfer` and a
//! `TransferWithMemo` log for the same movement; two adjacent logs of the same token, sender, recipient and
//! amount count as one transfer carrying the memo. Unlike mppx, which takes the first transfer of the right
//! amount and then fails if its memo is not bound, any matching transfer with a bound memo is accepted, so an
//! unrelated plain transfer earlier in the same transaction does not hide the payment; the binding is still
//! required of the transfer that pays.

use alloy::primitives::{Address, B256, Log, U256};
use alloy::sol_types::SolEvent;

use super::error::TempoError;
use super::memo::is_memo_bound;
use super::{ChallengeBinding, tip20};

/// The price a transfer must pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedTransfer {
    /// The TIP-20 token (the charge's `currency`).
    pub currency: Address,
    pub recipient: Address,
    /// Atomic units (6 decimals).
    pub amount: U256,
}

/// One token movement read from a receipt's logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferEvent {
    /// The log's emitter: the token.
    pub token: Address,
    pub from: Address,
    pub to: Address,
    pub amount: U256,
    /// The `TransferWithMemo` memo, when the movement has one.
    pub memo: Option<B256>,
}

fn topic_address(topic: &B256) -> Option<Address> {
    // An indexed address is left-padded with twelve zero bytes; anything else is not a TIP-20 log.
    topic[..12].iter().all(|b| *b == 0).then(|| Address::from_slice(&topic[12..]))
}

fn parse_log(log: &Log) -> Option<TransferEvent> {
    let topics = log.data.topics();
    let data = &log.data.data;
    if data.len() != 32 {
        return None;
    }
    let amount = U256::from_be_slice(data);
    let event = |memo| {
        Some(TransferEvent {
            token: log.address,
            from: topic_address(&topics[1])?,
            to: topic_address(&topics[2])?,
            amount,
            memo,
        })
    };
    match topics.first()? {
        sig if *sig == tip20::Transfer::SIGNATURE_HASH && topics.len() == 3 => event(None),
        sig if *sig == tip20::TransferWithMemo::SIGNATURE_HASH && topics.len() == 4 => event(Some(topics[3])),
        _ => None,
    }
}

/// The token movements in `logs` (a receipt's logs, in order), a `Transfer` and its adjacent `TransferWithMemo`
/// twin merged into one movement with the memo.
pub fn transfer_events(logs: &[Log]) -> Vec<TransferEvent> {
    let parsed: Vec<Option<TransferEvent>> = logs.iter().map(parse_log).collect();
    let mut events = Vec::new();
    let mut index = 0;
    while index < parsed.len() {
        let Some(event) = parsed[index] else {
            index += 1;
            continue;
        };
        if let Some(Some(next)) = parsed.get(index + 1) {
            let same_movement = event.token == next.token
                && event.from == next.from
                && event.to == next.to
                && event.amount == next.amount
                && event.memo.is_some() != next.memo.is_some();
            if same_movement {
                events.push(TransferEvent { memo: event.memo.or(next.memo), ..event });
                index += 2;
                continue;
            }
        }
        events.push(event);
        index += 1;
    }
    events
}

/// Checks a receipt: it succeeded, and one of its movements pays `expected` from `sender` (when known) with a
/// memo bound to `binding`. Returns that movement.
///
/// `sender` is the payer the movement must come from: the credential's `source` address, else the
/// transaction's sender (mppx does the same); `None` skips the check (the vectors' receipts have no sender).
pub fn verify_transfer_logs(
    success: bool,
    logs: &[Log],
    expected: &ExpectedTransfer,
    sender: Option<Address>,
    binding: &ChallengeBinding<'_>,
    reference: &str,
) -> Result<TransferEvent, TempoError> {
    if !success {
        return Err(TempoError::TransactionReverted(reference.to_owned()));
    }
    let to_recipient: Vec<TransferEvent> = transfer_events(logs)
        .into_iter()
        .filter(|e| e.token == expected.currency && e.to == expected.recipient)
        .collect();
    let bound =
        |e: &TransferEvent| e.memo.is_some_and(|memo| is_memo_bound(&memo, binding.realm, binding.challenge_id));
    let from_sender = |e: &TransferEvent| sender.is_none_or(|s| s == e.from);
    if let Some(found) = to_recipient.iter().find(|e| e.amount == expected.amount && bound(e) && from_sender(e)) {
        return Ok(*found);
    }
    // Nothing pays: say what is closest.
    if to_recipient.iter().any(|e| e.amount == expected.amount && bound(e)) {
        return Err(TempoError::SourceMismatch);
    }
    if to_recipient.iter().any(|e| e.amount == expected.amount) {
        return Err(TempoError::MemoNotBound);
    }
    if let Some(other) = to_recipient.iter().find(|e| bound(e)) {
        return Err(TempoError::AmountMismatch { paid: other.amount, expected: expected.amount });
    }
    if to_recipient.is_empty() {
        return Err(TempoError::NoMatchingTransfer {
            currency: expected.currency.to_checksum(None),
            recipient: expected.recipient.to_checksum(None),
        });
    }
    Err(TempoError::MemoNotBound)
}
