//! A credential pays once. Sent again, or twenty times at once, exactly one request reaches the upstream and
//! exactly one transfer reaches the chain; every other copy gets a problem body that says why. Every case runs
//! on anvil and on the embedded devnet.

#[macro_use]
mod common;

use common::{Backend, Harness, kind, pay_to, payer, problem};
use futures_util::future::join_all;
use paygate_testkit::node;

on_both_chains! {
    an_x402_credential_pays_once = replayed_sequentially("x402");
    an_mpp_credential_pays_once = replayed_sequentially("mppx");
    twenty_concurrent_x402_copies_pay_once = replayed_concurrently("x402");
    twenty_concurrent_mpp_copies_pay_once = replayed_concurrently("mppx");
    payers_asking_at_the_same_moment_all_pay = simultaneous_payers();
    one_x402_offer_pays_several_payments_each_once = one_offer_many_payments();
}

async fn replayed_sequentially(backend: Backend, protocol: &str) {
    let h = Harness::start_with(backend.options()).await;
    let (name, value) = node::sign(protocol, &h.url("/v1/quote"), &[]).await;
    let first = h.send("GET", "/v1/quote", Some((&name, &value)), None).await;
    assert_eq!(first.status(), 200);
    let (status, p) = problem(h.send("GET", "/v1/quote", Some((&name, &value)), None).await).await;
    assert_eq!(status, 403);
    // The chain's simulation already sees the authorization used; the ledger would refuse it next.
    assert_eq!(kind(&p).0, "urn:paygate:problem:payment-replayed");
    assert!(["nonce_already_used", "payment_replayed"].contains(&kind(&p).1), "{p:?}");
    assert_eq!(h.upstream.hits(), 1);
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1);
    assert_eq!(h.ledger().await.len(), 1);
}

async fn replayed_concurrently(backend: Backend, protocol: &str) {
    let h = Harness::start_with(backend.options()).await;
    let before = h.chain.balance(pay_to()).await;
    let (name, value) = node::sign(protocol, &h.url("/v1/quote"), &[]).await;
    let responses = join_all((0..20).map(|_| h.send("GET", "/v1/quote", Some((&name, &value)), None))).await;
    let mut ok = 0;
    for response in responses {
        if response.status() == 200 {
            ok += 1;
            continue;
        }
        let (status, p) = problem(response).await;
        assert!(
            matches!(
                kind(&p),
                ("urn:paygate:problem:payment-replayed", _) | ("urn:paygate:problem:payment-in-flight", _)
            ),
            "{status} {p:?}"
        );
        assert!(status == 403 || status == 409, "{status}");
    }
    assert_eq!(ok, 1);
    assert_eq!(h.upstream.hits(), 1, "replays never reach the upstream");
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 1);
    assert_eq!(h.chain.balance(pay_to()).await - before, 10_000);
    assert_eq!(h.ledger().await.len(), 1);
}

/// Challenges are single-use, but each 402 mints new ones: payers who ask for the same route at the same moment
/// all get to pay, and each moves exactly the price.
async fn simultaneous_payers(backend: Backend) {
    let h = Harness::start_with(backend.options()).await;
    let before = h.chain.balance(pay_to()).await;
    let keys: Vec<String> = (1..=3).map(|i| paygate_chain::devtoken::dev_account(i).to_bytes().to_string()).collect();
    let url = h.url("/v1/quote");
    let args: Vec<[&str; 2]> = keys.iter().map(|k| ["--key", k.as_str()]).collect();
    let signed = join_all(args.iter().map(|a| node::sign("x402", &url, a))).await;
    let responses = join_all(signed.iter().map(|(n, v)| h.send("GET", "/v1/quote", Some((n, v)), None))).await;
    assert!(
        responses.iter().all(|r| r.status() == 200),
        "{:?}",
        responses.iter().map(|r| r.status()).collect::<Vec<_>>()
    );
    assert_eq!(h.ledger().await.len(), 3);
    assert_eq!(h.chain.balance(pay_to()).await - before, 3 * 10_000);
}

/// One 402, many payments: a client that reuses the requirements of one 402 (as high-volume x402 clients do) is
/// served for each payment, and each payment is still claimed once by its authorization. (MPP challenges stay
/// single-use: `an_mpp_credential_pays_once`.)
async fn one_offer_many_payments(backend: Backend) {
    let h = Harness::start_with(backend.options()).await;
    let before = h.chain.balance(pay_to()).await;
    let signed = node::client(&["x402", "sign", &h.url("/v1/quote"), "--count", "2"]).await;
    let values: Vec<&str> =
        signed["values"].as_array().unwrap_or_else(|| panic!("{signed}")).iter().map(|v| v.as_str().unwrap()).collect();
    for value in &values {
        let response = h.send("GET", "/v1/quote", Some(("payment-signature", value)), None).await;
        assert_eq!(response.status(), 200);
    }
    let again = h.send("GET", "/v1/quote", Some(("payment-signature", values[0])), None).await;
    assert_eq!(again.status(), 403, "a payment pays once");
    assert_eq!(h.chain.balance(pay_to()).await - before, 2 * 10_000);
    assert_eq!(h.upstream.hits(), 2);
}
