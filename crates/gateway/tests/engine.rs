//! The engine in process, in milliseconds: the gateway built from a config whose options are the test rail
//! (`paygate_methods::test_rail`: it settles, refuses, leaves settlement pending, fails, or sends nothing, as
//! configured), its ledger in an in-memory SQLite, its upstream a tower service in this process, and each request
//! sent with `tower::ServiceExt::oneshot`. Every path of the paid flow is here: the 402, paying, replays, racing
//! copies, the upstream failing, each settlement outcome, free calls, usage tiers, API keys, redelivery of an owed
//! response, and every refusal with its status. The real-component suites (anvil, the devnet, the official
//! clients, PostgreSQL) drive the same engine over sockets.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use paygate_gateway::ClientAddr;
use paygate_gateway::{BuildOptions, Config, Gateway, PaygateLayer, build};
use paygate_proto::mpp::{self, Credential};
use paygate_store::{PaymentQuery, PaymentRecord, PaymentState, Transition};
use paygate_testkit::ShiftedClock;
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceExt};

/// The upstream: counts its hits and answers with the status a test sets (200 at first).
#[derive(Clone, Default)]
struct Upstream {
    hits: Arc<AtomicUsize>,
    status: Arc<AtomicU16>,
}

impl Upstream {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn service(
        &self,
    ) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone + use<> {
        let upstream = self.clone();
        tower::service_fn(move |_: Request<Body>| {
            let upstream = upstream.clone();
            async move {
                upstream.hits.fetch_add(1, Ordering::SeqCst);
                let status = match upstream.status.load(Ordering::SeqCst) {
                    0 => 200,
                    status => status,
                };
                let mut response = Response::new(Body::from(r#"{"answer":42}"#));
                *response.status_mut() = StatusCode::from_u16(status).expect("a status");
                Ok::<_, Infallible>(response)
            }
        })
    }
}

/// A gateway on the test rail, and around it what a test looks at.
struct Engine {
    gateway: Arc<Gateway>,
    upstream: Upstream,
    clock: Arc<ShiftedClock>,
}

/// The config of every engine: one test option per outcome, and the routes each test pays.
fn config(extra: &str) -> String {
    let option = |name: &str, outcome: &str| {
        format!("[[accept]]\nrail = \"test\"\nname = \"{name}\"\noutcome = \"{outcome}\"\n")
    };
    let route = |path: &str, option: &str| {
        format!("[[routes]]\nmethod = \"GET\"\npath = \"{path}\"\nprice = \"$0.01\"\naccept = [\"{option}\"]\n")
    };
    format!(
        "[server]\nsecret = \"engine-test-secret-of-at-least-32-bytes\"\nmax_body_bytes = 64\n\
         [upstream]\nurl = \"http://upstream.invalid\"\n[store]\nurl = \"sqlite::memory:\"\n\
         {}{}{}{}{}\
         {}{}{}{}{}\
         [[routes]]\nmethod = \"POST\"\npath = \"/echo\"\nprice = \"$0.01\"\naccept = [\"settles\"]\n\
         [[routes]]\npath = \"/free\"\n{extra}",
        option("settles", "settles"),
        option("refused", "refused"),
        option("pending", "pending"),
        option("failed", "failed"),
        option("not-sent", "not_sent"),
        route("/settles", "settles"),
        route("/refused", "refused"),
        route("/pending", "pending"),
        route("/failed", "failed"),
        route("/not-sent", "not-sent"),
    )
}

impl Engine {
    async fn start() -> Engine {
        Engine::with(&config("")).await
    }

    async fn with(toml: &str) -> Engine {
        let config = Config::parse(toml, "engine.toml").expect("the engine config parses");
        let clock = Arc::new(ShiftedClock::default());
        let built = build(&config, "engine.toml", BuildOptions { clock: clock.clone(), ..Default::default() })
            .await
            .expect("the engine config builds");
        Engine { gateway: built.gateway, upstream: Upstream::default(), clock }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
        let service = PaygateLayer::new(self.gateway.clone()).layer(self.upstream.service());
        let response = service.oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("a body").to_bytes();
        (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, authorization: Option<&str>) -> (StatusCode, http::HeaderMap, Value) {
        let mut request = Request::get(path).header("host", "api.test");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        self.send(request.body(Body::empty()).expect("a request")).await
    }

    /// A credential for `path`'s test offer, paying with proof `proof`.
    async fn credential(&self, path: &str, proof: &str) -> String {
        let (status, headers, _) = self.get(path, None).await;
        assert_eq!(status, 402, "{path}");
        challenge_credential(&headers, proof)
    }

    async fn ledger(&self) -> Vec<PaymentRecord> {
        self.gateway.store().payments(&PaymentQuery::default()).await.expect("the ledger")
    }
}

/// The credential answering the test challenge of a 402 with `proof`.
fn challenge_credential(headers: &http::HeaderMap, proof: &str) -> String {
    let challenge = headers
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| mpp::parse_challenge(v.to_str().ok()?).ok())
        .find(|c| c.method == "test")
        .expect("a test challenge");
    Credential { challenge, payload: json!({ "proof": proof }), source: None }.to_header()
}

fn reason(problem: &Value) -> &str {
    problem["reason"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn an_unpaid_request_gets_offers_and_touches_nothing() {
    let e = Engine::start().await;
    let (status, headers, body) = e.get("/settles", None).await;
    assert_eq!((status, reason(&body)), (StatusCode::PAYMENT_REQUIRED, "payment_required"));
    assert!(headers.contains_key("www-authenticate") && headers.contains_key("x-request-id"));
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!((e.upstream.hits(), e.ledger().await.len()), (0, 0));
    let (status, _, _) = e.get("/free", None).await;
    assert_eq!((status, e.upstream.hits()), (StatusCode::OK, 1));
}

#[tokio::test]
async fn a_payment_is_served_settled_receipted_and_never_replayed() {
    let e = Engine::start().await;
    let credential = e.credential("/settles", "p1").await;
    let (status, headers, body) = e.get("/settles", Some(&credential)).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({ "answer": 42 })));
    assert!(headers.contains_key("payment-receipt"));
    assert_eq!(headers["cache-control"], "private, no-store");
    let ledger = e.ledger().await;
    assert_eq!((ledger.len(), ledger[0].state, ledger[0].amount.as_str()), (1, PaymentState::Settled, "1"));
    assert_eq!(ledger[0].tx_hash.as_deref(), Some("test-settlement:test:settles:p1"));

    let (status, _, body) = e.get("/settles", Some(&credential)).await;
    assert_eq!((status, reason(&body)), (StatusCode::FORBIDDEN, "payment_replayed"));
    assert_eq!(e.upstream.hits(), 1);
}

#[tokio::test]
async fn of_racing_copies_one_is_served() {
    let e = Engine::start().await;
    let credential = e.credential("/settles", "race").await;
    let copies = (0..20).map(|_| e.get("/settles", Some(&credential)));
    let statuses: Vec<u16> = futures_util::future::join_all(copies).await.iter().map(|(s, _, _)| s.as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| [200, 403, 409].contains(s)), "{statuses:?}");
    assert_eq!((e.upstream.hits(), e.ledger().await.len()), (1, 1));
}

#[tokio::test]
async fn each_settlement_outcome_is_answered_as_documented() {
    let e = Engine::start().await;
    let cases = [
        ("/refused", StatusCode::PAYMENT_REQUIRED, "invalid_signature", None),
        ("/pending", StatusCode::OK, "", Some(PaymentState::Pending)),
        ("/failed", StatusCode::PAYMENT_REQUIRED, "settlement_failed", Some(PaymentState::Failed)),
        ("/not-sent", StatusCode::BAD_GATEWAY, "processor_unavailable", Some(PaymentState::Voided)),
    ];
    for (path, expected, expected_reason, state) in cases {
        let credential = e.credential(path, path).await;
        let (status, headers, body) = e.get(path, Some(&credential)).await;
        assert_eq!((status, reason(&body)), (expected, expected_reason), "{path}");
        let row = e.ledger().await.into_iter().find(|r| r.route == format!("GET {path}"));
        assert_eq!(row.as_ref().map(|r| r.state), state, "{path}");
        if path == "/pending" {
            assert_eq!(headers["paygate-settlement"], "pending");
        }
        if path == "/failed" {
            assert!(row.is_some_and(|r| r.recheck), "a failed row is checked again");
        }
    }
}

#[tokio::test]
async fn a_failed_upstream_charges_nothing_and_the_same_payment_serves_later() {
    let e = Engine::start().await;
    let credential = e.credential("/settles", "retry").await;
    e.upstream.answer(500);
    let (status, headers, _) = e.get("/settles", Some(&credential)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!headers.contains_key("payment-receipt"));
    assert_eq!(e.ledger().await[0].state, PaymentState::Voided);
    e.upstream.answer(200);
    let (status, _, _) = e.get("/settles", Some(&credential)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(e.ledger().await[0].state, PaymentState::Settled);
    let history: Vec<_> =
        e.gateway.store().events(e.ledger().await[0].id).await.unwrap().into_iter().map(|e| e.to_state).collect();
    use PaymentState::*;
    assert_eq!(history, [Verified, Voided, Verified, Settling, Settled]);
}

#[tokio::test]
async fn an_owed_response_is_served_once_to_the_same_credential() {
    let e = Engine::start().await;
    let credential = e.credential("/settles", "owed").await;
    assert_eq!(e.get("/settles", Some(&credential)).await.0, StatusCode::OK);
    // As if its gateway had died before answering: the reconciler marks such a payment owed.
    let row = &e.ledger().await[0];
    let owed = Transition { reason: "test: owed", response_owed: Some(true), ..Default::default() };
    e.gateway.store().transition(row.id, &[PaymentState::Settled], PaymentState::Settled, owed).await.unwrap();
    let (status, headers, _) = e.get("/settles", Some(&credential)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key("payment-receipt"));
    assert_eq!(e.get("/settles", Some(&credential)).await.0, StatusCode::FORBIDDEN, "owed once");
    assert_eq!(e.upstream.hits(), 2);
}

#[tokio::test]
async fn usage_tiers_serve_free_calls_then_charge_the_tier_price() {
    let tiered = "[[routes]]\nmethod = \"GET\"\npath = \"/tiered\"\naccept = [\"settles\"]\nperiod = \"day\"\n\
                  tiers = [{ calls = 2, price = \"$0\" }, { price = \"$0.02\" }]\n";
    let e = Engine::with(&config(tiered)).await;
    for (i, expected) in ["free", "free"].iter().enumerate() {
        let credential = e.credential("/tiered", &format!("t{i}")).await;
        let (status, headers, _) = e.get("/tiered", Some(&credential)).await;
        assert_eq!((status, headers["paygate-settlement"].to_str().unwrap()), (StatusCode::OK, *expected));
    }
    let credential = e.credential("/tiered", "t2").await;
    let (status, headers, _) = e.get("/tiered", Some(&credential)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key("payment-receipt"));
    let states: Vec<PaymentState> = e.ledger().await.iter().rev().map(|r| r.state).collect();
    assert_eq!(states, [PaymentState::Free, PaymentState::Free, PaymentState::Settled]);
    assert_eq!(e.ledger().await[0].amount, "2", "the second tier's price, in cents");
}

#[tokio::test]
async fn free_calls_per_address_come_before_any_402() {
    let free =
        "[[routes]]\nmethod = \"GET\"\npath = \"/trial\"\nprice = \"$0.01\"\naccept = [\"settles\"]\nfree_calls = 1\n";
    let e = Engine::with(&config(free)).await;
    let from = |addr: &str| {
        let mut request = Request::get("/trial").header("host", "api.test").body(Body::empty()).unwrap();
        request.extensions_mut().insert(ClientAddr(addr.parse::<SocketAddr>().unwrap()));
        request
    };
    let (status, headers, _) = e.send(from("10.0.0.1:1000")).await;
    assert_eq!((status, headers["paygate-free-calls-left"].to_str().unwrap()), (StatusCode::OK, "0"));
    assert_eq!(e.send(from("10.0.0.1:1001")).await.0, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(e.send(from("10.0.0.2:1000")).await.0, StatusCode::OK, "another address has its own");
    assert!(e.ledger().await.is_empty());
}

#[tokio::test]
async fn api_key_customers_are_metered_and_unknown_keys_refused() {
    let keyed =
        "[[routes]]\nmethod = \"GET\"\npath = \"/keyed\"\nprice = \"$0.05\"\naccept = [\"settles\"]\napi_keys = true\n";
    let e = Engine::with(&config(keyed)).await;
    let key = paygate_gateway::api_keys::generate();
    let store = e.gateway.store();
    store.create_api_key("acme", &paygate_gateway::api_keys::hash(&key), &key[..8]).await.unwrap().unwrap();
    let (status, _, _) = e.get("/keyed", Some(&format!("Bearer {key}"))).await;
    assert_eq!(status, StatusCode::OK);
    let ledger = e.ledger().await;
    assert_eq!(
        (ledger[0].state, ledger[0].payer.as_str(), ledger[0].amount.as_str()),
        (PaymentState::Metered, "key:acme", "5")
    );
    let (status, headers, body) = e.get("/keyed", Some("Bearer pgk_not_a_key")).await;
    assert_eq!((status, reason(&body)), (StatusCode::UNAUTHORIZED, "unknown_api_key"));
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(e.upstream.hits(), 1);
}

#[tokio::test]
async fn every_refusal_has_its_status_and_reason_and_charges_nothing() {
    let e = Engine::start().await;
    let credential = e.credential("/settles", "r").await;
    let post = |body: &'static str, authorization: Option<String>| {
        let mut request = Request::post("/echo").header("host", "api.test");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.body(Body::from(body)).unwrap()
    };
    let (_, headers, _) = e.send(post("{}", None)).await;
    let echo_credential = challenge_credential(&headers, "body");
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (get_with("/settles", "Payment %%%"), StatusCode::BAD_REQUEST, "malformed_credential"),
        (get_with("/other", &credential), StatusCode::NOT_FOUND, "route_not_found"),
        (get_with("/pending", &credential), StatusCode::PAYMENT_REQUIRED, "route_mismatch"),
        (head_with("/settles", &credential), StatusCode::METHOD_NOT_ALLOWED, "head_not_paid"),
        (post("{\"other\":1}", Some(echo_credential.clone())), StatusCode::PAYMENT_REQUIRED, "body_mismatch"),
        (post(&"x".repeat(65).leak()[..], Some(echo_credential)), StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        (get_with("/v1/%2e%2e/x", &credential), StatusCode::BAD_REQUEST, "ambiguous_path"),
    ];
    for (request, expected, expected_reason) in cases {
        let (status, _, body) = e.send(request).await;
        assert_eq!((status, reason(&body)), (expected, expected_reason));
    }
    e.clock.advance(120);
    let (status, _, body) = e.get("/settles", Some(&credential)).await;
    assert_eq!((status, reason(&body)), (StatusCode::PAYMENT_REQUIRED, "challenge_expired"));
    assert_eq!((e.upstream.hits(), e.ledger().await.len()), (0, 0));
}

fn get_with(path: &str, authorization: &str) -> Request<Body> {
    Request::get(path).header("host", "api.test").header("authorization", authorization).body(Body::empty()).unwrap()
}

fn head_with(path: &str, authorization: &str) -> Request<Body> {
    Request::head(path).header("host", "api.test").header("authorization", authorization).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_payer_over_its_rate_and_a_request_with_two_credentials_are_refused_before_any_claim() {
    let e = Engine::with(&format!("{}[limits]\nper_payer_per_minute = 1\n", config(""))).await;
    let first = e.credential("/settles", "first").await;
    assert_eq!(e.get("/settles", Some(&first)).await.0, StatusCode::OK);
    let second = e.credential("/settles", "second").await;
    let (status, headers, body) = e.get("/settles", Some(&second)).await;
    assert_eq!((status, reason(&body)), (StatusCode::TOO_MANY_REQUESTS, "payer_rate_limited"));
    assert!(headers.contains_key("retry-after"));
    let (status, _, body) = e.get("/settles", Some(&format!("{second}, {first}"))).await;
    assert_eq!((status, reason(&body)), (StatusCode::BAD_REQUEST, "multiple_credentials"));
    assert_eq!((e.upstream.hits(), e.ledger().await.len()), (1, 1));
}
