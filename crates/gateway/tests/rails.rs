//! Every rail in one gateway, as `examples/all-rails.toml` sets them up: EIP-3009 (x402 and MPP `evm`), Tempo
//! (a TIP-20 look-alike on anvil), Stripe (localstripe), Lightning (LND's REST port, recorded) and pay-first
//! tx-hash proofs, all offered in one 402.
//!
//! The 402 is read by the official parsers (mppx, @x402/core). Then, per rail, through the gateway: a paid
//! request succeeds; a replayed proof, a wrong amount, a wrong recipient, an expired challenge and an unreachable
//! backend each get their status and problem type, with nothing proxied, nothing settled twice and the ledger
//! exact. The tx-hash rail's cases are in `txhash.rs`, EIP-3009's in `rejections.rs`.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::U256;
use common::{Harness, Options, kind, pay_to, problem};
use paygate_chain::devtoken::dev_account;
use paygate_methods::tempo::encode_memo;
use paygate_proto::mpp::{Challenge, Credential, Receipt, parse_challenges};
use paygate_store::PaymentState;
use paygate_testkit::lnd::{
    Identity, LndStandIn, MACAROON, NodeFiles, RECORDED_CREATED, RECORDED_HASH, RECORDED_PREIMAGE,
};
use paygate_testkit::stripe::{LocalStripe, cards};
use paygate_testkit::tip20::Tip20;
use paygate_testkit::{Devchain, MINING, Upstream, node};
use serde_json::{Value, json};

/// `$0.01` in the 6-decimal test tokens.
const PRICE_UNITS: u64 = 10_000;

/// The gateway with every rail, and the backends behind them.
struct AllRails {
    h: Harness,
    stripe: LocalStripe,
    lnd: LndStandIn,
    tip20: Tip20,
    _lnd_files: NodeFiles,
}

impl AllRails {
    async fn start() -> AllRails {
        let chain = Devchain::start_with(31337, MINING).await;
        let tip20 = Tip20::deploy(chain.chain.clone(), "Test Dollar", "TUSD").await;
        tip20.mint(dev_account(1).address(), U256::from(1_000_000u64)).await;
        let stripe = LocalStripe::start().await;
        let identity = Identity::lnd_like();
        let lnd = LndStandIn::start(&identity, MACAROON).await;
        let files = NodeFiles::write(MACAROON, &identity.cert_pem);
        let extra_toml = format!(
            r#"
            {tempo}
            {card}
            [[accept]]
            name = "usdc-local-txhash"
            rail = "txhash"
            network = "local"
            asset = "USDC"
            pay_to = "{pay_to}"

            [[accept]]
            name = "lightning"
            rail = "lightning"
            [accept.lightning]
            lnd_url = "{lnd_url}"
            macaroon_file = "{macaroon}"
            tls_cert_file = "{tls_cert}"
            network = "regtest"
            sats_per_usd = 2000

            [[routes]]
            method = "GET"
            path = "/v1/lightning-only"
            price = "$0.01"
            accept = ["lightning"]
            "#,
            tempo = tip20.tempo_testnet_toml(&chain.rpc_url, pay_to()),
            card = stripe.card_toml(),
            pay_to = pay_to(),
            lnd_url = lnd.url,
            macaroon = files.macaroon.display(),
            tls_cert = files.tls_cert.display(),
        );
        let h = Harness::around(chain, Upstream::start().await, Options { extra_toml, ..Default::default() }).await;
        AllRails { h, stripe, lnd, tip20, _lnd_files: files }
    }

    /// The recorded invoice is from 2022, and the Lightning rail offers no invoice that has expired: runs the
    /// gateway's clock a minute after the invoice was made.
    fn at_recorded_invoice_time(&self) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        self.h.clock.advance(-((now - RECORDED_CREATED - 60) as i64));
    }

    /// A fresh 402 for `path` and its MPP challenge of `method`.
    async fn challenge(&self, path: &str, method: &str) -> Challenge {
        let response = self.h.send("GET", path, None, None).await;
        assert_eq!(response.status(), 402);
        mpp_challenges(&response)
            .into_iter()
            .find(|c| c.method == method)
            .unwrap_or_else(|| panic!("no {method} offer"))
    }

    /// Sends `payload` as the answer to `challenge`.
    async fn pay(&self, path: &str, challenge: &Challenge, payload: Value) -> reqwest::Response {
        let credential = Credential { challenge: challenge.clone(), payload, source: None };
        self.h.send("GET", path, Some(("Authorization", &credential.to_header())), None).await
    }
}

fn mpp_challenges(response: &reqwest::Response) -> Vec<Challenge> {
    response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .flat_map(|v| parse_challenges(v.to_str().expect("ASCII")))
        .map(|c| c.expect("a well-formed challenge"))
        .collect()
}

/// An answer to an echoed challenge whose `request` was edited: the HMAC binding must refuse it.
fn tampered(challenge: &Challenge, edit: impl Fn(&mut Value)) -> Challenge {
    let mut challenge = challenge.clone();
    edit(&mut challenge.request);
    challenge
}

fn receipt(response: &reqwest::Response) -> Receipt {
    let header = response.headers().get("payment-receipt").expect("a Payment-Receipt").to_str().unwrap();
    Receipt::from_header(header).expect("a readable receipt")
}

async fn assert_refused(response: reqwest::Response, status: u16, type_uri: &str, reason: &str, case: &str) {
    let (got_status, p) = problem(response).await;
    assert_eq!((got_status, kind(&p)), (status, (type_uri, reason)), "{case}: {:?}", p.detail);
}

const REPLAYED: &str = "urn:paygate:problem:payment-replayed";
const INVALID_CHALLENGE: &str = "https://paymentauth.org/problems/invalid-challenge";
const EXPIRED: &str = "https://paymentauth.org/problems/payment-expired";
const VERIFICATION_FAILED: &str = "https://paymentauth.org/problems/verification-failed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_402_offers_every_rail_and_the_official_parsers_read_it() {
    let r = AllRails::start().await;
    r.at_recorded_invoice_time();
    let response = r.h.send("GET", "/v1/quote", None, None).await;
    assert_eq!(response.status(), 402);
    let methods: Vec<String> = mpp_challenges(&response).iter().map(|c| c.method.clone()).collect();
    assert_eq!(methods, ["evm", "tempo", "stripe", "lightning"], "one MPP line per MPP offer, in config order");
    assert_eq!(response.headers()["x-402-receiver"].to_str().unwrap(), pay_to().to_checksum(None));

    let parsed = node::parse402(&r.h.url("/v1/quote")).await;
    assert!(parsed.get("error").is_none(), "an official parser refused the 402: {parsed}");
    assert_eq!(parsed["status"], 402);
    let mpp: Vec<&str> = parsed["mpp"].as_array().unwrap().iter().map(|c| c["method"].as_str().unwrap()).collect();
    assert_eq!(mpp, ["evm", "tempo", "stripe", "lightning"], "mppx reads every line");
    let client: Vec<&str> =
        parsed["mppClient"].as_array().unwrap().iter().map(|c| c["method"].as_str().unwrap()).collect();
    // mppx's client transport collects every MPP line, then reads the x402 header as one more `evm` offer.
    assert_eq!(client, ["evm", "tempo", "stripe", "lightning", "evm"]);
    // x402 offers only what x402 clients can pay: the EVM `exact` option, which strict schemas accept.
    assert_eq!(parsed["x402"], json!({"networks": ["eip155:31337"], "schemes": ["exact"]}));
    assert_eq!(parsed["x402v1"], json!({"networks": ["eip155:31337"]}));
    assert_eq!(r.lnd.seen.lock().unwrap().len(), 2, "one invoice per 402");
    assert_eq!(r.h.upstream.hits(), 0);
    assert!(r.h.ledger().await.is_empty(), "402s write nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tempo_a_transfer_bound_to_its_challenge_pays_once() {
    let mut r = AllRails::start().await;
    let payer = dev_account(1);
    let paid_before = r.tip20.balance(pay_to()).await;

    let challenge = r.challenge("/v1/quote", "tempo").await;
    assert_eq!(challenge.request["amount"], json!(PRICE_UNITS.to_string()));
    assert_eq!(challenge.request["recipient"].as_str().unwrap(), pay_to().to_checksum(None));
    let memo = encode_memo(&challenge.realm, &challenge.id, None);
    let hash = r.tip20.transfer_with_memo(&payer, pay_to(), U256::from(PRICE_UNITS), memo).await;
    let payload = json!({"type": "hash", "hash": format!("{hash:#x}")});
    let paid = r.pay("/v1/quote", &challenge, payload.clone()).await;
    assert_eq!(paid.status(), 200);
    assert_eq!(receipt(&paid).reference, format!("{hash:#x}"));
    assert_eq!(r.tip20.balance(pay_to()).await - paid_before, U256::from(PRICE_UNITS));

    // The same proof again, and the same transfer for a fresh challenge.
    let again = r.pay("/v1/quote", &challenge, payload.clone()).await;
    assert_refused(again, 403, REPLAYED, "payment_replayed", "replay").await;
    let fresh = r.challenge("/v1/quote", "tempo").await;
    let reused = r.pay("/v1/quote", &fresh, payload).await;
    assert_refused(reused, 402, VERIFICATION_FAILED, "memo_not_bound", "a transfer bound to another challenge").await;

    // Less than the price, and the price paid to someone else, each bound to its own challenge.
    let short = r.challenge("/v1/quote", "tempo").await;
    let memo = encode_memo(&short.realm, &short.id, None);
    let hash = r.tip20.transfer_with_memo(&payer, pay_to(), U256::from(PRICE_UNITS - 1), memo).await;
    let response = r.pay("/v1/quote", &short, json!({"type": "hash", "hash": format!("{hash:#x}")})).await;
    let (status, p) = problem(response).await;
    assert_eq!((status, kind(&p).1), (402, "amount_mismatch"), "short");
    let elsewhere = r.challenge("/v1/quote", "tempo").await;
    let memo = encode_memo(&elsewhere.realm, &elsewhere.id, None);
    let hash = r.tip20.transfer_with_memo(&payer, dev_account(7).address(), U256::from(PRICE_UNITS), memo).await;
    let response = r.pay("/v1/quote", &elsewhere, json!({"type": "hash", "hash": format!("{hash:#x}")})).await;
    let (status, p) = problem(response).await;
    assert_eq!((status, kind(&p).1), (402, "no_matching_transfer"), "paid to someone else");
    // An echoed challenge asking less: the binding refuses it before anything is looked up.
    let cheaper = tampered(&challenge, |request| request["amount"] = json!("1"));
    let response = r.pay("/v1/quote", &cheaper, json!({"type": "hash", "hash": format!("{hash:#x}")})).await;
    assert_refused(response, 402, INVALID_CHALLENGE, "unknown_challenge", "tampered amount").await;

    // Too late: the challenge expired before the proof came.
    let late = r.challenge("/v1/quote", "tempo").await;
    let memo = encode_memo(&late.realm, &late.id, None);
    let hash = r.tip20.transfer_with_memo(&payer, pay_to(), U256::from(PRICE_UNITS), memo).await;
    r.h.clock.advance(31);
    let late_payload = json!({"type": "hash", "hash": format!("{hash:#x}")});
    let response = r.pay("/v1/quote", &late, late_payload).await;
    assert_refused(response, 402, EXPIRED, "challenge_expired", "expired").await;
    r.h.clock.advance(-31);

    // The chain is down: 502, and nothing recorded.
    let down = r.challenge("/v1/quote", "tempo").await;
    let memo = encode_memo(&down.realm, &down.id, None);
    let hash = r.tip20.transfer_with_memo(&payer, pay_to(), U256::from(PRICE_UNITS), memo).await;
    r.h.chain.kill();
    let response = r.pay("/v1/quote", &down, json!({"type": "hash", "hash": format!("{hash:#x}")})).await;
    let (status, p) = problem(response).await;
    assert_eq!((status, kind(&p).0), (502, "urn:paygate:problem:chain-unavailable"));

    assert_eq!(r.h.upstream.hits(), 1, "only the paid request reached the upstream");
    let ledger = r.h.ledger().await;
    assert_eq!(ledger.len(), 1);
    assert_eq!((ledger[0].rail.as_str(), ledger[0].state), ("tempo", PaymentState::Settled));
    assert_eq!(ledger[0].amount, PRICE_UNITS.to_string());
    assert_eq!(ledger[0].payer, payer.address().to_checksum(None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_a_card_pays_once_and_refusals_charge_nothing() {
    let r = AllRails::start().await;
    let challenge = r.challenge("/v1/quote", "stripe").await;
    assert_eq!(
        (challenge.request["amount"].clone(), challenge.request["currency"].clone()),
        (json!("1"), json!("usd"))
    );
    let card = r.stripe.card_payment_method(cards::SUCCEEDS).await;
    let paid = r.pay("/v1/quote", &challenge, json!({"spt": card})).await;
    assert_eq!(paid.status(), 200, "{}", r.stripe.log());
    let intent_id = receipt(&paid).reference;
    assert!(intent_id.starts_with("pi_"), "the receipt names the PaymentIntent: {intent_id}");
    let intent = r.stripe.payment_intent(&intent_id).await;
    assert_eq!((intent["status"].clone(), intent["amount"].clone()), (json!("succeeded"), json!(1)));

    let again = r.pay("/v1/quote", &challenge, json!({"spt": card})).await;
    assert_refused(again, 403, REPLAYED, "payment_replayed", "replay").await;

    let declined = r.stripe.card_payment_method(cards::DECLINED).await;
    let response = r.pay("/v1/quote", &r.challenge("/v1/quote", "stripe").await, json!({"spt": declined})).await;
    assert_refused(response, 402, VERIFICATION_FAILED, "card_declined", "declined").await;
    let three_ds = r.stripe.card_payment_method(cards::REQUIRES_ACTION).await;
    let response = r.pay("/v1/quote", &r.challenge("/v1/quote", "stripe").await, json!({"spt": three_ds})).await;
    let (status, p) = problem(response).await;
    assert_eq!((status, kind(&p).0), (402, "https://paymentauth.org/problems/payment-action-required"), "3-D Secure");

    // Wrong amount or payee in the echoed challenge: refused by the binding, no PaymentIntent made.
    let intents_before = r.stripe.payment_intents().await.len();
    let fresh = r.challenge("/v1/quote", "stripe").await;
    for (case, edit) in [("amount", json!({"amount": "0"})), ("recipient", json!({"recipient": "acct_attacker"}))] {
        let edited = tampered(&fresh, |request| {
            for (field, value) in edit.as_object().unwrap() {
                request[field] = value.clone();
            }
        });
        let response = r.pay("/v1/quote", &edited, json!({"spt": card})).await;
        assert_refused(response, 402, INVALID_CHALLENGE, "unknown_challenge", case).await;
    }
    r.h.clock.advance(31);
    let response = r.pay("/v1/quote", &fresh, json!({"spt": card})).await;
    assert_refused(response, 402, EXPIRED, "challenge_expired", "expired").await;
    r.h.clock.advance(-31);
    assert_eq!(r.stripe.payment_intents().await.len(), intents_before, "refused before Stripe was asked");

    // Stripe unreachable: 502.
    let last = r.challenge("/v1/quote", "stripe").await;
    let AllRails { h, stripe, .. } = r;
    drop(stripe);
    let credential = Credential { challenge: last, payload: json!({"spt": card}), source: None };
    let response = h.send("GET", "/v1/quote", Some(("Authorization", &credential.to_header())), None).await;
    let (status, p) = problem(response).await;
    assert_eq!((status, kind(&p).0), (502, "urn:paygate:problem:processor-unavailable"));

    assert_eq!(h.upstream.hits(), 1);
    let ledger = h.ledger().await;
    assert_eq!(ledger.len(), 1);
    assert_eq!((ledger[0].rail.as_str(), ledger[0].state), ("stripe", PaymentState::Settled));
    assert_eq!(ledger[0].tx_hash.as_deref(), Some(intent_id.as_str()), "the ledger keeps the PaymentIntent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lightning_a_preimage_pays_its_invoice_once() {
    let r = AllRails::start().await;
    r.at_recorded_invoice_time();

    let challenge = r.challenge("/v1/quote", "lightning").await;
    assert_eq!(challenge.request["amount"], json!("20"), "$0.01 at 2000 sat per dollar");
    assert_eq!(challenge.request["methodDetails"]["paymentHash"], json!(RECORDED_HASH));
    let asked = r.lnd.seen.lock().unwrap().last().cloned().expect("an invoice was asked for");
    assert_eq!(asked.body["value_msat"], json!("20000"));

    let wrong = r.pay("/v1/quote", &challenge, json!({"preimage": "00".repeat(32)})).await;
    let (status, p) = problem(wrong).await;
    assert_eq!((status, kind(&p).0), (402, VERIFICATION_FAILED), "a preimage of another payment");
    let paid = r.pay("/v1/quote", &challenge, json!({"preimage": RECORDED_PREIMAGE})).await;
    assert_eq!(paid.status(), 200);
    assert_eq!(receipt(&paid).reference, RECORDED_HASH);

    let again = r.pay("/v1/quote", &challenge, json!({"preimage": RECORDED_PREIMAGE})).await;
    assert_refused(again, 403, REPLAYED, "payment_replayed", "replay").await;
    // The stand-in hands out the same invoice again: its preimage has paid once and cannot pay twice.
    let same_invoice = r.challenge("/v1/quote", "lightning").await;
    let response = r.pay("/v1/quote", &same_invoice, json!({"preimage": RECORDED_PREIMAGE})).await;
    let (status, p) = problem(response).await;
    assert_eq!((status, kind(&p).0), (403, REPLAYED), "the payment hash is claimed once");
    let cheaper = tampered(&same_invoice, |request| request["amount"] = json!("1"));
    let response = r.pay("/v1/quote", &cheaper, json!({"preimage": RECORDED_PREIMAGE})).await;
    assert_refused(response, 402, INVALID_CHALLENGE, "unknown_challenge", "tampered amount").await;
    r.h.clock.advance(31);
    let response = r.pay("/v1/quote", &same_invoice, json!({"preimage": RECORDED_PREIMAGE})).await;
    assert_refused(response, 402, EXPIRED, "challenge_expired", "expired").await;

    // LND unreachable: the other rails are still offered; a Lightning-only route answers 502.
    r.lnd.stop().await;
    let response = r.h.send("GET", "/v1/quote", None, None).await;
    let methods: Vec<String> = mpp_challenges(&response).iter().map(|c| c.method.clone()).collect();
    assert_eq!(methods, ["evm", "tempo", "stripe"]);
    let (status, p) = problem(r.h.send("GET", "/v1/lightning-only", None, None).await).await;
    assert_eq!((status, kind(&p).0), (502, "urn:paygate:problem:processor-unavailable"));

    assert_eq!(r.h.upstream.hits(), 1);
    let ledger = r.h.ledger().await;
    assert_eq!(ledger.len(), 1);
    assert_eq!((ledger[0].rail.as_str(), ledger[0].state), ("lightning", PaymentState::Settled));
    assert_eq!(ledger[0].amount, "20");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mpp_credential_for_one_rail_cannot_be_presented_as_another() {
    let r = AllRails::start().await;
    let stripe = r.challenge("/v1/quote", "stripe").await;
    let mut as_lightning = stripe.clone();
    as_lightning.method = "lightning".into();
    let response = r.pay("/v1/quote", &as_lightning, json!({"preimage": RECORDED_PREIMAGE})).await;
    assert_refused(response, 402, INVALID_CHALLENGE, "unknown_challenge", "method swapped").await;
    let response = r.pay("/v1/quote", &stripe, json!({})).await;
    let (status, _) = problem(response).await;
    assert_eq!(status, 400, "an empty Stripe payload is malformed");
    assert_eq!(r.h.upstream.hits(), 0);
    assert!(r.h.ledger().await.is_empty());
}
