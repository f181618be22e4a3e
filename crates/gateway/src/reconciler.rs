//! Finishing what settlement left undecided. A payment is `pending` when its settlement's outcome was unknown
//! (a receipt that did not come in time, a facilitator that did not answer), and a gateway that died leaves rows
//! in `verified` (the upstream was running) or `settling` (money may be moving). The [`Reconciler`] asks each
//! payment's rail what the chain says ([`PaymentMethod::settlement_status`]) and records it; it runs at start
//! and then periodically, and several instances may run it on one store (each move is a checked transition, so
//! one of them makes it).
//!
//! It never broadcasts a payment twice: a rail says `Retry` only when certainly nothing was broadcast (its
//! settler journals every transaction hash before sending, see [`LedgerJournal`]), and otherwise waits until
//! the authorization has been used or has expired.
//!
//! A payment a dead gateway was settling was never answered, so when it ends `settled` it is marked
//! `response_owed`: the payer's request, sent again with the same credential, is served without a second
//! charge (`Gateway::handle`). A `failed` settlement is not final until its rail says so: the reconciler asks
//! the chain about it again (`recheck`), and one that landed after all is `settled` and owed the same way.
//!
//! Each pass also forgets what the store keeps only for a while: answers kept for x402 payment identifiers, and
//! the payers' rate-limit buckets that are full again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use paygate_core::method::{PaymentMethod, SettleJournal, SettleOutcome, SettlementStatus, VerifiedPayment};
use paygate_core::money::AtomicAmount;
use paygate_store::{PaymentId, PaymentQuery, PaymentRecord, PaymentState, Store, StoreError, Transition};

/// Journals a settlement's transaction hash on its ledger row before it is broadcast.
pub(crate) struct LedgerJournal<'a> {
    pub store: &'a dyn Store,
    pub id: PaymentId,
}

#[async_trait]
impl SettleJournal for LedgerJournal<'_> {
    async fn broadcasting(&self, reference: &str) -> Result<(), String> {
        self.store.record_reference(self.id, Some(reference)).await.map_err(|e| e.to_string())
    }

    async fn not_broadcast(&self) {
        if let Err(e) = self.store.record_reference(self.id, None).await {
            tracing::warn!(payment = self.id, error = %e, "could not forget a refused transaction");
        }
    }
}

/// Where a settlement starts from and how its outcome is written ([`settle_payment`]).
pub(crate) struct Attempt<'a> {
    /// The states the payment may be in; it moves from one of them to `settling`.
    pub from: &'a [PaymentState],
    /// The move to `settling`.
    pub settling: Transition<'a>,
    /// Sets [`PaymentRecord::response_owed`] on the final row.
    pub owed: Option<bool>,
    /// Where the payment goes when certainly nothing was sent: `voided` for a request in flight (its payer may
    /// send it again), `pending` for the reconciler.
    pub not_sent: PaymentState,
}

/// Moves a claimed payment to `settling`, settles it through `method` (journaling its broadcast), and records the
/// outcome: `settled`, `failed`, `pending`, or [`Attempt::not_sent`]. Fails only when the move to `settling`
/// cannot be recorded, in which case nothing was attempted.
///
/// A failure is not taken on the rail's word alone: a facilitator that timed out waiting for its own
/// transaction answers "failed" although the transfer lands. So the chain is asked ([`PaymentMethod::
/// settlement_status`]): settled there is settled; a failure that names a transaction the chain does not show
/// decided yet is `pending`; otherwise the row is `failed` with `recheck` set, and the reconciler looks at it
/// again until the rail says the failure is final.
pub(crate) async fn settle_payment(
    store: &dyn Store,
    method: &dyn PaymentMethod,
    id: PaymentId,
    payment: &VerifiedPayment,
    attempt: Attempt<'_>,
) -> Result<SettleOutcome, StoreError> {
    store.transition(id, attempt.from, PaymentState::Settling, attempt.settling).await?;
    let outcome = match method.settle_recorded(payment, &LedgerJournal { store, id }).await {
        SettleOutcome::Failed { reason, reference } => confirm_failure(method, payment, reason, reference).await,
        outcome => outcome,
    };
    let (state, reason, reference, recheck) = match &outcome {
        SettleOutcome::Settled { reference } => (PaymentState::Settled, "settled", Some(reference.as_str()), None),
        SettleOutcome::Failed { reason, reference } => {
            (PaymentState::Failed, reason.as_str(), reference.as_deref(), Some(true))
        }
        SettleOutcome::Unknown { reason, reference } => {
            (PaymentState::Pending, reason.as_str(), reference.as_deref(), None)
        }
        SettleOutcome::NotSent { refusal } => (attempt.not_sent, refusal.detail.as_str(), None, None),
    };
    let done = Transition { reason, tx_hash: reference, response_owed: attempt.owed, recheck, ..Default::default() };
    if let Err(e) = store.transition(id, &[PaymentState::Settling], state, done).await {
        tracing::error!(payment = id, error = %e, ?outcome, "settled but could not record the outcome");
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

/// What one pass decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Found settled on chain, or settled by a retry: now `settled`.
    pub settled: usize,
    /// Certainly not settled and never will be: now `failed`, nothing charged.
    pub failed: usize,
    /// Left in `verified` by a gateway that stopped before the upstream answered: now `voided`, nothing charged.
    pub voided: usize,
    /// Settlement retried (counted also in the state it ended in).
    pub retried: usize,
    /// Still undecided: now or still `pending`.
    pub undecided: usize,
    /// `failed` settlements found settled on chain after all: now `settled`, their responses owed.
    pub landed_late: usize,
}

/// How long a `failed` settlement whose rail cannot tell what became of it is asked again before it is left
/// failed: longer than any authorization's validity.
const RECHECK_HORIZON_MS: i64 = 24 * 3600 * 1000;

/// How long the answer of an x402 `payment-identifier` is kept for a client that sends the payment again.
pub const IDENTIFIER_TTL_MS: i64 = 24 * 3600 * 1000;

/// Resolves undecided payments against their rails.
#[derive(Debug)]
pub struct Reconciler {
    store: Arc<dyn Store>,
    methods: HashMap<String, Arc<dyn PaymentMethod>>,
    /// How long a `verified` or `settling` row must have been left alone before it is taken for abandoned.
    stale_after: Duration,
}

impl Reconciler {
    /// A reconciler over `methods` (the gateway's payment options, by name).
    pub fn new(store: Arc<dyn Store>, methods: &[Arc<dyn PaymentMethod>], stale_after: Duration) -> Self {
        let methods = methods.iter().map(|m| (m.option().name.clone(), m.clone())).collect();
        Reconciler { store, methods, stale_after }
    }

    /// One pass over `pending` rows and abandoned `verified` and `settling` ones.
    pub async fn run_once(&self) -> Result<Reconciled, StoreError> {
        let cutoff = paygate_store::now_ms() - i64::try_from(self.stale_after.as_millis()).unwrap_or(i64::MAX);
        let rows =
            |state, updated_before_ms| PaymentQuery { state: Some(state), updated_before_ms, ..Default::default() };
        let mut done = Reconciled::default();

        for row in self.store.payments(&rows(PaymentState::Verified, Some(cutoff))).await? {
            let voided = Transition {
                reason: "reconciled: the gateway stopped before the upstream answered; nothing was charged",
                ..Default::default()
            };
            match self.store.transition(row.id, &[PaymentState::Verified], PaymentState::Voided, voided).await {
                Ok(()) => done.voided += 1,
                // Another instance, or the request itself, moved it meanwhile.
                Err(StoreError::WrongState { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut undecided = self.store.payments(&rows(PaymentState::Settling, Some(cutoff))).await?;
        undecided.extend(self.store.payments(&rows(PaymentState::Pending, None)).await?);
        for row in undecided {
            match self.reconcile(&row, &mut done).await {
                Ok(()) | Err(StoreError::WrongState { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let failed = PaymentQuery { state: Some(PaymentState::Failed), recheck: true, ..Default::default() };
        for row in self.store.payments(&failed).await? {
            match self.recheck(&row, &mut done).await {
                Ok(()) | Err(StoreError::WrongState { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let now = paygate_store::now_ms();
        self.store.expire_identifiers(now - IDENTIFIER_TTL_MS, cutoff).await?;
        self.store.forget_full_rates(now).await?;
        Ok(done)
    }

    /// The rail and the verified payment of a ledger row; `None` when its option is no longer configured.
    fn payment_of(&self, row: &PaymentRecord) -> Result<Option<(&dyn PaymentMethod, VerifiedPayment)>, StoreError> {
        let Some(method) = self.methods.get(&row.option_name) else {
            tracing::warn!(payment = row.id, option = %row.option_name, "no configured payment option can reconcile this payment");
            return Ok(None);
        };
        let amount = row
            .amount
            .parse()
            .map(AtomicAmount)
            .map_err(|_| StoreError::Corrupt(format!("payment {}: amount {:?}", row.id, row.amount)))?;
        let payment = VerifiedPayment {
            proof_key: row.proof_key.clone(),
            payer: row.payer.clone(),
            amount,
            settlement: row.settlement.clone(),
        };
        Ok(Some((method.as_ref(), payment)))
    }

    /// Checks a `failed` settlement against the chain again: one that landed after all becomes `settled` with its
    /// response owed (the payer was refused, and the same credential sent again is served); one whose failure the
    /// rail calls final, or that nothing can check within [`RECHECK_HORIZON_MS`], is no longer checked.
    async fn recheck(&self, row: &PaymentRecord, done: &mut Reconciled) -> Result<(), StoreError> {
        fn stop(reason: &str) -> Transition<'_> {
            Transition { reason, recheck: Some(false), ..Default::default() }
        }
        let Some((method, payment)) = self.payment_of(row)? else {
            let t = stop("reconciled: its payment option is no longer configured; left failed");
            return self.store.transition(row.id, &[PaymentState::Failed], PaymentState::Failed, t).await;
        };
        match method.settlement_status(&payment, row.tx_hash.as_deref()).await {
            SettlementStatus::Settled { reference } => {
                tracing::warn!(payment = row.id, payer = %row.payer, tx = %reference, "a failed settlement landed on chain after all: settled, response owed");
                let t = Transition {
                    reason: "reconciled: the failed settlement landed on chain after all; the response is owed",
                    tx_hash: Some(reference.as_str()).filter(|r| !r.is_empty()),
                    response_owed: Some(true),
                    recheck: Some(false),
                    ..Default::default()
                };
                self.store.transition(row.id, &[PaymentState::Failed], PaymentState::Settled, t).await?;
                done.settled += 1;
                done.landed_late += 1;
            }
            SettlementStatus::Failed { reason } => {
                let reason = format!("reconciled: final: {reason}; nothing was charged");
                self.store.transition(row.id, &[PaymentState::Failed], PaymentState::Failed, stop(&reason)).await?;
            }
            // Never settled again: the payer was told nothing was charged. Wait until the chain decides.
            SettlementStatus::InFlight | SettlementStatus::Retry => {}
            SettlementStatus::Unknown { reason } => {
                if row.created_at_ms < paygate_store::now_ms() - RECHECK_HORIZON_MS {
                    let reason = format!("reconciled: cannot be checked ({reason}); left failed");
                    self.store.transition(row.id, &[PaymentState::Failed], PaymentState::Failed, stop(&reason)).await?;
                }
            }
        }
        Ok(())
    }

    async fn reconcile(&self, row: &PaymentRecord, done: &mut Reconciled) -> Result<(), StoreError> {
        // A `settling` row was never answered: if it ends settled, the payer is owed the response.
        let owed = (row.state == PaymentState::Settling).then_some(true);
        let Some((method, payment)) = self.payment_of(row)? else {
            return self.undecided(row, "reconciled: its payment option is no longer configured", owed, done).await;
        };
        match method.settlement_status(&payment, row.tx_hash.as_deref()).await {
            SettlementStatus::Settled { reference } => {
                let t = Transition {
                    reason: "reconciled: settled on chain",
                    tx_hash: Some(reference.as_str()).filter(|r| !r.is_empty()),
                    response_owed: owed,
                    ..Default::default()
                };
                self.store.transition(row.id, &[row.state], PaymentState::Settled, t).await?;
                done.settled += 1;
            }
            SettlementStatus::Failed { reason } => {
                let reason = format!("reconciled: {reason}; nothing was charged");
                let t = Transition { reason: &reason, ..Default::default() };
                self.store.transition(row.id, &[row.state], PaymentState::Failed, t).await?;
                done.failed += 1;
            }
            SettlementStatus::Retry => {
                let settling =
                    Transition { reason: "reconciled: nothing was broadcast; settling again", ..Default::default() };
                let attempt = Attempt { from: &[row.state], settling, owed, not_sent: PaymentState::Pending };
                let outcome = settle_payment(self.store.as_ref(), method, row.id, &payment, attempt).await?;
                done.retried += 1;
                match outcome {
                    SettleOutcome::Settled { .. } => done.settled += 1,
                    SettleOutcome::Failed { .. } => done.failed += 1,
                    SettleOutcome::Unknown { .. } | SettleOutcome::NotSent { .. } => done.undecided += 1,
                }
            }
            SettlementStatus::InFlight => {
                self.undecided(row, "reconciled: a settlement transaction may still be mined", owed, done).await?
            }
            SettlementStatus::Unknown { reason } => {
                self.undecided(row, &format!("reconciled: undecided: {reason}"), owed, done).await?
            }
        }
        Ok(())
    }

    /// Leaves a row `pending` (moving an abandoned `settling` one there, so it is no longer taken for live).
    async fn undecided(
        &self,
        row: &PaymentRecord,
        reason: &str,
        owed: Option<bool>,
        done: &mut Reconciled,
    ) -> Result<(), StoreError> {
        done.undecided += 1;
        if row.state == PaymentState::Settling {
            let t = Transition { reason, response_owed: owed, ..Default::default() };
            self.store.transition(row.id, &[PaymentState::Settling], PaymentState::Pending, t).await?;
        }
        Ok(())
    }

    /// Runs a pass now and then every `interval` until `shutdown` completes. Errors are logged, not fatal: the
    /// next pass tries again.
    pub async fn run(&self, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.run_once().await {
                Ok(done) if done != Reconciled::default() => tracing::info!(?done, "reconciled payments"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reconciliation failed; trying again later"),
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = &mut shutdown => return,
            }
        }
    }
}
