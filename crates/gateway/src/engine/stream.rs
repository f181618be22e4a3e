//! Paying a metered stream as it is delivered (MPP's session streaming, over server-sent events): a call paid
//! from a session channel whose 402 quoted one part (`RouteOffer::per_part`) and whose upstream answers
//! `text/event-stream` is proxied event by event. Each event is priced (`crate::meter::StreamTally`) and
//! reserved on the channel before it is sent ([`PaymentMethod::hold_more`]; the next parts too, when the
//! payer's vouchers allow, so that a stream writes to its channel once per many events); when the payer's vouchers do
//! not cover it, the stream pauses and says so once (`event: payment-need-voucher`), then goes on as soon as a
//! voucher reaches the channel (sent to the same URL with no body: `engine/manage.rs`). The stream ends with
//! `event: payment-receipt`, and what was delivered is charged:
//!
//! - all of it, when the upstream's stream ends;
//! - what was sent, when the payer goes away (the upstream is dropped, so it stops too), when the upstream's
//!   stream breaks off, or when no voucher came within the meter's `voucher_wait_secs` (then an
//!   `event: payment-error` says why before the receipt).
//!
//! The stream runs in its own task, which owns what it needs: a client that disconnects drops the response
//! body, and the task still charges what was delivered. Its payment stays `verified` while it runs (marked live
//! every `KEEP_LIVE`); a gateway that stops mid-stream leaves it to the reconciler, which releases it: nothing is
//! charged for that stream.
//!
//! An answer that is not a stream, to a call quoted one part, is priced whole and charged only if the channel
//! covers it; otherwise it is withheld and nothing is charged.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Response, header};
use tokio::sync::mpsc;

use paygate_core::clock::Clock;
use paygate_core::method::{NotHeldMore, PaymentMethod, SettleOutcome, VerifiedPayment};
use paygate_core::money::AtomicAmount;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_proto::mpp;
use paygate_proto::sse::{self, Event, Events};
use paygate_store::{PaymentId, Store};

use super::Gateway;
use super::claim::Paid;
use super::receipt::mpp_receipt;
use crate::body::Body;
use crate::credential::Presented;
use crate::meter::{Meter, is_stream};
use crate::metrics::Metrics;
use crate::payment::{ClaimedPayment, NotAttempted};

/// How often a paused stream looks for the payer's voucher.
const VOUCHER_POLL: Duration = Duration::from_millis(50);

/// How often a running stream tells the ledger it is live: well within the reconciler's `stale_after_secs`, after
/// which a payment still `verified` is taken for abandoned.
const KEEP_LIVE: Duration = Duration::from_secs(30);

/// How many parts beyond the next one a stream reserves at once when the payer's vouchers allow: one write on
/// the channel for that many events. What is reserved and not delivered is given back when the stream ends.
const RESERVE_AHEAD: u128 = 31;

/// The longest event of an upstream's stream that is delivered: a longer one is dropped, uncharged.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Why a stream ended.
enum End {
    /// The upstream's stream ended.
    Complete,
    /// The payer went away.
    Disconnected,
    /// The upstream's stream broke off.
    UpstreamFailed,
    /// The payer sent no voucher in time.
    NoVoucher,
    /// The channel cannot pay on (closed, gone, the store failed).
    Stopped(Rejection),
}

/// Everything a stream's task owns.
struct Delivery {
    store: Arc<dyn Store>,
    metrics: Metrics,
    clock: Arc<dyn Clock>,
    method: Arc<dyn PaymentMethod>,
    id: PaymentId,
    verified: VerifiedPayment,
    route: String,
    meter: Meter,
    /// The paid offer's position among the route's offers, and the most the stream may cost in it.
    index: usize,
    max: AtomicAmount,
    /// The upstream's status and headers.
    status: u16,
    headers: HeaderMap,
    /// The MPP method and challenge the receipts name.
    mpp_method: String,
    challenge_id: String,
}

impl Gateway {
    /// The answer to a call quoted one part: a stream delivered and charged part by part, or an answer priced
    /// whole.
    pub(super) async fn pay_as_delivered(
        &self,
        paid: &Paid<'_>,
        meter: &Meter,
        response: Response<Body>,
    ) -> Result<Response<Body>, Response<Body>> {
        let index = paid.ctx.offers.iter().position(|o| Arc::ptr_eq(&o.method, &paid.offer.method));
        let max = index.and_then(|i| paid.ctx.route.pricing.as_ref()?.metered_max(i));
        // Only a metered route quotes one part, and only MPP sessions pay it: anything else is priced whole.
        let (Some(index), Some(max), Presented::Mpp(credential), true) =
            (index, max, paid.presented, is_stream(response.headers()))
        else {
            let max = max.unwrap_or(paid.payment.verified.amount);
            return self.deliver_whole(paid, meter, response, max).await;
        };
        let (mut parts, body) = response.into_parts();
        let delivery = Delivery {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            clock: self.clock.clone(),
            method: paid.offer.method.clone(),
            id: paid.payment.id,
            verified: paid.payment.verified.clone(),
            route: paid.ctx.route.name.clone(),
            meter: meter.clone(),
            index,
            max,
            status: parts.status.as_u16(),
            headers: parts.headers.clone(),
            mpp_method: paid.offer.mpp.map_or_else(|| credential.challenge.method.clone(), |(m, _)| m.to_owned()),
            challenge_id: credential.challenge.id.clone(),
        };
        // The receipt goes out with the first bytes too, naming the channel; the closing event says what was spent.
        let receipt = delivery.receipt(None);
        if let Ok(value) = HeaderValue::from_str(&receipt.to_header()) {
            parts.headers.insert(mpp::PAYMENT_RECEIPT, value);
        }
        parts.headers.remove(header::CONTENT_LENGTH);
        // One event waits between the task and the payer: each is charged only once the one before was taken.
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        tokio::spawn(delivery.run(body, tx));
        let events = futures_util::stream::unfold(rx, |mut rx| async {
            rx.recv().await.map(|event| (Ok::<_, Infallible>(event), rx))
        });
        Ok(Response::from_parts(parts, Body::from_stream(events)))
    }

    /// An answer that is not a stream, to a call quoted one part: priced whole, charged when the channel covers
    /// it, withheld (nothing charged) when it does not.
    async fn deliver_whole(
        &self,
        paid: &Paid<'_>,
        meter: &Meter,
        response: Response<Body>,
        max: AtomicAmount,
    ) -> Result<Response<Body>, Response<Body>> {
        let status = response.status().as_u16();
        let (response, cost) = self.measure(paid, meter, response, max).await?;
        let held = paid.payment.verified.amount;
        if cost > held {
            let more = AtomicAmount(cost.0 - held.0);
            if let Err(not_held) = paid.payment.method.hold_more(&paid.payment.verified, more).await {
                let rejection = match not_held {
                    NotHeldMore::Voucher(needed) => Rejection::new(
                        RejectKind::PaymentInsufficient,
                        "session_insufficient_balance",
                        format!(
                            "this answer costs {cost} and the channel's vouchers allow a cumulative {}: sign for {} \
                             (or ask for a stream, paid as it is delivered); nothing was charged",
                            needed.accepted_cumulative, needed.required_cumulative
                        ),
                    ),
                    NotHeldMore::Stopped(rejection) => rejection,
                };
                paid.payment.void_refused(rejection.reason).await;
                return Err(self.refuse(paid.ctx, Some(&rejection)).await);
            }
        }
        let outcome = paid.payment.settle_delivered(status, cost).await;
        let outcome = self.attempted(paid, outcome).await?;
        if let Some(refusal) = self.not_settled(paid, &outcome).await {
            return Err(refusal);
        }
        Ok(self.deliver(paid, response, &outcome))
    }
}

impl Delivery {
    /// The stream's task: proxies `upstream` event by event into `tx`, charging each before it goes, then settles
    /// what was delivered and says so.
    async fn run(self, upstream: Body, tx: mpsc::Sender<Bytes>) {
        let payment = ClaimedPayment::new(
            &*self.store,
            &self.metrics,
            self.id,
            &*self.method,
            self.verified.clone(),
            &self.route,
        );
        let mut tally = self.meter.tally(self.index, &self.headers, self.max);
        let mut held = self.verified.amount.0;
        let part = self.meter.part_price(self.index).map_or(0, |p| p.0);
        let mut delivered = 0u128;
        let mut events = Events::new(MAX_EVENT_BYTES);
        let mut upstream = upstream.into_data_stream();
        let mut touched = Instant::now();
        let end = 'stream: loop {
            keep_live(&payment, &mut touched).await;
            let chunk = match upstream.next().await {
                None => break End::Complete,
                Some(Err(_)) => break End::UpstreamFailed,
                Some(Ok(chunk)) => chunk,
            };
            for event in events.push(&chunk) {
                let due = delivered.saturating_add(tally.cost(&event));
                if due > held {
                    let ahead = part.saturating_mul(RESERVE_AHEAD).min(self.max.0.saturating_sub(due));
                    match self.hold_more(due - held, ahead, &tx, (&payment, &mut touched)).await {
                        Ok(reserved) => held += reserved,
                        Err(end) => break 'stream end,
                    }
                }
                let Ok(permit) = tx.reserve().await else { break 'stream End::Disconnected };
                delivered = due;
                permit.send(Bytes::from(event));
            }
        };
        // Dropping the upstream's body closes its connection: a payer gone stops the upstream too.
        drop(upstream);
        let settled = payment.settle_delivered(self.status, AtomicAmount(delivered)).await;
        if matches!(end, End::Disconnected) {
            return;
        }
        let mut closing = String::new();
        if let Some(problem) = self.problem(&end) {
            closing.push_str(&Event::format(sse::ERROR, &problem));
        }
        match settled {
            Ok(SettleOutcome::Settled { reference } | SettleOutcome::Submitted { reference }) => {
                let receipt = serde_json::to_string(&self.receipt(Some(&reference))).unwrap_or_default();
                closing.push_str(&Event::format(sse::RECEIPT, &receipt));
            }
            Ok(_) | Err(NotAttempted::Released | NotAttempted::Store(_)) => {
                let problem = Rejection::new(
                    RejectKind::SettlementFailed,
                    "settlement_failed",
                    "what this stream delivered could not be charged; nothing was",
                );
                closing.push_str(&Event::format(sse::ERROR, &problem.to_problem().to_json()));
            }
        }
        let _ = tx.send(Bytes::from(closing)).await;
    }

    /// Reserves `more` for the next event, and `ahead` for the events after it when the vouchers allow (one write
    /// for many events), pausing (and asking the payer once) until a voucher covers `more`. What was reserved.
    async fn hold_more(
        &self,
        more: u128,
        mut ahead: u128,
        tx: &mpsc::Sender<Bytes>,
        (payment, touched): (&ClaimedPayment<'_>, &mut Instant),
    ) -> Result<u128, End> {
        let started = Instant::now();
        let mut asked = false;
        loop {
            keep_live(payment, touched).await;
            if ahead > 0 {
                if self.method.hold_more(&self.verified, AtomicAmount(more + ahead)).await.is_ok() {
                    return Ok(more + ahead);
                }
                ahead = 0;
            }
            match self.method.hold_more(&self.verified, AtomicAmount(more)).await {
                Ok(()) => return Ok(more),
                Err(NotHeldMore::Stopped(rejection)) => return Err(End::Stopped(rejection)),
                Err(NotHeldMore::Voucher(needed)) => {
                    if !asked {
                        let ask = Event::format(sse::NEED_VOUCHER, &needed.to_json().to_string());
                        tx.send(Bytes::from(ask)).await.map_err(|_| End::Disconnected)?;
                        asked = true;
                    }
                }
            }
            if tx.is_closed() {
                return Err(End::Disconnected);
            }
            if started.elapsed() >= self.meter.voucher_wait {
                return Err(End::NoVoucher);
            }
            // Woken at once by a voucher this instance takes; another instance's is seen at the next look.
            let _ = tokio::time::timeout(VOUCHER_POLL, self.method.voucher_arrival(&self.verified)).await;
        }
    }

    /// The receipt of this call: with the settlement's `reference` at the end, or at the start (the channel).
    fn receipt(&self, reference: Option<&str>) -> mpp::Receipt {
        let now = self.clock.now_unix();
        mpp_receipt(&self.mpp_method, &self.challenge_id, &*self.method, &self.verified, reference, now)
    }

    /// The `payment-error` a stream that did not end by itself closes with (RFC 9457 problem JSON).
    fn problem(&self, end: &End) -> Option<String> {
        let rejection = match end {
            End::Complete | End::Disconnected => return None,
            End::UpstreamFailed => Rejection::new(
                RejectKind::UpstreamUnavailable,
                "upstream_stream_failed",
                "the API's stream broke off; what was delivered is charged, nothing more",
            ),
            End::NoVoucher => Rejection::new(
                RejectKind::PaymentInsufficient,
                "voucher_timeout",
                format!(
                    "no voucher came within {} s; what was delivered is charged, nothing more",
                    self.meter.voucher_wait.as_secs()
                ),
            ),
            End::Stopped(rejection) => rejection.clone(),
        };
        Some(rejection.to_problem().to_json())
    }
}

/// Tells the ledger the stream's payment is live, every `KEEP_LIVE`.
async fn keep_live(payment: &ClaimedPayment<'_>, touched: &mut Instant) {
    if touched.elapsed() >= KEEP_LIVE {
        payment.still_running().await;
        *touched = Instant::now();
    }
}
