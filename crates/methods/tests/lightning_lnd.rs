//! `LndRest`, the production Lightning backend, against **recorded** LND REST answers served by
//! `paygate_testkit::lnd` (no LND can run here; that module says why and how the stand-in behaves), including
//! the certificate pinning a stock LND's self-signed `tls.cert` needs.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use paygate_core::clock::FixedClock;
use paygate_core::method::{PaymentMethod, PaymentOption, Proof};
use paygate_core::money::AtomicAmount;
use paygate_core::reject::RejectKind;
use paygate_methods::lightning::{
    BackendError, LightningBackend, LightningMethod, LightningSettings, LndConfigError, LndRest, option_network,
    sat_asset,
};
use paygate_proto::mpp::{Challenge, Credential};
use paygate_testkit::lnd::{
    Identity, LndStandIn, MACAROON, NodeFiles, RECORDED_CREATED, RECORDED_HASH, RECORDED_PREIMAGE, fixture,
};

fn regtest_method(backend: Arc<dyn LightningBackend>, now: u64) -> LightningMethod {
    let option = PaymentOption {
        name: "lnd-regtest".into(),
        network: option_network("regtest"),
        asset: sat_asset(),
        pay_to: String::new(),
        max_timeout_secs: 60,
    };
    let settings = LightningSettings { network: "regtest".into(), invoice_expiry_secs: 3600 };
    LightningMethod::new(option, backend, settings, Arc::new(FixedClock(now))).unwrap()
}

fn credential(request: Value, preimage: &str) -> Credential {
    let credential = Credential {
        challenge: Challenge {
            id: "lnd-challenge".into(),
            realm: "api.example.com".into(),
            method: "lightning".into(),
            intent: "charge".into(),
            request,
            description: None,
            digest: None,
            expires: Some(paygate_core::clock::rfc3339(RECORDED_CREATED + 120)),
            header: None,
            opaque: None,
        },
        payload: json!({ "preimage": preimage }),
        source: None,
    };
    // Through the header, as a client sends it.
    Credential::from_header(&credential.to_header()).unwrap()
}

#[tokio::test]
async fn lnd_rest_creates_an_invoice_over_pinned_tls_with_the_macaroon() {
    let identity = Identity::lnd_like();
    let stand_in = LndStandIn::start(&identity, MACAROON).await;
    let (url, seen) = (stand_in.url.clone(), stand_in.seen.clone());
    let files = NodeFiles::write(MACAROON, &identity.cert_pem);
    let (macaroon_path, cert_path) = (&files.macaroon, &files.tls_cert);
    let lnd = LndRest::new(&url, macaroon_path, cert_path, Duration::from_secs(5)).unwrap();

    let invoice = lnd.create_invoice(20_000, "lncli test", 3600).await.unwrap();

    let recorded: Value = serde_json::from_str(&fixture("add_invoice.json")).unwrap();
    assert_eq!(invoice.bolt11, recorded["payment_request"].as_str().unwrap());
    assert_eq!(hex::encode(invoice.payment_hash), RECORDED_HASH, "r_hash is decoded from base64");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].macaroon.as_deref(), Some(hex::encode(MACAROON).as_str()), "the macaroon goes as hex");
    assert_eq!(seen[0].body, json!({"value_msat": "20000", "memo": "lncli test", "expiry": "3600"}));
    let debug = format!("{lnd:?}");
    assert!(!debug.contains(&hex::encode(MACAROON)), "Debug shows the macaroon: {debug}");
}

#[tokio::test]
async fn an_lnd_invoice_is_offered_and_its_preimage_verifies() {
    let identity = Identity::lnd_like();
    let stand_in = LndStandIn::start(&identity, MACAROON).await;
    let (url, _seen) = (stand_in.url.clone(), stand_in.seen.clone());
    let files = NodeFiles::write(MACAROON, &identity.cert_pem);
    let (macaroon_path, cert_path) = (&files.macaroon, &files.tls_cert);
    let lnd = LndRest::new(&url, macaroon_path, cert_path, Duration::from_secs(5)).unwrap();
    let method = regtest_method(Arc::new(lnd), RECORDED_CREATED + 60);
    assert!(!format!("{method:?}").contains(&hex::encode(MACAROON)), "Debug of the rail shows the macaroon");

    let terms = method.challenge_terms(AtomicAmount(20)).await.unwrap().unwrap();
    assert_eq!((terms.method, terms.intent), ("lightning", "charge"));
    let recorded: Value = serde_json::from_str(&fixture("add_invoice.json")).unwrap();
    assert_eq!(
        terms.request,
        json!({
            "amount": "20",
            "currency": "sat",
            "methodDetails": {
                "invoice": recorded["payment_request"],
                "network": "regtest",
                "paymentHash": RECORDED_HASH,
            },
        })
    );
    assert!(method.matches_request(&terms.request, AtomicAmount(20)));
    assert!(!method.matches_request(&terms.request, AtomicAmount(21)));

    let credential = credential(terms.request, RECORDED_PREIMAGE);
    let verified = method.verify(Proof::Mpp { credential: &credential }, AtomicAmount(20)).await.unwrap();
    assert_eq!(verified.proof_key, format!("lightning:{RECORDED_HASH}"));
    assert_eq!(verified.payer, "lightning");
    assert_eq!(verified.settlement, json!({ "payment_hash": RECORDED_HASH }));
}

#[tokio::test]
async fn a_refused_macaroon_is_processor_unavailable_and_the_macaroon_stays_out() {
    let identity = Identity::lnd_like();
    let stand_in = LndStandIn::start(&identity, b"another node's macaroon").await;
    let (url, seen) = (stand_in.url.clone(), stand_in.seen.clone());
    let files = NodeFiles::write(MACAROON, &identity.cert_pem);
    let (macaroon_path, cert_path) = (&files.macaroon, &files.tls_cert);
    let lnd = LndRest::new(&url, macaroon_path, cert_path, Duration::from_secs(5)).unwrap();

    let err = lnd.create_invoice(20_000, "x", 3600).await.unwrap_err();
    assert_eq!(
        err,
        BackendError::Refused {
            status: 500,
            message: "verification failed: signature mismatch after caveat verification".into()
        }
    );
    assert_eq!(seen.lock().unwrap().len(), 1);

    let method = regtest_method(Arc::new(lnd), RECORDED_CREATED + 60);
    let rejection = method.challenge_terms(AtomicAmount(20)).await.unwrap_err();
    assert_eq!(rejection.kind, RejectKind::ProcessorUnavailable);
    assert_eq!(rejection.reason, "processor_unavailable");
    assert!(!rejection.detail.contains(&hex::encode(MACAROON)));
    assert!(!rejection.detail.contains("caveat"), "the node's own error text stays in the logs: {}", rejection.detail);
}

#[tokio::test]
async fn an_unreachable_node_is_processor_unavailable_and_leaks_nothing() {
    let identity = Identity::lnd_like();
    let files = NodeFiles::write(MACAROON, &identity.cert_pem);
    let (macaroon_path, cert_path) = (&files.macaroon, &files.tls_cert);
    let url = format!("https://127.0.0.1:{}", paygate_testkit::REFUSED_PORT);
    let lnd = LndRest::new(&url, macaroon_path, cert_path, Duration::from_secs(5)).unwrap();

    let err = lnd.create_invoice(1000, "x", 60).await.unwrap_err();
    assert!(matches!(err, BackendError::Unreachable(_)), "{err:?}");
    assert!(!err.to_string().contains(&hex::encode(MACAROON)));

    let method = regtest_method(Arc::new(lnd), RECORDED_CREATED);
    let rejection = method.challenge_terms(AtomicAmount(1)).await.unwrap_err();
    assert_eq!(rejection.kind, RejectKind::ProcessorUnavailable);
    assert_eq!(rejection.kind.status(), 502);
    assert!(!rejection.detail.contains(&hex::encode(MACAROON)), "{}", rejection.detail);
    assert!(!rejection.detail.contains("127.0.0.1"), "the node's address stays out: {}", rejection.detail);
}

#[tokio::test]
async fn a_server_without_the_pinned_certificate_never_gets_the_macaroon() {
    let node = Identity::lnd_like();
    let impostor = Identity::lnd_like();
    let stand_in = LndStandIn::start(&impostor, MACAROON).await;
    let (url, seen) = (stand_in.url.clone(), stand_in.seen.clone());
    let files = NodeFiles::write(MACAROON, &node.cert_pem);
    let (macaroon_path, cert_path) = (&files.macaroon, &files.tls_cert);
    let lnd = LndRest::new(&url, macaroon_path, cert_path, Duration::from_secs(5)).unwrap();

    let err = lnd.create_invoice(1000, "x", 60).await.unwrap_err();
    assert!(matches!(err, BackendError::Unreachable(_)), "{err:?}");
    assert!(seen.lock().unwrap().is_empty(), "a request reached a server the node's tls.cert does not vouch for");
}

#[tokio::test]
async fn a_tls_cert_file_holding_a_ca_trusts_what_it_signed_for_the_host() {
    let (ca, leaf) = Identity::ca_signed();
    let stand_in = LndStandIn::start(&leaf, MACAROON).await;
    let (url, seen) = (stand_in.url.clone(), stand_in.seen.clone());
    let files = NodeFiles::write(MACAROON, &ca.cert_pem);
    let (macaroon_path, cert_path) = (&files.macaroon, &files.tls_cert);
    let lnd = LndRest::new(&url, macaroon_path, cert_path, Duration::from_secs(5)).unwrap();

    let invoice = lnd.create_invoice(20_000, "lncli test", 3600).await.unwrap();
    assert_eq!(hex::encode(invoice.payment_hash), RECORDED_HASH);
    assert_eq!(seen.lock().unwrap().len(), 1);

    // The same chain presented for another host name is refused.
    let other_host = url.replace("127.0.0.1", "localhost");
    let lnd = LndRest::new(&other_host, macaroon_path, cert_path, Duration::from_secs(5)).unwrap();
    assert!(matches!(lnd.create_invoice(20_000, "x", 60).await, Err(BackendError::Unreachable(_))));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn missing_or_unusable_files_are_constructor_errors_naming_the_file() {
    let identity = Identity::lnd_like();
    let files = NodeFiles::write(MACAROON, &identity.cert_pem);
    let (macaroon_path, cert_path) = (&files.macaroon, &files.tls_cert);
    let dir = files.macaroon.parent().unwrap();
    let timeout = Duration::from_secs(5);
    let url = "https://127.0.0.1:8080";

    let missing = dir.join("admin.macaroon");
    let err = LndRest::new(url, &missing, cert_path, timeout).unwrap_err();
    assert!(matches!(&err, LndConfigError::Macaroon { path, .. } if *path == missing), "{err:?}");
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");

    let missing_cert = dir.join("missing-tls.cert");
    let err = LndRest::new(url, macaroon_path, &missing_cert, timeout).unwrap_err();
    assert!(matches!(&err, LndConfigError::TlsCert { path, .. } if *path == missing_cert), "{err:?}");
    assert!(err.to_string().contains(&missing_cert.display().to_string()), "{err}");

    let empty = dir.join("empty.macaroon");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(LndRest::new(url, &empty, cert_path, timeout), Err(LndConfigError::Macaroon { .. })));

    let not_pem = dir.join("not-pem.cert");
    std::fs::write(&not_pem, b"this is not a certificate").unwrap();
    let err = LndRest::new(url, macaroon_path, &not_pem, timeout).unwrap_err();
    assert!(matches!(&err, LndConfigError::TlsCert { path, .. } if *path == not_pem), "{err:?}");

    let err = LndRest::new("http://127.0.0.1:8080", macaroon_path, cert_path, timeout).unwrap_err();
    assert!(matches!(err, LndConfigError::Url(_)), "the macaroon is never sent in clear: {err:?}");

    for err in [
        LndRest::new(url, &missing, cert_path, timeout).unwrap_err(),
        LndRest::new(url, macaroon_path, &missing_cert, timeout).unwrap_err(),
    ] {
        assert!(!format!("{err} {err:?}").contains(&hex::encode(MACAROON)));
    }
}
