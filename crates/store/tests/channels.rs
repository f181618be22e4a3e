//! The channel book every store backend must keep: a channel is opened once, and its row changes only by
//! compare-and-swap, so that racing instances never accept more than the deposit. Each case runs on SQLite and
//! on PostgreSQL.

use std::sync::Arc;

use paygate_core::channel::{
    Channel, ChannelBook, ChannelBookError, ChannelRefusal, ChannelWrite, update_channel, update_channel_writing,
};
use paygate_core::channel_cache::CachedBook;
use paygate_core::channel_journal::{ChannelTransaction, TransactionKind, TransactionState};
use paygate_store::{Claim, ClaimWithChannel, NewPayment, PaymentQuery, PaymentState, Store, StoreError, Transition};

mod common;

use common::{Database, channel, payment};

on_both_backends!(
    racing_instances_never_accept_more_than_the_deposit,
    racing_instances_that_remember_channels_never_accept_more_than_the_deposit,
    a_channel_opens_once_and_keeps_exact_amounts,
    failed_calls_are_released_and_claims_leave_the_unclaimed_list,
    a_journaled_refund_lowers_the_deposit_in_the_same_write_and_a_failed_one_gives_it_back_once,
    a_charge_and_its_payments_move_to_settled_are_written_together_or_not_at_all,
    a_claim_and_its_calls_reservation_are_written_together_or_not_at_all,
    racing_claims_with_reservations_never_accept_more_than_the_deposit,
);

const PRICE: u128 = 10_000;

/// Two instances, 200 distinct vouchers (each within the deposit, signed ahead as a client with calls in flight
/// does) racing on a channel whose deposit covers 100 calls: exactly 100 are reserved and charged, and nothing
/// stays reserved.
async fn racing_instances_never_accept_more_than_the_deposit(db: Database) {
    let stores: [Arc<dyn Store>; 2] = [db.open().await, db.open().await];
    race(stores.map(|s| s as Arc<dyn ChannelBook>)).await;
}

/// The same race through the gateway's `CachedBook`, which tries each write from the channel as its instance last
/// saw it: the other instance's writes make those guesses stale, and the compare-and-swap still lets exactly 100
/// through.
async fn racing_instances_that_remember_channels_never_accept_more_than_the_deposit(db: Database) {
    let stores: [Arc<dyn Store>; 2] = [db.open().await, db.open().await];
    race(stores.map(|s| Arc::new(CachedBook::new(s)) as Arc<dyn ChannelBook>)).await;
}

async fn race(stores: [Arc<dyn ChannelBook>; 2]) {
    // 100 calls and a little: a 101st does not fit, and every voucher below stays within the deposit.
    let deposit = 100 * PRICE + 200;
    assert!(stores[0].open_channel(&channel("0xrace", deposit)).await.unwrap());
    let tasks: Vec<_> = (1..=200u128)
        .map(|k| {
            let store = stores[(k % 2) as usize].clone();
            tokio::spawn(async move {
                let signature = format!("0xsig{k}");
                let voucher = deposit - k;
                let reserved = update_channel(store.as_ref(), "0xrace", |c| c.reserve(PRICE, voucher, &signature))
                    .await
                    .unwrap()
                    .unwrap();
                if reserved.is_err() {
                    return false;
                }
                update_channel(store.as_ref(), "0xrace", |c| Ok::<_, ChannelRefusal>(c.commit(voucher, "0xsig")))
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                true
            })
        })
        .collect();
    let mut served = 0;
    for task in tasks {
        served += usize::from(task.await.unwrap());
    }
    assert_eq!(served, 100);
    let after = stores[1].channel("0xrace").await.unwrap().unwrap();
    assert_eq!((after.charged, after.reserved(), after.deposit), (100 * PRICE, 0, deposit));
    assert!(after.voucher_max >= 100 * PRICE, "the highest voucher covers what was charged");
}

async fn a_channel_opens_once_and_keeps_exact_amounts(db: Database) {
    let store = db.open().await;
    let big = channel("0xbig", u128::MAX);
    assert!(store.open_channel(&big).await.unwrap());
    let mut again = channel("0xbig", 1);
    again.payer = "0xsomeoneelse".into();
    assert!(!store.open_channel(&again).await.unwrap(), "an open channel is not opened twice");
    let kept = store.channel("0xbig").await.unwrap().unwrap();
    assert!(kept.updated_at_ms > 0, "stamped by the store");
    assert_eq!(kept, Channel { updated_at_ms: kept.updated_at_ms, ..big });
    assert_eq!(store.channel("0xunknown").await.unwrap(), None);
    let unknown =
        update_channel(store.as_ref(), "0xunknown", |c| Ok::<_, ChannelRefusal>(c.commit(1, "0xsig"))).await.unwrap();
    assert!(unknown.is_none());
}

async fn failed_calls_are_released_and_claims_leave_the_unclaimed_list(db: Database) {
    let store = db.open().await;
    store.open_channel(&channel("0xc1", 5 * PRICE)).await.unwrap();
    let held = update_channel(store.as_ref(), "0xc1", |c| c.reserve(PRICE, PRICE, "0xs1")).await.unwrap().unwrap();
    assert_eq!(held.unwrap().reserved(), PRICE);
    let released = update_channel(store.as_ref(), "0xc1", |c| Ok::<_, ChannelRefusal>(c.release(PRICE)));
    let released = released.await.unwrap().unwrap().unwrap();
    assert!(released.in_flight.is_empty());
    let released = update_channel(store.as_ref(), "0xc1", |c| Ok::<_, ChannelRefusal>(c.release(PRICE)));
    let released = released.await.unwrap().unwrap().unwrap();
    assert_eq!((released.charged, released.reserved()), (0, 0));
    assert!(store.unclaimed_channels(10).await.unwrap().is_empty(), "nothing charged, nothing to claim");

    let held = update_channel(store.as_ref(), "0xc1", |c| c.reserve(PRICE, 2 * PRICE, "0xs2")).await.unwrap();
    assert!(held.unwrap().unwrap().is_in_flight(2 * PRICE), "kept in the store");
    update_channel(store.as_ref(), "0xc1", |c| Ok::<_, ChannelRefusal>(c.commit(2 * PRICE, "0xsig"))).await.unwrap();
    let unclaimed = store.unclaimed_channels(10).await.unwrap();
    assert_eq!(unclaimed.iter().map(|c| (c.id.as_str(), c.unclaimed())).collect::<Vec<_>>(), [("0xc1", PRICE)]);

    update_channel(store.as_ref(), "0xc1", |c| Ok::<_, ChannelRefusal>(c.claimed_on_chain(PRICE))).await.unwrap();
    assert!(store.unclaimed_channels(10).await.unwrap().is_empty(), "claimed on chain");
    let over = update_channel(store.as_ref(), "0xc1", |c| c.reserve(5 * PRICE, 9 * PRICE, "0xs9")).await.unwrap();
    assert_eq!(over.unwrap(), Err(ChannelRefusal::OverDeposit { needed: 9 * PRICE }), "a voucher above the deposit");
    let over = update_channel(store.as_ref(), "0xc1", |c| c.reserve(5 * PRICE, 6 * PRICE, "0xs6")).await.unwrap();
    assert_eq!(
        over.unwrap(),
        Err(ChannelRefusal::OverDeposit { needed: 6 * PRICE }),
        "a call the deposit cannot cover"
    );
}

/// The journal's writes go with their channel's: a refund journaled against a stale row writes neither the entry
/// nor the lowered deposit; a failed refund's amount comes back in the write that decides it, and only once.
async fn a_journaled_refund_lowers_the_deposit_in_the_same_write_and_a_failed_one_gives_it_back_once(db: Database) {
    let store = db.open().await;
    store.open_channel(&channel("0xr1", 5 * PRICE)).await.unwrap();
    let open = store.channel("0xr1").await.unwrap().unwrap();
    let refund = |hash: &str| ChannelTransaction {
        hash: hash.into(),
        option: "usdc-channel".into(),
        kind: TransactionKind::Refund,
        channel: Some("0xr1".into()),
        amount: 2 * PRICE,
        raw: "0x02f8".into(),
        state: TransactionState::Sent,
        created_at_ms: 1,
    };
    let lowered = open.refunding(2 * PRICE).unwrap();
    assert!(store.journal_transaction(&refund("0xaa"), Some((open.version, &lowered))).await.unwrap());
    // The same row version again: the swap loses, and the second entry is not written either.
    assert!(!store.journal_transaction(&refund("0xbb"), Some((open.version, &lowered))).await.unwrap());
    let journal = store.undecided_transactions("usdc-channel").await.unwrap();
    assert_eq!(journal, [refund("0xaa")]);
    assert!(store.undecided_transactions("another-option").await.unwrap().is_empty());
    let now = store.channel("0xr1").await.unwrap().unwrap();
    assert_eq!((now.deposit, now.version), (3 * PRICE, open.version + 1));

    let given_back = now.refund_failed(2 * PRICE);
    assert!(
        store.decide_transaction("0xaa", TransactionState::Failed, Some((now.version, &given_back))).await.unwrap()
    );
    let after = store.channel("0xr1").await.unwrap().unwrap();
    assert_eq!(after.deposit, 5 * PRICE);
    // Decided once: deciding again (another instance's pass) writes nothing, the deposit included.
    let twice = after.refund_failed(2 * PRICE);
    assert!(!store.decide_transaction("0xaa", TransactionState::Failed, Some((after.version, &twice))).await.unwrap());
    assert_eq!(store.channel("0xr1").await.unwrap().unwrap().deposit, 5 * PRICE);
    assert!(store.undecided_transactions("usdc-channel").await.unwrap().is_empty());

    // A claim journaled without a channel, then mined.
    let claim = ChannelTransaction { kind: TransactionKind::Claim, channel: None, ..refund("0xcc") };
    assert!(store.journal_transaction(&claim, None).await.unwrap());
    assert_eq!(store.undecided_transactions("usdc-channel").await.unwrap(), [claim]);
    assert!(store.decide_transaction("0xcc", TransactionState::Mined, None).await.unwrap());
    assert!(store.undecided_transactions("usdc-channel").await.unwrap().is_empty());
}

/// A call paid from a channel is charged and its payment moved to `settled` in one write: a charge that lost its
/// compare-and-swap moves nothing, a payment no longer `verified` (the reconciler took it for abandoned) charges
/// nothing, and a charge that goes through does both, with one event.
async fn a_charge_and_its_payments_move_to_settled_are_written_together_or_not_at_all(db: Database) {
    let store = db.open().await;
    assert!(store.open_channel(&channel("0xc1", 10 * PRICE)).await.unwrap());
    let Claim::Claimed(id) = store.claim(&payment("voucher-1", None)).await.unwrap() else { panic!("a new proof") };
    let charged = Channel { charged: PRICE, ..channel("0xc1", 10 * PRICE) };
    let settled = || Transition { reason: "settled", tx_hash: Some("0xc1/10000"), ..Default::default() };
    let verified = [PaymentState::Verified];

    // Lost: the channel is at another version. Nothing moves.
    let lost = store.transition_with_channel(id, &verified, PaymentState::Settled, settled(), 7, &charged).await;
    assert!(!lost.unwrap());
    assert_eq!(store.payment(id).await.unwrap().unwrap().state, PaymentState::Verified);

    // The payment is no longer verified: the charge is not kept either.
    let voided = Transition { reason: "abandoned", ..Default::default() };
    store.transition(id, &verified, PaymentState::Voided, voided).await.unwrap();
    let refused = store.transition_with_channel(id, &verified, PaymentState::Settled, settled(), 0, &charged).await;
    assert!(matches!(refused, Err(StoreError::WrongState { actual: PaymentState::Voided, .. })), "{refused:?}");
    let kept = store.channel("0xc1").await.unwrap().unwrap();
    assert_eq!((kept.version, kept.charged), (0, 0));

    // Both go through.
    let Claim::Claimed(id) = store.claim(&payment("voucher-2", None)).await.unwrap() else { panic!("a new proof") };
    assert!(store.transition_with_channel(id, &verified, PaymentState::Settled, settled(), 0, &charged).await.unwrap());
    let row = store.payment(id).await.unwrap().unwrap();
    assert_eq!((row.state, row.tx_hash.as_deref()), (PaymentState::Settled, Some("0xc1/10000")));
    assert_eq!(store.events(id).await.unwrap().len(), 2, "claimed, then settled");
    let kept = store.channel("0xc1").await.unwrap().unwrap();
    assert_eq!((kept.version, kept.charged), (1, PRICE));
}

/// A call paid from a channel may be claimed in the same write as its reservation: a reservation that lost its
/// compare-and-swap claims nothing, a proof already claimed reserves nothing, and one that goes through does
/// both.
async fn a_claim_and_its_calls_reservation_are_written_together_or_not_at_all(db: Database) {
    let store = db.open().await;
    assert!(store.open_channel(&channel("0xc2", 10 * PRICE)).await.unwrap());
    let reserved = channel("0xc2", 10 * PRICE).reserve(PRICE, 10 * PRICE, "0xsig").unwrap();

    // Lost: the channel is at another version. No row.
    let lost = store.claim_with_channel(&payment("voucher-1", None), 3, &reserved).await.unwrap();
    assert_eq!(lost, ClaimWithChannel::ChannelChanged);
    assert!(store.payments(&PaymentQuery::default()).await.unwrap().is_empty());

    // Both go through.
    let ClaimWithChannel::Claimed(id) =
        store.claim_with_channel(&payment("voucher-1", None), 0, &reserved).await.unwrap()
    else {
        panic!("claimed and reserved")
    };
    assert_eq!(store.payment(id).await.unwrap().unwrap().state, PaymentState::Verified);
    let kept = store.channel("0xc2").await.unwrap().unwrap();
    assert_eq!((kept.version, kept.reserved()), (1, PRICE));

    // The same proof again: taken, and the channel is not reserved twice.
    let again = Channel { version: 1, ..kept.clone() }.reserve(PRICE, 10 * PRICE - 1, "0xsig2").unwrap();
    let taken = store.claim_with_channel(&payment("voucher-1", None), 1, &again).await.unwrap();
    assert_eq!(taken, ClaimWithChannel::Taken);
    assert!(matches!(store.claim(&payment("voucher-1", None)).await.unwrap(), Claim::Taken { .. }));
    let kept = store.channel("0xc2").await.unwrap().unwrap();
    assert_eq!((kept.version, kept.reserved()), (1, PRICE));
}

/// A call's claim written with its channel's reservation, as the gateway writes it, and the row it claimed.
struct ClaimWith<'a> {
    store: &'a dyn Store,
    payment: &'a NewPayment,
    claimed: std::sync::Mutex<Option<i64>>,
}

#[async_trait::async_trait]
impl ChannelWrite for ClaimWith<'_> {
    async fn write(&self, expected: i64, next: &Channel) -> Result<bool, ChannelBookError> {
        match self.store.claim_with_channel(self.payment, expected, next).await {
            Ok(ClaimWithChannel::Claimed(id)) => {
                *self.claimed.lock().unwrap() = Some(id);
                Ok(true)
            }
            Ok(ClaimWithChannel::ChannelChanged) => Ok(false),
            Ok(ClaimWithChannel::Taken) => Err(ChannelBookError("taken".into())),
            Err(e) => Err(ChannelBookError(Box::new(e))),
        }
    }
}

/// Two instances that remember channels, 200 calls each claimed with its reservation in one write, racing on a
/// channel whose deposit covers 100, and each proof sent twice: exactly 100 claims and reservations are kept,
/// together (on PostgreSQL one statement each, whose lost swaps must claim nothing), a proof is claimed once
/// however often it is sent, and no reservation is left without its claim.
async fn racing_claims_with_reservations_never_accept_more_than_the_deposit(db: Database) {
    let stores: [Arc<dyn Store>; 2] = [db.open().await, db.open().await];
    let books = stores.clone().map(|s| Arc::new(CachedBook::new(s)) as Arc<dyn ChannelBook>);
    let deposit = 100 * PRICE + 200;
    assert!(books[0].open_channel(&channel("0xclaims", deposit)).await.unwrap());
    let tasks: Vec<_> = (1..=200u128)
        .map(|k| {
            let (store, book) = (stores[(k % 2) as usize].clone(), books[(k % 2) as usize].clone());
            tokio::spawn(async move {
                let (voucher, signature) = (deposit - k, format!("0xsig{k}"));
                let paid = payment(&format!("voucher-{k}"), None);
                let mut claimed = 0;
                for _ in 0..2 {
                    let write = ClaimWith { store: store.as_ref(), payment: &paid, claimed: Default::default() };
                    let reserve = |c: &Channel| c.reserve(PRICE, voucher, &signature);
                    match update_channel_writing(book.as_ref(), "0xclaims", reserve, &write).await {
                        // Kept, or nothing to write (the voucher is in flight already: a replay).
                        Ok(Some(Ok(_))) => claimed += usize::from(write.claimed.into_inner().unwrap().is_some()),
                        Ok(Some(Err(_refused))) => {}
                        Err(ChannelBookError(e)) => assert_eq!(e.to_string(), "taken", "call {k}"),
                        Ok(None) => panic!("the channel is there"),
                    }
                }
                claimed
            })
        })
        .collect();
    let mut claimed = 0;
    for task in tasks {
        let once = task.await.unwrap();
        assert!(once <= 1, "a proof is claimed once");
        claimed += once;
    }
    assert_eq!(claimed, 100);
    let rows = stores[0].payments(&PaymentQuery::default()).await.unwrap();
    assert_eq!(rows.len(), 100, "one row per kept claim");
    let after = stores[1].channel("0xclaims").await.unwrap().unwrap();
    assert_eq!((after.reserved(), after.charged, after.version), (100 * PRICE, 0, 100));
}
