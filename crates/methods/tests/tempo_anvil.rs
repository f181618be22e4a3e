//! The Tempo rail against a real anvil and `contracts/TestTIP20.sol`, a TIP-20 look-alike emitting TIP-20's
//! `Transfer` and `TransferWithMemo` events (deployed, minted and transferred through `paygate_testkit::tip20`).
//!
//! The `hash` credential end to end: a transfer carrying a memo bound to the challenge pays (verify, proof key,
//! settle); memos bound to another challenge or realm, plain transfers, wrong amounts, recipients and tokens,
//! reverted and unknown transactions, and a `source` that is not the sender are each refused with their kind
//! and reason; a chain that is down is `ChainUnavailable`.
//!
//! The `transaction` credential's checks on the same chain: a sponsored (`0x78`) transfer is checked,
//! simulated with `eth_call` against the token and co-signed without moving any money; a payer without funds
//! is told so; a sponsorship request to an offer without a fee payer is refused. anvil does not take Tempo
//! (`0x76`) transactions, so the broadcast itself is refused by the node, which settle reports as `Failed`.
//!
//! Every test starts its own anvil (chain 31337), so they run in parallel and a killed chain harms no other.

use std::num::NonZeroU64;
use std::sync::Arc;

use alloy::primitives::{Address, B256, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use paygate_chain::devtoken::dev_account;
use paygate_core::clock::{Clock, SystemClock, rfc3339};
use paygate_core::method::{Asset, PaymentMethod, PaymentOption, Proof, SettleOutcome};
use paygate_core::money::AtomicAmount;
use paygate_core::network::Network;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_methods::tempo::{TempoMethod, TempoSettings, encode_fee_payer_envelope, encode_memo, tip20};
use paygate_proto::mpp::{Challenge, Credential};
use paygate_testkit::Devchain;
use paygate_testkit::tip20::Tip20;
use serde_json::{Value, json};
use tempo_primitives::transaction::{Call, FEE_PAYER_SIGNATURE_MARKER, PrimitiveSignature, TEMPO_EXPIRING_NONCE_KEY};
use tempo_primitives::{TempoSignature, TempoTransaction};

const CHAIN_ID: u64 = 31337;
const REALM: &str = "api.example.com";
const CHALLENGE_ID: &str = "X6v1eo7fJ76gAxqY0xN9Jd__4lUyDDYmriryOM-5FO4";
/// $0.25 in 6-decimal units.
const PRICE: u128 = 250_000;

struct Setup {
    devchain: Devchain,
    token: Tip20,
    other_token: Tip20,
    method: TempoMethod,
    payer: PrivateKeySigner,
    recipient: Address,
}

fn option(token: Address, recipient: Address) -> PaymentOption {
    PaymentOption {
        name: "tempo-local".into(),
        network: Network::Evm(CHAIN_ID),
        asset: Asset { address: token.to_checksum(None), symbol: "TUSD".into(), decimals: 6, usd: true, eip712: None },
        pay_to: recipient.to_checksum(None),
        max_timeout_secs: 300,
    }
}

/// anvil with two TestTIP20 tokens; the payer (dev account 1) holds 10 of each; the recipient is account 2.
async fn setup(settings: TempoSettings) -> Setup {
    let devchain = Devchain::start(CHAIN_ID).await;
    let token = Tip20::deploy(devchain.chain.clone(), "Test Dollar", "TUSD").await;
    let other_token = Tip20::deploy(devchain.chain.clone(), "Other Dollar", "ODOL").await;
    assert_ne!(token.address, other_token.address);
    let payer = dev_account(1);
    let recipient = dev_account(2).address();
    token.mint(payer.address(), U256::from(10_000_000u64)).await;
    other_token.mint(payer.address(), U256::from(10_000_000u64)).await;
    let method =
        TempoMethod::new(option(token.address, recipient), devchain.chain.clone(), settings, Arc::new(SystemClock))
            .expect("a valid Tempo option");
    Setup { devchain, token, other_token, method, payer, recipient }
}

/// A credential answering a challenge `id` of `realm` for this method's offer of `PRICE`.
fn make_credential(method: &TempoMethod, id: &str, realm: &str, payload: Value, source: Option<String>) -> Credential {
    let terms = method.mpp_terms(AtomicAmount(PRICE)).expect("tempo speaks MPP");
    Credential {
        challenge: Challenge {
            id: id.into(),
            realm: realm.into(),
            method: terms.method.into(),
            intent: terms.intent.into(),
            request: terms.request,
            description: None,
            digest: None,
            expires: Some(rfc3339(SystemClock.now_unix() + 300)),
            header: None,
            opaque: None,
        },
        payload,
        source,
    }
}

fn hash_payload(hash: B256) -> Value {
    json!({"type": "hash", "hash": format!("{hash:#x}")})
}

fn did(address: Address) -> String {
    format!("did:pkh:eip155:{CHAIN_ID}:{}", address.to_checksum(None))
}

async fn verify(
    method: &TempoMethod,
    credential: &Credential,
) -> Result<paygate_core::method::VerifiedPayment, Rejection> {
    method.verify(Proof::Mpp { credential }, AtomicAmount(PRICE)).await
}

/// Asserts a refusal's kind and reason.
fn assert_refused(outcome: Result<paygate_core::method::VerifiedPayment, Rejection>, kind: RejectKind, reason: &str) {
    match outcome {
        Ok(payment) => panic!("expected {kind:?}/{reason}, the payment was accepted: {payment:?}"),
        Err(rejection) => {
            assert_eq!((rejection.kind, rejection.reason), (kind, reason), "{rejection}");
        }
    }
}

fn bound_memo() -> B256 {
    encode_memo(REALM, CHALLENGE_ID, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_with_a_memo_bound_to_the_challenge_pays() {
    let s = setup(TempoSettings::default()).await;
    let before = s.token.balance(s.recipient).await;
    let hash = s.token.transfer_with_memo(&s.payer, s.recipient, U256::from(PRICE), bound_memo()).await;
    assert_eq!(s.token.balance(s.recipient).await - before, U256::from(PRICE), "the transfer moved the price");

    for source in [None, Some(did(s.payer.address()))] {
        let credential = make_credential(&s.method, CHALLENGE_ID, REALM, hash_payload(hash), source.clone());
        let payment = verify(&s.method, &credential).await.unwrap_or_else(|e| panic!("source {source:?}: {e}"));
        let key = format!("eip155:{CHAIN_ID}:tx:0x{}", alloy::hex::encode(hash));
        assert_eq!(payment.proof_key, key, "the tx-hash rail's key, lowercase");
        assert_eq!(payment.payer, s.payer.address().to_checksum(None));
        assert_eq!(payment.amount, AtomicAmount(PRICE));
        assert_eq!(payment.settlement, json!({"type": "hash", "tx_hash": format!("{hash:#x}")}));
        assert_eq!(s.method.settle(&payment).await, SettleOutcome::Settled { reference: format!("{hash:#x}") });
    }
    // A client-chosen clientId fingerprint does not matter; the binding does.
    let with_client = encode_memo(REALM, "challenge-with-client", Some("my-app"));
    let hash = s.token.transfer_with_memo(&s.payer, s.recipient, U256::from(PRICE), with_client).await;
    let credential = make_credential(&s.method, "challenge-with-client", REALM, hash_payload(hash), None);
    verify(&s.method, &credential).await.expect("a memo with a client fingerprint pays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_not_bound_to_this_challenge_and_realm_are_refused() {
    let s = setup(TempoSettings::default()).await;
    let amount = U256::from(PRICE);
    let other_challenge =
        s.token.transfer_with_memo(&s.payer, s.recipient, amount, encode_memo(REALM, "other-id", None)).await;
    let other_realm = s
        .token
        .transfer_with_memo(&s.payer, s.recipient, amount, encode_memo("evil.example.com", CHALLENGE_ID, None))
        .await;
    let foreign_memo = s.token.transfer_with_memo(&s.payer, s.recipient, amount, B256::repeat_byte(0xab)).await;
    let plain = s.token.transfer(&s.payer, s.recipient, amount).await;
    for (what, hash) in [
        ("other challenge", other_challenge),
        ("other realm", other_realm),
        ("non-MPP memo", foreign_memo),
        ("plain", plain),
    ] {
        let credential = make_credential(&s.method, CHALLENGE_ID, REALM, hash_payload(hash), None);
        let outcome = verify(&s.method, &credential).await;
        assert!(outcome.is_err(), "{what}: accepted");
        assert_refused(outcome, RejectKind::VerificationFailed, "memo_not_bound");
    }
    // The transfer bound to "other-id" does pay that challenge: the refusal was about the binding.
    let credential = make_credential(&s.method, "other-id", REALM, hash_payload(other_challenge), None);
    verify(&s.method, &credential).await.expect("it pays the challenge it is bound to");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_amount_recipient_or_token_is_refused() {
    let s = setup(TempoSettings::default()).await;
    let memo = bound_memo();
    let less = s.token.transfer_with_memo(&s.payer, s.recipient, U256::from(PRICE - 1), memo).await;
    let more = s.token.transfer_with_memo(&s.payer, s.recipient, U256::from(PRICE + 1), memo).await;
    let elsewhere = s.token.transfer_with_memo(&s.payer, dev_account(3).address(), U256::from(PRICE), memo).await;
    let other_token = s.other_token.transfer_with_memo(&s.payer, s.recipient, U256::from(PRICE), memo).await;
    let cases = [
        (less, RejectKind::PaymentInsufficient, "amount_mismatch"),
        (more, RejectKind::VerificationFailed, "amount_mismatch"),
        (elsewhere, RejectKind::VerificationFailed, "no_matching_transfer"),
        (other_token, RejectKind::VerificationFailed, "no_matching_transfer"),
    ];
    for (hash, kind, reason) in cases {
        let credential = make_credential(&s.method, CHALLENGE_ID, REALM, hash_payload(hash), None);
        assert_refused(verify(&s.method, &credential).await, kind, reason);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverted_unknown_and_misattributed_transactions_are_refused() {
    let s = setup(TempoSettings::default()).await;
    // More than the payer holds: mined, reverted.
    let reverted =
        s.token.transfer_with_memo_reverting(&s.payer, s.recipient, U256::from(1_000_000_000u64), bound_memo()).await;
    let credential = make_credential(&s.method, CHALLENGE_ID, REALM, hash_payload(reverted), None);
    assert_refused(verify(&s.method, &credential).await, RejectKind::VerificationFailed, "transaction_reverted");

    let unknown = make_credential(&s.method, CHALLENGE_ID, REALM, hash_payload(B256::repeat_byte(0x42)), None);
    assert_refused(verify(&s.method, &unknown).await, RejectKind::VerificationFailed, "transaction_not_found");

    // A good transfer presented with someone else's source, or a source on another chain.
    let paid = s.token.transfer_with_memo(&s.payer, s.recipient, U256::from(PRICE), bound_memo()).await;
    let stranger = Some(did(dev_account(4).address()));
    let credential_ = make_credential(&s.method, CHALLENGE_ID, REALM, hash_payload(paid), stranger);
    assert_refused(verify(&s.method, &credential_).await, RejectKind::VerificationFailed, "source_mismatch");
    let other_chain = Some(format!("did:pkh:eip155:1:{}", s.payer.address()));
    let credential_ = make_credential(&s.method, CHALLENGE_ID, REALM, hash_payload(paid), other_chain);
    assert_refused(verify(&s.method, &credential_).await, RejectKind::VerificationFailed, "invalid_source");

    // Not a hash at all.
    let malformed = make_credential(&s.method, CHALLENGE_ID, REALM, json!({"type": "hash", "hash": "0x1234"}), None);
    assert_refused(verify(&s.method, &malformed).await, RejectKind::MalformedCredential, "invalid_payload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_that_is_down_is_chain_unavailable() {
    let mut s = setup(TempoSettings::default()).await;
    let hash = s.token.transfer_with_memo(&s.payer, s.recipient, U256::from(PRICE), bound_memo()).await;
    s.devchain.kill();
    let credential = make_credential(&s.method, CHALLENGE_ID, REALM, hash_payload(hash), None);
    let rejection = verify(&s.method, &credential).await.expect_err("no chain, no verification");
    assert_eq!((rejection.kind, rejection.reason), (RejectKind::ChainUnavailable, "chain_unavailable"));
    assert!(!rejection.detail.contains("127.0.0.1"), "the RPC URL stays private: {}", rejection.detail);
}

/// The payer's sponsorship request for `amount` of `token` to `recipient` with `memo`, as mppx clients send it.
fn sponsorship_request(
    payer: &PrivateKeySigner,
    token: Address,
    recipient: Address,
    amount: u128,
    memo: B256,
) -> Vec<u8> {
    let tx = TempoTransaction {
        chain_id: CHAIN_ID,
        fee_token: None,
        max_priority_fee_per_gas: 1_000_000_000,
        max_fee_per_gas: 2_000_000_000,
        gas_limit: 200_000,
        calls: vec![Call {
            to: token.into(),
            value: U256::ZERO,
            input: tip20::transferWithMemoCall { to: recipient, amount: U256::from(amount), memo }.abi_encode().into(),
        }],
        access_list: Default::default(),
        nonce_key: TEMPO_EXPIRING_NONCE_KEY,
        nonce: 0,
        fee_payer_signature: Some(FEE_PAYER_SIGNATURE_MARKER),
        valid_before: NonZeroU64::new(SystemClock.now_unix() + 25),
        valid_after: None,
        key_authorization: None,
        tempo_authorization_list: vec![],
    };
    let signature = payer.sign_hash_sync(&tx.signature_hash()).expect("sign");
    encode_fee_payer_envelope(
        &tx,
        payer.address(),
        &TempoSignature::Primitive(PrimitiveSignature::Secp256k1(signature)),
    )
}

fn transaction_payload(raw: &[u8]) -> Value {
    json!({"type": "transaction", "signature": alloy::hex::encode_prefixed(raw)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sponsored_transactions_are_checked_simulated_and_cosigned_without_moving_money() {
    let fee_payer = dev_account(7);
    let settings = TempoSettings { fee_payer: Some(fee_payer.clone()), ..TempoSettings::default() };
    let s = setup(settings).await;
    let terms = s.method.mpp_terms(AtomicAmount(PRICE)).unwrap();
    assert_eq!(terms.request["methodDetails"], json!({"chainId": CHAIN_ID, "feePayer": true}));

    let raw = sponsorship_request(&s.payer, s.token.address, s.recipient, PRICE, bound_memo());
    let credential_ =
        make_credential(&s.method, CHALLENGE_ID, REALM, transaction_payload(&raw), Some(did(s.payer.address())));
    let (payer_before, recipient_before) =
        (s.token.balance(s.payer.address()).await, s.token.balance(s.recipient).await);
    let payment = verify(&s.method, &credential_).await.expect("a valid sponsorship request");
    assert_eq!(s.token.balance(s.payer.address()).await, payer_before, "verify moves no money");
    assert_eq!(s.token.balance(s.recipient).await, recipient_before, "verify moves no money");
    assert_eq!(payment.payer, s.payer.address().to_checksum(None));

    // The settlement holds the co-signed transaction; the proof key is its hash.
    let signed_hex = payment.settlement["transaction"].as_str().expect("the co-signed transaction");
    let signed = alloy::hex::decode(signed_hex).unwrap();
    assert_eq!(signed[0], 0x76, "a Tempo transaction");
    let hash = alloy::primitives::keccak256(&signed);
    assert_eq!(payment.proof_key, format!("eip155:{CHAIN_ID}:tx:{hash:#x}"));
    let decoded = paygate_methods::tempo::ClientTransaction::decode(&signed).expect("decodes");
    assert_eq!(decoded.sender, s.payer.address());
    assert_eq!(decoded.tx().fee_token, Some(s.token.address), "fee paid in the option's currency by default");
    assert_eq!(decoded.tx().recover_fee_payer(s.payer.address()).unwrap(), fee_payer.address());

    // anvil does not take type 0x76: the broadcast is refused, so nothing settled.
    match s.method.settle(&payment).await {
        SettleOutcome::Failed { reason, .. } => assert!(reason.contains("refused"), "{reason}"),
        other => panic!("anvil cannot mine a Tempo transaction, yet: {other:?}"),
    }

    // A payer without tokens is told so before anything is signed or sent.
    let broke = dev_account(5);
    let raw = sponsorship_request(&broke, s.token.address, s.recipient, PRICE, bound_memo());
    let credential_ = make_credential(&s.method, CHALLENGE_ID, REALM, transaction_payload(&raw), None);
    assert_refused(verify(&s.method, &credential_).await, RejectKind::InsufficientFunds, "insufficient_funds");

    // The wrong token is not the payment call.
    let raw = sponsorship_request(&s.payer, s.other_token.address, s.recipient, PRICE, bound_memo());
    let credential_ = make_credential(&s.method, CHALLENGE_ID, REALM, transaction_payload(&raw), None);
    assert_refused(verify(&s.method, &credential_).await, RejectKind::VerificationFailed, "no_matching_payment_call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sponsorship_requests_need_an_offer_with_a_fee_payer() {
    let s = setup(TempoSettings::default()).await;
    assert_eq!(s.method.mpp_terms(AtomicAmount(PRICE)).unwrap().request["methodDetails"], json!({"chainId": CHAIN_ID}));
    let raw = sponsorship_request(&s.payer, s.token.address, s.recipient, PRICE, bound_memo());
    let credential_ = make_credential(&s.method, CHALLENGE_ID, REALM, transaction_payload(&raw), None);
    assert_refused(verify(&s.method, &credential_).await, RejectKind::VerificationFailed, "fee_payer_not_offered");
}
