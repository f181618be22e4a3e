//! A refund the payer asks for (x402 `refund` payload, as the official client's `refund(url)` sends it): what its
//! channel did not charge goes back to it, now, instead of when the channel is closed idle. The payload carries a
//! voucher for exactly what the channel charged (the client's proof that it knows), and may name an amount.
//!
//! The deposit is lowered, with nothing in flight, in the same write that journals `refund(config, amount)` (sent
//! as the receiver's authorizer, [`crate::channel_journal`]), so no voucher can spend the money leaving. The escrow refunds at most
//! its balance less what was claimed, and the amount is at most the deposit less what was charged, so what was
//! charged and not yet claimed stays claimable. If the transaction fails, the deposit is given back.

use alloy::sol_types::SolCall;
use serde_json::Value;

use paygate_chain::escrow::BatchSettlement;
use paygate_core::channel::ChannelRefusal;
use paygate_core::channel_journal::TransactionKind;
use paygate_core::method::Managed;
use paygate_core::reject::{RejectKind, Rejection};

use super::BatchSettlementMethod;
use super::payload::Payment;
use crate::channel_journal::{Intent, NotDone};

fn busy() -> Rejection {
    Rejection::new(
        RejectKind::InFlight,
        "invalid_batch_settlement_evm_channel_busy",
        "calls of this channel are in flight or it changed meanwhile: ask for the refund again shortly",
    )
    .retry_after(1)
}

fn refused(reason: &'static str, detail: String) -> Rejection {
    Rejection::new(RejectKind::VerificationFailed, reason, detail)
}

impl BatchSettlementMethod {
    /// Refunds `asked` (or all the channel did not charge) of the channel `payment` names.
    pub(super) async fn refund(&self, payment: &Payment, asked: Option<u128>) -> Result<Managed, Rejection> {
        let id = format!("{:#x}", payment.channel_id);
        let Some(channel) = self.book.channel(&id).await? else {
            return Err(Rejection::new(
                RejectKind::InsufficientFunds,
                "invalid_batch_settlement_evm_channel_not_found",
                "this channel has no deposit paygate knows of: nothing to refund",
            ));
        };
        if payment.voucher_max != channel.charged {
            // The corrective 402: the channel's state, for the client to sign what it charged.
            return Err(self.refusal(&id, ChannelRefusal::BelowCharged { needed: channel.charged }).await);
        }
        let unspent = channel.deposit.saturating_sub(channel.charged);
        let amount = asked.unwrap_or(unspent);
        if amount == 0 || amount > unspent {
            return Err(refused(
                "invalid_batch_settlement_evm_refund_amount",
                format!("the channel has {unspent} not charged: a refund is 1 to {unspent}"),
            ));
        }
        let Some(lowered) = channel.refunding(amount) else { return Err(busy()) };
        let call = BatchSettlement::refundCall { config: payment.config.clone(), amount };
        let refund = Intent {
            kind: TransactionKind::Refund,
            channel: Some(&id),
            amount,
            data: call.abi_encode(),
            change: Some((channel.version, &lowered)),
        };
        match self.journal.send(refund).await {
            Ok(transaction) => {
                Ok(Managed { reference: transaction, receipt: vec![("amount", Value::String(amount.to_string()))] })
            }
            Err(NotDone::ChannelChanged) => Err(busy()),
            Err(NotDone::Pending(transaction)) => Err(Rejection::new(
                RejectKind::ChainUnavailable,
                "chain_unavailable",
                format!(
                    "the refund was sent in transaction {transaction} and is not mined yet; the channel's deposit \
                     stays lowered by it until the chain decides it"
                ),
            )),
            Err(reason @ (NotDone::NotSent(_) | NotDone::Failed(_))) => {
                tracing::warn!(channel = %id, %reason, "refund not made");
                Err(Rejection::new(
                    RejectKind::ChainUnavailable,
                    "chain_unavailable",
                    "the refund could not be made on chain; nothing was refunded: ask again",
                ))
            }
        }
    }
}
