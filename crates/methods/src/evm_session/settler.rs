//! Settling and closing session channels, off the response path. The escrow settles one channel per
//! transaction (`settle(channelId, cumulativeAmount, signature)` pays the voucher's amount less what was settled),
//! so a pass settles each channel with unsettled value once, with the highest voucher that does not exceed what
//! it charged ([`Channel::settleable`]).
//!
//! Every transaction goes out through the journal ([`crate::channel_journal`]), which a pass decides before it
//! sends anything; a close mined while the gateway was away is recorded then. Settlements are also cumulative on
//! chain (`settled` only grows; a voucher at or below it reverts), and before each transaction what the chain
//! says was settled is written back to the channel: a settlement that landed while the gateway stopped is never
//! sent again.
//!
//! Management, answered without a call: a top-up, a voucher sent on its own (a paused stream resumes once the
//! channel accepted it), an `open` ahead of any call.
//!
//! Closing, cooperative (`close`, on the payer's request or for a channel idle for `close_idle_secs`): the
//! payee settles with the best voucher and the escrow refunds the rest of the deposit to the payer.

use alloy::primitives::{B256, Bytes};
use alloy::sol_types::SolCall;

use paygate_chain::session_escrow::EvmPaymentChannel;
use paygate_core::channel::{Channel, ChannelRefusal, SignedVoucher, update_channel};
use paygate_core::channel_journal::TransactionKind;
use paygate_core::method::{BatchSettled, Managed};
use paygate_core::reject::{RejectKind, Rejection};

use super::payload::{Funding, Voucher};
use super::{EvmSessionMethod, not_found};
use crate::channel_journal::{Intent, NotDone};

/// At most this many channels per pass.
const BATCH: u32 = 100;

impl EvmSessionMethod {
    /// Settles what is due (on schedule, when asked, or `now`), then closes idle channels.
    pub(super) async fn settle_due(&self, now: bool) -> Result<BatchSettled, String> {
        let mut done = BatchSettled::default();
        if !self.schedule.due(now) {
            return Ok(done);
        }
        let journal = self.journal.decide().await.map_err(|e| e.to_string())?;
        for closed in journal.mined.iter().filter(|t| t.kind == TransactionKind::Close) {
            let Some(id) = &closed.channel else { continue };
            self.record_closed(id).await.map_err(|e| e.detail)?;
        }
        if journal.undecided > 0 {
            return Ok(done); // Sent before and not decided yet: wait for the chain.
        }
        let due = self.book.unclaimed_channels(BATCH).await.map_err(|e| e.to_string())?;
        for channel in due.into_iter().filter(|c| c.option == self.option.name) {
            let Some(voucher) = channel.settleable.clone().filter(|v| v.amount > channel.claimed) else { continue };
            let id: B256 = channel.id.parse().map_err(|_| format!("channel id {:?}", channel.id))?;
            let settled = self.on_chain(id).await.map_err(|e| e.detail)?.settled;
            if settled < voucher.amount {
                let call = EvmPaymentChannel::settleCall {
                    channelId: id,
                    cumulativeAmount: voucher.amount,
                    signature: signature_bytes(&voucher),
                };
                let claimed = voucher.amount - settled.max(channel.claimed);
                let settle = Intent {
                    kind: TransactionKind::Settle,
                    channel: Some(&channel.id),
                    amount: claimed,
                    data: call.abi_encode(),
                    change: None,
                };
                done.transactions.push(self.journal.send(settle).await.map_err(|e| e.to_string())?);
                done.channels += 1;
                done.claimed += claimed;
            }
            let total = settled.max(voucher.amount);
            let recorded =
                update_channel(self.book.as_ref(), &channel.id, |c| Ok::<_, ChannelRefusal>(c.claimed_on_chain(total)));
            recorded.await.map_err(|e| e.to_string())?;
        }
        self.close_idle(&mut done).await?;
        Ok(done)
    }

    /// Closes channels idle for `close_idle` with nothing in flight and nothing left to settle.
    async fn close_idle(&self, done: &mut BatchSettled) -> Result<(), String> {
        let now = self.clock.now_unix();
        let idle = |c: &Channel| {
            now.saturating_sub(u64::try_from(c.updated_at_ms / 1000).unwrap_or(0)) >= self.close_idle.as_secs()
        };
        let channels = self.book.channels(BATCH).await.map_err(|e| e.to_string())?;
        for channel in channels.into_iter().filter(|c| c.option == self.option.name && idle(c)) {
            // Everything charged must be settled first; what no voucher met exactly (calls priced by their
            // response, a payer that signed ahead) waits for the payer's own close, which names it.
            if channel.closing().is_none() {
                if channel.in_flight.is_empty() && channel.charged > channel.claimed {
                    tracing::warn!(channel = %channel.id, charged = %channel.charged, settled = %channel.claimed,
                        "an idle channel has charges no voucher meets exactly: left open for its payer's close");
                }
                continue;
            }
            let refund = channel.deposit - channel.claimed;
            let (hash, _) = self.close_channel(&channel, None).await.map_err(|e| e.detail)?;
            done.transactions.push(hash);
            done.refunded += refund;
        }
        Ok(())
    }

    /// Tops up a known channel (an MPP `topUp` credential).
    pub(super) async fn top_up(&self, channel_id: B256, funding: &Funding) -> Result<Managed, Rejection> {
        self.channel(channel_id, false).await?;
        let hash = self.fund(channel_id, funding).await?;
        let channel = self.channel(channel_id, true).await?;
        let reference = hash.map_or_else(|| channel.id.clone(), |h| format!("{h:#x}"));
        Ok(Managed { reference, receipt: Self::state(&channel) })
    }

    /// Takes a voucher sent with no call of its own (a stream waiting for it resumes; an `open` sent ahead of
    /// any call opens the channel), after the deposit or top-up it carries is on chain.
    pub(super) async fn accept(&self, voucher: &Voucher, funding: Option<&Funding>) -> Result<Managed, Rejection> {
        let deposit = match funding {
            Some(funding) => self.fund(voucher.channel_id, funding).await?,
            None => None,
        };
        let channel = self.channel(voucher.channel_id, funding.is_some()).await?;
        voucher.signed_by(Self::signer(&channel), &self.expected())?;
        let accept = |c: &Channel| c.accept_voucher(voucher.cumulative, &voucher.signature_hex);
        let channel = match update_channel(self.book.as_ref(), &channel.id, accept).await? {
            Some(Ok(channel)) => channel,
            Some(Err(refusal)) if funding.is_none() => {
                return Err(self.unless_finalized(voucher.channel_id, self.refusal(refusal)).await);
            }
            Some(Err(refusal)) => return Err(self.refusal(refusal)),
            None => return Err(not_found()),
        };
        self.vouchers.notify_waiters();
        let mut receipt = Self::state(&channel);
        receipt.push(("chainId", self.chain_id.into()));
        if let Some(hash) = deposit {
            receipt.push(("txHash", format!("{hash:#x}").into()));
        }
        Ok(Managed { reference: channel.id, receipt })
    }

    /// Closes a channel at its payer's request (an MPP `close` credential with its final voucher): once no call
    /// is in flight and the voucher covers what was charged.
    pub(super) async fn close(&self, voucher: &Voucher) -> Result<Managed, Rejection> {
        let channel = self.channel(voucher.channel_id, false).await?;
        voucher.signed_by(Self::signer(&channel), &self.expected())?;
        if !channel.in_flight.is_empty() {
            return Err(Rejection::new(
                RejectKind::InFlight,
                "session_calls_in_flight",
                "calls paid from this channel are still being served; close after they are answered",
            ));
        }
        if voucher.cumulative < channel.charged {
            return Err(Rejection::new(
                RejectKind::PaymentInsufficient,
                "session_insufficient_balance",
                format!("the closing voucher must allow at least what was spent: {}", channel.charged),
            ));
        }
        let offered = SignedVoucher { amount: voucher.cumulative, signature: voucher.signature_hex.clone() };
        let (hash, closed) = self.close_channel(&channel, Some(offered)).await?;
        let mut receipt = Self::state(&closed);
        receipt.push(("txHash", hash.clone().into()));
        Ok(Managed { reference: hash, receipt })
    }

    /// Sends `close` with the best voucher that does not exceed what was charged (`offered` when it is exactly
    /// that), waits for it, and records the channel closed. The transaction and the channel after.
    async fn close_channel(
        &self,
        channel: &Channel,
        offered: Option<SignedVoucher>,
    ) -> Result<(String, Channel), Rejection> {
        let exact = offered.filter(|v| v.amount == channel.charged);
        let best = exact.or_else(|| channel.settleable.clone());
        let id: B256 = channel.id.parse().map_err(|_| super::not_found())?;
        let state = self.on_chain(id).await?;
        if state.finalized {
            // Closed already (by a transaction whose outcome a crash kept from being recorded, or the payer's own
            // close after the withdraw delay): recorded now.
            self.record_closed(&channel.id).await?;
            return Err(super::finalized());
        }
        let (amount, signature) = match best {
            Some(v) if v.amount > state.settled => (v.amount, signature_bytes(&v)),
            _ => (state.settled, Bytes::new()),
        };
        let call = EvmPaymentChannel::closeCall { channelId: id, cumulativeAmount: amount, signature };
        let close = Intent {
            kind: TransactionKind::Close,
            channel: Some(&channel.id),
            amount: amount.saturating_sub(state.settled),
            data: call.abi_encode(),
            change: None,
        };
        let hash = self.journal.send(close).await.map_err(|e| match e {
            NotDone::Pending(hash) => Rejection::new(
                RejectKind::ChainUnavailable,
                "chain_unavailable",
                format!("the close was sent in transaction {hash} and is not mined yet; it is recorded once it is"),
            ),
            e => Rejection::new(RejectKind::SettlementFailed, "session_transaction_reverted", format!("closing: {e}")),
        })?;
        Ok((hash, self.record_closed(&channel.id).await?))
    }

    /// Records channel `id` closed, with what the chain says was settled.
    async fn record_closed(&self, id: &str) -> Result<Channel, Rejection> {
        let channel_id: B256 = id.parse().map_err(|_| super::not_found())?;
        let settled = self.on_chain(channel_id).await?.settled;
        let closed = update_channel(self.book.as_ref(), id, |c| Ok::<_, ChannelRefusal>(c.closed(settled)));
        match closed.await? {
            Some(Ok(channel)) => Ok(channel),
            _ => Err(super::not_found()),
        }
    }
}

fn signature_bytes(voucher: &SignedVoucher) -> Bytes {
    alloy::hex::decode(&voucher.signature).unwrap_or_default().into()
}
