//! MPP `stripe` card offers: the client answers with a Stripe Shared Payment Token its owner supplies, once per
//! payment. Against our gateway's `stripe` rail and localstripe, where a card PaymentMethod id stands in for the
//! token (localstripe has no Shared Payment Tokens; `tests/stripe/README.md`).

mod common;

use common::{PRICE, Seller, client};
use paygate_client::{PayError, Policy, SpendState};
use paygate_testkit::stripe::{LocalStripe, cards};
use reqwest::header::HeaderMap;

/// A route paid only by card, one cent.
fn card_option(stripe: &LocalStripe) -> String {
    format!(
        r#"
        {}
        [[routes]]
        method = "GET"
        path = "/v1/other"
        price = "$0.01"
        accept = ["card"]
        "#,
        stripe.card_toml()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_offer_is_paid_once_with_the_owners_token() {
    let stripe = LocalStripe::start().await;
    let seller = Seller::start_with(&card_option(&stripe)).await;
    let card = stripe.card_payment_method(cards::SUCCEEDS).await;
    let url = seller.url("/v1/other");

    // Without a token the card offer cannot be paid, and nothing is recorded.
    let without = client(Policy::default()).await;
    let err = without.send("GET", &url, HeaderMap::new(), None).await.expect_err("no token");
    let PayError::NoPayableOffer { offers } = err else { panic!("{err:?}") };
    assert!(offers[0].unpayable.as_deref().is_some_and(|why| why.contains("Shared Payment Token")), "{offers:?}");
    assert!(without.spend_log().records().await.unwrap().is_empty());

    let token = card.clone();
    let payer = client(Policy { max_per_payment: Some(PRICE), ..Policy::default() })
        .await
        .with_card_token(move |offer| (offer.usd_micros == Some(10_000)).then(|| token.clone()));
    let paid = payer.send("GET", &url, HeaderMap::new(), None).await.expect("paid");
    assert_eq!(paid.status, 200);
    let payment = paid.payment.expect("a payment");
    assert_eq!((payment.offer.scheme.as_str(), payment.offer.network.as_str()), ("stripe/charge", "stripe"));
    assert_eq!((payment.offer.amount.0, payment.offer.usd_micros), (1, Some(10_000)));
    let intent_id = payment.reference.clone().expect("the receipt names the PaymentIntent");
    let intent = stripe.payment_intent(&intent_id).await;
    assert_eq!((intent["status"].as_str(), intent["amount"].as_u64()), (Some("succeeded"), Some(1)));
    assert_eq!(stripe.payment_intents().await.len(), 1, "one charge");

    let rows = payer.spend_log().records().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].state, rows[0].usd_micros), (SpendState::Paid, 10_000));
    assert_eq!(rows[0].reference.as_deref(), Some(intent_id.as_str()));
    assert!(!rows[0].is_transfer());
    assert!(!rows[0].nonce.as_deref().unwrap_or_default().contains(&card), "the token is not logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_is_reported_and_not_retried() {
    let stripe = LocalStripe::start().await;
    let seller = Seller::start_with(&card_option(&stripe)).await;
    let declined = stripe.card_payment_method(cards::DECLINED).await;
    let payer = client(Policy::default()).await.with_card_token(move |_| Some(declined.clone()));
    let err = payer.send("GET", &seller.url("/v1/other"), HeaderMap::new(), None).await.expect_err("declined");
    let PayError::Rejected { status, body, .. } = err else { panic!("{err:?}") };
    assert_eq!(status, 402);
    assert!(body.contains("card_declined"), "{body}");
    let rows = payer.spend_log().records().await.unwrap();
    assert_eq!((rows.len(), rows[0].state), (1, SpendState::Rejected));
    assert!(stripe.payment_intents().await.iter().all(|i| i["status"] != "succeeded"), "nothing charged");
}
