//! The Lightning rail against real Lightning software: two in-process LDK nodes (`lightning` 0.2.7's functional
//! test harness) with a real channel between them. The payee node is the rail's backend (it creates the BOLT11
//! invoice of each challenge); the payer node pays that invoice over the channel, with real HTLC and commitment
//! updates, and the preimage the payee learns becomes the MPP credential a client would send.
//!
//! LDK's test nodes borrow from each other and are not `Send`, so each test runs them on a thread of their own
//! and talks to it over a channel: the backend's `create_invoice` and the test's `pay` are requests to that
//! thread, answered through oneshot channels. The thread is joined at the end of each test, so a failed LDK
//! assertion (or a node left with unprocessed events) fails the test.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bitcoin::hashes::{Hash, sha256};
use lightning::events::{Event, PaymentPurpose};
use lightning::ln::channelmanager::{Bolt11InvoiceParameters, PaymentId, Retry};
use lightning::ln::functional_test_utils::*;
use lightning::ln::msgs::BaseMessageHandler;
use lightning::routing::router::RouteParametersConfig;
use lightning::types::payment::PaymentHash;
use lightning_invoice::{Bolt11Invoice, Bolt11InvoiceDescription, Bolt11InvoiceDescriptionRef, Description};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use paygate_core::clock::Clock;
use paygate_core::method::{MppTerms, PaymentMethod, PaymentOption, Proof, SettleOutcome};
use paygate_core::money::AtomicAmount;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_methods::lightning::{
    BackendError, Invoice, LightningBackend, LightningMethod, LightningSettings, option_network, sat_asset,
};
use paygate_proto::mpp::{Challenge, Credential};

/// A clock the test can move forward.
#[derive(Debug)]
struct TestClock(AtomicU64);

impl TestClock {
    fn now() -> Arc<TestClock> {
        Arc::new(TestClock(AtomicU64::new(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs())))
    }

    fn set(&self, unix: u64) {
        self.0.store(unix, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the LDK thread is asked to do.
enum Command {
    /// The payee node creates an invoice.
    CreateInvoice {
        amount_msat: u64,
        memo: String,
        expiry_secs: u64,
        reply: oneshot::Sender<Result<Invoice, BackendError>>,
    },
    /// The payer node pays an invoice over the channel; the answer is the preimage the payee learned.
    Pay {
        bolt11: String,
        reply: oneshot::Sender<Result<[u8; 32], String>>,
    },
    Stop,
}

/// Two LDK nodes on their own thread: node 1 is the payee (the rail's backend), node 0 the payer.
#[derive(Debug)]
struct Ldk {
    commands: mpsc::Sender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Ldk {
    fn start() -> Arc<Ldk> {
        let (commands, inbox) = mpsc::channel();
        let thread = std::thread::spawn(move || run_nodes(inbox));
        Arc::new(Ldk { commands, thread: Mutex::new(Some(thread)) })
    }

    async fn pay(&self, bolt11: &str) -> [u8; 32] {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Pay { bolt11: bolt11.to_owned(), reply }).unwrap();
        answer.await.expect("the LDK thread died").expect("the payment went through")
    }

    /// Stops the nodes (their `Drop` checks nothing was left unprocessed) and surfaces any panic of the thread.
    fn finish(&self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.lock().unwrap().take()
            && let Err(panic) = thread.join()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

#[async_trait]
impl LightningBackend for Ldk {
    async fn create_invoice(&self, amount_msat: u64, memo: &str, expiry_secs: u64) -> Result<Invoice, BackendError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::CreateInvoice { amount_msat, memo: memo.to_owned(), expiry_secs, reply };
        self.commands.send(command).map_err(|_| BackendError::Unreachable("the LDK thread stopped".into()))?;
        answer.await.map_err(|_| BackendError::Unreachable("the LDK thread died".into()))?
    }
}

fn run_nodes(inbox: mpsc::Receiver<Command>) {
    let chanmon_cfgs = create_chanmon_cfgs(2);
    let node_cfgs = create_node_cfgs(2, &chanmon_cfgs);
    let node_chanmgrs = create_node_chanmgrs(2, &node_cfgs, &[None, None]);
    let nodes = create_network(2, &node_cfgs, &node_chanmgrs);
    create_announced_chan_between_nodes(&nodes, 0, 1);
    while let Ok(command) = inbox.recv() {
        match command {
            Command::CreateInvoice { amount_msat, memo, expiry_secs, reply } => {
                let _ = reply.send(create_invoice(&nodes[1], amount_msat, memo, expiry_secs));
            }
            Command::Pay { bolt11, reply } => {
                let _ = reply.send(pay(&nodes[0], &nodes[1], &bolt11));
            }
            Command::Stop => break,
        }
    }
}

fn create_invoice(payee: &Node, amount_msat: u64, memo: String, expiry_secs: u64) -> Result<Invoice, BackendError> {
    let refused = |message: String| BackendError::Refused { status: 400, message };
    let description = Description::new(memo).map_err(|e| refused(format!("{e:?}")))?;
    let params = Bolt11InvoiceParameters {
        amount_msats: Some(amount_msat),
        description: Bolt11InvoiceDescription::Direct(description),
        invoice_expiry_delta_secs: Some(u32::try_from(expiry_secs).map_err(|e| refused(e.to_string()))?),
        ..Default::default()
    };
    let invoice = payee.node.create_bolt11_invoice(params).map_err(|e| refused(format!("{e:?}")))?;
    Ok(Invoice { bolt11: invoice.to_string(), payment_hash: invoice.payment_hash().to_byte_array() })
}

fn pay<'a, 'b, 'c>(payer: &Node<'a, 'b, 'c>, payee: &Node<'a, 'b, 'c>, bolt11: &str) -> Result<[u8; 32], String> {
    let invoice = Bolt11Invoice::from_str(bolt11).map_err(|e| format!("{e:?}"))?;
    let payment_hash = PaymentHash(invoice.payment_hash().to_byte_array());
    let amount_msat = invoice.amount_milli_satoshis().ok_or("the invoice has no amount")?;
    payer
        .node
        .pay_for_bolt11_invoice(
            &invoice,
            PaymentId(payment_hash.0),
            None,
            RouteParametersConfig::default(),
            Retry::Attempts(0),
        )
        .map_err(|e| format!("{e:?}"))?;
    check_added_monitors(payer, 1);
    let mut events = payer.node.get_and_clear_pending_msg_events();
    if events.len() != 1 {
        return Err(format!("expected one update_add_htlc, got {events:?}"));
    }
    let path = [payee];
    do_pass_along_path(
        PassAlongPathArgs::new(payer, &path, amount_msat, payment_hash, events.remove(0))
            .with_payment_secret(*invoice.payment_secret())
            .without_clearing_recipient_events(),
    );
    let preimage = payee
        .node
        .get_and_clear_pending_events()
        .into_iter()
        .find_map(|event| match event {
            Event::PaymentClaimable {
                payment_hash: hash,
                purpose: PaymentPurpose::Bolt11InvoicePayment { payment_preimage: Some(preimage), .. },
                ..
            } if hash == payment_hash => Some(preimage),
            _ => None,
        })
        .ok_or("the payee saw no claimable payment")?;
    // The payee claims the HTLC, which is what hands the preimage back to the payer.
    claim_payment(payer, &path, preimage);
    Ok(preimage.0)
}

const OPTION: &str = "ln-testnet";

/// LDK's functional-test nodes are on testnet (`lntb` invoices).
fn method_on(network: &str, ldk: &Arc<Ldk>, clock: &Arc<TestClock>, expiry_secs: u64) -> LightningMethod {
    let option = PaymentOption {
        name: OPTION.into(),
        network: option_network(network),
        asset: sat_asset(),
        pay_to: String::new(),
        max_timeout_secs: 60,
    };
    let settings = LightningSettings { network: network.into(), invoice_expiry_secs: expiry_secs };
    LightningMethod::new(option, ldk.clone(), settings, clock.clone()).unwrap()
}

fn method(ldk: &Arc<Ldk>, clock: &Arc<TestClock>) -> LightningMethod {
    method_on("testnet", ldk, clock, 600)
}

fn invoice_of(terms: &MppTerms) -> String {
    terms.request["methodDetails"]["invoice"].as_str().unwrap().to_owned()
}

/// The credential a client sends for `terms` under challenge `id`, through its header encoding.
fn credential(terms: &MppTerms, id: &str, payload: Value, clock: &TestClock) -> Credential {
    let credential = Credential {
        challenge: Challenge {
            id: id.into(),
            realm: "api.example.com".into(),
            method: terms.method.into(),
            intent: terms.intent.into(),
            request: terms.request.clone(),
            description: None,
            digest: None,
            expires: Some(paygate_core::clock::rfc3339(clock.now_unix() + 30)),
            header: None,
            opaque: None,
        },
        payload,
        source: None,
    };
    Credential::from_header(&credential.to_header()).unwrap()
}

async fn verify(method: &LightningMethod, credential: &Credential, sats: u128) -> Result<String, Rejection> {
    method.verify(Proof::Mpp { credential }, AtomicAmount(sats)).await.map(|v| v.proof_key)
}

#[tokio::test]
async fn a_paid_invoice_verifies_by_its_preimage_and_settles_with_its_payment_hash() {
    let ldk = Ldk::start();
    let clock = TestClock::now();
    let method = method(&ldk, &clock);

    let terms = method.challenge_terms(AtomicAmount(250)).await.unwrap().expect("a per-challenge offer");
    assert_eq!((terms.method, terms.intent), ("lightning", "charge"));
    assert_eq!(terms.request["amount"], "250");
    assert_eq!(terms.request["currency"], "sat");
    assert_eq!(terms.request["methodDetails"]["network"], "testnet");
    let bolt11 = invoice_of(&terms);
    let invoice = Bolt11Invoice::from_str(&bolt11).unwrap();
    assert_eq!(invoice.amount_milli_satoshis(), Some(250_000));
    let payment_hash = hex::encode(invoice.payment_hash().to_byte_array());
    assert_eq!(terms.request["methodDetails"]["paymentHash"], payment_hash.as_str());
    assert!(matches!(invoice.description(), Bolt11InvoiceDescriptionRef::Direct(d) if d.to_string() == OPTION));
    assert!(method.matches_request(&terms.request, AtomicAmount(250)));

    let preimage = ldk.pay(&bolt11).await;
    assert_eq!(hex::encode(sha256::Hash::hash(&preimage).to_byte_array()), payment_hash);
    let preimage_hex = hex::encode(preimage);

    let paid = credential(&terms, "challenge-1", json!({ "preimage": preimage_hex }), &clock);
    let verified = method.verify(Proof::Mpp { credential: &paid }, AtomicAmount(250)).await.unwrap();
    assert_eq!(verified.proof_key, format!("lightning:{payment_hash}"));
    assert_eq!(verified.payer, "lightning");
    assert_eq!(verified.amount, AtomicAmount(250));
    assert_eq!(verified.settlement, json!({ "payment_hash": payment_hash }));
    assert!(!verified.settlement.to_string().contains(&preimage_hex), "the preimage is not stored");

    assert_eq!(method.settle(&verified).await, SettleOutcome::Settled { reference: payment_hash.clone() });

    // Every credential for this invoice claims the same proof key, so the gateway's claim makes it single-use.
    let again = credential(&terms, "challenge-2", json!({ "preimage": preimage_hex }), &clock);
    assert_eq!(verify(&method, &again, 250).await.unwrap(), verified.proof_key);
    assert_eq!(verify(&method, &paid, 250).await.unwrap(), verified.proof_key);
    ldk.finish();
}

#[tokio::test]
async fn a_wrong_preimage_is_invalid_preimage_and_never_echoed() {
    let ldk = Ldk::start();
    let clock = TestClock::now();
    let method = method(&ldk, &clock);
    let first = method.challenge_terms(AtomicAmount(100)).await.unwrap().unwrap();
    let second = method.challenge_terms(AtomicAmount(100)).await.unwrap().unwrap();
    assert_ne!(first.request, second.request, "each challenge gets its own invoice");
    let first_preimage = hex::encode(ldk.pay(&invoice_of(&first)).await);
    let second_preimage = hex::encode(ldk.pay(&invoice_of(&second)).await);

    // A real preimage, of another paid invoice: valid for its own challenge only.
    let swapped = credential(&first, "c", json!({ "preimage": second_preimage }), &clock);
    let rejection = verify(&method, &swapped, 100).await.unwrap_err();
    assert_eq!((rejection.kind, rejection.reason), (RejectKind::VerificationFailed, "invalid_preimage"));
    assert!(!rejection.detail.contains(&second_preimage));
    assert!(!format!("{rejection:?}").contains(&second_preimage));

    let guessed = "ab".repeat(32);
    let rejection =
        verify(&method, &credential(&first, "c", json!({ "preimage": guessed }), &clock), 100).await.unwrap_err();
    assert_eq!((rejection.kind, rejection.reason), (RejectKind::VerificationFailed, "invalid_preimage"));

    // Not 64 lowercase hex characters: malformed, whatever the bytes.
    for payload in [
        json!({ "preimage": first_preimage.to_uppercase() }),
        json!({ "preimage": &first_preimage[..62] }),
        json!({ "preimage": format!("0x{}", &first_preimage[..62]) }),
        json!({ "preimage": 7 }),
        json!({ "paymentPreimage": first_preimage }),
    ] {
        let rejection = verify(&method, &credential(&first, "c", payload.clone(), &clock), 100).await.unwrap_err();
        assert_eq!(
            (rejection.kind, rejection.reason),
            (RejectKind::MalformedCredential, "invalid_payload"),
            "{payload}"
        );
        assert!(!rejection.detail.contains(&first_preimage[..62]));
    }
    let x402 = json!({ "preimage": first_preimage });
    let rejection = method.verify(Proof::X402 { version: 2, payload: &x402 }, AtomicAmount(100)).await.unwrap_err();
    assert_eq!(rejection.reason, "invalid_payload");

    // The right preimage still works for each.
    assert!(
        verify(&method, &credential(&first, "c", json!({ "preimage": first_preimage }), &clock), 100).await.is_ok()
    );
    assert!(
        verify(&method, &credential(&second, "c", json!({ "preimage": second_preimage }), &clock), 100).await.is_ok()
    );
    ldk.finish();
}

#[tokio::test]
async fn an_invoice_past_its_expiry_is_expired_invoice() {
    let ldk = Ldk::start();
    let clock = TestClock::now();
    let method = method_on("testnet", &ldk, &clock, 60);
    let terms = method.challenge_terms(AtomicAmount(42)).await.unwrap().unwrap();
    let invoice = Bolt11Invoice::from_str(&invoice_of(&terms)).unwrap();
    assert_eq!(invoice.expiry_time().as_secs(), 60, "the configured expiry goes into the invoice");
    let preimage = hex::encode(ldk.pay(&invoice_of(&terms)).await);
    let paid = credential(&terms, "c", json!({ "preimage": preimage }), &clock);

    let expires_at = invoice.expires_at().unwrap().as_secs();
    clock.set(expires_at - 1);
    assert!(verify(&method, &paid, 42).await.is_ok(), "still within the invoice's expiry");

    clock.set(expires_at + 1);
    let rejection = verify(&method, &paid, 42).await.unwrap_err();
    assert_eq!((rejection.kind, rejection.reason), (RejectKind::PaymentExpired, "expired_invoice"));
    assert!(!rejection.detail.contains(&preimage));
    ldk.finish();
}

#[tokio::test]
async fn an_invoice_for_another_amount_is_refused() {
    let ldk = Ldk::start();
    let clock = TestClock::now();
    let method = method(&ldk, &clock);
    let terms = method.challenge_terms(AtomicAmount(250)).await.unwrap().unwrap();
    let preimage = hex::encode(ldk.pay(&invoice_of(&terms)).await);
    let paid = credential(&terms, "c", json!({ "preimage": preimage }), &clock);

    // A 250 sat invoice presented where the price is 300: it pays too little.
    assert!(!method.matches_request(&terms.request, AtomicAmount(300)));
    let rejection = verify(&method, &paid, 300).await.unwrap_err();
    assert_eq!((rejection.kind, rejection.reason), (RejectKind::PaymentInsufficient, "amount_mismatch"));
    // And where the price is 200: not this offer either.
    assert!(!method.matches_request(&terms.request, AtomicAmount(200)));
    let rejection = verify(&method, &paid, 200).await.unwrap_err();
    assert_eq!((rejection.kind, rejection.reason), (RejectKind::VerificationFailed, "amount_mismatch"));

    // An echoed request whose amount was changed no longer agrees with its invoice.
    let mut altered = terms.clone();
    altered.request["amount"] = json!("1");
    assert!(!method.matches_request(&altered.request, AtomicAmount(1)));
    let rejection =
        verify(&method, &credential(&altered, "c", json!({ "preimage": preimage }), &clock), 1).await.unwrap_err();
    assert_eq!((rejection.kind, rejection.reason), (RejectKind::InvalidChallenge, "offer_mismatch"));

    assert!(verify(&method, &paid, 250).await.is_ok());
    ldk.finish();
}

/// A backend that forwards to LDK but asks for one satoshi more than it was told to.
#[derive(Debug)]
struct Overcharging(Arc<Ldk>);

#[async_trait]
impl LightningBackend for Overcharging {
    async fn create_invoice(&self, amount_msat: u64, memo: &str, expiry_secs: u64) -> Result<Invoice, BackendError> {
        self.0.create_invoice(amount_msat + 1000, memo, expiry_secs).await
    }
}

#[tokio::test]
async fn an_invoice_the_offer_cannot_stand_behind_is_never_offered() {
    let ldk = Ldk::start();
    let clock = TestClock::now();

    // The node's invoices are testnet ones; an option configured for regtest must not offer them.
    let regtest = method_on("regtest", &ldk, &clock, 600);
    let rejection = regtest.challenge_terms(AtomicAmount(10)).await.unwrap_err();
    assert_eq!((rejection.kind, rejection.reason), (RejectKind::ProcessorUnavailable, "processor_unavailable"));

    let option = PaymentOption {
        name: OPTION.into(),
        network: option_network("testnet"),
        asset: sat_asset(),
        pay_to: String::new(),
        max_timeout_secs: 60,
    };
    let settings = LightningSettings { network: "testnet".into(), invoice_expiry_secs: 600 };
    let overcharging = Arc::new(Overcharging(ldk.clone()));
    let method = LightningMethod::new(option.clone(), overcharging, settings.clone(), clock.clone()).unwrap();
    let rejection = method.challenge_terms(AtomicAmount(10)).await.unwrap_err();
    assert_eq!(rejection.kind, RejectKind::ProcessorUnavailable);

    // A zero price would be an invoice for any amount.
    let method = LightningMethod::new(option.clone(), ldk.clone(), settings.clone(), clock.clone()).unwrap();
    assert!(method.challenge_terms(AtomicAmount(0)).await.is_err());

    // Options that are not Lightning ones are refused up front.
    let bad_network = LightningSettings { network: "mainnet".into(), ..settings.clone() };
    assert!(LightningMethod::new(option.clone(), ldk.clone(), bad_network, clock.clone()).is_err());
    let other_chain = PaymentOption { network: option_network("bitcoin"), ..option.clone() };
    assert!(LightningMethod::new(other_chain, ldk.clone(), settings.clone(), clock.clone()).is_err());
    let mut usdc = option.clone();
    usdc.asset.decimals = 6;
    assert!(LightningMethod::new(usdc, ldk.clone(), settings.clone(), clock.clone()).is_err());
    let no_expiry = LightningSettings { invoice_expiry_secs: 0, ..settings };
    assert!(LightningMethod::new(option, ldk.clone(), no_expiry, clock.clone()).is_err());
    ldk.finish();
}
