//! x402 example vectors against the types and header codecs of `paygate_proto::x402`: every header value the
//! specification prints decodes into the right type and equals the JSON it stands for, re-encodes byte for
//! byte where the decoded text is compact JSON, and the JSON-only examples (the v1 402 body, the `exact` EVM
//! payload) decode too.
//!
//! Vectors: `tests/vectors/x402/examples.json`, built from the examples of coinbase/x402's
//! `specs/transports-v2/http.md`, `specs/transports-v1/http.md` and `specs/schemes/exact/scheme_exact_evm.md`
//! (commit and blobs in `tests/vectors/x402/README.md`).

use paygate_proto::b64;
use paygate_proto::x402::{self, v1};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const EXAMPLES: &str = include_str!("vectors/x402/examples.json");

/// Runs `run` on every case of `cases` (which must number `expected_len`), collects each problem as
/// `case name: problem`, and fails once listing all of them.
fn check(cases: &[Value], expected_len: usize, run: impl Fn(&Value) -> Vec<String>) {
    assert_eq!(cases.len(), expected_len, "number of cases in examples.json");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("every vector case has a name");
        failures.extend(run(case).into_iter().map(|problem| format!("examples.json / {name}: {problem}")));
    }
    assert!(failures.is_empty(), "{} vector mismatch(es):\n{}", failures.len(), failures.join("\n"));
}

/// Checks one case as type `T`: the header (if any) decodes, the value equals `decoded`, and re-encodes.
fn check_as<T>(case: &Value) -> Vec<String>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let decoded = &case["decoded"];
    let mut problems = Vec::new();
    let from_json = match serde_json::from_value::<T>(decoded.clone()) {
        Ok(value) => value,
        Err(e) => return vec![format!("`decoded` does not deserialize: {e}")],
    };
    match serde_json::to_value(&from_json) {
        Ok(back) if back == *decoded => {}
        back => problems.push(format!("serializes as {back:?}, expected {decoded}")),
    }
    let Some(header) = case["base64"].as_str() else {
        return problems;
    };

    match x402::decode_header::<T>(header) {
        Ok(value) => {
            if value != from_json {
                problems.push(format!("header decodes to {value:?}, `decoded` is {from_json:?}"));
            }
            if case["compactJsonEqualsDecodedText"] == Value::Bool(true) {
                let ours = x402::encode_header(&value);
                if ours != header {
                    problems.push(format!("encode_header gives {ours}, expected {header}"));
                }
            }
        }
        Err(e) => problems.push(format!("decode_header failed: {e}")),
    }
    // The vector's own `decodedText` is what the header holds.
    let text = b64::std_decode(header).ok().and_then(|bytes| String::from_utf8(bytes).ok());
    if text.as_deref() != case["decodedText"].as_str() {
        problems.push(format!("header holds {text:?}, `decodedText` differs"));
    }
    problems
}

/// The `exact` EVM payload inside a payment payload.
fn check_exact_payload(case: &Value) -> Vec<String> {
    let payload = &case["decoded"]["payload"];
    match serde_json::from_value::<x402::ExactEvmPayload>(payload.clone()) {
        Ok(exact) => match serde_json::to_value(&exact) {
            Ok(back) if back == *payload => vec![],
            back => vec![format!("ExactEvmPayload serializes as {back:?}, expected {payload}")],
        },
        Err(e) => vec![format!("payload is not an ExactEvmPayload: {e}")],
    }
}

#[test]
fn x402_example_vectors() {
    let file: Value = serde_json::from_str(EXAMPLES).expect("examples.json is JSON");
    let cases = file["cases"].as_array().expect("examples.json has cases");
    check(cases, 9, |case| {
        let version = case["version"].as_u64().expect("cases have a version");
        let kind = case["kind"].as_str().expect("cases have a kind");
        match (version, kind) {
            (2, "PaymentRequired") => check_as::<x402::PaymentRequired>(case),
            (2, "PaymentPayload") => {
                let mut problems = check_as::<x402::PaymentPayload>(case);
                problems.extend(check_exact_payload(case));
                problems
            }
            (1, "PaymentPayload") => {
                let mut problems = check_as::<v1::PaymentPayload>(case);
                problems.extend(check_exact_payload(case));
                problems
            }
            (1 | 2, "SettleResponse") => check_as::<x402::SettleResponse>(case),
            (1, "PaymentRequirementsResponse") => check_as::<v1::PaymentRequired>(case),
            other => vec![format!("no type for {other:?}")],
        }
    });
}

/// The EIP-3009 authorization the vectors' signature covers is the one every payload example carries.
#[test]
fn x402_eip3009_authorization_matches_the_payloads() {
    let file: Value = serde_json::from_str(EXAMPLES).expect("examples.json is JSON");
    let eip3009 = &file["eip3009"];
    let authorization: x402::Eip3009Authorization =
        serde_json::from_value(eip3009["authorization"].clone()).expect("eip3009.authorization deserializes");
    let signature = eip3009["signature"].as_str().expect("eip3009.signature");
    let payloads: Vec<x402::ExactEvmPayload> = file["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|case| case["kind"] == "PaymentPayload")
        .map(|case| serde_json::from_value(case["decoded"]["payload"].clone()).expect("payload is ExactEvmPayload"))
        .collect();
    assert_eq!(payloads.len(), 3, "three payment payload examples");
    for payload in payloads {
        assert_eq!(payload.authorization, authorization);
        assert_eq!(payload.signature, signature);
    }
}
