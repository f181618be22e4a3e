//! The ledger contract every store backend must keep: a proof and a challenge are claimed at most once, even
//! under concurrency and across reopen; voided proofs can be claimed again; every transition is recorded. Each
//! case runs on SQLite (`<case>::sqlite`) and on PostgreSQL (`<case>::postgres`: a throwaway cluster, or
//! `DATABASE_URL`).

use std::time::{Duration, Instant};

use paygate_store::{CallRange, Claim, Identified, KeptAnswer, NewPayment, PaymentQuery, PaymentState, Transition};
use serde_json::json;

mod common;

use common::{Database, channel, payment};

on_both_backends!(
    a_proof_is_claimed_once_and_amounts_are_exact,
    a_challenge_is_single_use_among_live_payments,
    a_voided_proof_can_be_claimed_again,
    transitions_check_the_current_state,
    concurrent_claims_have_one_winner,
    claims_survive_reopening,
    listing_filters_and_pages,
    references_are_journaled_and_owed_responses_taken_once,
    calls_are_counted_once_across_tier_edges_by_racing_instances,
    payment_identifiers_keep_one_answer_per_payload_across_instances,
    failed_rows_are_rechecked_until_told_otherwise,
    rates_are_shared_and_refusals_say_when,
);

/// A proof is claimed once; the second claim sees its state; amounts survive exactly (u128::MAX here).
async fn a_proof_is_claimed_once_and_amounts_are_exact(db: Database) {
    let store = db.open().await;
    let Claim::Claimed(id) = store.claim(&payment("p1", Some("c1"))).await.unwrap() else { panic!("first claim") };
    assert_eq!(
        store.claim(&payment("p1", Some("c2"))).await.unwrap(),
        Claim::Taken { id, state: PaymentState::Verified }
    );
    let row = store.payment(id).await.unwrap().unwrap();
    assert_eq!(row.amount, u128::MAX.to_string());
    assert_eq!(row.settlement, json!({"authorization": {"nonce": "0x01"}}));
    // Each row's first event, written with it: `claimed` for a claim, `metered` for an API-key customer's call.
    let first = |events: Vec<paygate_store::PaymentEvent>| {
        events.into_iter().map(|e| (e.from_state, e.to_state, e.reason)).collect::<Vec<_>>()
    };
    assert_eq!(first(store.events(id).await.unwrap()), [(None, PaymentState::Verified, "claimed".to_owned())]);
    let metered = store.record_usage(&payment("usage-1", None)).await.unwrap();
    assert_eq!(first(store.events(metered).await.unwrap()), [(None, PaymentState::Metered, "metered".to_owned())]);
}

/// An MPP challenge answered by one live payment cannot be answered by another proof; an x402 offer can.
async fn a_challenge_is_single_use_among_live_payments(db: Database) {
    let store = db.open().await;
    let mpp = |proof: &str, challenge: Option<&str>| NewPayment { protocol: "mpp".into(), ..payment(proof, challenge) };
    let Claim::Claimed(id) = store.claim(&mpp("p1", Some("c1"))).await.unwrap() else { panic!() };
    assert!(matches!(store.claim(&mpp("p2", Some("c1"))).await.unwrap(), Claim::Taken { .. }));
    // Once voided (the upstream failed), the challenge may be paid with another proof, and the voided proof
    // may be claimed again only while its challenge is free.
    store
        .transition(
            id,
            &[PaymentState::Verified],
            PaymentState::Voided,
            Transition { reason: "upstream 500", ..Default::default() },
        )
        .await
        .unwrap();
    let Claim::Claimed(second) = store.claim(&mpp("p2", Some("c1"))).await.unwrap() else { panic!("challenge free") };
    assert_ne!(second, id);
    assert!(matches!(
        store.claim(&mpp("p1", Some("c1"))).await.unwrap(),
        Claim::Taken { state: PaymentState::Voided, .. }
    ));

    // An x402 offer may be paid several times while it is valid: each payment is still claimed once by its proof.
    let x402 = |proof: &str| NewPayment { protocol: "x402-v2".into(), ..payment(proof, Some("c2")) };
    assert!(matches!(store.claim(&x402("p3")).await.unwrap(), Claim::Claimed(_)));
    assert!(matches!(store.claim(&x402("p4")).await.unwrap(), Claim::Claimed(_)));
    assert!(matches!(store.claim(&x402("p4")).await.unwrap(), Claim::Taken { .. }));
}

/// A voided proof is claimed again by the same credential, keeping one row and the full history.
async fn a_voided_proof_can_be_claimed_again(db: Database) {
    let store = db.open().await;
    let Claim::Claimed(id) = store.claim(&payment("p1", Some("c1"))).await.unwrap() else { panic!() };
    store
        .transition(
            id,
            &[PaymentState::Verified],
            PaymentState::Voided,
            Transition { reason: "upstream down", upstream_status: Some(502), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(store.claim(&payment("p1", Some("c1"))).await.unwrap(), Claim::Claimed(id));
    store
        .transition(
            id,
            &[PaymentState::Verified],
            PaymentState::Settling,
            Transition { reason: "upstream 200", ..Default::default() },
        )
        .await
        .unwrap();
    store
        .transition(
            id,
            &[PaymentState::Settling],
            PaymentState::Settled,
            Transition { reason: "mined", tx_hash: Some("0xabc"), ..Default::default() },
        )
        .await
        .unwrap();
    let row = store.payment(id).await.unwrap().unwrap();
    assert_eq!(row.state, PaymentState::Settled);
    assert_eq!(row.tx_hash.as_deref(), Some("0xabc"));
    assert_eq!(row.upstream_status, None, "a reclaim clears the failed attempt's status");
    let history: Vec<_> = store.events(id).await.unwrap().into_iter().map(|e| (e.from_state, e.to_state)).collect();
    use PaymentState::*;
    assert_eq!(
        history,
        vec![
            (None, Verified),
            (Some(Verified), Voided),
            (Some(Voided), Verified),
            (Some(Verified), Settling),
            (Some(Settling), Settled)
        ]
    );
    // The event of a transition is written by its one statement (a trigger), with the transition's reason.
    let last = store.events(id).await.unwrap().pop().unwrap();
    assert_eq!(last.reason, "mined");
    assert!(matches!(store.claim(&payment("p1", Some("c1"))).await.unwrap(), Claim::Taken { state: Settled, .. }));
}

/// Transitions from the wrong state are refused and change nothing.
async fn transitions_check_the_current_state(db: Database) {
    let store = db.open().await;
    let Claim::Claimed(id) = store.claim(&payment("p1", None)).await.unwrap() else { panic!() };
    let err = store
        .transition(
            id,
            &[PaymentState::Settling],
            PaymentState::Settled,
            Transition { reason: "x", ..Default::default() },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("verified"), "{err}");
    assert_eq!(store.payment(id).await.unwrap().unwrap().state, PaymentState::Verified);
}

/// Forty concurrent claims of one proof (through separate connections on PostgreSQL): exactly one wins.
async fn concurrent_claims_have_one_winner(db: Database) {
    let store = db.open().await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.claim(&payment("p-race", Some(&format!("c{}", i % 3)))).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), Claim::Claimed(_)) {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(store.payments(&PaymentQuery::default()).await.unwrap().len(), 1);
}

/// Claims are durable: a reopened database still refuses the proof.
async fn claims_survive_reopening(db: Database) {
    {
        let store = db.open().await;
        assert!(matches!(store.claim(&payment("p1", Some("c1"))).await.unwrap(), Claim::Claimed(_)));
    }
    let store = db.open().await;
    assert!(matches!(store.claim(&payment("p1", Some("c9"))).await.unwrap(), Claim::Taken { .. }));
}

/// Listing filters by state and payer and pages newest first.
async fn listing_filters_and_pages(db: Database) {
    let store = db.open().await;
    for i in 0..5 {
        store.claim(&payment(&format!("p{i}"), None)).await.unwrap();
    }
    let page = store.payments(&PaymentQuery { limit: Some(2), offset: Some(1), ..Default::default() }).await.unwrap();
    assert_eq!(page.iter().map(|p| p.proof_key.as_str()).collect::<Vec<_>>(), ["p3", "p2"]);
    let by_payer =
        PaymentQuery { payer: Some("0x70997970c51812dc3a010c7d01b50e0d17dc79c8".into()), ..Default::default() };
    assert_eq!(store.payments(&by_payer).await.unwrap().len(), 5);
    let settled = PaymentQuery { state: Some(PaymentState::Settled), ..Default::default() };
    assert!(store.payments(&settled).await.unwrap().is_empty());
}

/// A store URL paygate cannot use is refused by name; a server that cannot be reached is `Unavailable` (the
/// gateway then answers 503 and charges nothing), not a hang: the connection attempt fails at once here.
#[tokio::test]
async fn bad_and_unreachable_store_urls_are_told_apart() {
    use paygate_store::StoreError;
    let err = paygate_store::open("mysql://root@localhost/ledger").await.unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err}");
    let nowhere = tempfile::tempdir().unwrap();
    let url = format!("postgres://postgres@localhost/ledger?host={}", nowhere.path().display());
    let err = paygate_store::open(&url).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
}

/// A settlement's transaction is journaled only on a `settling` row (and forgotten when the node refused it);
/// an owed response is taken by exactly one of many racing resends; stale rows are found by their age.
async fn references_are_journaled_and_owed_responses_taken_once(db: Database) {
    let store = db.open().await;
    let Claim::Claimed(id) = store.claim(&payment("p1", Some("c1"))).await.unwrap() else { panic!("claim") };
    let t = |reason| Transition { reason, ..Default::default() };
    assert!(store.record_reference(id, Some("0xabc")).await.is_err(), "verified rows journal nothing");
    let stale = PaymentQuery { updated_before_ms: Some(paygate_store::now_ms() + 1), ..Default::default() };
    assert_eq!(store.payments(&stale).await.unwrap().len(), 1);
    let fresh = PaymentQuery { updated_before_ms: Some(paygate_store::now_ms() - 60_000), ..Default::default() };
    assert!(store.payments(&fresh).await.unwrap().is_empty());

    store.transition(id, &[PaymentState::Verified], PaymentState::Settling, t("settling")).await.unwrap();
    store.record_reference(id, Some("0xabc")).await.unwrap();
    assert_eq!(store.payment(id).await.unwrap().unwrap().tx_hash.as_deref(), Some("0xabc"));
    store.record_reference(id, None).await.unwrap();
    assert_eq!(store.payment(id).await.unwrap().unwrap().tx_hash, None);
    store.record_reference(id, Some("0xdef")).await.unwrap();

    assert!(store.take_owed_response("p1", None).await.unwrap().is_none(), "nothing is owed while settling");
    let settled = Transition { reason: "reconciled", response_owed: Some(true), ..Default::default() };
    store.transition(id, &[PaymentState::Settling], PaymentState::Settled, settled).await.unwrap();
    let row = store.payment(id).await.unwrap().unwrap();
    assert!(row.response_owed);
    assert_eq!(row.tx_hash.as_deref(), Some("0xdef"));

    let takers: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.take_owed_response("p1", None).await.unwrap() })
        })
        .collect();
    let mut taken = 0;
    for taker in takers {
        if let Some(row) = taker.await.unwrap() {
            assert_eq!(row.id, id);
            taken += 1;
        }
    }
    assert_eq!(taken, 1);
    assert!(!store.payment(id).await.unwrap().unwrap().response_owed);
}

/// Usage tiers in the store: free calls `0..3`, price A for `3..7`, price B from 7 on. Twenty calls paying A race
/// through two store instances (two pools; on PostgreSQL, two sets of connections): exactly seven are counted,
/// indexes 0 to 6 once each, and the counter never passes the edge. Calls paying B then take 7 on. A failed call
/// is taken back; counters and periods are apart.
async fn calls_are_counted_once_across_tier_edges_by_racing_instances(db: Database) {
    let stores = [db.open().await, db.open().await];
    let range = |start, end| CallRange { start, end };
    let paying_a = [range(0, Some(3)), range(3, Some(7))];
    let paying_b = [range(0, Some(3)), range(7, None)];
    let race = |ranges: [CallRange; 2], n: usize| {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let store = stores[i % 2].clone();
                tokio::spawn(async move { store.count_call("payer:0xabc", 1_000, &ranges).await.unwrap() })
            })
            .collect();
        async move {
            let mut taken = Vec::new();
            for task in tasks {
                taken.extend(task.await.unwrap());
            }
            taken.sort_unstable();
            taken
        }
    };
    assert_eq!(race(paying_a, 20).await, (0..7).collect::<Vec<u64>>());
    assert_eq!(stores[0].calls("payer:0xabc", 1_000).await.unwrap(), 7);
    assert_eq!(race(paying_b, 5).await, (7..12).collect::<Vec<u64>>());
    assert_eq!(stores[1].calls("payer:0xabc", 1_000).await.unwrap(), 12);

    stores[0].uncount_call("payer:0xabc", 1_000).await.unwrap();
    assert_eq!(stores[1].calls("payer:0xabc", 1_000).await.unwrap(), 11);
    assert_eq!(stores[0].count_call("payer:0xabc", 1_000, &paying_b).await.unwrap(), Some(11));

    // Another period and another counter start from nothing; a range that does not hold index 0 creates nothing.
    assert_eq!(stores[0].calls("payer:0xabc", 2_000).await.unwrap(), 0);
    assert_eq!(stores[0].count_call("payer:0xdef", 1_000, &[range(3, None)]).await.unwrap(), None);
    assert_eq!(stores[0].calls("payer:0xdef", 1_000).await.unwrap(), 0);
    assert_eq!(stores[0].count_call("payer:0xdef", 1_000, &[range(0, Some(1))]).await.unwrap(), Some(0));
    assert_eq!(stores[0].count_call("payer:0xdef", 1_000, &[range(0, Some(1))]).await.unwrap(), None);
    stores[0].uncount_call("ip:none", 1_000).await.unwrap();
    assert_eq!(stores[0].calls("ip:none", 1_000).await.unwrap(), 0);
}

/// A payment identifier is taken by one of racing requests through two store instances; the others see it in
/// progress (same payload) or in conflict (another); once answered, the answer (body or none) is given to every
/// resend; forgotten, it starts afresh; old ones expire.
async fn payment_identifiers_keep_one_answer_per_payload_across_instances(db: Database) {
    let stores = [db.open().await, db.open().await];
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move { store.identify("GET /a|id-1", "digest-1").await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    assert_eq!(seen.iter().filter(|s| **s == Identified::New).count(), 1, "{seen:?}");
    assert_eq!(seen.iter().filter(|s| **s == Identified::InProgress).count(), 9, "{seen:?}");
    assert_eq!(stores[0].identify("GET /a|id-1", "digest-2").await.unwrap(), Identified::Conflict);

    let answer = KeptAnswer {
        status: 200,
        headers: vec![("payment-response".into(), "eyJ9".into()), ("x-a".into(), "1".into())],
        body: Some(b"\x00binary\xffbody".to_vec()),
    };
    stores[0].keep_answer("GET /a|id-1", &answer).await.unwrap();
    assert_eq!(stores[1].identify("GET /a|id-1", "digest-1").await.unwrap(), Identified::Answered(answer.clone()));
    assert_eq!(stores[1].identify("GET /a|id-1", "digest-2").await.unwrap(), Identified::Conflict);
    let headers_only = KeptAnswer { body: None, ..answer };
    assert_eq!(stores[0].identify("GET /b|id-1", "digest-1").await.unwrap(), Identified::New, "scoped by key");
    stores[0].keep_answer("GET /b|id-1", &headers_only).await.unwrap();
    assert_eq!(stores[0].identify("GET /b|id-1", "digest-1").await.unwrap(), Identified::Answered(headers_only));

    assert_eq!(stores[0].identify("GET /c|id-1", "digest-1").await.unwrap(), Identified::New);
    stores[1].forget_identifier("GET /c|id-1").await.unwrap();
    assert_eq!(stores[0].identify("GET /c|id-1", "digest-9").await.unwrap(), Identified::New, "forgotten");

    // Answered ones expire by the first bound, unanswered (abandoned) ones by the second.
    let future = paygate_store::now_ms() + 1_000;
    assert_eq!(stores[0].expire_identifiers(0, future).await.unwrap(), 1, "the unanswered one");
    assert_eq!(stores[0].expire_identifiers(future, 0).await.unwrap(), 2, "the answered ones");
    assert_eq!(stores[0].identify("GET /a|id-1", "digest-2").await.unwrap(), Identified::New);
}

/// A `failed` row can be marked to be checked again; the filter finds exactly those, and clearing the mark (or
/// settling the row) takes it off the list.
async fn failed_rows_are_rechecked_until_told_otherwise(db: Database) {
    let store = db.open().await;
    let mut ids = Vec::new();
    for proof in ["f1", "f2", "f3"] {
        let Claim::Claimed(id) = store.claim(&payment(proof, None)).await.unwrap() else { panic!("claimed") };
        store.transition(id, &[PaymentState::Verified], PaymentState::Settling, Transition::default()).await.unwrap();
        let recheck = Some(proof != "f3");
        let failed = Transition { reason: "facilitator: failed", recheck, ..Default::default() };
        store.transition(id, &[PaymentState::Settling], PaymentState::Failed, failed).await.unwrap();
        ids.push(id);
    }
    let query = PaymentQuery { state: Some(PaymentState::Failed), recheck: true, ..Default::default() };
    let rechecked: Vec<_> = store.payments(&query).await.unwrap().into_iter().map(|p| p.id).collect();
    assert_eq!(rechecked, [ids[1], ids[0]]);
    let final_ = Transition { reason: "final", recheck: Some(false), ..Default::default() };
    store.transition(ids[0], &[PaymentState::Failed], PaymentState::Failed, final_).await.unwrap();
    let landed = Transition { reason: "landed", response_owed: Some(true), recheck: Some(false), ..Default::default() };
    store.transition(ids[1], &[PaymentState::Failed], PaymentState::Settled, landed).await.unwrap();
    assert!(store.payments(&query).await.unwrap().is_empty());
    let row = store.payment(ids[1]).await.unwrap().unwrap();
    assert_eq!((row.state, row.response_owed, row.recheck), (PaymentState::Settled, true, false));
    assert_eq!(store.take_owed_response("f2", Some("another challenge")).await.unwrap(), None, "not its credential");
    assert_eq!(store.take_owed_response("f2", None).await.unwrap().map(|p| p.id), Some(ids[1]));
}

/// A rate shared by two store instances: 3 a minute, as a burst of three then one every 20 s; racing requests
/// through both instances take exactly the allowance; refusals say how long to wait; full buckets are forgotten.
async fn rates_are_shared_and_refusals_say_when(db: Database) {
    let stores = [db.open().await, db.open().await];
    let (interval, window) = (20_000, 60_000);
    let now = 1_800_000_000_000;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move { store.take_rate("payer:0xa", now, interval, window).await.unwrap() })
        })
        .collect();
    let mut taken = 0;
    for task in tasks {
        if task.await.unwrap().is_none() {
            taken += 1;
        }
    }
    assert_eq!(taken, 3);
    assert_eq!(stores[0].take_rate("payer:0xa", now + 5_000, interval, window).await.unwrap(), Some(15_000));
    assert_eq!(stores[1].take_rate("payer:0xa", now + 20_000, interval, window).await.unwrap(), None);
    assert_eq!(stores[1].take_rate("payer:0xb", now, interval, window).await.unwrap(), None, "keys are apart");
    // At now + 80 s both buckets are full again (0xa's last arrival time was now + 80 s, 0xb's now + 20 s).
    assert_eq!(stores[0].forget_full_rates(now + 60_000).await.unwrap(), 1);
    assert_eq!(stores[0].forget_full_rates(now + 80_001).await.unwrap(), 1);
}

/// On SQLite, a paid call's writes run on the calling thread, on a second connection that never waits for SQLite's
/// write lock (`src/sqlite_direct.rs`): when another connection holds the lock, they must still happen, exactly
/// once, without blocking the async runtime's thread while they wait.
///
/// Another process holds the write lock for 400 ms: a claim, a transition and a channel's compare-and-swap asked
/// meanwhile all wait for it and are then written once, while a task on the same (single) runtime thread keeps
/// running.
#[tokio::test(flavor = "current_thread")]
async fn writes_wait_for_another_writer_without_blocking_the_runtime() {
    let db = Database::sqlite().await;
    let store = db.open().await;
    let Claim::Claimed(first) = store.claim(&payment("p1", None)).await.unwrap() else { panic!("a new proof") };
    assert!(store.open_channel(&channel("0x01", 10_000)).await.unwrap());

    // Another writer: a connection of its own, in a thread, holding the lock.
    let path = db.sqlite_file("ledger.db");
    let (locked_tx, locked) = tokio::sync::oneshot::channel();
    let writer = std::thread::spawn(move || {
        let other = rusqlite::Connection::open(path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        locked_tx.send(Instant::now()).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        other.execute_batch("COMMIT").unwrap();
    });
    let locked_at = locked.await.unwrap();

    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let settling = Transition { reason: "upstream answered 200", upstream_status: Some(200), ..Default::default() };
    let mut charged = channel("0x01", 10_000);
    charged.charged = 1_000;
    let second = payment("p2", None);
    let (claimed, moved, swapped) = tokio::join!(
        store.claim(&second),
        store.transition(first, &[PaymentState::Verified], PaymentState::Settling, settling),
        store.swap_channel(0, &charged),
    );
    let waited = locked_at.elapsed();
    ticker.abort();
    writer.join().unwrap();

    assert!(matches!(claimed.unwrap(), Claim::Claimed(id) if id != first));
    moved.unwrap();
    assert!(swapped.unwrap(), "the swap is written once the lock is free");
    assert!(waited >= Duration::from_millis(390), "the writes waited for the lock: {waited:?}");
    let ticked = ticks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(ticked >= 10, "the runtime's thread kept running while the writes waited ({ticked} ticks)");

    // Each write happened once: one event per move, the channel at version 1 with the charge.
    assert_eq!(store.payment(first).await.unwrap().unwrap().state, PaymentState::Settling);
    assert_eq!(store.events(first).await.unwrap().len(), 2);
    let kept = store.channel("0x01").await.unwrap().unwrap();
    assert_eq!((kept.version, kept.charged), (1, 1_000));
    assert!(!store.swap_channel(0, &charged).await.unwrap(), "a stale version is refused");
}

/// On SQLite, the writes of concurrent calls are committed together by the first of them. Its request may be
/// dropped while it waits for the others (a client that hung up): the writes are committed all the same, and each
/// waiting call gets its answer.
#[tokio::test(flavor = "current_thread")]
async fn writes_committed_together_survive_the_committer_being_dropped() {
    use std::future::Future as _;
    use std::task::{Context, Waker};

    let db = Database::sqlite().await;
    let store = db.open().await;
    let (first, second) = (payment("p1", None), payment("p2", None));
    let mut cx = Context::from_waker(Waker::noop());
    let mut committer = Box::pin(store.claim(&first));
    assert!(committer.as_mut().poll(&mut cx).is_pending(), "the first write waits for others to join");
    let mut joined = Box::pin(store.claim(&second));
    assert!(joined.as_mut().poll(&mut cx).is_pending(), "the second waits for the commit");
    drop(committer);

    let joined = tokio::time::timeout(Duration::from_secs(5), joined).await.expect("the joined write is answered");
    assert!(matches!(joined.unwrap(), Claim::Claimed(_)));
    let Claim::Taken { state, .. } = store.claim(&first).await.unwrap() else { panic!("p1 was committed") };
    assert_eq!(state, PaymentState::Verified);
    assert_eq!(store.payments(&PaymentQuery::default()).await.unwrap().len(), 2);
}

/// On SQLite, the direct connection never checkpoints the WAL it writes; the store's sqlx connection does, every
/// second. So the WAL stops growing: after a checkpoint, the next writes reuse it from its start (its header's
/// checkpoint sequence moves) instead of appending, and a second run of as many writes leaves it about as long as
/// the first did (a little longer or shorter as the tables' trees grow), not twice as long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_the_direct_writes_fill_is_checkpointed_and_reused() {
    let db = Database::sqlite().await;
    let store = db.open().await;
    let wal = db.sqlite_file("ledger.db-wal");
    let claim_many = |from: usize| {
        let store = store.clone();
        async move {
            for i in from..from + 300 {
                let Claim::Claimed(_) = store.claim(&payment(&format!("p{i}"), None)).await.unwrap() else {
                    panic!("a new proof")
                };
            }
        }
    };
    claim_many(0).await;
    let (first, at_first) = (std::fs::metadata(&wal).unwrap().len(), wal_sequence(&wal));
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    claim_many(300).await;
    let second = std::fs::metadata(&wal).unwrap().len();
    assert!(first > 0, "the writes went to the WAL");
    assert!(wal_sequence(&wal) > at_first, "the WAL was started over");
    assert!(second < first + first / 2, "the WAL was reused, not appended to: {first} bytes, then {second}");
    assert_eq!(store.payments(&PaymentQuery { limit: Some(1_000), ..Default::default() }).await.unwrap().len(), 600);
}

/// On SQLite, a new ledger is made of 1 KiB pages, not SQLite's default 4 KiB: a commit writes every page it
/// changed to the WAL whole, so smaller pages are fewer bytes to write, checksum and copy back (the benchmark's
/// channel-paid calls ran about a quarter faster). The WAL header says the page size (bytes 8 to 12).
#[tokio::test]
async fn a_new_sqlite_ledger_writes_small_pages() {
    let db = Database::sqlite().await;
    let store = db.open().await;
    let Claim::Claimed(_) = store.claim(&payment("first", None)).await.unwrap() else { panic!("a new proof") };
    let header = std::fs::read(db.sqlite_file("ledger.db-wal")).unwrap();
    assert_eq!(u32::from_be_bytes(header[8..12].try_into().unwrap()), 1024);
}

/// On SQLite, a ledger made before the 1 KiB pages keeps its 4 KiB ones (SQLite cannot change a WAL database's
/// page size in place), and the conversion docs/operate.md gives (run with paygate stopped) makes it 1 KiB with
/// every row kept.
#[test]
fn an_older_ledger_keeps_its_pages_until_converted_as_documented() {
    let db = tokio::runtime::Runtime::new().unwrap().block_on(Database::sqlite());
    // Each run of paygate is a runtime of its own: dropping it stops the store's connections and tasks.
    let paygate_run = |claim: &'static str| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let store = paygate_store::open(&db.url()).await.expect("the store opens");
            let Claim::Claimed(_) = store.claim(&payment(claim, None)).await.unwrap() else { panic!("a new proof") };
            store.payments(&PaymentQuery::default()).await.unwrap().len()
        })
    };
    let old = rusqlite::Connection::open(db.sqlite_file("ledger.db")).unwrap();
    old.execute_batch(
        "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE made_before (a); DROP TABLE made_before;",
    )
    .unwrap();
    drop(old);
    // The database header's page size (bytes 16 to 18).
    let page_size = || {
        let header = std::fs::read(db.sqlite_file("ledger.db")).unwrap();
        u16::from_be_bytes(header[16..18].try_into().unwrap())
    };
    assert_eq!(paygate_run("before"), 1);
    assert_eq!(page_size(), 4096, "opening it does not change it");

    // Exactly docs/operate.md's statements. (The stopped run's connections close on their own threads, a moment
    // after its runtime: until they have, leaving WAL mode is refused at once.)
    let convert = || {
        let converting = rusqlite::Connection::open(db.sqlite_file("ledger.db")).unwrap();
        converting.execute_batch("PRAGMA journal_mode=DELETE; PRAGMA page_size=1024; VACUUM; PRAGMA journal_mode=WAL;")
    };
    let started = Instant::now();
    while let Err(e) = convert() {
        assert!(started.elapsed() < Duration::from_secs(5), "the conversion failed: {e}");
        std::thread::sleep(Duration::from_millis(20));
    }

    assert_eq!(paygate_run("after"), 2, "the row from before the conversion is kept");
    assert_eq!(page_size(), 1024);
}

/// On SQLite, writes that never pause (as under sustained paid calls) still let the WAL start over: a checkpoint
/// that finds it longer than 4,096 frames holds new writes until it has copied them all (without that, no
/// checkpoint ever caught up with the writes, and the WAL grew without end: here, 1 GB in these 4 s and never
/// started over). Six callers claim for 4 s without a pause: the WAL is started over (its header's checkpoint
/// sequence number moves) while they write, and every claim is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_written_without_pause_is_still_started_over() {
    let db = Database::sqlite().await;
    let store = db.open().await;
    let wal = db.sqlite_file("ledger.db-wal");
    let sequence = || wal_sequence(&wal);
    let Claim::Claimed(_) = store.claim(&payment("first", None)).await.unwrap() else { panic!("a new proof") };
    let (started, at_start) = (Instant::now(), sequence());
    let (claimed, _) = claim_until(&store, 6, started, 4, Duration::ZERO).await;
    let claimed = claimed + 1;
    let at_end = sequence();
    assert!(at_end > at_start, "the WAL was started over while the writes went on ({claimed} claims)");
    let kept = store.payments(&PaymentQuery::default()).await.unwrap();
    assert_eq!(kept.len(), claimed);
}

/// On SQLite, the checkpoint that starts a long WAL over holds new writes while it waits for readers to leave the
/// WAL; a reader of another process that stays (here 4 s in one read transaction) must not hold them that long:
/// the checkpoint gives up after a short wait and tries again a second later. Four callers claim meanwhile: none
/// of their claims takes a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stays_does_not_hold_the_writes() {
    let db = Database::sqlite().await;
    let store = db.open().await;
    let path = db.sqlite_file("ledger.db");
    let Claim::Claimed(_) = store.claim(&payment("first", None)).await.unwrap() else { panic!("a new proof") };
    let (reading_tx, reading) = tokio::sync::oneshot::channel();
    let reader = std::thread::spawn(move || {
        let other = rusqlite::Connection::open(path).unwrap();
        other.execute_batch("BEGIN").unwrap();
        let _: i64 = other.query_row("SELECT count(*) FROM payments", [], |row| row.get(0)).unwrap();
        reading_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(4));
        other.execute_batch("COMMIT").unwrap();
    });
    reading.await.unwrap();
    let started = Instant::now();
    let (claimed, longest) = claim_until(&store, 4, started, 4, Duration::from_millis(1)).await;
    let claimed = claimed + 1;
    reader.join().unwrap();
    assert!(longest < Duration::from_secs(1), "a claim waited {longest:?} for the reader");
    let kept = store.payments(&PaymentQuery::default()).await.unwrap();
    assert_eq!(kept.len(), claimed);
}

/// The checkpoint sequence number of the WAL at `path` (its header's bytes 12 to 16), which each start-over
/// increments.
fn wal_sequence(path: &std::path::Path) -> u32 {
    use std::io::Read as _;
    let mut header = [0u8; 16];
    std::fs::File::open(path).unwrap().read_exact(&mut header).unwrap();
    u32::from_be_bytes(header[12..16].try_into().unwrap())
}

/// `callers` tasks claiming new proofs until `secs` have passed since `started`, each pausing `pause` between
/// claims: how many they claimed, and the longest a claim took.
async fn claim_until(
    store: &std::sync::Arc<dyn paygate_store::Store>,
    callers: usize,
    started: Instant,
    secs: u64,
    pause: Duration,
) -> (usize, Duration) {
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let store = store.clone();
            tokio::spawn(async move {
                let (mut claimed, mut longest) = (0, Duration::ZERO);
                while started.elapsed() < Duration::from_secs(secs) {
                    let asked = Instant::now();
                    let proof = format!("p{caller}-{claimed}");
                    let Claim::Claimed(_) = store.claim(&payment(&proof, None)).await.unwrap() else {
                        panic!("a new proof")
                    };
                    longest = longest.max(asked.elapsed());
                    claimed += 1;
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                (claimed, longest)
            })
        })
        .collect();
    let (mut claimed, mut longest) = (0, Duration::ZERO);
    for task in tasks {
        let (n, wait) = task.await.unwrap();
        (claimed, longest) = (claimed + n, longest.max(wait));
    }
    (claimed, longest)
}
