//! The `evm-session` rail: MPP's `evm` session method (`draft-evm-session-00`, method `evm`, intent `session`). A
//! payer opens a channel in the session escrow ([`paygate_chain::session_escrow`]) once, then pays each call with
//! a cumulative voucher checked here without any chain call; the payee settles the vouchers later, off the
//! response path (`settler.rs`), and closes cooperatively when the payer asks.
//!
//! A call's path is the one every channel rail shares (`crate::channel_call`): `verify` reads the credential
//! (an `open` relays the payer's ERC-3009 deposit, or checks the `open` it sent, and waits for it on chain: a
//! channel is known only once its deposit is); `hold` reserves the call's price on the channel's row with one
//! compare-and-swap; `settle` charges it once the upstream answered, `release` gives it back otherwise. The
//! proof key is `eip155:<chain>:session:<id>:<cumulative>`: one voucher pays one call, and a voucher sent again
//! is a replay (its response is served again, nothing is charged twice).
//!
//! `topUp` and `close` are management ([`PaymentMethod::manage`]): answered 204 with a receipt, no call.
//!
//! Decisions: a voucher may cover more than what is charged plus this call (a payer signing ahead); the payee
//! only ever settles with a voucher that does not exceed what was charged ([`Channel::settleable`]), so a call
//! released because its upstream failed is never paid.

mod config;
mod payload;
mod settler;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, TxHash};
use alloy::sol_types::SolCall;
use async_trait::async_trait;
use serde_json::{Value, json};

use paygate_chain::session_escrow::{self, EvmPaymentChannel};
use paygate_chain::{Chain, ChainError, SendError, TxSender, wait_for_receipt};
use paygate_core::channel::{Channel, ChannelBook, ChannelRefusal, update_channel};
use paygate_core::clock::Clock;
use paygate_core::method::{
    Asked, BatchSettled, ClaimJournal, Managed, MppTerms, NoJournal, NotHeldMore, PaymentMethod, PaymentOption, Proof,
    SettleJournal, SettleOutcome, SettlementStatus, VerifiedPayment, VoucherNeeded,
};
use paygate_core::money::AtomicAmount;
use paygate_core::reject::{RejectKind, Rejection};

pub use config::{EvmSessionConfig, RAIL};
use payload::{Action, Expected, Funding, Voucher};

use crate::channel_call::{self, ChannelCall, NotHeld, SettleSchedule};
use crate::channel_journal::ChannelJournal;

/// When a call held back by the exposure cap may be sent again: about one reconciler pass.
const SETTLE_RETRY_SECS: u64 = 5;

/// MPP `evm` session channels of one EIP-3009 asset to one payee.
pub struct EvmSessionMethod {
    /// Claims, sweeps, settlements, refunds and closes go out through it.
    journal: ChannelJournal,
    option: PaymentOption,
    chain: Arc<dyn Chain>,
    chain_id: u64,
    escrow: Address,
    /// The payee's sender: relays deposits, settles and closes.
    sender: Arc<TxSender>,
    book: Arc<dyn ChannelBook>,
    suggested_deposit: Option<u128>,
    schedule: SettleSchedule,
    /// Settle at the next pass, whatever the schedule, once a channel's unsettled value reaches this.
    settle_above: Option<u128>,
    /// The most a channel may have served and not settled on chain; calls beyond wait for a settlement.
    max_unsettled: Option<u128>,
    close_idle: Duration,
    /// Wakes the streams paused for a voucher when one arrives.
    vouchers: tokio::sync::Notify,
    receipt_timeout: Duration,
    poll_interval: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for EvmSessionMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvmSessionMethod")
            .field("option", &self.option.name)
            .field("escrow", &self.escrow)
            .finish_non_exhaustive()
    }
}

fn chain_unavailable(err: &ChainError) -> Rejection {
    Rejection::new(RejectKind::ChainUnavailable, "chain_unavailable", format!("the chain could not be asked: {err}"))
}

fn funding_refused(detail: impl Into<String>) -> Rejection {
    Rejection::new(RejectKind::VerificationFailed, "session_deposit_failed", detail)
}

fn not_found() -> Rejection {
    Rejection::new(RejectKind::ChannelGone, "session_channel_not_found", "the escrow holds no such channel")
}

fn finalized() -> Rejection {
    Rejection::new(RejectKind::ChannelGone, "session_channel_finalized", "the channel is closed")
}

fn call_ended() -> Rejection {
    Rejection::new(RejectKind::ChannelGone, "session_call_ended", "the call is no longer in flight on its channel")
}

fn not_sent(err: SendError) -> Rejection {
    match err {
        SendError::WouldRevert(reason) => funding_refused(format!("the transaction would revert: {reason}")),
        other => Rejection::new(RejectKind::ChainUnavailable, "chain_unavailable", format!("the transaction: {other}")),
    }
}

impl EvmSessionMethod {
    fn token(&self) -> Address {
        self.option.asset.address.parse().unwrap_or(Address::ZERO)
    }

    fn payee(&self) -> Address {
        self.option.pay_to.parse().unwrap_or(Address::ZERO)
    }

    fn expected(&self) -> Expected {
        let domain = self.option.asset.eip712.clone().unwrap_or_default();
        Expected {
            chain_id: self.chain_id,
            escrow: self.escrow,
            payee: self.payee(),
            token: self.token(),
            token_domain: alloy::sol_types::eip712_domain! {
                name: domain.name,
                version: domain.version,
                chain_id: self.chain_id,
                verifying_contract: self.token(),
            },
        }
    }

    fn action(&self, proof: Proof<'_>) -> Result<Action, Rejection> {
        let Proof::Mpp { credential } = proof else {
            return Err(payload::malformed("session payments are MPP credentials"));
        };
        let source = match credential.source.as_deref() {
            Some(did) => Some(
                crate::network::pkh_address(did, self.chain_id)
                    .ok_or_else(|| payload::malformed("source is not a did:pkh:eip155 DID of this chain"))?,
            ),
            None => None,
        };
        Action::read(&credential.payload, source, &self.expected())
    }

    fn proof_key_of(&self, channel_id: B256, cumulative: u128) -> String {
        format!("eip155:{}:session:{channel_id:#x}:{cumulative}", self.chain_id)
    }

    /// The channel as the escrow holds it.
    async fn on_chain(&self, channel_id: B256) -> Result<EvmPaymentChannel::Channel, Rejection> {
        session_escrow::channel(self.chain.as_ref(), self.escrow, channel_id).await.map_err(|e| chain_unavailable(&e))
    }

    /// Waits for a transaction's receipt: `Ok` when it succeeded.
    async fn landed(&self, hash: TxHash) -> Result<(), Rejection> {
        let receipt = wait_for_receipt(self.chain.as_ref(), hash, self.receipt_timeout, self.poll_interval)
            .await
            .map_err(|e| chain_unavailable(&e))?;
        match receipt {
            Some(receipt) if receipt.status() => Ok(()),
            Some(_) => Err(Rejection::new(
                RejectKind::SettlementFailed,
                "session_transaction_reverted",
                "the channel's transaction reverted",
            )),
            None => Err(Rejection::new(
                RejectKind::ChainUnavailable,
                "deposit_pending",
                "the deposit was submitted and is not mined yet; send the same credential again shortly",
            )),
        }
    }

    /// Moves a deposit into the escrow: relays the payer's authorization (once: an authorization already used is
    /// not sent again), or waits for the payer's own transaction. The transaction, when paygate sent one.
    async fn fund(&self, channel_id: B256, funding: &Funding) -> Result<Option<TxHash>, Rejection> {
        let relayed = match funding {
            Funding::Sent { hash } => return self.landed(*hash).await.map(|()| None),
            Funding::Relayed(relayed) => relayed,
        };
        let used = paygate_chain::abi::authorization_state(
            self.chain.as_ref(),
            self.token(),
            relayed.terms.payer,
            relayed.nonce,
        )
        .await
        .map_err(|e| chain_unavailable(&e))?;
        if used {
            return Ok(None);
        }
        if relayed.valid_before <= self.clock.now_unix() + 6 {
            return Err(Rejection::new(
                RejectKind::PaymentExpired,
                "session_deposit_expired",
                "the deposit's authorization expires before it could be submitted",
            ));
        }
        let signature = alloy::primitives::Bytes::from(relayed.signature.as_bytes().to_vec());
        let amount = relayed.amount;
        let data = if self.on_chain(channel_id).await?.payer == Address::ZERO {
            let t = relayed.terms;
            EvmPaymentChannel::openWithAuthorizationCall {
                payee: t.payee,
                token: t.token,
                deposit: amount,
                salt: t.salt,
                authorizedSigner: t.authorized_signer,
                from: t.payer,
                validAfter: relayed.valid_after,
                validBefore: alloy::primitives::U256::from(relayed.valid_before),
                nonce: relayed.nonce,
                signature,
            }
            .abi_encode()
        } else {
            EvmPaymentChannel::topUpWithAuthorizationCall {
                channelId: channel_id,
                additionalDeposit: amount,
                from: relayed.terms.payer,
                validAfter: relayed.valid_after,
                validBefore: alloy::primitives::U256::from(relayed.valid_before),
                salt: relayed.salt,
                signature,
            }
            .abi_encode()
        };
        let hash = self.sender.send(self.escrow, data.into()).await.map_err(not_sent)?;
        self.landed(hash).await?;
        Ok(Some(hash))
    }

    /// The channel, from the store, or from the escrow when the store does not know it yet (then recorded); with
    /// the deposit read again from the escrow when `refresh`.
    async fn channel(&self, channel_id: B256, refresh: bool) -> Result<Channel, Rejection> {
        let id = format!("{channel_id:#x}");
        if !refresh && let Some(channel) = self.book.channel(&id).await? {
            return Ok(channel);
        }
        let state = self.on_chain(channel_id).await?;
        if state.payer == Address::ZERO {
            return Err(not_found());
        }
        if state.payee != self.payee() || state.token != self.token() {
            return Err(Rejection::new(
                RejectKind::VerificationFailed,
                "session_channel_mismatch",
                "the channel pays another payee or token",
            ));
        }
        if state.finalized {
            return Err(finalized());
        }
        let channel = Channel {
            id: id.clone(),
            network: self.option.network.to_string(),
            option: self.option.name.clone(),
            payer: state.payer.to_checksum(None),
            receiver: self.option.pay_to.clone(),
            token: self.option.asset.address.clone(),
            config: json!({
                "escrow": self.escrow.to_checksum(None),
                "authorizedSigner": state.authorizedSigner.to_checksum(None),
            }),
            deposit: state.deposit,
            claimed: state.settled,
            charged: state.settled,
            in_flight: Default::default(),
            voucher_max: 0,
            voucher_signature: String::new(),
            settleable: None,
            version: 0,
            updated_at_ms: 0,
        };
        if self.book.open_channel(&channel).await? {
            return Ok(channel);
        }
        let deposit = state.deposit;
        match update_channel(self.book.as_ref(), &id, |c| Ok::<_, ChannelRefusal>(c.topped_up(deposit))).await? {
            Some(Ok(channel)) => Ok(channel),
            _ => Err(not_found()),
        }
    }

    /// `refused`, unless it refuses a voucher the channel's deposit does not cover and the escrow has closed the
    /// channel since (the seller's idle close, the payer's withdrawal): then 410, as MPP answers for a finalized
    /// channel, so that the payer opens another instead of topping up one that can take no more. For a voucher
    /// that carries no top-up (one that does was checked against the chain as it was funded). A chain read, on
    /// that refusal only.
    async fn unless_finalized(&self, channel_id: B256, refused: Rejection) -> Rejection {
        if refused.kind != RejectKind::InsufficientFunds {
            return refused;
        }
        match self.on_chain(channel_id).await {
            Ok(state) if state.finalized => finalized(),
            _ => refused,
        }
    }

    /// Who signs a known channel's vouchers.
    fn signer(channel: &Channel) -> Address {
        let authorized = channel.config["authorizedSigner"].as_str().and_then(|a| a.parse().ok());
        match authorized {
            Some(signer) if signer != Address::ZERO => signer,
            _ => channel.payer.parse().unwrap_or(Address::ZERO),
        }
    }

    fn refusal(&self, refusal: ChannelRefusal) -> Rejection {
        match refusal {
            ChannelRefusal::NotInFlight => call_ended(),
            ChannelRefusal::BelowCharged { needed } => Rejection::new(
                RejectKind::PaymentInsufficient,
                "session_insufficient_balance",
                format!("the voucher must allow a cumulative {needed}: what is charged plus this call"),
            ),
            ChannelRefusal::OverDeposit { needed } => Rejection::new(
                RejectKind::InsufficientFunds,
                "session_amount_exceeds_deposit",
                format!("the channel's deposit does not cover a cumulative {needed}: top it up"),
            ),
            ChannelRefusal::OverExposure { .. } => {
                self.schedule.ask();
                Rejection::new(
                    RejectKind::RateLimited,
                    "channel_unclaimed_over_cap",
                    "this channel has as much served and not yet settled on chain as the seller allows; nothing \
                     was charged: send the same credential again after Retry-After",
                )
                .retry_after(SETTLE_RETRY_SECS)
            }
        }
    }

    /// The call this voucher pays on `channel`, checked against what the channel allows now.
    fn pays(
        &self,
        channel: &Channel,
        voucher: &Voucher,
        amount: AtomicAmount,
        deposit: Option<(TxHash, u128)>,
    ) -> Result<VerifiedPayment, Rejection> {
        voucher.signed_by(Self::signer(channel), &self.expected())?;
        channel
            .reserve_within(amount.0, voucher.cumulative, &voucher.signature_hex, self.max_unsettled)
            .map_err(|refusal| self.refusal(refusal))?;
        let call = ChannelCall {
            channel_id: channel.id.clone(),
            voucher_max: voucher.cumulative.to_string(),
            signature: voucher.signature_hex.clone(),
            price: amount.0.to_string(),
            deposit: deposit.map(|(hash, amount)| (format!("{hash:#x}"), amount.to_string())),
        };
        Ok(VerifiedPayment {
            proof_key: self.proof_key_of(voucher.channel_id, voucher.cumulative),
            payer: channel.payer.clone(),
            amount,
            settlement: serde_json::to_value(call).unwrap_or_default(),
        })
    }

    /// A channel's state as receipts and management answers state it.
    fn state(channel: &Channel) -> Vec<(&'static str, Value)> {
        vec![
            ("intent", "session".into()),
            ("channelId", channel.id.clone().into()),
            ("acceptedCumulative", channel.voucher_max.to_string().into()),
            ("spent", channel.charged.to_string().into()),
            ("deposit", channel.deposit.to_string().into()),
        ]
    }
}

#[async_trait]
impl PaymentMethod for EvmSessionMethod {
    fn rail(&self) -> &'static str {
        RAIL.name
    }

    fn option(&self) -> &PaymentOption {
        &self.option
    }

    fn mpp_terms(&self, amount: AtomicAmount) -> Option<MppTerms> {
        let mut request = json!({
            "amount": amount.to_string(),
            "unitType": "request",
            "currency": self.option.asset.address.to_lowercase(),
            "recipient": self.option.pay_to.to_lowercase(),
            "methodDetails": {
                "chainId": self.chain_id,
                "escrowContract": format!("{:#x}", self.escrow),
                "credentialTypes": ["authorization", "hash"],
            },
        });
        if let Some(deposit) = self.suggested_deposit {
            request["suggestedDeposit"] = deposit.to_string().into();
        }
        Some(MppTerms { method: "evm", intent: "session", request })
    }

    fn proof_key(&self, proof: Proof<'_>) -> Option<String> {
        match self.action(proof).ok()? {
            Action::Open { voucher, .. } | Action::Voucher { voucher, .. } => {
                Some(self.proof_key_of(voucher.channel_id, voucher.cumulative))
            }
            Action::TopUp { .. } | Action::Close { .. } => None,
        }
    }

    async fn verify(&self, proof: Proof<'_>, amount: AtomicAmount) -> Result<VerifiedPayment, Rejection> {
        match self.action(proof)? {
            Action::Open { funding, voucher } => {
                let hash = self.fund(voucher.channel_id, &funding).await?;
                let channel = self.channel(voucher.channel_id, true).await?;
                let deposit = hash.map(|hash| (hash, channel.deposit));
                self.pays(&channel, &voucher, amount, deposit)
            }
            Action::Voucher { voucher, top_up: None } => {
                let channel = self.channel(voucher.channel_id, false).await?;
                match self.pays(&channel, &voucher, amount, None) {
                    Err(refused) => Err(self.unless_finalized(voucher.channel_id, refused).await),
                    paid => paid,
                }
            }
            Action::Voucher { voucher, top_up: Some(funding) } => {
                let channel = self.channel(voucher.channel_id, false).await?;
                voucher.signed_by(Self::signer(&channel), &self.expected())?;
                let hash = self.fund(voucher.channel_id, &funding).await?;
                let channel = self.channel(voucher.channel_id, true).await?;
                let deposit = hash.map(|hash| (hash, channel.deposit));
                self.pays(&channel, &voucher, amount, deposit)
            }
            Action::TopUp { .. } | Action::Close { .. } => {
                Err(payload::malformed("topUp and close pay no call: they are answered by themselves"))
            }
        }
    }

    async fn manage(&self, proof: Proof<'_>, asked: Asked) -> Option<Result<Managed, Rejection>> {
        // Most credentials pay a call: those are read once, by `verify`, not here too.
        let Proof::Mpp { credential } = proof else { return None };
        let action = credential.payload.get("action").and_then(Value::as_str);
        let manages = match asked {
            Asked::Resource => matches!(action, Some("topUp" | "close")),
            Asked::CredentialOnly => matches!(action, Some("topUp" | "close" | "open" | "voucher")),
        };
        if !manages {
            return None;
        }
        let action = match self.action(proof) {
            Ok(action) => action,
            Err(rejection) => return Some(Err(rejection)),
        };
        Some(match action {
            Action::TopUp { channel_id, funding } => self.top_up(channel_id, &funding).await,
            Action::Close { voucher } => self.close(&voucher).await,
            Action::Open { funding, voucher } => self.accept(&voucher, Some(&funding)).await,
            Action::Voucher { voucher, top_up } => self.accept(&voucher, top_up.as_ref()).await,
        })
    }

    fn pays_streams(&self) -> bool {
        true
    }

    async fn voucher_arrival(&self, _payment: &VerifiedPayment) {
        self.vouchers.notified().await;
    }

    async fn hold_more(&self, payment: &VerifiedPayment, more: AtomicAmount) -> Result<(), NotHeldMore> {
        let Some(call) = ChannelCall::of(payment) else {
            return Err(NotHeldMore::Stopped(payload::malformed("unreadable voucher")));
        };
        let needed = match call.extend(self.book.as_ref(), more.0).await {
            Ok(()) => return Ok(()),
            Err(NotHeld::Refused(ChannelRefusal::BelowCharged { needed } | ChannelRefusal::OverDeposit { needed })) => {
                needed
            }
            Err(NotHeld::Refused(refusal)) => return Err(NotHeldMore::Stopped(self.refusal(refusal))),
            Err(NotHeld::Unknown) => return Err(NotHeldMore::Stopped(not_found())),
            Err(NotHeld::Store(e)) => return Err(NotHeldMore::Stopped(e.into())),
        };
        match self.book.channel(&call.channel_id).await {
            Ok(Some(channel)) => Err(NotHeldMore::Voucher(VoucherNeeded {
                channel_id: channel.id,
                required_cumulative: needed,
                accepted_cumulative: channel.voucher_max,
                deposit: channel.deposit,
            })),
            Ok(None) => Err(NotHeldMore::Stopped(not_found())),
            Err(e) => Err(NotHeldMore::Stopped(e.into())),
        }
    }

    async fn hold(&self, payment: &VerifiedPayment) -> Result<(), Rejection> {
        let Some(call) = ChannelCall::of(payment) else { return Err(payload::malformed("unreadable voucher")) };
        match call.hold(self.book.as_ref(), self.max_unsettled).await {
            Ok(()) => Ok(()),
            Err(NotHeld::Refused(refusal)) => Err(self.refusal(refusal)),
            Err(NotHeld::Unknown) => Err(not_found()),
            Err(NotHeld::Store(e)) => Err(e.into()),
        }
    }

    async fn claim_and_hold(&self, payment: &VerifiedPayment, journal: &dyn ClaimJournal) -> bool {
        match ChannelCall::of(payment) {
            Some(call) => call.claim_and_hold(self.book.as_ref(), self.max_unsettled, journal).await,
            None => false,
        }
    }

    async fn settle(&self, payment: &VerifiedPayment) -> SettleOutcome {
        self.settle_recorded(payment, &NoJournal).await
    }

    async fn settle_recorded(&self, payment: &VerifiedPayment, journal: &dyn SettleJournal) -> SettleOutcome {
        channel_call::settle(self.book.as_ref(), payment, journal, &self.schedule, self.settle_above).await
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

    fn mpp_receipt(&self, payment: &VerifiedPayment, reference: &str) -> Vec<(&'static str, Value)> {
        let Some(call) = ChannelCall::of(payment) else { return Vec::new() };
        let mut receipt = vec![
            ("intent", "session".into()),
            ("channelId", call.channel_id.into()),
            ("acceptedCumulative", call.voucher_max.into()),
        ];
        // A settled call's reference is `<channel>/<spent>`; a stream's first bytes carry no reference yet.
        if let Some((_, spent)) = reference.rsplit_once('/') {
            receipt.push(("spent", spent.to_owned().into()));
        }
        receipt.push(("chainId", self.chain_id.into()));
        if let Some((hash, _)) = call.deposit {
            receipt.push(("txHash", hash.into()));
        }
        receipt
    }

    async fn settle_accepted(&self, now: bool) -> Result<BatchSettled, String> {
        self.settle_due(now).await
    }
}
