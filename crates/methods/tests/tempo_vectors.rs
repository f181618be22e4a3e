//! The four mpp-tools Tempo vector files (copied into `crates/proto/tests/vectors/mpp/`, sources in its
//! README.md) against the pure functions of `paygate_methods::tempo`:
//!
//! * `tempo-proof.json` (`tempo.proof.typed_data`): [`ProofMessage::typed_data`] in version 2;
//! * `tempo-receipt-verification.json` (`tempo.receipt.verify`) and `tempo-transaction-verification.json`
//!   (`tempo.transaction.verify`, the receipt check after paygate broadcast a `transaction` credential):
//!   [`verify_transfer_logs`] on the vector's receipt, bound to the credential's challenge id and realm;
//! * `tempo-fee-payer-cosign.json` (`tempo.fee_payer.cosign`): [`sponsor_transaction`] with the default sponsor
//!   policy. The vector describes the transaction as JSON; the test builds it, signs it with the payer's test
//!   key as a sponsorship request and sends it in both wire forms (the `0x78` fee-payer envelope mppx clients
//!   send, and a `0x76` transaction with the fee-payer marker), each of which must give the expected outcome.
//!   `validBefore: "now+N"` is relative to the pinned clock.
//!
//! Each file goes through [`check`], which runs every scenario and reports every mismatch at once: an expected
//! `ok` value must equal ours (addresses compared case-insensitively), an expected error must be an error whose
//! message contains `messageContains` when the vector gives one.

use std::num::NonZeroU64;

use alloy::eips::eip2930::{AccessList, AccessListItem};
use alloy::primitives::{Address, B256, Bytes, Log, LogData, TxKind, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use paygate_methods::tempo::transaction::encode_2718;
use paygate_methods::tempo::{
    ChallengeBinding, ExpectedTransfer, PaymentTerms, ProofMessage, ProofVersion, SponsorContext, SponsorPolicy,
    TempoError, encode_fee_payer_envelope, sponsor_transaction, verify_transfer_logs,
};
use serde_json::{Value, json};
use tempo_primitives::transaction::{Call, FEE_PAYER_SIGNATURE_MARKER, PrimitiveSignature, TEMPO_EXPIRING_NONCE_KEY};
use tempo_primitives::{TempoSignature, TempoTransaction};

const PROOF: &str = include_str!("../../proto/tests/vectors/mpp/tempo-proof.json");
const RECEIPT: &str = include_str!("../../proto/tests/vectors/mpp/tempo-receipt-verification.json");
const TRANSACTION: &str = include_str!("../../proto/tests/vectors/mpp/tempo-transaction-verification.json");
const FEE_PAYER: &str = include_str!("../../proto/tests/vectors/mpp/tempo-fee-payer-cosign.json");

/// The pinned "now" of the fee-payer scenarios.
const NOW: u64 = 1_900_000_000;

// ---------------------------------------------------------------------------------------------------------
// The data-driven harness.

/// Runs `run` on every scenario of `file` (which must have `expected_len` of them and the `operation`), and
/// fails once, listing every problem as `file / scenario: problem`.
fn check(file: &str, text: &str, operation: &str, expected_len: usize, run: impl Fn(&Value) -> Vec<String>) {
    let vectors: Value = serde_json::from_str(text).expect("vector file is JSON");
    assert_eq!(vectors["commands"]["operation"], operation, "{file}: operation");
    let scenarios = vectors["scenarios"].as_array().expect("scenarios");
    assert_eq!(scenarios.len(), expected_len, "{file}: number of scenarios");
    let mut failures = Vec::new();
    for scenario in scenarios {
        let name = scenario["name"].as_str().expect("every scenario has a name");
        failures.extend(run(scenario).into_iter().map(|problem| format!("{file} / {name}: {problem}")));
    }
    assert!(failures.is_empty(), "{} vector mismatch(es):\n{}", failures.len(), failures.join("\n"));
}

/// Lowercases every `0x` string so that addresses compare case-insensitively.
fn normalize(value: &Value) -> Value {
    match value {
        Value::String(s) if s.starts_with("0x") => Value::String(s.to_ascii_lowercase()),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), normalize(v))).collect()),
        other => other.clone(),
    }
}

/// Compares an outcome with the scenario's `expected`.
fn compare(expected: &Value, got: &Result<Value, TempoError>) -> Vec<String> {
    match (expected["ok"].as_bool(), got) {
        (Some(true), Ok(value)) if normalize(value) == normalize(&expected["value"]) => vec![],
        (Some(true), Ok(value)) => vec![format!("value {value} != expected {}", expected["value"])],
        (Some(true), Err(e)) => vec![format!("expected ok, got the error {e}")],
        (Some(false), Ok(value)) => vec![format!("expected an error, got ok {value}")],
        (Some(false), Err(e)) => {
            assert_eq!(expected["error"]["type"], "verification_error", "the only error type these files use");
            match expected["error"]["messageContains"].as_str() {
                Some(needle) if !e.to_string().contains(needle) => {
                    vec![format!("the error {e:?} does not contain {needle:?}")]
                }
                _ => vec![],
            }
        }
        (None, _) => panic!("expected.ok is not a boolean: {expected}"),
    }
}

fn address(value: &Value) -> Address {
    value.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{value} is not an address"))
}

fn b256(value: &Value) -> B256 {
    value.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{value} is not 32 bytes of hex"))
}

fn uint(value: &Value) -> U256 {
    match value {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("{s} is not a number")),
        Value::Number(n) => U256::from(n.as_u64().expect("a u64")),
        other => panic!("{other} is not a number"),
    }
}

fn u64_of(value: &Value) -> u64 {
    u64::try_from(uint(value)).expect("fits u64")
}

fn binding(challenge: &Value) -> ChallengeBinding<'_> {
    ChallengeBinding {
        challenge_id: challenge["id"].as_str().unwrap_or(""),
        realm: challenge["realm"].as_str().unwrap_or(""),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Proof typed data.

#[test]
fn proof_typed_data_vectors() {
    check("tempo-proof.json", PROOF, "tempo.proof.typed_data", 1, |scenario| {
        let input = &scenario["input"];
        let message = ProofMessage {
            chain_id: input["chainId"].as_u64().expect("chainId"),
            challenge_id: input["challengeId"].as_str().expect("challengeId"),
            realm: input["realm"].as_str().expect("realm"),
            account: Address::ZERO,
        };
        compare(&scenario["expected"], &Ok(message.typed_data(ProofVersion::V2)))
    });
}

// ---------------------------------------------------------------------------------------------------------
// Receipt logs (hash credentials, and transaction credentials after broadcast).

fn receipt_scenario(scenario: &Value) -> Vec<String> {
    let credential = &scenario["input"]["credential"];
    let request = &credential["challenge"]["request"];
    let receipt = &scenario["input"]["receipt"];
    let logs: Vec<Log> = receipt["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|log| {
            let topics = log["topics"].as_array().expect("topics").iter().map(b256).collect();
            let data: Bytes = log["data"].as_str().and_then(|d| d.parse().ok()).expect("data is hex");
            Log { address: address(&log["address"]), data: LogData::new_unchecked(topics, data) }
        })
        .collect();
    let expected = ExpectedTransfer {
        currency: address(&request["currency"]),
        recipient: address(&request["recipient"]),
        amount: uint(&request["amount"]),
    };
    let reference = receipt["transactionHash"].as_str().expect("transactionHash");
    let success = receipt["status"] == "0x1";
    let outcome = verify_transfer_logs(success, &logs, &expected, None, &binding(&credential["challenge"]), reference)
        .map(|_| json!({"status": "success", "reference": reference}));
    let mut problems = compare(&scenario["expected"], &outcome);
    // Beyond the vector: every refusal in these files is about the memo, and must say so.
    if let Err(e) = &outcome
        && e.reason() != "memo_not_bound"
    {
        problems.push(format!("refused for another reason than the memo: {e}"));
    }
    problems
}

#[test]
fn receipt_verification_vectors() {
    check("tempo-receipt-verification.json", RECEIPT, "tempo.receipt.verify", 5, receipt_scenario);
}

#[test]
fn transaction_verification_vectors() {
    check("tempo-transaction-verification.json", TRANSACTION, "tempo.transaction.verify", 5, receipt_scenario);
}

// ---------------------------------------------------------------------------------------------------------
// Fee-payer sponsorship.

fn key(value: &Value) -> PrivateKeySigner {
    value.as_str().and_then(|k| k.parse().ok()).expect("a private key")
}

/// `"now+60"` or a number.
fn timestamp(value: &Value) -> u64 {
    match value.as_str().and_then(|s| s.strip_prefix("now+")) {
        Some(offset) => NOW + offset.parse::<u64>().expect("now+<seconds>"),
        None => u64_of(value),
    }
}

/// The transaction the vector describes, as the payer signs it for sponsorship (fee-payer slot = marker).
fn vector_transaction(t: &Value) -> TempoTransaction {
    let calls = t["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| Call {
            to: TxKind::Call(address(&c["to"])),
            value: uint(&c["value"]),
            input: c["data"].as_str().and_then(|d| d.parse().ok()).expect("call data is hex"),
        })
        .collect();
    let access_list = AccessList(
        t["accessList"]
            .as_array()
            .expect("accessList")
            .iter()
            .map(|item| AccessListItem {
                address: address(&item[0]),
                storage_keys: item[1].as_array().expect("storage keys").iter().map(b256).collect(),
            })
            .collect(),
    );
    TempoTransaction {
        chain_id: u64_of(&t["chainId"]),
        fee_token: (!t["feeToken"].is_null()).then(|| address(&t["feeToken"])),
        max_priority_fee_per_gas: u128::try_from(uint(&t["maxPriorityFeePerGas"])).expect("fits"),
        max_fee_per_gas: u128::try_from(uint(&t["maxFeePerGas"])).expect("fits"),
        gas_limit: u64_of(&t["gasLimit"]),
        calls,
        access_list,
        nonce_key: if t["nonceKey"] == "max" { TEMPO_EXPIRING_NONCE_KEY } else { uint(&t["nonceKey"]) },
        nonce: u64_of(&t["nonce"]),
        fee_payer_signature: Some(FEE_PAYER_SIGNATURE_MARKER),
        valid_before: NonZeroU64::new(timestamp(&t["validBefore"])),
        valid_after: None,
        key_authorization: None,
        tempo_authorization_list: vec![],
    }
}

#[test]
fn fee_payer_cosign_vectors() {
    check("tempo-fee-payer-cosign.json", FEE_PAYER, "tempo.fee_payer.cosign", 9, |scenario| {
        let input = &scenario["input"];
        let payer = key(&input["payerPrivateKey"]);
        let fee_payer = key(&input["feePayerPrivateKey"]);
        let fee_token = address(&input["feeToken"]);
        let request = &input["request"];
        let terms = PaymentTerms {
            chain_id: request["methodDetails"]["chainId"].as_u64().expect("chainId"),
            currency: address(&request["currency"]),
            recipient: address(&request["recipient"]),
            amount: uint(&request["amount"]),
        };
        let policy = SponsorPolicy::default();
        let ctx = SponsorContext { policy: &policy, now: NOW, challenge_expires: None };
        let tx = vector_transaction(&input["transaction"]);
        let signature = payer.sign_hash_sync(&tx.signature_hash()).expect("sign");
        let signature = TempoSignature::Primitive(PrimitiveSignature::Secp256k1(signature));
        let wire_forms = [
            ("0x78 envelope", encode_fee_payer_envelope(&tx, payer.address(), &signature)),
            ("0x76 with the fee-payer marker", encode_2718(&tx.clone().into_signed(signature.clone()))),
        ];
        let mut problems = Vec::new();
        for (form, raw) in wire_forms {
            let outcome = sponsor_transaction(&raw, &terms, &binding(&input["challenge"]), &ctx, &fee_payer, fee_token);
            if let Ok(signed) = &outcome {
                use alloy::consensus::transaction::SignerRecoverable;
                // Beyond the vector: both signatures name the right keys.
                if signed.recover_signer().ok() != Some(payer.address()) {
                    problems.push(format!("{form}: the co-signed transaction's sender is not the payer"));
                }
                if signed.tx().recover_fee_payer(payer.address()).ok() != Some(fee_payer.address()) {
                    problems.push(format!("{form}: the fee-payer signature is not the fee payer's"));
                }
            }
            let outcome = outcome.map(|signed| {
                let tx = signed.tx();
                json!({
                    "type": format!("0x{:02x}", encode_2718(&signed)[0]),
                    "feeToken": tx.fee_token.map(|t| t.to_checksum(None)),
                    "feePayerSignaturePresent": tx.fee_payer_signature.is_some_and(|s| s != FEE_PAYER_SIGNATURE_MARKER),
                    "accessListLength": tx.access_list.len(),
                    "callCount": tx.calls.len(),
                })
            });
            problems.extend(compare(&scenario["expected"], &outcome).into_iter().map(|p| format!("{form}: {p}")));
        }
        problems
    });
}
