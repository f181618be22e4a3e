//! Challenge id conformance vectors against `paygate_core::binding`: `ChallengeSecret::challenge_id`,
//! `ChallengeSecret::verify` and `BindingInput::message` (all four aperture cases, request tokens as sent).
//!
//! Vectors, read from `crates/proto/tests/vectors/mpp/` (sources and commits in its README.md):
//! `challenge-id.json` from tempoxyz/mpp-tools (the conformance suite of the official MPP SDKs), and the
//! `challengeIds` section of `aperture-vectors.json` from lightninglabs/aperture, whose HMAC secret is shorter
//! than `ChallengeSecret` accepts, so its HMAC is computed here directly.

use hmac::{Hmac, Mac};
use paygate_core::binding::{BindingInput, ChallengeSecret, encode_request};
use paygate_proto::{b64, jcs};
use serde_json::Value;
use sha2::Sha256;

const CHALLENGE_ID: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/tests/vectors/mpp/challenge-id.json"));
const APERTURE: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/tests/vectors/mpp/aperture-vectors.json"));

/// Runs `run` on every case of `cases` (which must number `expected_len`), collects each problem as
/// `section / case name: problem`, and fails once listing all of them.
fn check(section: &str, cases: &[Value], expected_len: usize, run: impl Fn(&Value) -> Vec<String>) {
    assert_eq!(cases.len(), expected_len, "{section}: number of cases in the vector file");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("every vector case has a name");
        failures.extend(run(case).into_iter().map(|problem| format!("{section} / {name}: {problem}")));
    }
    assert!(failures.is_empty(), "{} vector mismatch(es):\n{}", failures.len(), failures.join("\n"));
}

fn load(text: &str) -> Value {
    serde_json::from_str(text).expect("vector file is JSON")
}

fn opt_str<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str)
}

/// `id` with its first character replaced by another base64url character.
fn tampered(id: &str) -> String {
    let mut chars = id.chars();
    let first = chars.next().expect("ids are not empty");
    format!("{}{}", if first == 'A' { 'B' } else { 'A' }, chars.as_str())
}

fn hex_decode(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "hex string of even length");
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits")).collect()
}

fn hmac_b64(secret: &[u8], message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    b64::url_encode(&mac.finalize().into_bytes())
}

#[test]
fn mpp_tools_challenge_id_vectors() {
    let file = load(CHALLENGE_ID);
    let scenarios = file["scenarios"].as_array().expect("scenarios");
    check("challenge-id.json", scenarios, 29, |scenario| {
        let input = &scenario["input"];
        let secret_key = opt_str(input, "secretKey").expect("input has secretKey");
        let generate = &scenario["tests"]["generate"];
        if generate.get("success") == Some(&Value::Bool(false)) {
            return match ChallengeSecret::new(secret_key.as_bytes().to_vec()) {
                Ok(_) => vec![format!("a {}-byte secret was accepted", secret_key.len())],
                Err(_) => vec![],
            };
        }
        let expected = scenario["expected"].as_str().expect("generate scenarios have an expected id");
        let secret = match ChallengeSecret::new(secret_key.as_bytes().to_vec()) {
            Ok(secret) => secret,
            Err(e) => return vec![format!("secret refused: {e}")],
        };
        // `opaque` is the parameter as sent: a string as given, an object as base64url of its JCS text.
        let opaque = match input.get("opaque") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(object @ Value::Object(_)) => Some(b64::url_encode(jcs::canonicalize(object).as_bytes())),
            Some(other) => {
                return vec![format!("opaque is neither a string nor an object: {other}")];
            }
        };
        let request = encode_request(input.get("request").expect("input has a request"));
        let binding = BindingInput {
            realm: opt_str(input, "realm").expect("input has realm"),
            method: opt_str(input, "method").expect("input has method"),
            intent: opt_str(input, "intent").expect("input has intent"),
            request: &request,
            expires: opt_str(input, "expires"),
            digest: opt_str(input, "digest"),
            header: opt_str(input, "header"),
            opaque: opaque.as_deref(),
        };
        let mut problems = Vec::new();
        let id = secret.challenge_id(&binding);
        if id != expected {
            problems.push(format!("id {id}, expected {expected} (HMAC input {:?})", binding.message()));
        }
        if !secret.verify(&binding, expected) {
            problems.push("verify rejects the expected id".into());
        }
        if secret.verify(&binding, &tampered(expected)) {
            problems.push(format!("verify accepts the altered id {}", tampered(expected)));
        }
        problems
    });
}

#[test]
fn aperture_challenge_id_vectors() {
    let file = load(APERTURE);
    let secret = hex_decode(file["hmacSecretHex"].as_str().expect("hmacSecretHex"));
    assert_eq!(secret, b"mpp-test-vector-secret", "the README names the secret");
    assert!(ChallengeSecret::new(secret.clone()).is_err(), "a 22-byte secret is under the 32-byte minimum");

    let cases = file["challengeIds"].as_array().expect("challengeIds");
    check("aperture challengeIds", cases, 4, |case| {
        let params = &case["params"];
        let expected_id = opt_str(params, "id").expect("params have an id");
        let hmac_input = case["hmacInput"].as_str().expect("cases have an hmacInput");
        let mut problems = Vec::new();
        let id = hmac_b64(&secret, hmac_input);
        if id != expected_id {
            problems.push(format!("HMAC of hmacInput is {id}, expected {expected_id}"));
        }
        // The request parameter goes into the HMAC as sent, even when it is not base64url JSON (`cQ` is "q").
        let request = opt_str(params, "request").expect("params have a request");
        let binding = BindingInput {
            realm: opt_str(params, "realm").expect("params have realm"),
            method: opt_str(params, "method").expect("params have method"),
            intent: opt_str(params, "intent").expect("params have intent"),
            request,
            expires: opt_str(params, "expires"),
            digest: opt_str(params, "digest"),
            header: opt_str(params, "header"),
            opaque: opt_str(params, "opaque"),
        };
        let message = binding.message();
        if message != hmac_input {
            problems.push(format!("message() is {message:?}, expected {hmac_input:?}"));
        }
        if hmac_b64(&secret, &message) != expected_id {
            problems.push(format!("HMAC of message() is {}, expected {expected_id}", hmac_b64(&secret, &message)));
        }
        problems
    });
}
