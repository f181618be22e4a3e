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

use paygate_core::error::Causes;
use paygate_core::method::{PaymentMethod, SettleOutcome, SettlementStatus, VerifiedPayment};
use paygate_core::money::AtomicAmount;
use paygate_store::{PaymentQuery, PaymentRecord, PaymentState, Store, StoreError};

use crate::payment::UndecidedPayment;

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
    /// Channels whose charged value was claimed on chain in a batch (`settle_accepted`).
    pub channels_claimed: usize,
}

/// How long a `failed` settlement whose rail cannot tell what became of it is asked again before it is left
/// failed: longer than any authorization's validity.
const RECHECK_HORIZON_MS: i64 = 24 * 3600 * 1000;

/// How long the answer of an x402 `payment-identifier` is kept for a client that sends the payment again.
pub(crate) const IDENTIFIER_TTL_MS: i64 = 24 * 3600 * 1000;

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
            match UndecidedPayment::void_abandoned(self.store.as_ref(), row.id).await {
                Ok(()) => {
                    done.voided += 1;
                    // What its rail held for it (a channel's reservation) is given back: nothing was charged.
                    if let Some(payment) = self.undecided(&row)? {
                        payment.method.release(&payment.verified).await;
                    }
                }
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
        for method in self.methods.values() {
            match method.settle_accepted(false).await {
                Ok(settled) if settled.channels > 0 => {
                    tracing::info!(option = %method.option().name, ?settled, "claimed channel payments on chain");
                    done.channels_claimed += settled.channels;
                }
                Ok(_) => {}
                Err(reason) => {
                    tracing::warn!(option = %method.option().name, %reason, "a batch settlement failed; trying again later")
                }
            }
        }
        let now = paygate_store::now_ms();
        self.store.expire_identifiers(now - IDENTIFIER_TTL_MS, cutoff).await?;
        self.store.forget_full_rates(now).await?;
        Ok(done)
    }

    /// The row with its rail and verified payment; `None` when its option is no longer configured.
    fn undecided<'r>(&'r self, row: &'r PaymentRecord) -> Result<Option<UndecidedPayment<'r>>, StoreError> {
        let Some(method) = self.methods.get(&row.option_name) else {
            tracing::warn!(payment = row.id, option = %row.option_name, "no configured payment option can reconcile this payment");
            return Ok(None);
        };
        let amount = row
            .amount
            .parse()
            .map(AtomicAmount)
            .map_err(|_| StoreError::corrupt(format!("payment {}: amount {:?}", row.id, row.amount)))?;
        let verified = VerifiedPayment {
            proof_key: row.proof_key.clone(),
            payer: row.payer.clone(),
            amount,
            settlement: row.settlement.clone(),
        };
        Ok(Some(UndecidedPayment::new(self.store.as_ref(), row, method.as_ref(), verified)))
    }

    /// Checks a `failed` settlement against the chain again: one that landed after all becomes `settled` with its
    /// response owed (the payer was refused, and the same credential sent again is served); one whose failure the
    /// rail calls final, or that nothing can check within [`RECHECK_HORIZON_MS`], is no longer checked.
    async fn recheck(&self, row: &PaymentRecord, done: &mut Reconciled) -> Result<(), StoreError> {
        let store = self.store.as_ref();
        let Some(payment) = self.undecided(row)? else {
            let reason = "reconciled: its payment option is no longer configured; left failed";
            return UndecidedPayment::stop_rechecking(store, row.id, reason).await;
        };
        match payment.method.settlement_status(&payment.verified, row.tx_hash.as_deref()).await {
            SettlementStatus::Settled { reference } => {
                payment.landed_late(&reference).await?;
                done.settled += 1;
                done.landed_late += 1;
            }
            SettlementStatus::Failed { reason } => {
                let reason = format!("reconciled: final: {reason}; nothing was charged");
                UndecidedPayment::stop_rechecking(store, row.id, &reason).await?;
            }
            // Never settled again: the payer was told nothing was charged. Wait until the chain decides.
            SettlementStatus::InFlight | SettlementStatus::Retry => {}
            SettlementStatus::Unknown { reason }
                if row.created_at_ms < paygate_store::now_ms() - RECHECK_HORIZON_MS =>
            {
                let reason = format!("reconciled: cannot be checked ({reason}); left failed");
                UndecidedPayment::stop_rechecking(store, row.id, &reason).await?;
            }
            SettlementStatus::Unknown { .. } => {}
        }
        Ok(())
    }

    async fn reconcile(&self, row: &PaymentRecord, done: &mut Reconciled) -> Result<(), StoreError> {
        let Some(payment) = self.undecided(row)? else {
            return self.still_undecided(row, "reconciled: its payment option is no longer configured", done).await;
        };
        match payment.method.settlement_status(&payment.verified, row.tx_hash.as_deref()).await {
            SettlementStatus::Settled { reference } => {
                payment.settled_on_chain(&reference).await?;
                done.settled += 1;
            }
            SettlementStatus::Failed { reason } => {
                payment.failed(&reason).await?;
                done.failed += 1;
            }
            SettlementStatus::Retry => {
                let outcome = payment.settle_again().await?;
                done.retried += 1;
                match outcome {
                    SettleOutcome::Settled { .. } => done.settled += 1,
                    SettleOutcome::Failed { .. } => done.failed += 1,
                    SettleOutcome::Unknown { .. } | SettleOutcome::Submitted { .. } | SettleOutcome::NotSent { .. } => {
                        done.undecided += 1
                    }
                }
            }
            SettlementStatus::InFlight => {
                self.still_undecided(row, "reconciled: a settlement transaction may still be mined", done).await?
            }
            SettlementStatus::Unknown { reason } => {
                self.still_undecided(row, &format!("reconciled: undecided: {reason}"), done).await?
            }
        }
        Ok(())
    }

    /// Leaves a row `pending` (moving an abandoned `settling` one there, so it is no longer taken for live).
    async fn still_undecided(
        &self,
        row: &PaymentRecord,
        reason: &str,
        done: &mut Reconciled,
    ) -> Result<(), StoreError> {
        done.undecided += 1;
        UndecidedPayment::keep_pending(self.store.as_ref(), row, reason).await
    }

    /// Runs a pass now and then every `interval` until `shutdown` completes. Errors are logged, not fatal: the
    /// next pass tries again.
    pub async fn run(&self, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.run_once().await {
                Ok(done) if done != Reconciled::default() => tracing::info!(?done, "reconciled payments"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %Causes(&e), "reconciliation failed; trying again later"),
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = &mut shutdown => return,
            }
        }
    }
}
