//! The Tempo rail against bytes made by the official SDKs, and its settlement against a scripted chain.
//!
//! Known answers, produced once with the packages in `.cache/node` (viem's Tempo serializer and mppx 0.11's
//! `Attribution.encode`, test key 0x11..11 as payer and 0x22..22 as fee payer, chain 42431, pathUSD):
//!
//! * the `0x78` fee-payer envelope an mppx client sends for `feePayer: true`, and the `0x76` transaction viem
//!   itself produces when the same transfer is co-signed by a local fee payer: paygate decodes the envelope to
//!   the same sender and, co-signing, produces viem's transaction byte for byte (so its hash, the proof key, is
//!   the hash the chain will report);
//! * the EIP-712 digests of the zero-amount proof (versions 3 and 2) and viem's signatures over them.
//!
//! Settlement of `transaction` credentials goes through a scripted [`Chain`] (anvil cannot mine type `0x76`):
//! the co-signed bytes are what is broadcast, a receipt with the bound transfer settles, a reverted one fails,
//! no receipt is `Unknown`, a broadcast whose outcome is unknown is `Unknown`, a refusal is `Failed` unless the
//! node already knows the transaction.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, TxHash, address, b256, keccak256};
use alloy::rpc::types::{Filter, Log, TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use async_trait::async_trait;
use paygate_chain::{Chain, ChainError, Fees};
use paygate_core::clock::FixedClock;
use paygate_core::method::{Asset, PaymentMethod, PaymentOption, Proof, SettleOutcome, VerifiedPayment};
use paygate_core::money::AtomicAmount;
use paygate_core::network::Network;
use paygate_core::reject::RejectKind;
use paygate_methods::tempo::transaction::encode_2718;
use paygate_methods::tempo::{
    ChallengeBinding, ClientTransaction, PaymentTerms, ProofMessage, ProofVersion, SponsorContext, SponsorPolicy,
    TempoMethod, TempoSettings, check_payment_transaction, cosign,
};
use paygate_proto::mpp::{Challenge, Credential};
use serde_json::{Value, json};

const PAYER_KEY: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";
const FEE_PAYER_KEY: &str = "0x2222222222222222222222222222222222222222222222222222222222222222";
const PAYER: Address = address!("19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A");
const FEE_PAYER: Address = address!("1563915e194D8CfBA1943570603F7606A3115508");
const PATH_USD: Address = address!("20c0000000000000000000000000000000000000");
const RECIPIENT: Address = address!("742d35Cc6634c0532925a3b844bC9e7595F8fE00");
const CHAIN_ID: u64 = 42431;
const REALM: &str = "api.example.com";
const CHALLENGE_ID: &str = "challenge-123";
/// 1 pathUSD.
const PRICE: u128 = 1_000_000;
/// The envelopes' `validBefore` is 1_900_000_060.
const NOW: u64 = 1_900_000_000;

/// viem `signTransaction({..., feePayer: true})`: transferWithMemo of 1 pathUSD to RECIPIENT with mppx's memo
/// for (challenge-123, api.example.com, clientId "my-app"), gas 100000, max fee 2 gwei, priority 0.001 gwei,
/// expiring nonce, validBefore 1900000060.
const VIEM_FEE_PAYER_ENVELOPE: &str = "0x78f9011382a5bf830f42408477359400830186a0f87ef87c9420c000000000000000000000000000000000000080b86495777d59000000000000000000000000742d35cc6634c0532925a3b844bc9e7595f8fe0000000000000000000000000000000000000000000000000000000000000f4240ef1ed712011ece072f76bd8b82350e3a180fb9d0177aa2f371eb18f2d4402269c0a0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff8084713fb33c80809419e7e376e7c213b7e7e7e46cc70a5dd086daff2ac0b8418777e5dbc7503f647d2fc97e72c5fed4a1d07cab5347d3685441033922adce4f2f61834444ee9ea624b910eb7f7f064bb0c03ffa3b3bf9b569523b38491c11541b";

/// viem `signTransaction({..., feeToken: pathUSD, feePayer: <account 0x22..22>})`: the same transfer, co-signed.
const VIEM_COSIGNED: &str = "0x76f9015782a5bf830f42408477359400830186a0f87ef87c9420c000000000000000000000000000000000000080b86495777d59000000000000000000000000742d35cc6634c0532925a3b844bc9e7595f8fe0000000000000000000000000000000000000000000000000000000000000f4240ef1ed712011ece072f76bd8b82350e3a180fb9d0177aa2f371eb18f2d4402269c0a0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff8084713fb33c809420c0000000000000000000000000000000000000f84301a0ed431ab63ffad64e385ca7aac80d612698953f16ff69ff57538bc42d3667751ea074239f7d2fea3a185e05eaa17abe9c233e7b9a85f1519b4149ba6a906bfb17f4c0b8418777e5dbc7503f647d2fc97e72c5fed4a1d07cab5347d3685441033922adce4f2f61834444ee9ea624b910eb7f7f064bb0c03ffa3b3bf9b569523b38491c11541b";
const VIEM_COSIGNED_HASH: B256 = b256!("e86eed516f77fad2cb9e4e4d8e3bfa925ded2d5c0507f2eacd67a04ea0bd4ef3");

/// viem `signTransaction({..., feeToken: pathUSD})`: the same transfer, paid by the payer itself.
const VIEM_SELF_PAID: &str = "0x76f9011382a5bf830f42408477359400830186a0f87ef87c9420c000000000000000000000000000000000000080b86495777d59000000000000000000000000742d35cc6634c0532925a3b844bc9e7595f8fe0000000000000000000000000000000000000000000000000000000000000f4240ef1ed712011ece072f76bd8b82350e3a180fb9d0177aa2f371eb18f2d4402269c0a0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff8084713fb33c809420c000000000000000000000000000000000000080c0b841a2e806708c000424c04edde3722c93ee5949a17fd8bf41b7e9b208a8146b66f02278b2054f99a3b648bc85089d5a6f58f7e1832e063ffeae40cedb2df151e8471b";

fn hex(text: &str) -> Vec<u8> {
    alloy::hex::decode(text).expect("hex")
}

fn key(text: &str) -> PrivateKeySigner {
    text.parse().expect("a key")
}

fn terms() -> PaymentTerms {
    PaymentTerms {
        chain_id: CHAIN_ID,
        currency: PATH_USD,
        recipient: RECIPIENT,
        amount: alloy::primitives::U256::from(PRICE),
    }
}

const BINDING: ChallengeBinding<'static> = ChallengeBinding { challenge_id: CHALLENGE_ID, realm: REALM };

#[test]
fn an_mppx_fee_payer_envelope_cosigns_to_viems_transaction_byte_for_byte() {
    let client = ClientTransaction::decode(&hex(VIEM_FEE_PAYER_ENVELOPE)).expect("the 0x78 envelope decodes");
    assert_eq!(client.sender, PAYER);
    assert!(client.requests_sponsorship());
    let policy = SponsorPolicy::default();
    let ctx = SponsorContext { policy: &policy, now: NOW, challenge_expires: None };
    let call = check_payment_transaction(client.tx(), &terms(), &BINDING, Some(&ctx)).expect("within policy, bound");
    assert_eq!(
        call.memo.map(|m| format!("{m:x}")).as_deref(),
        Some("ef1ed712011ece072f76bd8b82350e3a180fb9d0177aa2f371eb18f2d4402269")
    );

    let signed = cosign(&client, &key(FEE_PAYER_KEY), PATH_USD).expect("co-signs");
    assert_eq!(alloy::hex::encode_prefixed(encode_2718(&signed)), VIEM_COSIGNED, "viem's co-signed bytes");
    assert_eq!(*signed.hash(), VIEM_COSIGNED_HASH);
    assert_eq!(signed.tx().recover_fee_payer(PAYER).unwrap(), FEE_PAYER);

    // The same challenge-bound transfer under another challenge or realm is no payment.
    let other = ChallengeBinding { challenge_id: "challenge-124", realm: REALM };
    let err = check_payment_transaction(client.tx(), &terms(), &other, Some(&ctx)).unwrap_err();
    assert_eq!(err.reason(), "no_matching_payment_call");
    // One second past validBefore the sponsor refuses it.
    let late = SponsorContext { now: 1_900_000_060, ..ctx };
    assert_eq!(
        check_payment_transaction(client.tx(), &terms(), &BINDING, Some(&late)).unwrap_err().reason(),
        "sponsor_policy"
    );
}

#[test]
fn a_self_paid_viem_transaction_decodes_to_its_sender() {
    let client = ClientTransaction::decode(&hex(VIEM_SELF_PAID)).expect("the 0x76 transaction decodes");
    assert_eq!(client.sender, PAYER);
    assert!(!client.requests_sponsorship());
    assert_eq!(client.tx().fee_token, Some(PATH_USD));
    check_payment_transaction(client.tx(), &terms(), &BINDING, None).expect("the payment call matches");
    // Its hash is the hash of the bytes the client sent.
    assert_eq!(*client.signed.hash(), keccak256(hex(VIEM_SELF_PAID)));
    // A tampered signature does not name the payer any more (or does not verify).
    let mut tampered = hex(VIEM_SELF_PAID);
    let last = tampered.len() - 10;
    tampered[last] ^= 1;
    assert!(ClientTransaction::decode(&tampered).map_or(true, |c| c.sender != PAYER));
    // Garbage never panics.
    for garbage in [&b""[..], &[0x76], &[0x78, 0xc0], &[0x02, 0x01], &hex(VIEM_SELF_PAID)[..40]] {
        assert!(ClientTransaction::decode(garbage).is_err(), "{garbage:?}");
    }
}

#[test]
fn proof_digests_and_signatures_match_viem() {
    let message = ProofMessage { chain_id: CHAIN_ID, challenge_id: "proof-challenge-id", realm: REALM, account: PAYER };
    // viem hashTypedData of the same typed data.
    assert_eq!(
        message.signing_hash(ProofVersion::V3),
        b256!("e0de3176c6dc19bfb1d0d16dab47f0a7ecf22d7547cb8b6b44bb91bfd1970686")
    );
    assert_eq!(
        message.signing_hash(ProofVersion::V2),
        b256!("eb9c94cf2466daa3766d7e6c14ebe83d5ab64a582cc67f3f60eaebc82bb53974")
    );
    assert_eq!(message.typed_data(ProofVersion::V3)["message"]["account"], json!(PAYER.to_checksum(None)));
    // viem signTypedData with key 0x11..11.
    let v3 = hex(
        "0x9d3fec7541e0b2d904c262c607aada873d2efb750a7dc18f2001daf066c72ca26490fcbd2e23879e986a3e9426e2471b1cfe1b6913800e86df5a4070e8e5de761c",
    );
    let v2 = hex(
        "0x4eee3548ab71905020c560b9287922b59e06dcf5c9579801e4f12dbe6d6f8c0d5701cd5ce6483a12127fec1d6fe35bcb3d0a15420d8996d598245751c6022d5f1c",
    );
    assert_eq!(message.verify(&v3), Ok(ProofVersion::V3));
    assert_eq!(message.verify(&v2), Ok(ProofVersion::V2));
    let someone_else = ProofMessage { account: FEE_PAYER, ..message.clone() };
    assert_eq!(someone_else.verify(&v3).unwrap_err().reason(), "invalid_signature");
    let other_challenge = ProofMessage { challenge_id: "another", ..message };
    assert_eq!(other_challenge.verify(&v3).unwrap_err().reason(), "invalid_signature");
}

// ---------------------------------------------------------------------------------------------------------
// The method, over a scripted chain.

/// A chain that answers from a script: `eth_call` succeeds, broadcasts are recorded, receipts are what the
/// test put there. Everything else is unavailable.
#[derive(Debug, Default)]
struct ScriptedChain {
    sent: Mutex<Vec<Bytes>>,
    send_error: Mutex<Option<ChainError>>,
    /// Receipts by hash, visible only once something was broadcast (or at once when `mined_already`).
    receipts: Mutex<Vec<TransactionReceipt>>,
    mined_already: bool,
}

fn unscripted() -> ChainError {
    ChainError::Unavailable("not scripted".into())
}

#[async_trait]
impl Chain for ScriptedChain {
    fn chain_id(&self) -> u64 {
        CHAIN_ID
    }
    async fn call(&self, _tx: TransactionRequest) -> Result<Bytes, ChainError> {
        Ok(Bytes::new())
    }
    async fn estimate_gas(&self, _tx: TransactionRequest) -> Result<u64, ChainError> {
        Err(unscripted())
    }
    async fn pending_nonce(&self, _address: Address) -> Result<u64, ChainError> {
        Err(unscripted())
    }
    async fn fees(&self) -> Result<Fees, ChainError> {
        Err(unscripted())
    }
    async fn send_raw_transaction(&self, raw: Bytes) -> Result<TxHash, ChainError> {
        self.sent.lock().unwrap().push(raw.clone());
        match self.send_error.lock().unwrap().clone() {
            Some(error) => Err(error),
            None => Ok(keccak256(&raw)),
        }
    }
    async fn receipt(&self, hash: TxHash) -> Result<Option<TransactionReceipt>, ChainError> {
        if !self.mined_already && self.sent.lock().unwrap().is_empty() {
            return Ok(None);
        }
        Ok(self.receipts.lock().unwrap().iter().find(|r| r.transaction_hash == hash).cloned())
    }
    async fn block_number(&self) -> Result<u64, ChainError> {
        Err(unscripted())
    }
    async fn block_timestamp(&self, _number: u64) -> Result<Option<u64>, ChainError> {
        Err(unscripted())
    }
    async fn logs(&self, _filter: Filter) -> Result<Vec<Log>, ChainError> {
        Err(unscripted())
    }
    async fn code(&self, _address: Address) -> Result<Bytes, ChainError> {
        Err(unscripted())
    }
}

/// A receipt as a node returns it: `status`, and TIP-20's `Transfer` + `TransferWithMemo` pair for `memo`.
fn receipt(hash: B256, success: bool, memo: &str) -> TransactionReceipt {
    let word = |a: Address| format!("0x{:0>64}", alloy::hex::encode(a));
    let log = |index: u64, topics: Vec<String>| {
        json!({
            "address": PATH_USD, "topics": topics, "data": format!("0x{PRICE:064x}"),
            "blockHash": B256::repeat_byte(1), "blockNumber": "0x10", "transactionHash": hash,
            "transactionIndex": "0x0", "logIndex": format!("0x{index:x}"), "removed": false,
        })
    };
    let logs = if success {
        vec![
            log(
                0,
                vec![
                    "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef".into(),
                    word(PAYER),
                    word(RECIPIENT),
                ],
            ),
            log(
                1,
                vec![
                    "0x57bc7354aa85aed339e000bccffabbc529466af35f0772c8f8ee1145927de7f0".into(),
                    word(PAYER),
                    word(RECIPIENT),
                    memo.into(),
                ],
            ),
        ]
    } else {
        vec![]
    };
    serde_json::from_value(json!({
        "transactionHash": hash, "transactionIndex": "0x0", "blockHash": B256::repeat_byte(1), "blockNumber": "0x10",
        "from": PAYER, "to": PATH_USD, "cumulativeGasUsed": "0x10000", "gasUsed": "0x10000",
        "effectiveGasPrice": "0x1", "contractAddress": null, "logs": logs,
        "logsBloom": format!("0x{}", "0".repeat(512)), "status": if success { "0x1" } else { "0x0" }, "type": "0x2",
    }))
    .expect("a receipt")
}

const BOUND_MEMO: &str = "0xef1ed712011ece072f76bd8b82350e3a180fb9d0177aa2f371eb18f2d4402269";

fn method(chain: Arc<ScriptedChain>, settings: TempoSettings) -> TempoMethod {
    let option = PaymentOption {
        name: "pathusd-moderato".into(),
        network: Network::Evm(CHAIN_ID),
        asset: Asset {
            address: PATH_USD.to_checksum(None),
            symbol: "pathUSD".into(),
            decimals: 6,
            usd: true,
            eip712: None,
        },
        pay_to: RECIPIENT.to_checksum(None),
        max_timeout_secs: 300,
    };
    TempoMethod::new(option, chain, settings, Arc::new(FixedClock(NOW))).expect("a valid option")
}

fn sponsoring() -> TempoSettings {
    TempoSettings {
        fee_payer: Some(key(FEE_PAYER_KEY)),
        fee_token: Some(PATH_USD),
        receipt_timeout: Duration::from_millis(300),
        poll_interval: Duration::from_millis(20),
        ..TempoSettings::default()
    }
}

fn credential(method: &TempoMethod, amount: u128, payload: Value, source: Option<String>) -> Credential {
    let terms = method.mpp_terms(AtomicAmount(amount)).expect("terms");
    Credential {
        challenge: Challenge {
            id: CHALLENGE_ID.into(),
            realm: REALM.into(),
            method: terms.method.into(),
            intent: terms.intent.into(),
            request: terms.request,
            description: None,
            digest: None,
            expires: Some("2030-03-17T17:51:40Z".into()),
            header: None,
            opaque: None,
        },
        payload,
        source,
    }
}

async fn verified(method: &TempoMethod) -> VerifiedPayment {
    let payload = json!({"type": "transaction", "signature": VIEM_FEE_PAYER_ENVELOPE});
    let credential = credential(method, PRICE, payload, Some(format!("did:pkh:eip155:{CHAIN_ID}:{PAYER}")));
    method.verify(Proof::Mpp { credential: &credential }, AtomicAmount(PRICE)).await.expect("verifies")
}

#[test]
fn the_offer_is_the_request_mppx_emits_and_the_key_is_never_printed() {
    let chain = Arc::new(ScriptedChain::default());
    let sponsoring = method(chain.clone(), sponsoring());
    assert_eq!(sponsoring.rail(), "tempo");
    assert!(sponsoring.x402_requirements(AtomicAmount(PRICE)).is_none());
    let terms = sponsoring.mpp_terms(AtomicAmount(PRICE)).unwrap();
    assert_eq!((terms.method, terms.intent), ("tempo", "charge"));
    assert_eq!(
        terms.request,
        json!({
            "amount": "1000000",
            // EIP-55, as every address paygate emits (pathUSD's checksum is all upper case).
            "currency": "0x20C0000000000000000000000000000000000000",
            "methodDetails": {"chainId": CHAIN_ID, "feePayer": true},
            "recipient": "0x742d35Cc6634c0532925a3b844bC9e7595F8fE00",
        })
    );
    assert!(sponsoring.matches_request(&terms.request, AtomicAmount(PRICE)));
    assert!(!sponsoring.matches_request(&terms.request, AtomicAmount(PRICE + 1)));
    let push_only =
        method(chain.clone(), TempoSettings { supported_modes: vec!["push".into()], ..TempoSettings::default() });
    assert_eq!(
        push_only.mpp_terms(AtomicAmount(5)).unwrap().request["methodDetails"],
        json!({"chainId": CHAIN_ID, "supportedModes": ["push"]})
    );
    let printed = format!("{sponsoring:?}");
    assert!(!printed.contains(&FEE_PAYER_KEY[2..]), "the fee payer key leaked: {printed}");
    assert!(printed.contains(&format!("{FEE_PAYER:?}")) || printed.to_lowercase().contains(&format!("{FEE_PAYER:x}")));

    // Options that cannot be served.
    let bad = |settings: TempoSettings, decimals: u8| {
        let option = PaymentOption {
            name: "bad".into(),
            network: Network::Evm(CHAIN_ID),
            asset: Asset { address: PATH_USD.to_checksum(None), symbol: "x".into(), decimals, usd: true, eip712: None },
            pay_to: RECIPIENT.to_checksum(None),
            max_timeout_secs: 300,
        };
        TempoMethod::new(option, chain.clone(), settings, Arc::new(FixedClock(NOW))).is_err()
    };
    assert!(bad(TempoSettings { supported_modes: vec![], ..TempoSettings::default() }, 6));
    assert!(bad(TempoSettings { supported_modes: vec!["pull".into(), "pull".into()], ..TempoSettings::default() }, 6));
    assert!(bad(TempoSettings { supported_modes: vec!["card".into()], ..TempoSettings::default() }, 6));
    assert!(bad(TempoSettings::default(), 18));
}

#[tokio::test]
async fn a_sponsored_transaction_is_broadcast_cosigned_and_settles_on_its_receipt() {
    let chain = Arc::new(ScriptedChain::default());
    chain.receipts.lock().unwrap().push(receipt(VIEM_COSIGNED_HASH, true, BOUND_MEMO));
    let method = method(chain.clone(), sponsoring());
    let payment = verified(&method).await;
    assert_eq!(payment.proof_key, format!("eip155:{CHAIN_ID}:tx:{VIEM_COSIGNED_HASH:#x}"));
    assert_eq!(payment.payer, PAYER.to_checksum(None));
    assert_eq!(payment.settlement["transaction"], json!(VIEM_COSIGNED));
    assert!(chain.sent.lock().unwrap().is_empty(), "verify broadcasts nothing");

    let outcome = method.settle(&payment).await;
    assert_eq!(outcome, SettleOutcome::Settled { reference: format!("{VIEM_COSIGNED_HASH:#x}") });
    assert_eq!(*chain.sent.lock().unwrap(), vec![Bytes::from(hex(VIEM_COSIGNED))], "exactly the co-signed bytes, once");
}

#[tokio::test]
async fn settlement_outcomes_follow_the_chain() {
    // Reverted on chain: failed, with the hash.
    let chain = Arc::new(ScriptedChain::default());
    chain.receipts.lock().unwrap().push(receipt(VIEM_COSIGNED_HASH, false, BOUND_MEMO));
    let method_ = method(chain.clone(), sponsoring());
    let payment = verified(&method_).await;
    match method_.settle(&payment).await {
        SettleOutcome::Failed { reason, reference } => {
            assert!(reason.contains("reverted"), "{reason}");
            assert_eq!(reference, Some(format!("{VIEM_COSIGNED_HASH:#x}")));
        }
        other => panic!("{other:?}"),
    }

    // Mined, but the log's memo is bound elsewhere (cannot happen with the checked call; still not settled).
    let chain = Arc::new(ScriptedChain::default());
    let elsewhere = "0xef1ed712011ece072f76bd8b82350e000000000000000000000ba7f8d2502b26";
    chain.receipts.lock().unwrap().push(receipt(VIEM_COSIGNED_HASH, true, elsewhere));
    let method_ = method(chain.clone(), sponsoring());
    assert!(matches!(method_.settle(&verified(&method_).await).await, SettleOutcome::Failed { .. }));

    // No receipt before the timeout: unknown, with the hash to reconcile.
    let chain = Arc::new(ScriptedChain::default());
    let method_ = method(chain.clone(), sponsoring());
    let outcome = method_.settle(&verified(&method_).await).await;
    assert_eq!(
        outcome,
        SettleOutcome::Unknown {
            reason: "no receipt before the timeout".into(),
            reference: Some(format!("{VIEM_COSIGNED_HASH:#x}"))
        }
    );

    // The broadcast's fate is unknown (the node went away mid-request): unknown.
    let chain = Arc::new(ScriptedChain::default());
    *chain.send_error.lock().unwrap() = Some(ChainError::Unavailable("timed out".into()));
    let method_ = method(chain.clone(), sponsoring());
    assert!(matches!(method_.settle(&verified(&method_).await).await, SettleOutcome::Unknown { .. }));

    // Refused by the node: failed, nothing to reconcile.
    let chain = Arc::new(ScriptedChain::default());
    *chain.send_error.lock().unwrap() =
        Some(ChainError::Rpc { code: -32000, message: "insufficient funds for gas".into() });
    let method_ = method(chain.clone(), sponsoring());
    match method_.settle(&verified(&method_).await).await {
        SettleOutcome::Failed { reason, reference: None } => assert!(reason.contains("refused"), "{reason}"),
        other => panic!("{other:?}"),
    }

    // Refused as already known (a retried settlement): the receipt decides.
    let chain = Arc::new(ScriptedChain::default());
    *chain.send_error.lock().unwrap() = Some(ChainError::Rpc { code: -32000, message: "already known".into() });
    chain.receipts.lock().unwrap().push(receipt(VIEM_COSIGNED_HASH, true, BOUND_MEMO));
    let method_ = method(chain.clone(), sponsoring());
    assert_eq!(
        method_.settle(&verified(&method_).await).await,
        SettleOutcome::Settled { reference: format!("{VIEM_COSIGNED_HASH:#x}") }
    );
    // ... but "unknown transaction type" is a refusal, not "known".
    let chain = Arc::new(ScriptedChain::default());
    *chain.send_error.lock().unwrap() =
        Some(ChainError::Rpc { code: -32000, message: "unknown transaction type".into() });
    let method_ = method(chain.clone(), sponsoring());
    assert!(matches!(method_.settle(&verified(&method_).await).await, SettleOutcome::Failed { .. }));
}

#[tokio::test]
async fn credentials_the_offer_does_not_take_are_refused() {
    let chain = Arc::new(ScriptedChain::default());
    let sponsoring = method(chain.clone(), sponsoring());
    let check = |outcome: Result<VerifiedPayment, paygate_core::reject::Rejection>, kind: RejectKind, reason: &str| {
        let rejection = outcome.expect_err(reason);
        assert_eq!((rejection.kind, rejection.reason), (kind, reason), "{rejection}");
    };
    let source = Some(format!("did:pkh:eip155:{CHAIN_ID}:{PAYER}"));
    let proof_v3 = "0x9d3fec7541e0b2d904c262c607aada873d2efb750a7dc18f2001daf066c72ca26490fcbd2e23879e986a3e9426e2471b1cfe1b6913800e86df5a4070e8e5de761c";

    // Unknown payload types, and other protocols' proofs.
    let c = credential(&sponsoring, PRICE, json!({"type": "authorization"}), None);
    check(
        sponsoring.verify(Proof::Mpp { credential: &c }, AtomicAmount(PRICE)).await,
        RejectKind::MalformedCredential,
        "invalid_payload",
    );
    let x402 = json!({});
    check(
        sponsoring.verify(Proof::X402 { version: 2, payload: &x402 }, AtomicAmount(PRICE)).await,
        RejectKind::MalformedCredential,
        "invalid_payload",
    );
    // A proof pays only a zero amount, and a zero amount only takes a proof.
    let c = credential(&sponsoring, PRICE, json!({"type": "proof", "signature": proof_v3}), source.clone());
    check(
        sponsoring.verify(Proof::Mpp { credential: &c }, AtomicAmount(PRICE)).await,
        RejectKind::VerificationFailed,
        "proof_needs_zero_amount",
    );
    let c = credential(&sponsoring, 0, json!({"type": "hash", "hash": format!("{:#x}", B256::ZERO)}), None);
    check(
        sponsoring.verify(Proof::Mpp { credential: &c }, AtomicAmount(0)).await,
        RejectKind::VerificationFailed,
        "zero_amount_needs_proof",
    );
    // A zero-amount proof needs a source, and is signed for this challenge.
    let c = credential(&sponsoring, 0, json!({"type": "proof", "signature": proof_v3}), None);
    check(
        sponsoring.verify(Proof::Mpp { credential: &c }, AtomicAmount(0)).await,
        RejectKind::VerificationFailed,
        "invalid_source",
    );
    let c = credential(&sponsoring, 0, json!({"type": "proof", "signature": proof_v3}), source.clone());
    check(
        sponsoring.verify(Proof::Mpp { credential: &c }, AtomicAmount(0)).await,
        RejectKind::VerificationFailed,
        "invalid_signature",
    );
    // A push-only offer refuses transactions.
    let push_only = method(
        chain.clone(),
        TempoSettings { supported_modes: vec!["push".into()], ..sponsoring_settings_without_key() },
    );
    let c = credential(&push_only, PRICE, json!({"type": "transaction", "signature": VIEM_FEE_PAYER_ENVELOPE}), None);
    check(
        push_only.verify(Proof::Mpp { credential: &c }, AtomicAmount(PRICE)).await,
        RejectKind::VerificationFailed,
        "mode_not_supported",
    );
    // A source that is not the transaction's sender.
    let c = credential(
        &sponsoring,
        PRICE,
        json!({"type": "transaction", "signature": VIEM_FEE_PAYER_ENVELOPE}),
        Some(format!("did:pkh:eip155:{CHAIN_ID}:{FEE_PAYER}")),
    );
    check(
        sponsoring.verify(Proof::Mpp { credential: &c }, AtomicAmount(PRICE)).await,
        RejectKind::VerificationFailed,
        "source_mismatch",
    );
    // The transaction under another price is no payment.
    let c =
        credential(&sponsoring, PRICE + 1, json!({"type": "transaction", "signature": VIEM_FEE_PAYER_ENVELOPE}), None);
    check(
        sponsoring.verify(Proof::Mpp { credential: &c }, AtomicAmount(PRICE + 1)).await,
        RejectKind::VerificationFailed,
        "no_matching_payment_call",
    );
}

fn sponsoring_settings_without_key() -> TempoSettings {
    TempoSettings { fee_payer: None, ..sponsoring() }
}

#[tokio::test]
async fn a_zero_amount_proof_signed_by_the_source_verifies() {
    let chain = Arc::new(ScriptedChain::default());
    let method = method(chain, TempoSettings::default());
    // Signed here with key 0x11..11 over the version-3 digest (viem's digest: see
    // proof_digests_and_signatures_match_viem).
    let message = ProofMessage { chain_id: CHAIN_ID, challenge_id: CHALLENGE_ID, realm: REALM, account: PAYER };
    let digest = message.signing_hash(ProofVersion::V3);
    let signature = alloy::signers::SignerSync::sign_hash_sync(&key(PAYER_KEY), &digest).unwrap();
    let payload = json!({"type": "proof", "signature": alloy::hex::encode_prefixed(signature.as_bytes())});
    let credential = credential(&method, 0, payload, Some(format!("did:pkh:eip155:{CHAIN_ID}:{PAYER}")));
    let payment = method.verify(Proof::Mpp { credential: &credential }, AtomicAmount(0)).await.expect("a good proof");
    assert_eq!(payment.proof_key, format!("eip155:{CHAIN_ID}:proof:{CHALLENGE_ID}"));
    assert_eq!(payment.payer, PAYER.to_checksum(None));
    assert_eq!(payment.amount, AtomicAmount(0));
    assert_eq!(method.settle(&payment).await, SettleOutcome::Settled { reference: CHALLENGE_ID.into() });
}
