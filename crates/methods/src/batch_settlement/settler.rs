//! Settling channel payments in batches, off the response path: every channel of the option with value charged
//! but not claimed is claimed in one `claimWithSignature` (the receiver authorizer signs the batch), then the
//! claimed value is swept to the seller with one `settle(receiver, token)`.
//!
//! Claims are cumulative on chain (`totalClaimed` only grows, a lower or equal claim is a no-op), so a batch sent
//! twice after a crash claims nothing twice; what the chain says was claimed is written back to each channel.

use std::time::Instant;

use alloy::primitives::{B256, Bytes};
use alloy::signers::SignerSync;
use alloy::sol_types::SolCall;
use serde_json::Value;

use paygate_chain::escrow::{self, BatchSettlement};
use paygate_chain::wait_for_receipt;
use paygate_core::channel::{Channel, ChannelRefusal, update_channel};
use paygate_core::method::BatchSettled;

use super::BatchSettlementMethod;

/// At most this many channels per claim transaction.
const BATCH: u32 = 100;

impl BatchSettlementMethod {
    /// Claims and sweeps what is due: when `claim_every` passed since the last batch, or `now`.
    pub(super) async fn settle_due(&self, now: bool) -> Result<BatchSettled, String> {
        {
            let mut last = self.last_batch.lock().unwrap_or_else(|p| p.into_inner());
            if !now && last.is_some_and(|at: Instant| at.elapsed() < self.claim_every) {
                return Ok(BatchSettled::default());
            }
            *last = Some(Instant::now());
        }
        let due: Vec<Channel> = self
            .book
            .unclaimed_channels(BATCH)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|c| c.option == self.option.name && !c.voucher_signature.is_empty())
            .collect();
        if due.is_empty() {
            return Ok(BatchSettled::default());
        }
        let mut done = BatchSettled::default();
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
        done.transactions.push(self.send(call.abi_encode()).await?);
        for (channel, claim) in due.iter().zip(&claims) {
            let total = claim.totalClaimed;
            let claimed =
                update_channel(self.book.as_ref(), &channel.id, |c| Ok::<_, ChannelRefusal>(c.claimed_on_chain(total)));
            claimed.await.map_err(|e| e.to_string())?;
            done.channels += 1;
            done.claimed += total.saturating_sub(channel.claimed);
        }
        let sweep = BatchSettlement::settleCall {
            receiver: self.option.pay_to.parse().map_err(|_| "pay_to is not an address".to_owned())?,
            token: self.token(),
        };
        done.transactions.push(self.send(sweep.abi_encode()).await?);
        Ok(done)
    }

    /// Sends a transaction to the escrow and waits until it is mined successfully; its hash.
    async fn send(&self, data: Vec<u8>) -> Result<String, String> {
        let hash = self.sender.send(escrow::BATCH_SETTLEMENT, data.into()).await.map_err(|e| e.to_string())?;
        match wait_for_receipt(self.chain.as_ref(), hash, self.receipt_timeout, self.poll_interval).await {
            Ok(Some(receipt)) if receipt.status() => Ok(format!("{hash:#x}")),
            Ok(Some(_)) => Err(format!("{hash:#x} reverted")),
            Ok(None) => Err(format!("{hash:#x} was not mined in time")),
            Err(e) => Err(format!("{hash:#x}: {e}")),
        }
    }
}

/// A channel's claim: its highest voucher, and everything charged.
fn voucher_claim(channel: &Channel) -> Option<BatchSettlement::VoucherClaim> {
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
    let signature = alloy::hex::decode(&channel.voucher_signature).ok()?;
    Some(BatchSettlement::VoucherClaim {
        voucher: BatchSettlement::Voucher { channel: config, maxClaimableAmount: channel.voucher_max },
        signature: signature.into(),
        totalClaimed: channel.charged,
    })
}
