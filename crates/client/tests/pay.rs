//! The client against our real gateway on a real anvil: it pays in x402 and in MPP, and the policy refuses
//! what it must before anything is signed, even under concurrency.

mod common;

use common::{PRICE, Seller, client, pay_to, payer};
use paygate_client::{CheapestOffer, Offer, OfferChooser, PayError, Policy, PolicyViolation, Protocol, SpendState};
use reqwest::header::HeaderMap;

async fn pays_in(protocol: Protocol) {
    let seller = Seller::start().await;
    let client = client(Policy { max_per_payment: Some(PRICE), ..Policy::default() })
        .await
        .with_chooser(CheapestOffer::only(protocol));
    let before = seller.chain.balance(pay_to()).await;

    let paid = client.send("GET", &seller.url("/v1/quote"), HeaderMap::new(), None).await.expect("paid");

    assert!(paid.status.is_success(), "{}", paid.status);
    assert!(!paid.body.is_empty());
    let payment = paid.payment.expect("a payment");
    assert_eq!(payment.offer.protocol, protocol);
    assert_eq!(payment.offer.amount.0, PRICE);
    assert_eq!(payment.offer.usd_micros, Some(PRICE));
    let reference = payment.reference.expect("a settlement reference");
    assert!(reference.starts_with("0x") && reference.len() == 66, "{reference}");
    assert_eq!(seller.chain.balance(pay_to()).await, before + PRICE);
    assert_eq!(seller.chain.transfers(payer(), pay_to()).await, 1);
    assert_eq!(seller.upstream.hits(), 1);

    let records = client.spend_log().records().await.expect("records");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].state, SpendState::Paid);
    assert_eq!(records[0].reference.as_deref(), Some(reference.as_str()));
    assert_eq!(records[0].protocol, protocol.to_string());
    assert_eq!(records[0].usd_micros, PRICE);
    assert_eq!(records[0].amount_atomic, PRICE.to_string());
    assert_eq!(records[0].payer.as_deref(), Some(payer().to_checksum(None).as_str()));
    assert!(records[0].nonce.as_ref().is_some_and(|n| n.len() == 66), "{:?}", records[0].nonce);
    assert!(records[0].valid_before.is_some());
}

#[tokio::test]
async fn pays_an_x402_offer() {
    pays_in(Protocol::X402).await;
}

#[tokio::test]
async fn pays_an_mpp_offer() {
    pays_in(Protocol::Mpp).await;
}

/// Picks the x402 v1 offer (the 402's body), which is paid in `X-PAYMENT`.
struct X402V1Only;

impl OfferChooser for X402V1Only {
    fn choose(&self, offers: &[&Offer]) -> Option<usize> {
        offers.iter().position(|o| o.x402_version == Some(1) && o.usd_micros.is_some())
    }
}

#[tokio::test]
async fn pays_an_x402_v1_offer() {
    let seller = Seller::start().await;
    let client = client(Policy { max_per_payment: Some(PRICE), ..Policy::default() }).await.with_chooser(X402V1Only);
    let before = seller.chain.balance(pay_to()).await;

    let paid = client.send("GET", &seller.url("/v1/quote"), HeaderMap::new(), None).await.expect("paid");

    assert!(paid.status.is_success(), "{}", paid.status);
    assert!(paid.headers.contains_key("x-payment-response"), "a v1 payment is answered in X-PAYMENT-RESPONSE");
    let payment = paid.payment.expect("a payment");
    assert_eq!(payment.offer.x402_version, Some(1));
    assert!(payment.reference.is_some_and(|r| r.starts_with("0x") && r.len() == 66));
    assert_eq!(seller.chain.balance(pay_to()).await, before + PRICE);
    assert_eq!(seller.chain.transfers(payer(), pay_to()).await, 1);
    let records = client.spend_log().records().await.expect("records");
    assert_eq!(records.iter().map(|r| r.state).collect::<Vec<_>>(), [SpendState::Paid]);
}

#[tokio::test]
async fn a_price_over_the_cap_is_refused_before_signing() {
    let seller = Seller::start().await;
    let client = client(Policy { max_per_payment: Some(PRICE - 1), ..Policy::default() }).await;
    let before = seller.chain.balance(pay_to()).await;

    let err = client.send("GET", &seller.url("/v1/quote"), HeaderMap::new(), None).await.expect_err("refused");

    match err {
        PayError::Policy(PolicyViolation::OverMaxPerPayment { asked, max }) => {
            assert_eq!((asked, max), (PRICE, PRICE - 1));
        }
        other => panic!("expected OverMaxPerPayment, got {other:?}"),
    }
    assert!(client.spend_log().records().await.expect("records").is_empty());
    assert_eq!(seller.chain.balance(pay_to()).await, before);
    assert_eq!(seller.chain.transfers(payer(), pay_to()).await, 0);
    assert_eq!(seller.upstream.hits(), 0);

    let dry = client.dry_run("GET", &seller.url("/v1/quote"), HeaderMap::new(), None).await.expect("dry run");
    assert_eq!(dry.status, 402);
    assert!(dry.chosen.is_some());
    assert!(matches!(dry.refused, Some(PolicyViolation::OverMaxPerPayment { .. })));
}

#[tokio::test]
async fn the_daily_budget_lets_two_payments_through_and_refuses_the_third() {
    let seller = Seller::start().await;
    let client = client(Policy { daily_budget: Some(2 * PRICE + PRICE / 2), ..Policy::default() }).await;

    for _ in 0..2 {
        let paid = client.send("GET", &seller.url("/v1/quote"), HeaderMap::new(), None).await.expect("paid");
        assert!(paid.status.is_success());
    }
    let err = client.send("GET", &seller.url("/v1/quote"), HeaderMap::new(), None).await.expect_err("refused");

    match err {
        PayError::Policy(PolicyViolation::OverDailyBudget { asked, spent, budget }) => {
            assert_eq!((asked, spent, budget), (PRICE, 2 * PRICE, 2 * PRICE + PRICE / 2));
        }
        other => panic!("expected OverDailyBudget, got {other:?}"),
    }
    let records = client.spend_log().records().await.expect("records");
    assert_eq!(records.iter().map(|r| r.state).collect::<Vec<_>>(), [SpendState::Paid, SpendState::Paid]);
    assert_eq!(seller.chain.transfers(payer(), pay_to()).await, 2);
    assert_eq!(seller.upstream.hits(), 2);
}

#[tokio::test]
async fn two_concurrent_requests_under_one_remaining_budget_cannot_both_pay() {
    let seller = Seller::start().await;
    let client = client(Policy { daily_budget: Some(PRICE + PRICE / 2), ..Policy::default() }).await;
    let url = seller.url("/v1/quote");

    let (a, b) = tokio::join!(
        client.send("GET", &url, HeaderMap::new(), None),
        client.send("GET", &url, HeaderMap::new(), None)
    );

    let results = [a, b];
    let paid = results.iter().filter(|r| r.as_ref().is_ok_and(|p| p.payment.is_some())).count();
    let refused =
        results.iter().filter(|r| matches!(r, Err(PayError::Policy(PolicyViolation::OverDailyBudget { .. })))).count();
    assert_eq!((paid, refused), (1, 1), "{results:?}");
    let records = client.spend_log().records().await.expect("records");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].state, SpendState::Paid);
    assert_eq!(seller.chain.transfers(payer(), pay_to()).await, 1);
}

#[tokio::test]
async fn an_offer_on_a_denied_network_is_refused_naming_the_network() {
    let seller = Seller::start().await;
    let client = client(Policy { deny_networks: vec!["eip155:31337".into()], ..Policy::default() }).await;

    let err = client.send("GET", &seller.url("/v1/quote"), HeaderMap::new(), None).await.expect_err("refused");

    match err {
        PayError::Policy(PolicyViolation::NetworkDenied { network }) => assert_eq!(network, "eip155:31337"),
        other => panic!("expected NetworkDenied, got {other:?}"),
    }
    assert!(client.spend_log().records().await.expect("records").is_empty());
    assert_eq!(seller.upstream.hits(), 0);
    assert_eq!(seller.chain.transfers(payer(), pay_to()).await, 0);
}

#[tokio::test]
async fn a_declined_confirmation_pays_nothing() {
    let seller = Seller::start().await;
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    let client = client(Policy::default()).await.with_confirmation(move |offer, host| {
        seen.lock().expect("lock").push((offer.amount.0, host.to_owned()));
        false
    });

    let err = client.send("GET", &seller.url("/v1/quote"), HeaderMap::new(), None).await.expect_err("declined");

    assert!(matches!(err, PayError::Policy(PolicyViolation::Declined)), "{err:?}");
    let host = seller.base.trim_start_matches("http://").to_owned();
    assert_eq!(*asked.lock().expect("lock"), [(PRICE, host)]);
    assert!(client.spend_log().records().await.expect("records").is_empty());
    assert_eq!(seller.upstream.hits(), 0);
    assert_eq!(seller.chain.transfers(payer(), pay_to()).await, 0);
}

/// On a tiered route the client is quoted the price of a payer with no calls. Once its own price is lower, the
/// gateway refuses that payment with a 402 quoting its price (nothing charged), and the client pays that once.
#[tokio::test]
async fn a_tiered_route_is_paid_at_the_payers_own_price() {
    let seller = Seller::start_with(
        "[[routes]]\nmethod = \"GET\"\npath = \"/v1/metered/tiers\"\n\
         tiers = [{ calls = 1, price = \"$0.01\" }, { price = \"$0.005\" }]\n",
    )
    .await;
    let client = client(Policy { max_per_payment: Some(PRICE), ..Policy::default() }).await;
    let before = seller.chain.balance(pay_to()).await;
    for price in [10_000u128, 5_000] {
        let paid = client.send("GET", &seller.url("/v1/metered/tiers"), HeaderMap::new(), None).await.expect("paid");
        assert!(paid.status.is_success(), "{}", paid.status);
        assert_eq!(paid.payment.expect("a payment").offer.amount.0, price);
    }
    assert_eq!(seller.chain.balance(pay_to()).await - before, 15_000);
    assert_eq!(seller.chain.transfers(payer(), pay_to()).await, 2);
    let states: Vec<SpendState> =
        client.spend_log().records().await.expect("records").iter().map(|r| r.state).collect();
    assert_eq!(states.iter().filter(|s| **s == SpendState::Paid).count(), 2, "{states:?}");
    assert_eq!(states.iter().filter(|s| **s == SpendState::Rejected).count(), 1, "{states:?}");
    assert_eq!(seller.upstream.hits(), 2);
}
