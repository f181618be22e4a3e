//! The one owner of a payment's state changes. Every move of a ledger row after its claim goes through a type
//! here, which records the transition with its reason, counts the outcome in the metrics and writes its log line:
//!
//! - [`ClaimedPayment`]: a payment a request claimed (`verified`), until its request ends: voided, served free,
//!   settled (or failed, pending, released when nothing was sent);
//! - [`OwedPayment`]: a settled payment whose response is owed, taken by the request that sent its proof again;
//! - [`UndecidedPayment`]: a row the reconciler decides (`pending`, abandoned `verified` or `settling`, `failed`
//!   still to be checked again).
//!
//! A tidy test (`crates/gateway/tests/tidy.rs`) keeps `Store::transition` out of every other module.

use async_trait::async_trait;
use paygate_core::channel::{Channel, ChannelBook, ChannelBookError};
use paygate_core::error::Causes;
use paygate_core::method::{PaymentMethod, SettleJournal, SettleOutcome, SettlementStatus, VerifiedPayment};
use paygate_core::money::{AtomicAmount, format_atomic};
use paygate_core::reject::Rejection;
use paygate_store::{PaymentId, PaymentRecord, PaymentState, Store, StoreError, Transition};

use crate::metrics::{Metrics, Outcome, Phase};

/// Journals a settlement on its ledger row: a transaction's hash before it is broadcast, or a settlement in the
/// store (a channel's charge) together with the row's move to `settled`.
struct LedgerJournal<'a> {
    store: &'a dyn Store,
    id: PaymentId,
    /// The states the row may be in, and its move, when the rail settles in the store.
    from: &'a [PaymentState],
    settled: Transition<'a>,
    /// What [`SettleJournal::settled_with_channel`] wrote: `Ok(true)` once the row is `settled`; the store's
    /// refusal (nothing written) otherwise.
    recorded: std::sync::Mutex<Result<bool, StoreError>>,
}

impl<'a> LedgerJournal<'a> {
    fn new(store: &'a dyn Store, id: PaymentId, from: &'a [PaymentState], settled: Transition<'a>) -> Self {
        LedgerJournal { store, id, from, settled, recorded: std::sync::Mutex::new(Ok(false)) }
    }

    /// Whether the rail recorded the row `settled` with its channel; the store's refusal when it could not.
    fn recorded(self) -> Result<bool, StoreError> {
        self.recorded.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl SettleJournal for LedgerJournal<'_> {
    async fn broadcasting(&self, reference: &str) -> Result<(), String> {
        self.store.record_reference(self.id, Some(reference)).await.map_err(|e| Causes(&e).to_string())
    }

    async fn not_broadcast(&self) {
        if let Err(e) = self.store.record_reference(self.id, None).await {
            tracing::warn!(payment = self.id, error = %Causes(&e), "could not forget a refused transaction");
        }
    }

    async fn settled_with_channel(
        &self,
        _book: &dyn ChannelBook,
        expected: i64,
        next: &Channel,
        reference: &str,
    ) -> Result<bool, ChannelBookError> {
        let t = Transition { tx_hash: Some(reference), ..self.settled };
        let written =
            self.store.transition_with_channel(self.id, self.from, PaymentState::Settled, t, expected, next).await;
        let answer = match &written {
            Ok(swapped) => Ok(*swapped),
            Err(e) => Err(ChannelBookError(Causes(e).to_string().into())),
        };
        *self.recorded.lock().unwrap_or_else(|p| p.into_inner()) = written;
        answer
    }
}

/// Where a settlement starts from and how its outcome is written ([`settle`]).
struct Attempt<'a> {
    /// The states the payment may be in; it moves from one of them to `settling`.
    from: &'a [PaymentState],
    /// The move to `settling`.
    settling: Transition<'a>,
    /// Sets [`PaymentRecord::response_owed`] on the final row.
    owed: Option<bool>,
    /// Where the payment goes when certainly nothing was sent: `voided` for a request in flight (its payer may
    /// send it again), `pending` for the reconciler.
    not_sent: PaymentState,
}

/// Moves a claimed payment to `settling`, settles it through `method` (journaling its broadcast), and records the
/// outcome: `settled`, `failed`, `pending`, or [`Attempt::not_sent`]. Fails only when the move to `settling`
/// cannot be recorded, in which case nothing was attempted. A rail that settles in the store (a channel's charge,
/// [`PaymentMethod::settles_in_store`]) skips `settling`: its charge and the move to `settled` are one write,
/// and this fails, nothing charged, when that write could not be made.
///
/// A failure is not taken on the rail's word alone: a facilitator that timed out waiting for its own
/// transaction answers "failed" although the transfer lands. So the chain is asked
/// ([`PaymentMethod::settlement_status`]): settled there is settled; a failure that names a transaction the chain
/// does not show decided yet is `pending`; otherwise the row is `failed` with `recheck` set, and the reconciler
/// looks at it again until the rail says the failure is final.
async fn settle(
    store: &dyn Store,
    method: &dyn PaymentMethod,
    id: PaymentId,
    payment: &VerifiedPayment,
    attempt: Attempt<'_>,
) -> Result<SettleOutcome, StoreError> {
    // A settlement in the store is written with the row's move (`LedgerJournal`): no `settling` in between.
    let in_store = method.settles_in_store();
    let settled = Transition { reason: "settled", response_owed: attempt.owed, ..attempt.settling };
    let outcome_from: &[PaymentState] = if in_store { attempt.from } else { &[PaymentState::Settling] };
    if !in_store {
        store.transition(id, attempt.from, PaymentState::Settling, attempt.settling).await?;
    }
    let journal = LedgerJournal::new(store, id, outcome_from, settled);
    let outcome = match method.settle_recorded(payment, &journal).await {
        SettleOutcome::Failed { reason, reference } => confirm_failure(method, payment, reason, reference).await,
        outcome => outcome,
    };
    if journal.recorded()? {
        return Ok(outcome);
    }
    let (state, reason, reference, recheck) = match &outcome {
        SettleOutcome::Settled { reference } => (PaymentState::Settled, "settled", Some(reference.as_str()), None),
        SettleOutcome::Failed { reason, reference } => {
            (PaymentState::Failed, reason.as_str(), reference.as_deref(), Some(true))
        }
        SettleOutcome::Unknown { reason, reference } => {
            (PaymentState::Pending, reason.as_str(), reference.as_deref(), None)
        }
        SettleOutcome::Submitted { reference } => {
            (PaymentState::Pending, "submitted, not yet confirmed", Some(reference.as_str()), None)
        }
        SettleOutcome::NotSent { refusal } => (attempt.not_sent, refusal.detail.as_str(), None, None),
    };
    let done = Transition { reason, tx_hash: reference, response_owed: attempt.owed, recheck, ..Default::default() };
    if let Err(e) = store.transition(id, outcome_from, state, done).await {
        tracing::error!(payment = id, error = %Causes(&e), ?outcome, "settled but could not record the outcome");
    }
    Ok(outcome)
}

/// What a settlement the rail reported failed really did, asked of the chain.
async fn confirm_failure(
    method: &dyn PaymentMethod,
    payment: &VerifiedPayment,
    reason: String,
    reference: Option<String>,
) -> SettleOutcome {
    match method.settlement_status(payment, reference.as_deref()).await {
        SettlementStatus::Settled { reference: found } => {
            tracing::warn!(payer = %payment.payer, %reason, tx = %found, "settlement reported failed, but it is settled on chain");
            let reference = if found.is_empty() { reference.unwrap_or_default() } else { found };
            SettleOutcome::Settled { reference }
        }
        SettlementStatus::Failed { .. } => SettleOutcome::Failed { reason, reference },
        // A named transaction may still land: wait for it rather than tell the payer nothing was charged.
        SettlementStatus::InFlight | SettlementStatus::Retry | SettlementStatus::Unknown { .. }
            if reference.is_some() =>
        {
            SettleOutcome::Unknown {
                reason: format!("settlement reported failed ({reason}); its transaction is not decided yet"),
                reference,
            }
        }
        SettlementStatus::InFlight | SettlementStatus::Retry | SettlementStatus::Unknown { .. } => {
            SettleOutcome::Failed { reason, reference }
        }
    }
}

/// A payment a request claimed (`verified`), until its request ends.
pub(crate) struct ClaimedPayment<'a> {
    store: &'a dyn Store,
    metrics: &'a Metrics,
    pub(crate) id: PaymentId,
    pub(crate) method: &'a dyn PaymentMethod,
    pub(crate) verified: VerifiedPayment,
    /// The route's name, for revenue metrics.
    route: &'a str,
    /// The payment as charged, when a call priced by its response used less than `verified` says.
    used: std::sync::OnceLock<VerifiedPayment>,
}

/// Why a settlement was not attempted: its row could not be moved to `settling`.
#[derive(Debug)]
pub(crate) enum NotAttempted {
    /// The reconciler took the payment for abandoned while its request ran: nothing was charged.
    Released,
    /// The ledger failed.
    Store(StoreError),
}

impl<'a> ClaimedPayment<'a> {
    pub(crate) fn new(
        store: &'a dyn Store,
        metrics: &'a Metrics,
        id: PaymentId,
        method: &'a dyn PaymentMethod,
        verified: VerifiedPayment,
        route: &'a str,
    ) -> Self {
        ClaimedPayment { store, metrics, id, method, verified, route, used: std::sync::OnceLock::new() }
    }

    async fn transition(&self, from: PaymentState, to: PaymentState, t: Transition<'_>, what: &str) {
        if let Err(e) = self.store.transition(self.id, &[from], to, t).await {
            tracing::error!(payment = self.id, error = %Causes(&e), "could not record {what}");
        }
    }

    /// Holds what the payment pays for while its request runs (a channel's reservation); a refusal voids the
    /// claim with nothing held and nothing charged, and is the request's answer.
    pub(crate) async fn hold(&self) -> Result<(), Rejection> {
        let refusal = match self.method.hold(&self.verified).await {
            Ok(()) => return Ok(()),
            Err(refusal) => refusal,
        };
        let t = Transition { reason: refusal.reason, ..Default::default() };
        self.transition(PaymentState::Verified, PaymentState::Voided, t, "a payment its rail would not hold").await;
        Err(refusal)
    }

    /// The upstream failed: nothing is charged, the rail releases what it held, and the same proof may be sent
    /// again while it is valid.
    pub(crate) async fn void_upstream_failed(&self, status: u16) {
        self.metrics.outcome(Outcome::Voided);
        let reason = format!("upstream answered {status}");
        let t = Transition { reason: &reason, upstream_status: Some(status), ..Default::default() };
        self.transition(PaymentState::Verified, PaymentState::Voided, t, "a void after an upstream failure").await;
        self.method.release(&self.verified).await;
    }

    /// Refused after its claim (a usage tier moved): nothing is charged; the refusal counts the outcome.
    pub(crate) async fn void_refused(&self, reason: &str) {
        let t = Transition { reason, ..Default::default() };
        self.transition(PaymentState::Verified, PaymentState::Voided, t, "a payment refused by its tier").await;
        self.method.release(&self.verified).await;
    }

    /// Served as one of the payer's free calls (`call_index` of the period): its proof is used up and nothing is
    /// settled. A call the upstream failed is voided instead. Whether it was served free.
    pub(crate) async fn serve_free(&self, call_index: u64, status: u16) -> bool {
        self.method.release(&self.verified).await;
        let free = status < 400;
        let (to, reason, outcome) = if free {
            (PaymentState::Free, format!("free call {} of the period", call_index + 1), Outcome::FreeCall)
        } else {
            (PaymentState::Voided, format!("upstream answered {status}"), Outcome::Voided)
        };
        self.metrics.outcome(outcome);
        let t = Transition { reason: &reason, upstream_status: Some(status), ..Default::default() };
        self.transition(PaymentState::Verified, to, t, "a free call").await;
        free
    }

    /// Records the upstream's status on a payment settled before it was called; the state stays.
    pub(crate) async fn record_upstream_status(&self, status: u16) {
        let state = match self.store.payment(self.id).await {
            Ok(Some(row)) => row.state,
            _ => return,
        };
        let t = Transition { reason: "upstream answered", upstream_status: Some(status), ..Default::default() };
        self.transition(state, state, t, "the upstream status").await;
    }

    /// Marks a payment whose call is still running (a long stream) as live, so that the reconciler does not take
    /// it for abandoned.
    pub(crate) async fn still_running(&self) {
        let t = Transition { reason: "streaming", ..Default::default() };
        self.transition(PaymentState::Verified, PaymentState::Verified, t, "a stream still running").await;
    }

    /// The payment as it is charged: what a call priced by its response used, else as verified.
    pub(crate) fn charged(&self) -> &VerifiedPayment {
        self.used.get().unwrap_or(&self.verified)
    }

    /// Settles what a call priced by its response `used` (at most what was verified), on a rail that charges
    /// usage; the ledger row records the amount before the rail settles it, so the reconciler charges the same.
    pub(crate) async fn settle_used(
        &self,
        upstream_status: u16,
        used: AtomicAmount,
    ) -> Result<SettleOutcome, NotAttempted> {
        let used = AtomicAmount(used.0.min(self.verified.amount.0));
        let _ = self.used.set(VerifiedPayment { amount: used, ..self.verified.clone() });
        self.settle(Some(upstream_status)).await
    }

    /// Settles what a stream paid as it is delivered charged: `delivered`, which may pass what was verified (one
    /// part) because each part was reserved on its channel before it was sent ([`PaymentMethod::hold_more`]); the
    /// rail never charges more than it reserved.
    pub(crate) async fn settle_delivered(
        &self,
        upstream_status: u16,
        delivered: AtomicAmount,
    ) -> Result<SettleOutcome, NotAttempted> {
        let _ = self.used.set(VerifiedPayment { amount: delivered, ..self.verified.clone() });
        self.settle(Some(upstream_status)).await
    }

    /// Settles: `upstream_status` is the upstream's answer (settling after it), or `None` (settling before it).
    /// Counts and logs the outcome; a failure or a settlement not sent is counted where its refusal is written.
    pub(crate) async fn settle(&self, upstream_status: Option<u16>) -> Result<SettleOutcome, NotAttempted> {
        let reason = match upstream_status {
            Some(status) => format!("upstream answered {status}"),
            None => "settling before the upstream".to_owned(),
        };
        let charged = self.charged();
        let amount = self.used.get().map(|used| used.amount.to_string());
        let settling = Transition { reason: &reason, upstream_status, amount: amount.as_deref(), ..Default::default() };
        let attempt = Attempt { from: &[PaymentState::Verified], settling, owed: None, not_sent: PaymentState::Voided };
        let started = std::time::Instant::now();
        let outcome = match settle(self.store, self.method, self.id, charged, attempt).await {
            Ok(outcome) => outcome,
            Err(StoreError::WrongState { .. }) => return Err(NotAttempted::Released),
            Err(e) => return Err(NotAttempted::Store(e)),
        };
        self.metrics.time(Phase::Settle, started.elapsed());
        self.log(&outcome);
        let option = self.method.option();
        match &outcome {
            SettleOutcome::Settled { .. } | SettleOutcome::Submitted { .. } => {
                self.metrics.outcome(Outcome::Paid);
                let network = option.network.to_string();
                self.metrics.revenue(self.route, &network, &option.asset.symbol, charged.amount.0);
            }
            SettleOutcome::Unknown { .. } => self.metrics.outcome(Outcome::Pending),
            SettleOutcome::Failed { .. } | SettleOutcome::NotSent { .. } => {}
        }
        Ok(outcome)
    }

    fn log(&self, outcome: &SettleOutcome) {
        let option = self.method.option();
        let amount = format_atomic(self.charged().amount, option.asset.decimals);
        let (id, payer, asset) = (self.id, &self.verified.payer, &option.asset.symbol);
        match outcome {
            SettleOutcome::Settled { reference } => {
                tracing::info!(payment = id, %payer, %amount, %asset, tx = %reference, "settled");
            }
            SettleOutcome::Submitted { reference } => {
                tracing::info!(payment = id, %payer, %amount, %asset, tx = %reference, "submitted; confirmed later");
            }
            SettleOutcome::Unknown { reason, reference } => {
                tracing::warn!(payment = id, %payer, %amount, %asset, tx = ?reference, %reason, "settlement outcome unknown: pending");
            }
            SettleOutcome::Failed { reason, .. } => {
                tracing::warn!(payment = id, %payer, %amount, %asset, %reason, "settlement failed; nothing charged");
            }
            SettleOutcome::NotSent { refusal } => {
                tracing::warn!(payment = id, %payer, %amount, %asset, reason = refusal.reason, "settlement not sent; claim released, nothing charged");
            }
        }
    }
}

/// A settled payment whose response is owed, taken (atomically, by one request) for the request that sent its
/// proof again.
pub(crate) struct OwedPayment<'a> {
    store: &'a dyn Store,
    metrics: &'a Metrics,
    pub(crate) row: PaymentRecord,
}

impl<'a> OwedPayment<'a> {
    /// The owed payment of `proof_key` (of `challenge_id`, when the resent credential binds one), taken for this
    /// request; `None` when nothing is owed or the ledger cannot say.
    pub(crate) async fn take(
        store: &'a dyn Store,
        metrics: &'a Metrics,
        proof_key: &str,
        challenge_id: Option<&str>,
    ) -> Option<OwedPayment<'a>> {
        match store.take_owed_response(proof_key, challenge_id).await {
            Ok(owed) => owed.map(|row| OwedPayment { store, metrics, row }),
            Err(e) => {
                tracing::error!(error = %Causes(&e), "could not look up an owed response");
                None
            }
        }
    }

    /// Records the upstream's answer to the redelivery: delivered when it is below 400, otherwise still owed.
    /// Whether it was delivered.
    pub(crate) async fn answered(&self, status: u16) -> bool {
        let delivered = status < 400;
        let reason = if delivered {
            "resent credential: the owed response was delivered".to_owned()
        } else {
            format!("resent credential: upstream answered {status}; the response is still owed")
        };
        let t = Transition {
            reason: &reason,
            upstream_status: Some(status),
            response_owed: Some(!delivered),
            ..Default::default()
        };
        if let Err(e) = self.store.transition(self.row.id, &[PaymentState::Settled], PaymentState::Settled, t).await {
            tracing::error!(payment = self.row.id, error = %Causes(&e), "could not record a redelivered response");
        }
        if delivered {
            self.metrics.outcome(Outcome::Redelivered);
        }
        delivered
    }
}

/// A ledger row the reconciler decides, with its rail.
pub(crate) struct UndecidedPayment<'a> {
    store: &'a dyn Store,
    pub(crate) row: &'a PaymentRecord,
    pub(crate) method: &'a dyn PaymentMethod,
    pub(crate) verified: VerifiedPayment,
}

impl<'a> UndecidedPayment<'a> {
    pub(crate) fn new(
        store: &'a dyn Store,
        row: &'a PaymentRecord,
        method: &'a dyn PaymentMethod,
        verified: VerifiedPayment,
    ) -> Self {
        UndecidedPayment { store, row, method, verified }
    }

    /// A `verified` row left by a gateway that stopped before the upstream answered: voided, nothing charged.
    pub(crate) async fn void_abandoned(store: &dyn Store, id: PaymentId) -> Result<(), StoreError> {
        let t = Transition {
            reason: "reconciled: the gateway stopped before the upstream answered; nothing was charged",
            ..Default::default()
        };
        store.transition(id, &[PaymentState::Verified], PaymentState::Voided, t).await
    }

    /// Found settled on chain. A `settling` row was never answered, so its response is owed.
    pub(crate) async fn settled_on_chain(&self, reference: &str) -> Result<(), StoreError> {
        let owed = (self.row.state == PaymentState::Settling).then_some(true);
        let t = Transition {
            reason: "reconciled: settled on chain",
            tx_hash: Some(reference).filter(|r| !r.is_empty()),
            response_owed: owed,
            ..Default::default()
        };
        self.store.transition(self.row.id, &[self.row.state], PaymentState::Settled, t).await
    }

    /// Certainly not settled and never will be.
    pub(crate) async fn failed(&self, reason: &str) -> Result<(), StoreError> {
        let reason = format!("reconciled: {reason}; nothing was charged");
        let t = Transition { reason: &reason, ..Default::default() };
        self.store.transition(self.row.id, &[self.row.state], PaymentState::Failed, t).await
    }

    /// Certainly nothing was broadcast: settles again, once. A `settling` row's response is owed if it settles.
    pub(crate) async fn settle_again(&self) -> Result<SettleOutcome, StoreError> {
        let owed = (self.row.state == PaymentState::Settling).then_some(true);
        let settling = Transition { reason: "reconciled: nothing was broadcast; settling again", ..Default::default() };
        let attempt = Attempt { from: &[self.row.state], settling, owed, not_sent: PaymentState::Pending };
        settle(self.store, self.method, self.row.id, &self.verified, attempt).await
    }

    /// Still undecided: an abandoned `settling` row becomes `pending`, so it is no longer taken for live.
    pub(crate) async fn keep_pending(store: &dyn Store, row: &PaymentRecord, reason: &str) -> Result<(), StoreError> {
        if row.state != PaymentState::Settling {
            return Ok(());
        }
        let t = Transition { reason, response_owed: Some(true), ..Default::default() };
        store.transition(row.id, &[PaymentState::Settling], PaymentState::Pending, t).await
    }

    /// A `failed` settlement that landed on chain after all: settled, its response owed (the payer was refused).
    pub(crate) async fn landed_late(&self, reference: &str) -> Result<(), StoreError> {
        tracing::warn!(payment = self.row.id, payer = %self.row.payer, tx = %reference, "a failed settlement landed on chain after all: settled, response owed");
        let t = Transition {
            reason: "reconciled: the failed settlement landed on chain after all; the response is owed",
            tx_hash: Some(reference).filter(|r| !r.is_empty()),
            response_owed: Some(true),
            recheck: Some(false),
            ..Default::default()
        };
        self.store.transition(self.row.id, &[PaymentState::Failed], PaymentState::Settled, t).await
    }

    /// A `failed` row is no longer checked again: its failure is final, or cannot be checked.
    pub(crate) async fn stop_rechecking(store: &dyn Store, id: PaymentId, reason: &str) -> Result<(), StoreError> {
        let t = Transition { reason, recheck: Some(false), ..Default::default() };
        store.transition(id, &[PaymentState::Failed], PaymentState::Failed, t).await
    }
}
