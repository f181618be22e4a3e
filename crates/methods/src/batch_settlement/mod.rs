//! The `batch-settlement` rail: x402's channel scheme on EVM (`scheme_batch_settlement_evm.md`). A payer deposits
//! once into the escrow (`x402BatchSettlement`, [`paygate_chain::escrow`]) and pays each call with a cumulative
//! voucher, checked here without any chain call; the seller claims many vouchers in one transaction later,
//! off the response path (`settler.rs`).
//!
//! A call's path: `verify` reads the payload and checks the voucher's signature locally (a `deposit` payload's
//! deposit is relayed first: paygate submits it, pulled by the ERC-3009 or the Permit2 deposit collector as the
//! payer signed it, and waits for it; a channel is known only once its deposit is on chain); `hold` reserves the call's price on the channel's row with one compare-and-swap
//! ([`paygate_core::channel`]); `settle` charges it once the upstream answered, `release` gives it back
//! otherwise. The proof key is `eip155:<chain>:channel:<id>:<voucher max>`: a voucher pays one call.
//!
//! Refusals the official client corrects itself from (a voucher below what is charged): a 402 whose `error` is
//! `invalid_batch_settlement_evm_cumulative_amount_mismatch` and whose offer carries the channel's state.
//! Decision: a voucher that covers *more* than what is charged plus this call is taken (the x402 spec asks for
//! equality; a client with calls in flight signs ahead, and the seller only ever claims what it charged).

mod config;
mod payload;
mod refund;
mod settler;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, TxHash, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use async_trait::async_trait;
use serde_json::{Value, json};

use paygate_chain::escrow::{self, BatchSettlement};
use paygate_chain::upto::PERMIT2;
use paygate_chain::{Chain, ChainError, SendError, TxSender, wait_for_receipt};
use paygate_core::channel::{Channel, ChannelBook, ChannelRefusal, update_channel};
use paygate_core::clock::Clock;
use paygate_core::method::{
    Asked, BatchSettled, ClaimJournal, Managed, NoJournal, PaymentMethod, PaymentOption, Proof, SettleJournal,
    SettleOutcome, SettlementStatus, VerifiedPayment, X402Receipt,
};
use paygate_core::money::AtomicAmount;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_proto::x402;

use crate::channel_call::{self, ChannelCall, NotHeld, SettleSchedule};
use crate::channel_journal::ChannelJournal;

pub use config::{AssetTransferMethod, BatchSettlementConfig, RAIL};
use payload::{Deposit, Expected, Payment, Pull};

/// The scheme's name in x402 offers.
const SCHEME: &str = "batch-settlement";

/// When a call held back by the exposure cap may be sent again: about one reconciler pass.
const CLAIM_RETRY_SECS: u64 = 5;

/// Channel payments of one EIP-3009 asset to one seller.
pub struct BatchSettlementMethod {
    /// Claims, sweeps, settlements, refunds and closes go out through it.
    journal: ChannelJournal,
    /// How the 402 asks payers to deposit.
    asset_transfer_method: AssetTransferMethod,
    option: PaymentOption,
    chain: Arc<dyn Chain>,
    chain_id: u64,
    /// The receiver authorizer's sender: relays deposits, sends claims.
    sender: Arc<TxSender>,
    authorizer: PrivateKeySigner,
    book: Arc<dyn ChannelBook>,
    withdraw_delay: u64,
    schedule: SettleSchedule,
    /// Claim at the next pass, whatever the schedule, once a channel's unclaimed value reaches this.
    claim_above: Option<u128>,
    /// The most a channel may have served and not claimed on chain; calls beyond wait for a claim.
    max_unclaimed: Option<u128>,
    close_idle: Duration,
    receipt_timeout: Duration,
    poll_interval: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for BatchSettlementMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSettlementMethod")
            .field("option", &self.option.name)
            .field("authorizer", &self.authorizer.address())
            .finish_non_exhaustive()
    }
}

impl BatchSettlementMethod {
    fn token(&self) -> Address {
        self.option.asset.address.parse().unwrap_or(Address::ZERO)
    }

    fn expected(&self) -> Expected {
        let domain = self.option.asset.eip712.clone().unwrap_or_default();
        Expected {
            chain_id: self.chain_id,
            receiver: self.option.pay_to.parse().unwrap_or(Address::ZERO),
            receiver_authorizer: self.authorizer.address(),
            token: self.token(),
            withdraw_delay: self.withdraw_delay,
            token_domain: payload::token_domain(&domain.name, &domain.version, self.chain_id, self.token()),
        }
    }

    fn proof_key_of(&self, channel_id: B256, voucher_max: u128) -> String {
        format!("eip155:{}:channel:{channel_id:#x}:{voucher_max}", self.chain_id)
    }

    /// Relays a deposit and records the channel with what the escrow now holds for it.
    async fn deposit(&self, payment: &Payment, deposit: &Deposit) -> Result<Option<TxHash>, Rejection> {
        let mut hash = None;
        if !self.pulled(payment, deposit).await? {
            if deposit.valid_before <= self.clock.now_unix() + 6 {
                return Err(Rejection::new(
                    RejectKind::PaymentExpired,
                    "invalid_batch_settlement_evm_deposit_expired",
                    "the deposit's authorization expires before it could be submitted",
                ));
            }
            if let Pull::Permit2 { .. } = deposit.pull {
                self.permit2_allowed(payment, deposit).await?;
            }
            let call = BatchSettlement::depositCall {
                config: payment.config.clone(),
                amount: deposit.amount,
                collector: deposit.pull.collector(),
                collectorData: deposit.collector_data.clone().into(),
            };
            let sent = self.sender.send(escrow::BATCH_SETTLEMENT, call.abi_encode().into()).await;
            let sent = sent.map_err(deposit_not_sent)?;
            let receipt = wait_for_receipt(self.chain.as_ref(), sent, self.receipt_timeout, self.poll_interval)
                .await
                .map_err(|e| chain_unavailable(&e))?;
            match receipt {
                Some(receipt) if receipt.status() => hash = Some(sent),
                Some(_) => return Err(deposit_refused("the deposit transaction reverted")),
                None => {
                    return Err(Rejection::new(
                        RejectKind::ChainUnavailable,
                        "deposit_pending",
                        "the deposit was submitted and is not mined yet; send the same payment again shortly",
                    ));
                }
            }
        }
        let (balance, claimed) = self.on_chain(payment.channel_id).await?;
        if balance == 0 {
            return Err(deposit_refused("the escrow holds nothing for this channel"));
        }
        self.record_channel(payment, balance, claimed).await?;
        Ok(hash)
    }

    /// `channels(id)` on the escrow: its balance and what was claimed.
    /// Whether the deposit's authorization was used already (its nonce spent): a deposit sent again after it
    /// landed is not relayed twice.
    async fn pulled(&self, payment: &Payment, deposit: &Deposit) -> Result<bool, Rejection> {
        match deposit.pull {
            Pull::Erc3009 { nonce } => {
                paygate_chain::abi::authorization_state(self.chain.as_ref(), self.token(), payment.payer, nonce)
                    .await
                    .map_err(|e| chain_unavailable(&e))
            }
            Pull::Permit2 { nonce } => {
                paygate_chain::upto::permit2_nonce_used(self.chain.as_ref(), payment.payer, nonce)
                    .await
                    .map_err(|e| chain_unavailable(&e))
            }
        }
    }

    /// A Permit2 deposit moves only what the payer allowed Permit2 to move on the token: refused before it is
    /// relayed (as the official facilitator does) when the allowance is short.
    async fn permit2_allowed(&self, payment: &Payment, deposit: &Deposit) -> Result<(), Rejection> {
        let allowance = paygate_chain::abi::allowance(self.chain.as_ref(), self.token(), payment.payer, PERMIT2)
            .await
            .map_err(|e| chain_unavailable(&e))?;
        if allowance < U256::from(deposit.amount) {
            return Err(Rejection::new(
                RejectKind::InsufficientFunds,
                "invalid_batch_settlement_evm_permit2_allowance_required",
                "the payer has not approved Permit2 for the deposit on the token",
            ));
        }
        Ok(())
    }

    async fn on_chain(&self, channel_id: B256) -> Result<(u128, u128), Rejection> {
        let state = escrow::channel_state(self.chain.as_ref(), escrow::BATCH_SETTLEMENT, channel_id)
            .await
            .map_err(|e| chain_unavailable(&e))?;
        Ok((state.balance, state.totalClaimed))
    }

    async fn record_channel(&self, payment: &Payment, balance: u128, claimed: u128) -> Result<(), Rejection> {
        let id = format!("{:#x}", payment.channel_id);
        let channel = Channel {
            id: id.clone(),
            network: self.option.network.to_string(),
            option: self.option.name.clone(),
            payer: payment.payer.to_checksum(None),
            receiver: self.option.pay_to.clone(),
            token: self.option.asset.address.clone(),
            config: escrow::config_json(&payment.config),
            deposit: balance,
            claimed,
            charged: claimed,
            voucher_max: 0,
            voucher_signature: String::new(),
            settleable: None,
            version: 0,
            updated_at_ms: 0,
            in_flight: Default::default(),
        };
        if !self.book.open_channel(&channel).await? {
            update_channel(self.book.as_ref(), &id, |c| Ok::<_, ChannelRefusal>(c.topped_up(balance))).await?;
        }
        Ok(())
    }

    /// The corrective 402 of a voucher the channel refuses, with the channel's state for the client.
    async fn refusal(&self, id: &str, refusal: ChannelRefusal) -> Rejection {
        let state = self.book.channel(id).await.ok().flatten();
        let rejection = match refusal {
            ChannelRefusal::BelowCharged { needed } => Rejection::new(
                RejectKind::PaymentInsufficient,
                "invalid_batch_settlement_evm_cumulative_amount_mismatch",
                format!("the voucher must allow a cumulative {needed}: sign one for what is charged plus this call"),
            ),
            ChannelRefusal::OverDeposit { needed } => Rejection::new(
                RejectKind::InsufficientFunds,
                "invalid_batch_settlement_evm_cumulative_exceeds_balance",
                format!("the channel's deposit does not cover a cumulative {needed}: top it up"),
            ),
            // Only a call paid as it is delivered grows; this rail's calls never do.
            ChannelRefusal::NotInFlight => {
                return Rejection::new(
                    RejectKind::ChannelGone,
                    "channel_call_ended",
                    "the call is no longer in flight",
                );
            }
            ChannelRefusal::OverExposure { .. } => {
                self.schedule.ask();
                return Rejection::new(
                    RejectKind::RateLimited,
                    "channel_unclaimed_over_cap",
                    "this channel has as much served and not yet claimed on chain as the seller allows; nothing was \
                     charged: send the same payment again after Retry-After",
                )
                .retry_after(CLAIM_RETRY_SECS);
            }
        };
        match state {
            Some(channel) => rejection.with_offer_extra(RAIL.name, corrective_extra(&channel)),
            None => rejection,
        }
    }

    async fn check_voucher(&self, payment: &Payment, price: u128) -> Result<(), Rejection> {
        let id = format!("{:#x}", payment.channel_id);
        let fits =
            |c: &Channel| c.reserve_within(price, payment.voucher_max, &payment.voucher_signature, self.max_unclaimed);
        // The channel as this instance last wrote it accepts the voucher: no read. The reservation after the claim
        // is the compare-and-swap that decides on the row as it is; a refusal is only ever given on a fresh read.
        if self.book.recent(&id).is_some_and(|recent| fits(&recent).is_ok()) {
            return Ok(());
        }
        let Some(channel) = self.book.channel(&id).await? else {
            return Err(Rejection::new(
                RejectKind::InsufficientFunds,
                "invalid_batch_settlement_evm_channel_not_found",
                "this channel has no deposit paygate knows of: send a deposit payload",
            ));
        };
        match fits(&channel) {
            Ok(_) => Ok(()),
            Err(refusal) => Err(self.refusal(&id, refusal).await),
        }
    }
}

/// Reads an x402 `batch-settlement` payload as an offer of `chain_id` paying `receiver` in `token`, with a withdraw
/// delay of 900 s, would, without IO: `Ok` when it is a well-formed deposit or voucher of such a channel, signed
/// by its payer. For tools and the fuzz targets; the gateway reads payloads through the method.
pub fn check_payload(
    payload: &Value,
    chain_id: u64,
    receiver: Address,
    receiver_authorizer: Address,
    token: Address,
) -> Result<(), Rejection> {
    let expected = Expected {
        chain_id,
        receiver,
        receiver_authorizer,
        token,
        withdraw_delay: 900,
        token_domain: payload::token_domain("USD Coin", "2", chain_id, token),
    };
    Payment::read(payload, &expected).map(|_| ())
}

/// `channelState` as the official client reads it.
fn channel_state(channel: &Channel, charged: u128) -> Value {
    json!({
        "channelId": channel.id,
        "balance": channel.deposit.to_string(),
        "totalClaimed": channel.claimed.to_string(),
        "withdrawRequestedAt": 0,
        "refundNonce": "0",
        "chargedCumulativeAmount": charged.to_string(),
    })
}

fn corrective_extra(channel: &Channel) -> Value {
    let mut extra = json!({ "channelState": channel_state(channel, channel.charged + channel.reserved()) });
    if !channel.voucher_signature.is_empty() {
        extra["voucherState"] =
            json!({ "signedMaxClaimable": channel.voucher_max.to_string(), "signature": channel.voucher_signature });
    }
    extra
}

fn chain_unavailable(err: &ChainError) -> Rejection {
    Rejection::new(RejectKind::ChainUnavailable, "chain_unavailable", format!("the chain could not be asked: {err}"))
}

fn deposit_refused(detail: &str) -> Rejection {
    Rejection::new(RejectKind::VerificationFailed, "invalid_batch_settlement_evm_deposit_failed", detail)
}

fn deposit_not_sent(err: SendError) -> Rejection {
    match err {
        SendError::WouldRevert(reason) => deposit_refused(&format!("the deposit would revert: {reason}")),
        other => Rejection::new(RejectKind::ChainUnavailable, "chain_unavailable", format!("the deposit: {other}")),
    }
}

#[async_trait]
impl PaymentMethod for BatchSettlementMethod {
    fn rail(&self) -> &'static str {
        RAIL.name
    }

    fn option(&self) -> &PaymentOption {
        &self.option
    }

    fn x402_requirements(&self, amount: AtomicAmount) -> Option<x402::PaymentRequirements> {
        let mut fields = vec![
            ("receiverAuthorizer", self.authorizer.address().to_checksum(None).into()),
            ("withdrawDelay", self.withdraw_delay.into()),
        ];
        if self.asset_transfer_method == AssetTransferMethod::Permit2 {
            fields.push(("assetTransferMethod", "permit2".into()));
        }
        Some(crate::rail::eip712_requirements(&self.option, SCHEME, amount, fields))
    }

    fn proof_key(&self, proof: Proof<'_>) -> Option<String> {
        let Proof::X402 { payload, .. } = proof else { return None };
        let payment = Payment::read(payload, &self.expected()).ok()?;
        Some(self.proof_key_of(payment.channel_id, payment.voucher_max))
    }

    async fn verify(&self, proof: Proof<'_>, amount: AtomicAmount) -> Result<VerifiedPayment, Rejection> {
        let Proof::X402 { payload, .. } = proof else {
            return Err(Rejection::new(
                RejectKind::MalformedCredential,
                "invalid_payload",
                "channel payments are x402 batch-settlement payloads",
            ));
        };
        let payment = Payment::read(payload, &self.expected())?;
        if payment.refund.is_some() {
            return Err(Rejection::new(
                RejectKind::MalformedCredential,
                "invalid_payload",
                "a refund pays no call: send it to a route of the channel's offer",
            ));
        }
        let deposit = match &payment.deposit {
            Some(deposit) => self.deposit(&payment, deposit).await?.map(|hash| (format!("{hash:#x}"), deposit.amount)),
            None => None,
        };
        let price = amount.0;
        self.check_voucher(&payment, price).await?;
        let voucher = ChannelCall {
            channel_id: format!("{:#x}", payment.channel_id),
            voucher_max: payment.voucher_max.to_string(),
            signature: payment.voucher_signature.clone(),
            price: price.to_string(),
            deposit: deposit.map(|(hash, amount)| (hash, amount.to_string())),
        };
        Ok(VerifiedPayment {
            proof_key: self.proof_key_of(payment.channel_id, payment.voucher_max),
            payer: payment.payer.to_checksum(None),
            amount,
            settlement: serde_json::to_value(voucher).unwrap_or_default(),
        })
    }

    async fn hold(&self, payment: &VerifiedPayment) -> Result<(), Rejection> {
        let Some(call) = ChannelCall::of(payment) else { return Err(deposit_refused("unreadable voucher")) };
        match call.hold(self.book.as_ref(), self.max_unclaimed).await {
            Ok(()) => Ok(()),
            Err(NotHeld::Refused(refusal)) => Err(self.refusal(&call.channel_id, refusal).await),
            Err(NotHeld::Unknown) => Err(Rejection::new(
                RejectKind::InsufficientFunds,
                "invalid_batch_settlement_evm_channel_not_found",
                "this channel has no deposit paygate knows of",
            )),
            Err(NotHeld::Store(e)) => Err(e.into()),
        }
    }

    async fn claim_and_hold(&self, payment: &VerifiedPayment, journal: &dyn ClaimJournal) -> bool {
        match ChannelCall::of(payment) {
            Some(call) => call.claim_and_hold(self.book.as_ref(), self.max_unclaimed, journal).await,
            None => false,
        }
    }

    async fn settle(&self, payment: &VerifiedPayment) -> SettleOutcome {
        self.settle_recorded(payment, &NoJournal).await
    }

    async fn settle_recorded(&self, payment: &VerifiedPayment, journal: &dyn SettleJournal) -> SettleOutcome {
        channel_call::settle(self.book.as_ref(), payment, journal, &self.schedule, self.claim_above).await
    }

    fn settles_in_store(&self) -> bool {
        true
    }

    fn charges_usage(&self) -> bool {
        true
    }

    async fn settlement_status(&self, payment: &VerifiedPayment, _reference: Option<&str>) -> SettlementStatus {
        channel_call::status(self.book.as_ref(), payment).await
    }

    async fn release(&self, payment: &VerifiedPayment) {
        channel_call::release(self.book.as_ref(), payment).await;
    }

    /// A `refund` payload pays no call: the payer's unspent deposit goes back (`refund.rs`). A payload that does
    /// not read is left to `verify`, which says why.
    async fn manage(&self, proof: Proof<'_>, _asked: Asked) -> Option<Result<Managed, Rejection>> {
        let Proof::X402 { payload, .. } = proof else { return None };
        let payment = Payment::read(payload, &self.expected()).ok()?;
        let refund = payment.refund?;
        Some(self.refund(&payment, refund.amount).await)
    }

    async fn settle_accepted(&self, now: bool) -> Result<BatchSettled, String> {
        self.settle_due(now).await
    }

    fn x402_receipt(&self, payment: &VerifiedPayment, reference: &str) -> Option<X402Receipt> {
        let v = ChannelCall::of(payment)?;
        let charged = reference.rsplit('/').next()?.to_owned();
        let (transaction, amount) = v.deposit.clone().unwrap_or_default();
        Some(X402Receipt {
            transaction,
            amount: Some(amount),
            extra: Some(json!({
                "chargedAmount": payment.amount.to_string(),
                "channelState": { "channelId": v.channel_id, "chargedCumulativeAmount": charged },
            })),
        })
    }
}
