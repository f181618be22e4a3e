//! Settling channel payments in batches, off the response path: every channel of the option with value charged
//! but not claimed is claimed in one `claimWithSignature` (the receiver authorizer signs the batch), then the
//! claimed value is swept to the seller with one `settle(receiver, token)`.
//!
//! Channels idle for `close_idle_secs` whose charges are all claimed are closed: the receiver's authorizer
//! refunds what was not charged to the payer (`refund`).
//!
//! Every transaction goes out through the journal ([`crate::channel_journal`]), which a pass decides before it
//! sends anything. Claims are also cumulative on chain (`totalClaimed` only grows, a lower or equal claim is a
//! no-op), and before a batch what the chain says was claimed is written back to each channel, so a claim that
//! landed while the gateway stopped is not sent again.

use alloy::primitives::{B256, Bytes};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::SignerSync;
use alloy::sol_types::SolCall;
use serde_json::Value;

use paygate_chain::escrow::{self, BatchSettlement};
use paygate_core::channel::{Channel, ChannelRefusal, update_channel};
use paygate_core::channel_journal::TransactionKind;
use paygate_core::method::BatchSettled;

use super::BatchSettlementMethod;
use crate::channel_journal::{Intent, NotDone};

/// At most this many channels per claim transaction.
const BATCH: u32 = 100;

impl BatchSettlementMethod {
    /// Claims and sweeps what is due: when `claim_every` passed since the last batch, when a channel's unclaimed
    /// value reached `claim_above` or hit `max_unclaimed` since the last pass, or `now`.
    pub(super) async fn settle_due(&self, now: bool) -> Result<BatchSettled, String> {
        if !self.schedule.due(now) {
            return Ok(BatchSettled::default());
        }
        if self.journal.decide().await.map_err(|e| e.to_string())?.undecided > 0 {
            return Ok(BatchSettled::default()); // Sent before and not decided yet: wait for the chain.
        }
        let due: Vec<Channel> = self
            .book
            .unclaimed_channels(BATCH)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|c| c.option == self.option.name && !c.voucher_signature.is_empty())
            .collect();
        let mut done = BatchSettled::default();
        let due = self.not_claimed_on_chain(due).await?;
        if !due.is_empty() {
            self.claim(&due, &mut done).await?;
        }
        self.sweep(&mut done).await?;
        self.close_idle(&mut done).await?;
        Ok(done)
    }

    /// What the chain says was claimed is recorded first: a claim that landed before the gateway could record it
    /// (it stopped in between) is not sent again. The channels still to claim.
    async fn not_claimed_on_chain(&self, due: Vec<Channel>) -> Result<Vec<Channel>, String> {
        let mut still = Vec::with_capacity(due.len());
        for channel in due {
            let id: B256 = channel.id.parse().map_err(|_| format!("channel id {:?}", channel.id))?;
            let (_, claimed) = self.on_chain(id).await.map_err(|e| e.detail)?;
            if claimed < channel.charged {
                still.push(channel);
                continue;
            }
            let recorded = update_channel(self.book.as_ref(), &channel.id, |c| {
                Ok::<_, ChannelRefusal>(c.claimed_on_chain(claimed))
            });
            recorded.await.map_err(|e| e.to_string())?;
        }
        Ok(still)
    }

    /// Claims what `due` charged in one batch, then sweeps it to the seller.
    async fn claim(&self, due: &[Channel], done: &mut BatchSettled) -> Result<(), String> {
        let claims: Vec<BatchSettlement::VoucherClaim> = due.iter().filter_map(voucher_claim).collect();
        let entries: Vec<(B256, u128, u128)> = claims
            .iter()
            .map(|c| {
                (escrow::channel_id(&c.voucher.channel, self.chain_id), c.voucher.maxClaimableAmount, c.totalClaimed)
            })
            .collect();
        let digest = escrow::claim_batch_digest(&entries, self.chain_id);
        let signature = self.authorizer.sign_hash_sync(&digest).map_err(|e| format!("signing the batch: {e}"))?;
        let call = BatchSettlement::claimWithSignatureCall {
            voucherClaims: claims.clone(),
            authorizerSignature: Bytes::from(signature.as_bytes().to_vec()),
        };
        let claimed = due.iter().zip(&claims).map(|(c, claim)| claim.totalClaimed.saturating_sub(c.claimed)).sum();
        let claim = Intent {
            kind: TransactionKind::Claim,
            channel: None,
            amount: claimed,
            data: call.abi_encode(),
            change: None,
        };
        done.transactions.push(self.journal.send(claim).await.map_err(|e| e.to_string())?);
        for (channel, claim) in due.iter().zip(&claims) {
            let total = claim.totalClaimed;
            let claimed =
                update_channel(self.book.as_ref(), &channel.id, |c| Ok::<_, ChannelRefusal>(c.claimed_on_chain(total)));
            claimed.await.map_err(|e| e.to_string())?;
            done.channels += 1;
            done.claimed += total.saturating_sub(channel.claimed);
        }
        Ok(())
    }

    /// Sweeps what the escrow holds claimed for the seller and not yet paid out (after this pass's claim, or one
    /// whose sweep a crash or a timeout kept from going out), with one `settle(receiver, token)`.
    async fn sweep(&self, done: &mut BatchSettled) -> Result<(), String> {
        let receiver = self.option.pay_to.parse().map_err(|_| "pay_to is not an address".to_owned())?;
        let call = BatchSettlement::receiversCall { receiver, token: self.token() }.abi_encode();
        let tx = TransactionRequest::default().to(escrow::BATCH_SETTLEMENT).input(call.into());
        let out = self.chain.call(tx).await.map_err(|e| e.to_string())?;
        let totals = BatchSettlement::receiversCall::abi_decode_returns(&out).map_err(|e| e.to_string())?;
        let owed = totals.totalClaimed.saturating_sub(totals.totalSettled);
        if owed == 0 {
            return Ok(());
        }
        let data = BatchSettlement::settleCall { receiver, token: self.token() }.abi_encode();
        let sweep = Intent { kind: TransactionKind::Sweep, channel: None, amount: owed, data, change: None };
        done.transactions.push(self.journal.send(sweep).await.map_err(|e| e.to_string())?);
        Ok(())
    }

    /// Closes channels idle for `close_idle` whose charges are all claimed: what was not charged goes back to the
    /// payer (`refund`, sent as the receiver's authorizer). The channel's deposit drops to what was claimed in the
    /// write that journals the refund, so no voucher can be taken against the money leaving; if the refund fails,
    /// the deposit is given back ([`crate::channel_journal`]).
    async fn close_idle(&self, done: &mut BatchSettled) -> Result<(), String> {
        // In whole seconds: the clock says seconds, the store stamps milliseconds.
        let now = self.clock.now_unix();
        let idle = |c: &Channel| {
            now.saturating_sub(u64::try_from(c.updated_at_ms / 1000).unwrap_or(0)) >= self.close_idle.as_secs()
        };
        let channels = self.book.channels(BATCH).await.map_err(|e| e.to_string())?;
        for channel in channels.into_iter().filter(|c| c.option == self.option.name && idle(c)) {
            let Some(closing) = channel.closing() else { continue };
            let Some(claim) = voucher_claim(&channel).or_else(|| config_only(&channel)) else { continue };
            let amount = channel.deposit - channel.claimed;
            let call = BatchSettlement::refundCall { config: claim.voucher.channel, amount };
            let refund = Intent {
                kind: TransactionKind::Refund,
                channel: Some(&channel.id),
                amount,
                data: call.abi_encode(),
                change: Some((channel.version, &closing)),
            };
            match self.journal.send(refund).await {
                Ok(hash) => {
                    done.transactions.push(hash);
                    done.refunded += amount;
                }
                Err(NotDone::ChannelChanged) => continue, // A call came in meanwhile: not idle after all.
                Err(e) => return Err(format!("refunding channel {}: {e}", channel.id)),
            }
        }
        Ok(())
    }
}

/// A channel's claim: its highest voucher, and everything charged.
fn voucher_claim(channel: &Channel) -> Option<BatchSettlement::VoucherClaim> {
    let mut claim = config_only(channel)?;
    claim.signature = alloy::hex::decode(&channel.voucher_signature).ok()?.into();
    Some(claim)
}

/// A claim of everything charged on a channel, without a voucher's signature (enough to name the channel).
fn config_only(channel: &Channel) -> Option<BatchSettlement::VoucherClaim> {
    let c = &channel.config;
    let address = |field: &str| c.get(field).and_then(Value::as_str)?.parse().ok();
    let config = BatchSettlement::ChannelConfig {
        payer: address("payer")?,
        payerAuthorizer: address("payerAuthorizer")?,
        receiver: address("receiver")?,
        receiverAuthorizer: address("receiverAuthorizer")?,
        token: address("token")?,
        withdrawDelay: alloy::primitives::aliases::U40::try_from(c.get("withdrawDelay")?.as_u64()?).ok()?,
        salt: c.get("salt").and_then(Value::as_str)?.parse().ok()?,
    };
    Some(BatchSettlement::VoucherClaim {
        voucher: BatchSettlement::Voucher { channel: config, maxClaimableAmount: channel.voucher_max },
        signature: Bytes::new(),
        totalClaimed: channel.charged,
    })
}
