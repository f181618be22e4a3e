//! Every bad payment is refused with the right status and a stable problem type, and none has a side effect:
//! the upstream is never called, nothing is settled, the ledger stays empty.

mod common;

use common::{Harness, broke_key, decode_mpp, decode_x402, encode_mpp, encode_x402, kind, pay_to, payer, problem};
use futures_util::future::join_all;
use paygate_testkit::node;
use serde_json::{Value, json};

/// One bad request and what it must get.
struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    header: (String, String),
    body: Option<&'static str>,
    status: u16,
    kind: &'static str,
    reason: &'static str,
}

const INVALID: &str = "https://paymentauth.org/problems/invalid-challenge";
const FAILED: &str = "https://paymentauth.org/problems/verification-failed";
const INSUFFICIENT: &str = "https://paymentauth.org/problems/payment-insufficient";
const MALFORMED: &str = "https://paymentauth.org/problems/malformed-credential";
const EXPIRED: &str = "https://paymentauth.org/problems/payment-expired";
const NO_FUNDS: &str = "urn:paygate:problem:insufficient-funds";
const TOO_LARGE: &str = "urn:paygate:problem:header-too-large";
const MULTIPLE: &str = "urn:paygate:problem:multiple-credentials";

/// A `GET` case.
fn get(
    name: &'static str,
    path: &'static str,
    header: (String, String),
    status: u16,
    kind: &'static str,
    reason: &'static str,
) -> Case {
    Case { name, method: "GET", path, header, body: None, status, kind, reason }
}

fn x402_tampered(value: &str, edit: impl Fn(&mut Value)) -> (String, String) {
    let mut payload = decode_x402(value);
    edit(&mut payload);
    ("PAYMENT-SIGNATURE".into(), encode_x402(&payload))
}

fn mpp_tampered(value: &str, edit: impl Fn(&mut Value)) -> (String, String) {
    let mut credential = decode_mpp(value);
    edit(&mut credential);
    ("Authorization".into(), encode_mpp(&credential))
}

/// Flips one hex digit inside a 0x string.
fn flip(hex: &Value) -> Value {
    let mut s = hex.as_str().unwrap().to_owned();
    let i = s.len() - 10;
    let c = if &s[i..i + 1] == "a" { "b" } else { "a" };
    s.replace_range(i..i + 1, c);
    Value::String(s)
}

async fn check(h: &Harness, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in &cases {
        let header = (case.header.0.as_str(), case.header.1.as_str());
        let response = h.send(case.method, case.path, Some(header), case.body).await;
        let offers_again = response.headers().contains_key("payment-required");
        if response.headers().get("content-type").is_none_or(|v| v != "application/problem+json") {
            failures.push(format!("{}: got {} {:?}", case.name, response.status(), response.text().await));
            continue;
        }
        let (status, p) = problem(response).await;
        let got = (status, kind(&p).0.to_owned(), kind(&p).1.to_owned());
        let want = (case.status, case.kind.to_owned(), case.reason.to_owned());
        if got != want {
            failures.push(format!("{}: got {got:?}, want {want:?} ({:?})", case.name, p.detail));
        }
        if (status == 402) != offers_again {
            failures.push(format!("{}: a 402 carries fresh offers, other statuses none", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(h.upstream.hits(), 0, "nothing reached the upstream");
    assert!(h.ledger().await.is_empty(), "nothing was claimed");
    assert_eq!(h.chain.transfers(payer(), pay_to()).await, 0, "nothing was settled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_x402_payments_are_refused_without_side_effects() {
    let h = Harness::start().await;
    let quote = h.url("/v1/quote");
    let echo = h.url("/v1/echo");
    let signed = join_all([
        node::sign("x402", &quote, &[]),
        node::sign("x402", &echo, &["--method", "POST", "--body", r#"{"n":1}"#]),
        node::sign("x402", &quote, &["--key", &broke_key()]),
    ])
    .await;
    let quote_credential = signed[0].1.clone();
    let echo_credential = signed[1].1.clone();
    let broke_credential = signed[2].1.clone();
    let mut cases = vec![
        get(
            "tampered signature",
            "/v1/quote",
            x402_tampered(&quote_credential, |p| p["payload"]["signature"] = flip(&p["payload"]["signature"])),
            402,
            FAILED,
            "invalid_signature",
        ),
        get(
            "signed amount lower than the price",
            "/v1/quote",
            x402_tampered(&quote_credential, |p| p["payload"]["authorization"]["value"] = json!("9999")),
            402,
            INSUFFICIENT,
            "amount_mismatch",
        ),
        get(
            "accepted amount changed",
            "/v1/quote",
            x402_tampered(&quote_credential, |p| p["accepted"]["amount"] = json!("1")),
            402,
            INVALID,
            "amount_mismatch",
        ),
        get(
            "authorization pays someone else",
            "/v1/quote",
            x402_tampered(&quote_credential, |p| p["payload"]["authorization"]["to"] = json!(payer().to_string())),
            402,
            FAILED,
            "recipient_mismatch",
        ),
        get(
            "accepted payTo changed",
            "/v1/quote",
            x402_tampered(&quote_credential, |p| p["accepted"]["payTo"] = json!(payer().to_string())),
            402,
            INVALID,
            "recipient_mismatch",
        ),
        get(
            "another asset",
            "/v1/quote",
            x402_tampered(&quote_credential, |p| {
                p["accepted"]["asset"] = json!("0x036CbD53842c5426634e7929541eC2318f3dCF7e")
            }),
            402,
            INVALID,
            "asset_mismatch",
        ),
        get(
            "another chain",
            "/v1/quote",
            x402_tampered(&quote_credential, |p| p["accepted"]["network"] = json!("eip155:8453")),
            402,
            INVALID,
            "network_mismatch",
        ),
        get(
            "binding removed",
            "/v1/quote",
            x402_tampered(&quote_credential, |p| {
                p["accepted"]["extra"].as_object_mut().unwrap().remove("paygate");
            }),
            402,
            INVALID,
            "missing_binding",
        ),
        get(
            "expiry pushed back",
            "/v1/quote",
            x402_tampered(&quote_credential, |p| {
                p["accepted"]["extra"]["paygate"]["expires"] = json!("2099-01-01T00:00:00Z")
            }),
            402,
            INVALID,
            "challenge_mismatch",
        ),
        get(
            "challenge of another route",
            "/v1/other",
            ("PAYMENT-SIGNATURE".into(), quote_credential.clone()),
            402,
            INVALID,
            "challenge_mismatch",
        ),
        get(
            "payer without funds",
            "/v1/quote",
            ("PAYMENT-SIGNATURE".into(), broke_credential),
            402,
            NO_FUNDS,
            "insufficient_funds",
        ),
        get(
            "not base64",
            "/v1/quote",
            ("PAYMENT-SIGNATURE".into(), "!!not base64!!".into()),
            400,
            MALFORMED,
            "malformed_credential",
        ),
        get(
            "not JSON",
            "/v1/quote",
            ("PAYMENT-SIGNATURE".into(), "eyJ4NDAy".into()),
            400,
            MALFORMED,
            "malformed_credential",
        ),
        get(
            "JSON of the wrong shape",
            "/v1/quote",
            ("PAYMENT-SIGNATURE".into(), encode_x402(&json!({"x402Version": 2}))),
            400,
            MALFORMED,
            "malformed_credential",
        ),
        get(
            "malformed authorization",
            "/v1/quote",
            x402_tampered(&quote_credential, |p| p["payload"]["authorization"]["value"] = json!("ten")),
            400,
            MALFORMED,
            "invalid_payload",
        ),
        get(
            "v1 header garbage",
            "/v1/quote",
            ("X-PAYMENT".into(), "e30=".into()),
            400,
            MALFORMED,
            "malformed_credential",
        ),
        get(
            "oversized header",
            "/v1/quote",
            ("PAYMENT-SIGNATURE".into(), "A".repeat(20 * 1024)),
            431,
            TOO_LARGE,
            "header_too_large",
        ),
    ];
    cases.push(Case {
        name: "body changed after the challenge",
        method: "POST",
        path: "/v1/echo",
        header: ("PAYMENT-SIGNATURE".into(), echo_credential),
        body: Some(r#"{"n":2}"#),
        status: 402,
        kind: INVALID,
        reason: "challenge_mismatch",
    });
    check(&h, cases).await;

    // Expiry: the gateway's clock moves past the challenge's 30 s.
    h.clock.advance(31);
    let expired = vec![get(
        "expired challenge",
        "/v1/quote",
        ("PAYMENT-SIGNATURE".into(), quote_credential),
        402,
        EXPIRED,
        "challenge_expired",
    )];
    check(&h, expired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_mpp_payments_are_refused_without_side_effects() {
    let h = Harness::start().await;
    let quote = h.url("/v1/quote");
    let echo = h.url("/v1/echo");
    let signed = join_all([
        node::sign("mppx", &quote, &[]),
        node::sign("mppx", &echo, &["--method", "POST", "--body", r#"{"n":1}"#]),
        node::sign("mppx", &quote, &["--key", &broke_key()]),
        node::sign("x402", &quote, &[]),
    ])
    .await;
    let quote_credential = signed[0].1.clone();
    let echo_credential = signed[1].1.clone();
    let cases = vec![
        get(
            "tampered signature",
            "/v1/quote",
            mpp_tampered(&quote_credential, |c| c["payload"]["signature"] = flip(&c["payload"]["signature"])),
            402,
            FAILED,
            "invalid_signature",
        ),
        get(
            "signed amount lower than the price",
            "/v1/quote",
            mpp_tampered(&quote_credential, |c| c["payload"]["value"] = json!("9999")),
            402,
            INSUFFICIENT,
            "amount_mismatch",
        ),
        get(
            "authorization pays someone else",
            "/v1/quote",
            mpp_tampered(&quote_credential, |c| c["payload"]["to"] = json!(payer().to_string())),
            402,
            FAILED,
            "recipient_mismatch",
        ),
        get(
            "nonce not bound to the challenge",
            "/v1/quote",
            mpp_tampered(&quote_credential, |c| c["payload"]["nonce"] = flip(&c["payload"]["nonce"])),
            402,
            FAILED,
            "challenge_nonce_mismatch",
        ),
        get(
            "challenge id forged",
            "/v1/quote",
            mpp_tampered(&quote_credential, |c| {
                c["challenge"]["id"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            }),
            402,
            INVALID,
            "unknown_challenge",
        ),
        get(
            "challenge terms changed (another chain)",
            "/v1/quote",
            mpp_tampered(&quote_credential, |c| {
                let mut request: Value = serde_json::from_slice(
                    &paygate_proto::b64::url_decode(c["challenge"]["request"].as_str().unwrap()).unwrap(),
                )
                .unwrap();
                request["methodDetails"]["chainId"] = json!(8453);
                c["challenge"]["request"] =
                    json!(paygate_proto::b64::url_encode(paygate_proto::jcs::canonicalize(&request).as_bytes()));
            }),
            402,
            INVALID,
            "unknown_challenge",
        ),
        get(
            "challenge of another route",
            "/v1/other",
            ("Authorization".into(), quote_credential.clone()),
            402,
            INVALID,
            "route_mismatch",
        ),
        get(
            "payer without funds",
            "/v1/quote",
            ("Authorization".into(), signed[2].1.clone()),
            402,
            NO_FUNDS,
            "insufficient_funds",
        ),
        get(
            "not base64url",
            "/v1/quote",
            ("Authorization".into(), "Payment !!!".into()),
            400,
            MALFORMED,
            "malformed_credential",
        ),
        get(
            "not a credential",
            "/v1/quote",
            ("Authorization".into(), encode_mpp(&json!({"payload": {}}))),
            400,
            MALFORMED,
            "malformed_credential",
        ),
        get(
            "two credentials",
            "/v1/quote",
            ("Authorization".into(), format!("{quote_credential}, {quote_credential}")),
            400,
            MULTIPLE,
            "multiple_credentials",
        ),
    ];
    check(&h, cases).await;
    let cases = vec![Case {
        name: "body changed after the challenge",
        method: "POST",
        path: "/v1/echo",
        header: ("Authorization".into(), echo_credential),
        body: Some(r#"{"n":2}"#),
        status: 402,
        kind: INVALID,
        reason: "body_mismatch",
    }];
    check(&h, cases).await;

    // Both protocols in one request.
    let response = h
        .http
        .get(h.url("/v1/quote"))
        .header("Authorization", &quote_credential)
        .header("PAYMENT-SIGNATURE", &signed[3].1)
        .send()
        .await
        .unwrap();
    let (status, p) = problem(response).await;
    assert_eq!((status, kind(&p)), (400, (MULTIPLE, "multiple_credentials")));

    h.clock.advance(31);
    check(
        &h,
        vec![get(
            "expired challenge",
            "/v1/quote",
            ("Authorization".into(), quote_credential),
            402,
            EXPIRED,
            "challenge_expired",
        )],
    )
    .await;
}
