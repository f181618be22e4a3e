//! A channel-paid call's life on its channel, the same on every channel rail (x402 `batch-settlement`, MPP `evm`
//! session): reserved once its payment is claimed ([`ChannelCall::hold`]), charged when the upstream answered
//! ([`ChannelCall::commit`]), given back otherwise ([`ChannelCall::release`]), and decided after a crash
//! ([`ChannelCall::status`]); a call paid as it is delivered (a metered stream) grows its reservation part by
//! part ([`ChannelCall::extend`]) and is charged what was delivered. Each step is one compare-and-swap on the channel's row ([`paygate_core::channel`]);
//! the rails differ only in how they word a refusal.

use serde::{Deserialize, Serialize};

use async_trait::async_trait;
use paygate_core::channel::{
    Channel, ChannelBook, ChannelBookError, ChannelRefusal, ChannelWrite, SwapOnly, update_channel,
    update_channel_writing,
};
use paygate_core::method::{ClaimJournal, SettleJournal, SettleOutcome, SettlementStatus, VerifiedPayment};

/// What a verified channel payment carries (its `settlement`): the voucher that pays the call and the price.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChannelCall {
    pub channel_id: String,
    pub voucher_max: String,
    pub signature: String,
    pub price: String,
    /// The deposit this payment made, if any: its transaction and amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposit: Option<(String, String)>,
}

/// Why a call could not be reserved.
#[derive(Debug)]
pub(crate) enum NotHeld {
    /// The channel refuses it (the voucher, the deposit or the exposure cap).
    Refused(ChannelRefusal),
    /// The channel is not known.
    Unknown,
    Store(ChannelBookError),
}

impl ChannelCall {
    /// The call a verified payment pays.
    pub fn of(payment: &VerifiedPayment) -> Option<ChannelCall> {
        serde_json::from_value(payment.settlement.clone()).ok()
    }

    fn voucher(&self) -> u128 {
        self.voucher_max.parse().unwrap_or(0)
    }

    /// Reserves the call's price on its channel, while what its payer's channels of the same option have served
    /// and not settled on chain, with this call, stays within `cap` when there is one. The other channels are read
    /// before the reservation: calls racing on two channels of one payer may pass the cap by those calls.
    pub async fn hold(&self, book: &dyn ChannelBook, cap: Option<u128>) -> Result<(), NotHeld> {
        self.hold_writing(book, cap, &SwapOnly(book)).await
    }

    /// [`ChannelCall::hold`] with the payment's claim in the same write (`journal`): `true` when both are written.
    pub async fn claim_and_hold(&self, book: &dyn ChannelBook, cap: Option<u128>, journal: &dyn ClaimJournal) -> bool {
        self.hold_writing(book, cap, &ClaimRecorded(journal)).await.is_ok()
    }

    async fn hold_writing(
        &self,
        book: &dyn ChannelBook,
        cap: Option<u128>,
        write: &dyn ChannelWrite,
    ) -> Result<(), NotHeld> {
        let cap = match cap {
            Some(cap) => Some(self.room_under(book, cap).await?),
            None => None,
        };
        let price = self.price.parse().unwrap_or(u128::MAX);
        let reserve = |c: &Channel| c.reserve_within(price, self.voucher(), &self.signature, cap);
        match update_channel_writing(book, &self.channel_id, reserve, write).await {
            Ok(Some(Ok(_))) => Ok(()),
            Ok(Some(Err(refusal))) => Err(NotHeld::Refused(refusal)),
            Ok(None) => Err(NotHeld::Unknown),
            Err(e) => Err(NotHeld::Store(e)),
        }
    }

    /// What `cap` leaves this channel once the payer's other channels of its option count their exposure.
    async fn room_under(&self, book: &dyn ChannelBook, cap: u128) -> Result<u128, NotHeld> {
        let channel = book.channel(&self.channel_id).await.map_err(NotHeld::Store)?.ok_or(NotHeld::Unknown)?;
        let others = book.payer_channels(&channel.payer, &channel.option).await.map_err(NotHeld::Store)?;
        let exposed = others
            .iter()
            .filter(|c| c.id != channel.id)
            .fold(0u128, |sum, c| sum.saturating_add(c.unclaimed()).saturating_add(c.reserved()));
        Ok(cap.saturating_sub(exposed))
    }

    /// Reserves `more` for the next part of a call paid as it is delivered (a metered stream), within the
    /// channel's highest accepted voucher and its deposit.
    pub async fn extend(&self, book: &dyn ChannelBook, more: u128) -> Result<(), NotHeld> {
        match update_channel(book, &self.channel_id, |c| c.extend(self.voucher(), more)).await {
            Ok(Some(Ok(_))) => Ok(()),
            Ok(Some(Err(refusal))) => Err(NotHeld::Refused(refusal)),
            Ok(None) => Err(NotHeld::Unknown),
            Err(e) => Err(NotHeld::Store(e)),
        }
    }

    /// Charges the call what it `used` (at most its reserved price; the whole price for a call priced before it
    /// ran), its payment recorded settled in the same write (`journal`): the channel as it is after, or the
    /// outcome when it could not be charged.
    pub async fn commit(
        &self,
        book: &dyn ChannelBook,
        used: u128,
        journal: &dyn SettleJournal,
    ) -> Result<Channel, SettleOutcome> {
        let commit = |c: &Channel| Ok::<_, ChannelRefusal>(c.commit_used(self.voucher(), &self.signature, used));
        let write = ChargeRecorded { call: self, book, journal };
        match update_channel_writing(book, &self.channel_id, commit, &write).await {
            Ok(Some(Ok(channel))) => Ok(channel),
            Ok(_) => Err(SettleOutcome::Failed { reason: "the channel is gone".into(), reference: None }),
            Err(e) => Err(SettleOutcome::Unknown {
                reason: format!("the channel could not be charged: {e}"),
                reference: None,
            }),
        }
    }

    /// The reference of a charged call: the channel and what it charged in total then.
    pub fn reference(&self, charged: u128) -> String {
        format!("{}/{charged}", self.channel_id)
    }

    /// A call whose request stopped between its move to `settling` and its outcome: still in flight on its
    /// channel (never charged), it is charged now (the reconciler settles it again and its response is owed);
    /// gone from the in-flight calls, it was charged.
    pub async fn status(&self, book: &dyn ChannelBook) -> SettlementStatus {
        match book.channel(&self.channel_id).await {
            Ok(Some(channel)) if channel.is_in_flight(self.voucher()) => SettlementStatus::Retry,
            Ok(Some(channel)) => SettlementStatus::Settled { reference: self.reference(channel.charged) },
            Ok(None) => SettlementStatus::Failed { reason: "the channel is gone".into() },
            Err(e) => SettlementStatus::Unknown { reason: format!("the channel store: {e}") },
        }
    }

    /// Gives the reservation back: the upstream failed, nothing is charged.
    pub async fn release(&self, book: &dyn ChannelBook) {
        let release = |c: &Channel| Ok::<_, ChannelRefusal>(c.release(self.voucher()));
        if let Err(e) = update_channel(book, &self.channel_id, release).await {
            tracing::error!(channel = %self.channel_id, error = %e, "a channel reservation could not be given back");
        }
    }
}

/// A reservation's swap and its payment's claim, written together.
struct ClaimRecorded<'a>(&'a dyn ClaimJournal);

#[async_trait]
impl ChannelWrite for ClaimRecorded<'_> {
    async fn write(&self, expected: i64, next: &Channel) -> Result<bool, ChannelBookError> {
        self.0.claimed_with_channel(expected, next).await
    }
}

/// A charge's swap and its payment's ledger row, written together.
struct ChargeRecorded<'a> {
    call: &'a ChannelCall,
    book: &'a dyn ChannelBook,
    journal: &'a dyn SettleJournal,
}

#[async_trait]
impl ChannelWrite for ChargeRecorded<'_> {
    async fn write(&self, expected: i64, next: &Channel) -> Result<bool, ChannelBookError> {
        let reference = self.call.reference(next.charged);
        self.journal.settled_with_channel(self.book, expected, next, &reference).await
    }
}

/// Charges the call `payment` pays what it used, its payment recorded settled in the same write (`journal`);
/// asks `schedule` for a settlement once the channel's unsettled value reaches `threshold`. The rails'
/// `PaymentMethod::settle_recorded`.
pub(crate) async fn settle(
    book: &dyn ChannelBook,
    payment: &VerifiedPayment,
    journal: &dyn SettleJournal,
    schedule: &SettleSchedule,
    threshold: Option<u128>,
) -> SettleOutcome {
    let Some(call) = ChannelCall::of(payment) else {
        return SettleOutcome::Failed { reason: "unreadable voucher".into(), reference: None };
    };
    match call.commit(book, payment.amount.0, journal).await {
        Ok(channel) => {
            if threshold.is_some_and(|above| channel.unclaimed() >= above) {
                schedule.ask();
            }
            SettleOutcome::Settled { reference: call.reference(channel.charged) }
        }
        Err(outcome) => outcome,
    }
}

/// What became of the call `payment` paid, after a crash. The rails' `PaymentMethod::settlement_status`.
pub(crate) async fn status(book: &dyn ChannelBook, payment: &VerifiedPayment) -> SettlementStatus {
    match ChannelCall::of(payment) {
        Some(call) => call.status(book).await,
        None => SettlementStatus::Unknown { reason: "unreadable voucher".into() },
    }
}

/// Gives back what the call `payment` paid reserved. The rails' `PaymentMethod::release`.
pub(crate) async fn release(book: &dyn ChannelBook, payment: &VerifiedPayment) {
    if let Some(call) = ChannelCall::of(payment) {
        call.release(book).await;
    }
}

/// When a channel rail's settler runs: on its schedule, or at the next pass once a channel asked for it (its
/// unsettled value passed the seller's threshold or cap).
#[derive(Debug)]
pub(crate) struct SettleSchedule {
    every: std::time::Duration,
    asked: std::sync::atomic::AtomicBool,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl SettleSchedule {
    pub fn new(every: std::time::Duration) -> SettleSchedule {
        SettleSchedule { every, asked: Default::default(), last: Default::default() }
    }

    /// Settle at the next pass, whatever the schedule.
    pub fn ask(&self) {
        self.asked.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether this pass settles (`now`, asked, or `every` passed since the last one); if so, it counts as run.
    pub fn due(&self, now: bool) -> bool {
        let now = self.asked.swap(false, std::sync::atomic::Ordering::Relaxed) || now;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if !now && last.is_some_and(|at| at.elapsed() < self.every) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        true
    }
}
