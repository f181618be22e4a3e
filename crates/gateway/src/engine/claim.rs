//! Claiming: a verified payment is written to the shared ledger as `verified`, keyed by the money itself, before
//! the upstream sees the request, so that of all copies of a proof (on every instance) one is served. Before the
//! claim, the payer's rate limit; right after it, the rail holds what the call costs (a channel reserves it from
//! the deposit); then, on a tiered route, the call is counted in the payer's tier.

use http::request::Parts;

use paygate_core::channel::{Channel, ChannelBookError};
use paygate_core::error::Causes;
use paygate_core::method::ClaimJournal;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_store::{Claim, ClaimWithChannel, NewPayment, PaymentState};

use super::bind::Bound;
use super::free::CountedCall;
use super::{Gateway, PaidRequest};
use crate::credential::Presented;
use crate::limits::PayerLimit;
use crate::metrics::Phase;
use crate::offers::RouteOffer;
use crate::payment::{ClaimedPayment, OwedPayment};
use crate::usage::{PayerTiers, period_start};

/// What a claim made of a verified payment.
pub(super) enum Claimed<'a> {
    /// Claimed by this request.
    New(Box<ClaimedNow<'a>>),
    /// Already settled, its response owed: this request gets it.
    Owed { owed: Box<OwedPayment<'a>>, offer: &'a RouteOffer },
}

/// A payment this request claimed, with the offer it pays.
pub(super) struct ClaimedNow<'a> {
    pub payment: ClaimedPayment<'a>,
    pub offer: &'a RouteOffer,
}

/// A claimed payment in its request: what the steps after the claim need.
pub(super) struct Paid<'a> {
    pub ctx: &'a PaidRequest<'a>,
    pub presented: &'a Presented,
    pub offer: &'a RouteOffer,
    pub payment: &'a ClaimedPayment<'a>,
}

/// Where a claimed payment's call is counted.
pub(super) enum Counted {
    /// A paid call (counted in a tier, or not counted: the route has none).
    Paid(Option<CountedCall>),
    /// One of the payer's free calls.
    Free(CountedCall),
}

impl Gateway {
    /// Claims a verified payment (within the payer's rate limit), or answers: a replay, a payment in flight, an
    /// owed response, the store down.
    pub(super) async fn claim<'a>(
        &'a self,
        ctx: &PaidRequest<'a>,
        presented: &Presented,
        bound: Bound<'a>,
        parts: &Parts,
    ) -> Result<Claimed<'a>, http::Response<crate::body::Body>> {
        let Bound { offer, challenge_id, verified } = bound;
        let now_ms = i64::try_from(self.clock.now_unix()).unwrap_or(i64::MAX).saturating_mul(1000);
        match self.limits.check_payer(self.store.as_ref(), &verified.payer, now_ms).await {
            Ok(()) => {}
            Err(PayerLimit::Over(rejection)) => return Err(self.refuse(ctx, Some(&rejection)).await),
            Err(PayerLimit::Store(e)) => return Err(self.refuse(ctx, Some(&store_down(&e))).await),
        }
        // An MPP challenge is single-use (one live payment per challenge), except a session's: every voucher of a
        // session answers the challenge that opened it, and each is still claimed once by its own proof key.
        let challenge_id = challenge_id.filter(|_| !matches!(offer.mpp, Some((_, "session"))));
        let new = NewPayment {
            proof_key: verified.proof_key.clone(),
            challenge_id,
            protocol: presented.protocol().to_owned(),
            rail: offer.method.rail().to_owned(),
            payer: verified.payer.clone(),
            settlement: verified.settlement.clone(),
            ..ledger_row(offer, ctx.request_id, super::bind::ledger_route(&parts.method, &parts.uri, &parts.extensions))
        };
        let claimed = |id, verified| {
            ClaimedPayment::new(
                self.store.as_ref(),
                &self.metrics,
                id,
                offer.method.as_ref(),
                verified,
                &ctx.route.name,
            )
        };
        let started = std::time::Instant::now();
        // A rail that holds in the store claims and holds in one write when it can at once; else (or when that
        // wrote nothing) the usual claim, then the hold.
        let journal = ClaimWithReservation { store: self.store.as_ref(), new: &new, claimed: Default::default() };
        if offer.method.claim_and_hold(&verified, &journal).await
            && let Some(id) = journal.claimed.into_inner().unwrap_or_else(|p| p.into_inner())
        {
            self.metrics.time(Phase::Claim, started.elapsed());
            let payment = claimed(id, verified);
            return Ok(Claimed::New(Box::new(ClaimedNow { payment, offer })));
        }
        let claim = self.store.claim(&new).await;
        self.metrics.time(Phase::Claim, started.elapsed());
        match claim {
            Ok(Claim::Claimed(id)) => {
                let payment = claimed(id, verified);
                if let Err(refusal) = payment.hold().await {
                    return Err(self.refuse(ctx, Some(&refusal)).await);
                }
                Ok(Claimed::New(Box::new(ClaimedNow { payment, offer })))
            }
            Ok(Claim::Taken { state, .. }) => {
                if state == PaymentState::Settled
                    && let Some(owed) = OwedPayment::take(
                        self.store.as_ref(),
                        &self.metrics,
                        &verified.proof_key,
                        new.challenge_id.as_deref(),
                    )
                    .await
                {
                    return Ok(Claimed::Owed { owed: Box::new(owed), offer });
                }
                Err(self.refuse(ctx, Some(&taken(state))).await)
            }
            Err(e) => Err(self.refuse(ctx, Some(&store_down(&e))).await),
        }
    }

    /// Counts a claimed payment's call in its payer's tiers, or refuses it (releasing its claim, nothing
    /// charged) with a 402 quoting the payer's price when its amount is not the price of the payer's next call.
    pub(super) async fn count_payer_call(&self, paid: &Paid<'_>) -> Result<Counted, http::Response<crate::body::Body>> {
        let Some(tiers) = paid.ctx.route.pricing.as_ref().and_then(|p| p.payer_tiers()) else {
            return Ok(Counted::Paid(None));
        };
        let counter = PayerTiers::counter(&paid.ctx.route.name, &paid.payment.verified.payer);
        let start = period_start(tiers.period, self.clock.now_unix());
        let rejection = match self.store.count_call(&counter, start, &tiers.ranges(paid.offer)).await {
            Ok(Some(index)) => {
                let call = CountedCall { counter, start, index };
                return Ok(if tiers.is_free(index) { Counted::Free(call) } else { Counted::Paid(Some(call)) });
            }
            Ok(None) => Rejection::new(
                RejectKind::InvalidChallenge,
                "tier_price_changed",
                "this payment is not the price of the payer's next call on this route (its usage tier moved); \
                 nothing was charged: pay the offer quoted now",
            ),
            Err(e) => store_down(&e),
        };
        paid.payment.void_refused(rejection.reason).await;
        let calls = match self.store.calls(&counter, start).await {
            Ok(calls) => calls,
            Err(e) => return Err(self.refuse(paid.ctx, Some(&store_down(&e))).await),
        };
        let requote = PaidRequest { offers: tiers.quote(calls, paid.ctx.accepted), ..*paid.ctx };
        Err(self.refuse(&requote, Some(&rejection)).await)
    }
}

/// Claims a payment in the same write as its channel's reservation (`PaymentMethod::claim_and_hold`).
struct ClaimWithReservation<'a> {
    store: &'a dyn paygate_store::Store,
    new: &'a NewPayment,
    /// The claimed row, once written.
    claimed: std::sync::Mutex<Option<paygate_store::PaymentId>>,
}

#[async_trait::async_trait]
impl ClaimJournal for ClaimWithReservation<'_> {
    async fn claimed_with_channel(&self, expected: i64, next: &Channel) -> Result<bool, ChannelBookError> {
        match self.store.claim_with_channel(self.new, expected, next).await {
            Ok(ClaimWithChannel::Claimed(id)) => {
                *self.claimed.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
                Ok(true)
            }
            Ok(ClaimWithChannel::ChannelChanged) => Ok(false),
            // Nothing written: the usual claim says what the proof's row is, or that the store is down.
            Ok(ClaimWithChannel::Taken) => Err(ChannelBookError("the proof is already claimed".into())),
            Err(e) => Err(ChannelBookError(Box::new(e))),
        }
    }
}

/// Why a claim was refused, by the state the proof's row is in.
fn taken(state: PaymentState) -> Rejection {
    match state {
        PaymentState::Verified | PaymentState::Settling => Rejection::new(
            RejectKind::InFlight,
            "payment_in_flight",
            "this payment is being processed by another request; retry shortly",
        ),
        PaymentState::Voided => Rejection::new(
            RejectKind::Replayed,
            "challenge_used",
            "this challenge was already paid with another payment; request a fresh offer",
        ),
        _ => Rejection::new(RejectKind::Replayed, "payment_replayed", "this payment was already used"),
    }
}

/// The store failed: nothing was charged.
pub(super) fn store_down(err: &paygate_store::StoreError) -> Rejection {
    tracing::error!(error = %Causes(err), "store unavailable");
    Rejection::new(
        RejectKind::StoreUnavailable,
        "store_unavailable",
        "the payment ledger is unavailable; nothing was charged",
    )
}

/// The ledger row of a payment (or a metered call) of `offer` for request `request_id` on `route`: the option's
/// network, asset and recipient and the offer's amount. The caller names how it was paid: proof, challenge,
/// protocol, rail, payer and settlement data.
pub(super) fn ledger_row(offer: &RouteOffer, request_id: &str, route: String) -> NewPayment {
    let option = offer.method.option();
    NewPayment {
        proof_key: String::new(),
        challenge_id: None,
        request_id: request_id.to_owned(),
        route,
        protocol: String::new(),
        rail: String::new(),
        option_name: option.name.clone(),
        network: option.network.to_string(),
        asset: option.asset.address.clone(),
        asset_symbol: option.asset.symbol.clone(),
        decimals: option.asset.decimals,
        amount: offer.amount.0,
        payer: String::new(),
        pay_to: option.pay_to.clone(),
        settlement: serde_json::Value::Null,
    }
}
