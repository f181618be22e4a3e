//! The Stripe rail (`paygate_methods::stripe`) over real HTTP: against localstripe on loopback (started per test
//! by `paygate_testkit::stripe::LocalStripe`), against a port nothing listens on, and against a raw TCP server
//! that answers 500, garbage or nothing.
//!
//! localstripe has no Shared Payment Tokens, so the rail runs with `token_param = "payment_method"` and a card
//! PaymentMethod id (`pm_...`) stands in for the SPT; `tests/stripe/README.md` lists what that leaves
//! unexercised. The MPP credentials are built directly: the gateway's HMAC binding is not the rail's concern.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use paygate_core::method::{Asset, PaymentMethod, PaymentOption, Proof, SettleOutcome, TxHashProof, VerifiedPayment};
use paygate_core::money::AtomicAmount;
use paygate_core::network::Network;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_methods::stripe::{StripeMethod, StripeSettings};
use paygate_proto::mpp::{Challenge, Credential};
use paygate_testkit::stripe::{LocalStripe, SECRET_KEY, cards};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// $15.00 in cents.
const PRICE: AtomicAmount = AtomicAmount(1500);

fn option() -> PaymentOption {
    PaymentOption {
        name: "stripe-usd".into(),
        network: Network::Other("stripe".into()),
        asset: Asset { address: "usd".into(), symbol: "USD".into(), decimals: 2, usd: true, eip712: None },
        pay_to: "acct_seller".into(),
        max_timeout_secs: 300,
    }
}

/// The settings of a test against `api_base`: a `pm_...` id stands in for the SPT.
fn settings(api_base: &str, secret_key: &str) -> StripeSettings {
    StripeSettings {
        api_base: api_base.into(),
        network_id: Some("internal".into()),
        token_param: "payment_method".into(),
        timeout: Duration::from_secs(5),
        ..StripeSettings::new(secret_key)
    }
}

fn method(api_base: &str) -> StripeMethod {
    StripeMethod::new(option(), settings(api_base, SECRET_KEY)).expect("a valid Stripe option")
}

/// A credential answering a challenge `id` whose request is `request`.
fn credential_for(request: Value, id: &str, payload: Value) -> Credential {
    Credential {
        challenge: Challenge {
            id: id.into(),
            realm: "api.example.com".into(),
            method: "stripe".into(),
            intent: "charge".into(),
            request,
            description: None,
            digest: None,
            expires: Some("2099-01-01T00:00:00Z".into()),
            header: None,
            opaque: None,
        },
        payload,
        source: None,
    }
}

/// A credential answering the rail's own offer of [`PRICE`].
fn credential(method: &StripeMethod, id: &str, payload: Value) -> Credential {
    credential_for(method.mpp_terms(PRICE).expect("an offer of $15").request, id, payload)
}

async fn verify(method: &StripeMethod, credential: &Credential) -> Result<VerifiedPayment, Rejection> {
    method.verify(Proof::Mpp { credential }, PRICE).await
}

fn assert_rejected(result: Result<VerifiedPayment, Rejection>, kind: RejectKind, reason: &str) -> Rejection {
    let rejection = result.expect_err("a rejection");
    assert_eq!((rejection.kind, rejection.reason), (kind, reason), "{rejection}");
    rejection
}

fn intent_id(payment: &VerifiedPayment) -> String {
    payment.settlement["payment_intent"].as_str().expect("the settlement names the PaymentIntent").to_owned()
}

/// The charges whose money was taken.
async fn captured(stripe: &LocalStripe) -> Vec<Value> {
    stripe.charges().await.into_iter().filter(|c| c["captured"] == true && c["status"] == "succeeded").collect()
}

/// The PaymentIntents holding or having taken money.
async fn authorized(stripe: &LocalStripe) -> Vec<Value> {
    let intents = stripe.payment_intents().await;
    intents.into_iter().filter(|pi| pi["status"] == "requires_capture" || pi["status"] == "succeeded").collect()
}

#[tokio::test]
async fn a_paid_charge_is_authorized_at_verify_and_captured_at_settle() {
    let stripe = LocalStripe::start().await;
    let pm = stripe.card_payment_method(cards::SUCCEEDS).await;
    let rail = method(&stripe.url);
    let credential = credential(&rail, "chal_paid", json!({"spt": pm}));

    let paid = verify(&rail, &credential).await.expect("a good card is verified");
    assert_eq!(paid.proof_key, format!("stripe:mpp_chal_paid_{pm}"), "the proof is the idempotency key");
    assert_eq!(paid.payer, format!("stripe:{pm}"));
    assert_eq!(paid.amount, PRICE);

    // Authorized only: held for the price, nothing taken yet.
    let pi = intent_id(&paid);
    let held = stripe.payment_intent(&pi).await;
    assert_eq!(held["status"], "requires_capture", "{held}");
    assert_eq!((held["amount"].clone(), held["currency"].clone()), (json!(1500), json!("usd")));
    assert_eq!(held["capture_method"], "manual");
    assert_eq!(held["payment_method"], json!(pm));
    let metadata = &held["metadata"];
    assert_eq!(metadata["mpp_challenge_id"], "chal_paid");
    assert_eq!(metadata["mpp_intent"], "charge");
    assert_eq!(metadata["machine_payment"], "true");
    assert!(captured(&stripe).await.is_empty(), "verify must not take the money");

    assert_eq!(rail.settle(&paid).await, SettleOutcome::Settled { reference: pi.clone() });
    let done = stripe.payment_intent(&pi).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!((done["amount"].clone(), done["currency"].clone()), (json!(1500), json!("usd")));
    let taken = captured(&stripe).await;
    assert_eq!(taken.len(), 1, "exactly one charge captured: {taken:?}");
    assert_eq!((taken[0]["amount"].clone(), taken[0]["payment_intent"].clone()), (json!(1500), json!(pi)));
}

#[tokio::test]
async fn the_mpp_request_is_the_one_mppx_emits() {
    let rail = StripeMethod::new(option(), settings("https://api.stripe.com", "sk_test_unused")).unwrap();
    assert_eq!(rail.rail(), "stripe");
    assert!(rail.x402_requirements(PRICE).is_none(), "Stripe is MPP only");

    // What mppx 0.11.0 emits for `stripe.charge({networkId: 'internal', paymentMethodTypes: ['card'],
    // currency: 'usd', decimals: 2})` priced `charge({amount: '0.5'})`: `dist/stripe/Methods.js` turns the decimal
    // amount into minor units (`parseUnits`), drops `decimals`, and moves `networkId`, `paymentMethodTypes` (and
    // `metadata`, unset) into `methodDetails`; `PaymentRequest.serialize` sends the JCS text as base64url. The
    // `request` parameter below is what that server put in its `WWW-Authenticate` (node, 2026-11-23).
    let mppx_wire = concat!(
        "eyJhbW91bnQiOiI1MCIsImN1cnJlbmN5IjoidXNkIiwibWV0aG9kRGV0YWlscyI6eyJuZXR3b3JrSWQiOiJpbnRlcm5hbCIsInBheW1lbnRN",
        "ZXRob2RUeXBlcyI6WyJjYXJkIl19fQ",
    );
    let mppx = json!({
        "amount": "50",
        "currency": "usd",
        "methodDetails": {"networkId": "internal", "paymentMethodTypes": ["card"]},
    });

    let terms = rail.mpp_terms(AtomicAmount(50)).expect("50 cents is Stripe's minimum, still offered");
    assert_eq!((terms.method, terms.intent), ("stripe", "charge"));
    let ours = &terms.request;
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(ours), keys(&mppx), "the same fields, none more");
    assert_eq!(ours["amount"], mppx["amount"], "minor units as a string");
    assert_eq!(ours["currency"], mppx["currency"]);
    assert_eq!(keys(&ours["methodDetails"]), keys(&mppx["methodDetails"]));
    assert_eq!(ours["methodDetails"]["networkId"], mppx["methodDetails"]["networkId"]);
    assert_eq!(ours["methodDetails"]["paymentMethodTypes"], mppx["methodDetails"]["paymentMethodTypes"]);
    let on_the_wire = credential_for(terms.request.clone(), "x", json!({})).challenge.request_b64();
    assert_eq!(on_the_wire, mppx_wire, "byte for byte what an mppx server sends");
    assert!(rail.matches_request(&mppx, AtomicAmount(50)), "an mppx-shaped echo is this offer");

    assert_eq!(rail.mpp_terms(PRICE).unwrap().request["amount"], "1500");
    assert!(rail.mpp_terms(AtomicAmount(49)).is_none(), "under Stripe's minimum mppx's canOffer offers nothing");
    let no_network = StripeMethod::new(option(), StripeSettings { network_id: None, ..settings("http://x", "sk_x1") });
    let request = no_network.unwrap().mpp_terms(PRICE).unwrap().request;
    assert_eq!(request["methodDetails"], json!({"paymentMethodTypes": ["card"]}));
}

#[tokio::test]
async fn a_declined_card_fails_verification_and_nothing_is_captured() {
    let stripe = LocalStripe::start().await;
    let pm = stripe.card_payment_method(cards::DECLINED).await;
    let rail = method(&stripe.url);

    let result = verify(&rail, &credential(&rail, "chal_declined", json!({"spt": pm}))).await;
    let rejection = assert_rejected(result, RejectKind::VerificationFailed, "card_declined");
    assert_eq!(rejection.kind.status(), 402, "the payer may pay again with another card");
    assert_eq!(rejection.detail, "the card was declined (card_declined)", "a short code, not Stripe's message");
    assert!(authorized(&stripe).await.is_empty(), "nothing held");
    assert!(captured(&stripe).await.is_empty(), "nothing taken");
}

#[tokio::test]
async fn a_card_needing_3d_secure_is_payment_action_required() {
    let stripe = LocalStripe::start().await;
    let pm = stripe.card_payment_method(cards::REQUIRES_ACTION).await;
    let rail = method(&stripe.url);

    let result = verify(&rail, &credential(&rail, "chal_3ds", json!({"spt": pm}))).await;
    let rejection = assert_rejected(result, RejectKind::PaymentActionRequired, "action_required");
    assert_eq!(rejection.kind.status(), 402);
    assert!(authorized(&stripe).await.is_empty());
    assert!(captured(&stripe).await.is_empty());
}

#[tokio::test]
async fn a_credential_replayed_after_capture_is_refused() {
    let stripe = LocalStripe::start().await;
    let pm = stripe.card_payment_method(cards::SUCCEEDS).await;
    let rail = method(&stripe.url);
    let credential = credential(&rail, "chal_replay", json!({"spt": pm}));
    let paid = verify(&rail, &credential).await.unwrap();
    assert!(matches!(rail.settle(&paid).await, SettleOutcome::Settled { .. }));

    let rejection = assert_rejected(verify(&rail, &credential).await, RejectKind::Replayed, "payment_replayed");
    assert_eq!(rejection.kind.status(), 403, "do not pay again");
    assert_eq!(stripe.payment_intents().await.len(), 1, "the replay created no second PaymentIntent");
    assert_eq!(captured(&stripe).await.len(), 1, "the money was taken once");
}

#[tokio::test]
async fn a_credential_sent_again_before_capture_is_the_same_payment() {
    let stripe = LocalStripe::start().await;
    let pm = stripe.card_payment_method(cards::SUCCEEDS).await;
    let rail = method(&stripe.url);
    let credential = credential(&rail, "chal_retry", json!({"spt": pm}));

    let first = verify(&rail, &credential).await.unwrap();
    let again = verify(&rail, &credential).await.expect("a retry while held is the same verified payment");
    assert_eq!(again, first, "same proof_key, so the gateway's claim lets only one of them settle");
    assert_eq!(stripe.payment_intents().await.len(), 1, "one authorization, not two");
}

#[tokio::test]
async fn an_external_id_must_be_echoed_exactly() {
    let stripe = LocalStripe::start().await;
    let pm = stripe.card_payment_method(cards::SUCCEEDS).await;
    let rail = method(&stripe.url);
    let mut bound = rail.mpp_terms(PRICE).unwrap().request;
    bound["externalId"] = json!("server-order-123");

    // The cases of `stripe-external-id-binding.json` (tempoxyz/mpp-tools conformance vectors).
    for (name, payload) in [
        ("forged", json!({"spt": pm, "externalId": "attacker-order-999"})),
        ("stripped", json!({"spt": pm})),
        ("case_changed", json!({"spt": pm, "externalId": "SERVER-ORDER-123"})),
    ] {
        let forged = credential_for(bound.clone(), &format!("chal_{name}"), payload);
        let rejection =
            assert_rejected(verify(&rail, &forged).await, RejectKind::InvalidChallenge, "external_id_mismatch");
        assert_eq!(rejection.kind.status(), 402, "{name}");
    }
    assert!(stripe.payment_intents().await.is_empty(), "Stripe is not asked for a mismatched externalId");

    let honest = credential_for(bound, "chal_bound", json!({"spt": pm, "externalId": "server-order-123"}));
    let paid = verify(&rail, &honest).await.expect("the echoed externalId is accepted");
    assert_eq!(paid.settlement["external_id"], "server-order-123", "kept for the receipt");

    let pm2 = stripe.card_payment_method(cards::SUCCEEDS).await;
    let unbound = credential(&rail, "chal_unbound", json!({"spt": pm2, "externalId": "attacker-order-999"}));
    let paid = verify(&rail, &unbound).await.expect("a payload-only externalId is ignored");
    assert!(paid.settlement.get("external_id").is_none(), "and never attributed");
}

#[tokio::test]
async fn a_malformed_payload_is_refused_before_stripe_is_asked() {
    let stripe = LocalStripe::start().await;
    let rail = method(&stripe.url);

    for payload in [
        json!(null),
        json!("pm_123"),
        json!([]),
        json!({}),
        json!({"token": "pm_123"}),
        json!({"spt": 123}),
        json!({"spt": ""}),
        json!({"spt": "pm_1&amount=1"}),
        json!({"spt": "pm_1\r\nIdempotency-Key: x"}),
        json!({"spt": "pm_123", "externalId": {"id": 1}}),
    ] {
        let result = verify(&rail, &credential(&rail, "chal_bad", payload.clone())).await;
        let rejection = assert_rejected(result, RejectKind::MalformedCredential, "invalid_payload");
        assert_eq!(rejection.kind.status(), 400, "{payload}");
    }
    let x402 = json!({"signature": "0x00"});
    let result = rail.verify(Proof::X402 { version: 2, payload: &x402 }, PRICE).await;
    assert_rejected(result, RejectKind::MalformedCredential, "invalid_payload");
    let tx = TxHashProof {
        dialect: "x-402-payment-proof",
        tx_hash: "0xabc".into(),
        network: None,
        token: None,
        amount: None,
    };
    assert_rejected(rail.verify(Proof::TxHash(&tx), PRICE).await, RejectKind::MalformedCredential, "invalid_payload");
    assert!(stripe.payment_intents().await.is_empty(), "no PaymentIntent for a malformed credential");
}

#[tokio::test]
async fn a_token_stripe_does_not_know_is_refused() {
    let stripe = LocalStripe::start().await;
    let rail = method(&stripe.url);

    let result = verify(&rail, &credential(&rail, "chal_unknown", json!({"spt": "pm_NoSuchMethod0"}))).await;
    let rejection = assert_rejected(result, RejectKind::VerificationFailed, "payment_refused");
    assert_eq!(rejection.kind.status(), 402, "the payer may pay again with a good token");
    assert!(authorized(&stripe).await.is_empty());
}

#[tokio::test]
async fn unreachable_stripe_is_processor_unavailable_without_url_or_key() {
    let base = format!("http://127.0.0.1:{}", paygate_testkit::REFUSED_PORT);
    let rail = method(&base);

    let result = verify(&rail, &credential(&rail, "chal_down", json!({"spt": "pm_123"}))).await;
    let rejection = assert_rejected(result, RejectKind::ProcessorUnavailable, "processor_unavailable");
    assert_eq!(rejection.kind.status(), 502);
    let shown = format!("{rejection} {:?} {}", rejection, serde_json::to_string(&rejection.to_problem()).unwrap());
    for secret in [base.as_str(), "127.0.0.1", "http", SECRET_KEY] {
        assert!(!shown.contains(secret), "{secret:?} leaked: {shown}");
    }
}

#[tokio::test]
async fn settle_is_unknown_when_stripe_is_unreachable_and_failed_when_refused() {
    let stripe = LocalStripe::start().await;
    let pm = stripe.card_payment_method(cards::SUCCEEDS).await;
    let rail = method(&stripe.url);
    let paid = verify(&rail, &credential(&rail, "chal_settle", json!({"spt": pm}))).await.unwrap();
    let pi = intent_id(&paid);

    let down = method(&format!("http://127.0.0.1:{}", paygate_testkit::REFUSED_PORT));
    match down.settle(&paid).await {
        SettleOutcome::Unknown { reference, .. } => assert_eq!(reference, Some(pi.clone())),
        other => panic!("an unreachable capture may have happened: {other:?}"),
    }
    assert_eq!(stripe.payment_intent(&pi).await["status"], "requires_capture", "still held for the reconciler");
    assert_eq!(rail.settle(&paid).await, SettleOutcome::Settled { reference: pi.clone() }, "the retry captures");
    assert_eq!(rail.settle(&paid).await, SettleOutcome::Settled { reference: pi }, "a repeated capture is settled");

    let missing = VerifiedPayment {
        settlement: json!({"payment_intent": "pi_NoSuchIntent0", "captured": false}),
        ..paid.clone()
    };
    match rail.settle(&missing).await {
        SettleOutcome::Failed { reference, .. } => assert_eq!(reference.as_deref(), Some("pi_NoSuchIntent0")),
        other => panic!("a refused capture is a failure: {other:?}"),
    }
    let unreadable = VerifiedPayment { settlement: json!({"payment_intent": "pi_1/../../v1/charges"}), ..paid };
    assert!(matches!(rail.settle(&unreadable).await, SettleOutcome::Failed { reference: None, .. }));
    assert_eq!(captured(&stripe).await.len(), 1);
}

#[tokio::test]
async fn release_cancels_the_authorization() {
    let stripe = LocalStripe::start().await;
    let pm = stripe.card_payment_method(cards::SUCCEEDS).await;
    let rail = method(&stripe.url);
    let credential = credential(&rail, "chal_release", json!({"spt": pm}));
    let paid = verify(&rail, &credential).await.unwrap();
    let pi = intent_id(&paid);

    rail.release(&paid).await;
    let released = stripe.payment_intent(&pi).await;
    assert_eq!(released["status"], "canceled", "{released}");
    assert!(captured(&stripe).await.is_empty(), "the payer was not charged");
    assert_rejected(verify(&rail, &credential).await, RejectKind::Replayed, "payment_replayed");
    rail.release(&paid).await; // a second release only logs
    assert_eq!(stripe.payment_intent(&pi).await["status"], "canceled");
}

#[tokio::test]
async fn a_bad_secret_key_is_processor_unavailable_and_never_shown() {
    let stripe = LocalStripe::start().await;
    let pm = stripe.card_payment_method(cards::SUCCEEDS).await;
    // localstripe refuses every key that does not start with `sk_`.
    let key = "rk_wrong_0123456789abcdefSECRET";
    let rail = StripeMethod::new(option(), settings(&stripe.url, key)).unwrap();

    let result = verify(&rail, &credential(&rail, "chal_key", json!({"spt": pm}))).await;
    let rejection = assert_rejected(result, RejectKind::ProcessorUnavailable, "processor_unavailable");
    let shown = format!("{rejection} {rejection:?} {}", serde_json::to_string(&rejection.to_problem()).unwrap());
    assert!(!shown.contains(key) && !shown.contains("SECRET"), "the key leaked: {shown}");
    assert!(!format!("{rail:?} {:?}", settings(&stripe.url, key)).contains("SECRET"), "Debug shows the key");
    assert!(stripe.payment_intents().await.is_empty());
}

/// An HTTP/1.1 answer that closes the connection.
fn reply(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A loopback server that answers every request with `reply`, or never answers when it is `None`; it keeps the
/// text of each request it answered.
async fn raw_server(reply: Option<String>) -> String {
    recording_server(reply).await.0
}

async fn recording_server(reply: Option<String>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let record = requests.clone();
    tokio::spawn(async move {
        let mut silent = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let Some(reply) = reply.clone() else {
                silent.push(socket);
                continue;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut seen = Vec::new();
                // Read the head and the body it announces, then answer.
                loop {
                    let Ok(n) = socket.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                record.lock().unwrap().push(String::from_utf8_lossy(&seen).into_owned());
                let _ = socket.write_all(reply.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), requests)
}

#[tokio::test]
async fn the_payment_intent_request_has_the_shape_of_an_spt_charge() {
    // What the rail sends Stripe with its default settings: the request mppx's `createWithSecretKey` sends
    // (`mppx@0.11.0:dist/stripe/server/Charge.js`) plus `capture_method=manual`.
    let intent =
        r#"{"id":"pi_Shape1","object":"payment_intent","status":"requires_capture","payment_method":"pm_Card1"}"#;
    let (url, requests) = recording_server(Some(reply("200 OK", "application/json", intent))).await;
    let rail =
        StripeMethod::new(option(), StripeSettings { api_base: url, ..StripeSettings::new(SECRET_KEY) }).unwrap();

    let paid = verify(&rail, &credential(&rail, "chal_shape", json!({"spt": "spt_Granted1"}))).await.unwrap();
    assert_eq!(paid.proof_key, "stripe:mpp_chal_shape_spt_Granted1");
    assert_eq!(paid.payer, "stripe:pm_Card1");
    let request = requests.lock().unwrap().pop().expect("one request");
    let (head, body) = request.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("post /v1/payment_intents http/1.1\r\n"), "{head}");
    for header in [
        format!("authorization: bearer {}", SECRET_KEY.to_ascii_lowercase()),
        "idempotency-key: mpp_chal_shape_spt_granted1".to_owned(),
        "stripe-version: 2026-07-29.preview".to_owned(),
        "content-type: application/x-www-form-urlencoded".to_owned(),
    ] {
        assert!(head.lines().any(|line| line == header), "no {header:?} in {head}");
    }
    let mut form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    form.sort();
    let expected = [
        ("amount", "1500"),
        ("automatic_payment_methods[allow_redirects]", "never"),
        ("automatic_payment_methods[enabled]", "true"),
        ("capture_method", "manual"),
        ("confirm", "true"),
        ("currency", "usd"),
        ("metadata[machine_payment]", "true"),
        ("metadata[mpp_challenge_id]", "chal_shape"),
        ("metadata[mpp_intent]", "charge"),
        ("metadata[mpp_sdk]", concat!("paygate/", env!("CARGO_PKG_VERSION"))),
        ("metadata[paygate_option]", "stripe-usd"),
        ("shared_payment_granted_token", "spt_Granted1"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(form, expected);
}

#[tokio::test]
async fn stripe_errors_garbage_and_silence_are_processor_unavailable_and_a_busy_key_in_flight() {
    let leaky_500 = reply(
        "500 Internal Server Error",
        "application/json",
        r#"{"error":{"type":"api_error","message":"boom at db-7.internal:5432"}}"#,
    );
    let garbage = reply("200 OK", "text/html", "<html>hi</html>");
    let not_an_intent = reply("200 OK", "application/json", r#"{"id":"cus_1","status":"active"}"#);
    for (name, reply) in [("500", leaky_500), ("garbage", garbage), ("not a PI", not_an_intent)] {
        let rail = method(&raw_server(Some(reply)).await);
        let result = verify(&rail, &credential(&rail, "chal_x", json!({"spt": "pm_123"}))).await;
        let rejection = assert_rejected(result, RejectKind::ProcessorUnavailable, "processor_unavailable");
        assert!(!rejection.detail.contains("internal") && !rejection.detail.contains("boom"), "{name}: {rejection}");
    }

    let busy = reply("409 Conflict", "application/json", r#"{"error":{"type":"idempotency_error"}}"#);
    let rail = method(&raw_server(Some(busy)).await);
    let result = verify(&rail, &credential(&rail, "chal_busy", json!({"spt": "pm_123"}))).await;
    assert_rejected(result, RejectKind::InFlight, "payment_in_flight");

    let silent = raw_server(None).await;
    let rail = StripeMethod::new(
        option(),
        StripeSettings { timeout: Duration::from_millis(300), ..settings(&silent, SECRET_KEY) },
    )
    .unwrap();
    let started = std::time::Instant::now();
    let result = verify(&rail, &credential(&rail, "chal_slow", json!({"spt": "pm_123"}))).await;
    let rejection = assert_rejected(result, RejectKind::ProcessorUnavailable, "processor_unavailable");
    assert_eq!(rejection.detail, "Stripe could not be asked: timed out");
    assert!(started.elapsed() < Duration::from_secs(3), "the timeout holds");
    let held = VerifiedPayment {
        proof_key: "stripe:mpp_x_pm_1".into(),
        payer: "stripe:pm_1".into(),
        amount: PRICE,
        settlement: json!({"payment_intent": "pi_Held1", "captured": false}),
    };
    assert!(
        matches!(rail.settle(&held).await, SettleOutcome::Unknown { .. }),
        "a capture that timed out may have happened"
    );
}

#[test]
fn options_stripe_cannot_serve_are_refused() {
    let good = || settings("https://api.stripe.com", "sk_test_123");
    assert!(StripeMethod::new(option(), good()).is_ok());
    let defaults = StripeSettings::new("sk_test_123");
    assert_eq!(defaults.api_base, "https://api.stripe.com");
    assert_eq!(defaults.payment_method_types, vec!["card".to_owned()]);
    assert_eq!(defaults.token_param, "shared_payment_granted_token");
    assert_eq!(defaults.network_id, None);

    let evm = PaymentOption { network: Network::Evm(8453), ..option() };
    let token = PaymentOption {
        asset: Asset { address: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(), ..option().asset },
        ..option()
    };
    for (what, option, settings) in [
        ("an EVM network", evm, good()),
        ("a token, not a currency", token, good()),
        ("no key", option(), StripeSettings { secret_key: String::new(), ..good() }),
        ("a key with a line break", option(), StripeSettings { secret_key: "sk_1\r\n".into(), ..good() }),
        ("a relative API base", option(), StripeSettings { api_base: "/v1".into(), ..good() }),
        ("no payment method types", option(), StripeSettings { payment_method_types: vec![], ..good() }),
        ("a token parameter with a bracket", option(), StripeSettings { token_param: "a[b]".into(), ..good() }),
        ("a zero timeout", option(), StripeSettings { timeout: Duration::ZERO, ..good() }),
    ] {
        let err = StripeMethod::new(option, settings).expect_err(what);
        assert_eq!(err.option, "stripe-usd", "{what}");
        assert!(!err.to_string().contains("sk_1"), "{what}: {err}");
    }
}
