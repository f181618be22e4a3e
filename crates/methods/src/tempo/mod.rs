//! The Tempo rail: MPP `tempo`/`charge` payments in a TIP-20 stablecoin (6 decimals) on Tempo (mainnet 4217,
//! Moderato testnet 42431).
//!
//! The offer is exactly the request mppx 0.11's tempo server emits (`dist/tempo/Methods.js`):
//! `{amount, currency, recipient, methodDetails: {chainId, feePayer?: true, supportedModes?}}`, `feePayer` when
//! paygate has a fee-payer key, `supportedModes` when not both modes are offered. A client answers with one of
//! three credential payloads, each checked by [`TempoMethod::verify`] without side effects:
//!
//! * `{"type": "hash", "hash"}` (push mode): the payer already broadcast a transfer. paygate reads the receipt and
//!   requires a `TransferWithMemo` on the currency, to the recipient, of exactly the price, from the credential's
//!   `source` (else the transaction's sender), whose memo is an MPP attribution memo bound to this challenge's
//!   realm and id ([`memo`], [`receipt`]). Settling does nothing more: the money moved.
//! * `{"type": "transaction", "signature"}` (pull mode): a signed Tempo transaction (`0x76`, or the `0x78`
//!   fee-payer envelope) that makes exactly that one transfer ([`transaction`]). When paygate sponsors fees and
//!   the client asks for it, the sponsor policy is enforced and paygate co-signs as fee payer during `verify`
//!   (pure computation); the transfer is simulated with `eth_call`. [`TempoMethod::settle`] broadcasts the
//!   (co-signed) transaction, waits for its receipt and checks the transfer log and memo again; no receipt
//!   before the timeout is `Unknown`.
//! * `{"type": "proof", "signature"}` (zero-amount charges only): an EIP-712 signature over the challenge by the
//!   `source` account ([`proof`]). Both the vector's version `"2"` typed data `Proof{challengeId, realm}` and the
//!   current SDKs' version `"3"` `Proof{account, challengeId, realm}` are accepted.
//!
//! Any other payload is a malformed credential (`invalid_payload`). The proof key of a transfer is
//! `eip155:<chainId>:tx:<hash, lowercase>`, the key of the pay-first tx-hash rail, so one transfer cannot pay
//! twice through two rails; a zero-amount proof's key is `eip155:<chainId>:proof:<challenge id>`.
//!
//! Where the spec drafts and the SDKs differ, this follows the SDKs (mppx 0.11, mpp-rs 0.18): attribution memos
//! instead of the spec's optional server memo, hash credentials accepted also when a fee payer is offered, the
//! `0x78` envelope for sponsorship, sponsor-policy defaults (2,000,000 gas, a 15-minute validity window,
//! 100 gwei max fee per gas, 50 gwei priority fee, `gas × maxFeePerGas` at most 5·10^16). Where the mpp-tools
//! vector and the SDKs differ (proof typed data version 2 vs 3), both are accepted.
//!
//! Not supported: `splits`, mppx's auto-swap prefix (`approve` + `swapExactAmountOut` before the transfer), the
//! MACH machine-token route, keychain (access-key) signatures on proofs, and simulation of the sponsored
//! transaction as a whole (`tempo_simulateV1`): only its one transfer is simulated, as a plain `eth_call`.
//!
//! **What was exercised where.** No Tempo node could run here, so nothing in this module has been run against
//! one. The memo, receipt-log, sponsor-policy/co-sign and proof-typed-data functions pass every scenario of the
//! four mpp-tools Tempo vector files (`crates/methods/tests/tempo_vectors.rs`). `tempo_method.rs` checks them
//! against wire bytes produced by viem/mppx: a `0x78` envelope decodes to the same sender, and co-signing it
//! reproduces viem's co-signed `0x76` transaction byte for byte; proof digests and signatures match viem's. The
//! `hash` path runs end to end on anvil against `contracts/TestTIP20.sol`, a TIP-20 look-alike emitting the same
//! events (`tempo_anvil.rs`), as do the `transaction` path's checks, co-signing and `eth_call` simulation.
//! Broadcasting a `0x76` transaction and reading its receipt were only run against a scripted [`Chain`]
//! (`tempo_method.rs`), never a node: anvil does not accept type `0x76`.
//!
//! Receipts of `0x76` transactions are read by `paygate_chain::RpcChain::receipt`, which accepts transaction
//! types alloy does not know and keeps their status, sender and logs (tested there on a Tempo-shaped receipt).

mod config;
pub mod error;
pub mod memo;
pub mod proof;
pub mod receipt;
pub mod transaction;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use paygate_chain::{Chain, ChainError, wait_for_receipt};
use paygate_core::clock::{Clock, parse_rfc3339};
use paygate_core::method::{MppTerms, PaymentMethod, PaymentOption, Proof, SettleOutcome, VerifiedPayment};
use paygate_core::money::AtomicAmount;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_proto::mpp::Credential;

pub use config::{RAIL, TempoConfig, TempoRailConfig};
pub use error::TempoError;
pub use memo::{decode_memo, encode_memo, is_memo_bound};
pub use proof::{ProofMessage, ProofVersion};
pub use receipt::{ExpectedTransfer, TransferEvent, transfer_events, verify_transfer_logs};
pub use transaction::{
    ClientTransaction, PaymentTerms, SponsorContext, SponsorPolicy, check_payment_transaction, check_sponsor_policy,
    cosign, encode_fee_payer_envelope, sponsor_transaction,
};

use crate::rail::OptionError;

/// The TIP-20 interface paygate reads and decodes (tempo-contracts `precompiles/tip20.rs`).
pub mod tip20 {
    alloy::sol! {
        event Transfer(address indexed from, address indexed to, uint256 amount);
        event TransferWithMemo(address indexed from, address indexed to, uint256 amount, bytes32 indexed memo);
        function transfer(address to, uint256 amount) external returns (bool);
        function transferWithMemo(address to, uint256 amount, bytes32 memo) external;
        function balanceOf(address account) external view returns (uint256);
    }
}

/// Mainnet chain id.
pub const TEMPO_MAINNET: u64 = 4217;
/// Moderato testnet chain id.
pub const TEMPO_TESTNET: u64 = 42431;

/// The challenge a payment must be bound to: its `id` and `realm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeBinding<'a> {
    pub challenge_id: &'a str,
    pub realm: &'a str,
}

/// The two payment modes: `pull` = `transaction` credentials, `push` = `hash` credentials.
pub const MODES: [&str; 2] = ["push", "pull"];

/// How a Tempo option is served.
#[derive(Clone)]
pub struct TempoSettings {
    /// When set, paygate sponsors fees: it co-signs clients' pull transactions as fee payer (and the challenge
    /// says `feePayer: true`). Never printed.
    pub fee_payer: Option<PrivateKeySigner>,
    /// The TIP-20 the fee payer pays fees in; `None`: the option's own currency. The fee payer must hold it.
    pub fee_token: Option<Address>,
    /// A non-empty subset of `["pull", "push"]`; default both.
    pub supported_modes: Vec<String>,
    /// Sponsor policy: the highest gas limit co-signed. Default 2,000,000 (mppx, mpp-rs).
    pub max_gas: u64,
    /// Sponsor policy: the longest `validBefore - now` co-signed, seconds. Default 900 (mppx, mpp-rs).
    pub max_validity_secs: u64,
    /// Sponsor policy: the highest `maxFeePerGas` co-signed. Default 100 gwei (mppx).
    pub max_fee_per_gas: u128,
    /// Sponsor policy: the highest `maxPriorityFeePerGas` co-signed. Default 50 gwei (mppx's testnet value).
    pub max_priority_fee_per_gas: u128,
    /// Sponsor policy: the highest `gas × maxFeePerGas` co-signed. Default 5·10^16 (mppx).
    pub max_total_fee: u128,
    /// How long `settle` waits for the receipt of a broadcast transaction before answering `Unknown`.
    pub receipt_timeout: Duration,
    /// Receipt polling interval.
    pub poll_interval: Duration,
}

impl Default for TempoSettings {
    fn default() -> Self {
        let policy = SponsorPolicy::default();
        TempoSettings {
            fee_payer: None,
            fee_token: None,
            supported_modes: MODES.iter().map(|m| (*m).to_owned()).collect(),
            max_gas: policy.max_gas,
            max_validity_secs: policy.max_validity_secs,
            max_fee_per_gas: policy.max_fee_per_gas,
            max_priority_fee_per_gas: policy.max_priority_fee_per_gas,
            max_total_fee: policy.max_total_fee,
            receipt_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
        }
    }
}

impl TempoSettings {
    /// The sponsor policy these settings describe.
    pub fn sponsor_policy(&self) -> SponsorPolicy {
        SponsorPolicy {
            max_gas: self.max_gas,
            max_validity_secs: self.max_validity_secs,
            max_fee_per_gas: self.max_fee_per_gas,
            max_priority_fee_per_gas: self.max_priority_fee_per_gas,
            max_total_fee: self.max_total_fee,
        }
    }
}

impl std::fmt::Debug for TempoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempoSettings")
            .field("fee_payer", &self.fee_payer.as_ref().map(|s| s.address()))
            .field("fee_token", &self.fee_token)
            .field("supported_modes", &self.supported_modes)
            .field("max_gas", &self.max_gas)
            .field("max_validity_secs", &self.max_validity_secs)
            .field("max_fee_per_gas", &self.max_fee_per_gas)
            .field("max_priority_fee_per_gas", &self.max_priority_fee_per_gas)
            .field("max_total_fee", &self.max_total_fee)
            .field("receipt_timeout", &self.receipt_timeout)
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

/// The Tempo rail for one payment option.
#[derive(Debug)]
pub struct TempoMethod {
    option: PaymentOption,
    chain_id: u64,
    currency: Address,
    recipient: Address,
    fee_token: Address,
    push: bool,
    pull: bool,
    policy: SponsorPolicy,
    chain: Arc<dyn Chain>,
    settings: TempoSettings,
    clock: Arc<dyn Clock>,
}

/// What `settle` needs, kept in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Settlement {
    /// The payer broadcast; nothing to do.
    Hash { tx_hash: String },
    /// The transaction to broadcast (co-signed when sponsored) and what its receipt must show.
    Transaction { tx_hash: String, transaction: String, sender: String, challenge_id: String, realm: String },
    /// A zero-amount proof.
    Proof { challenge_id: String },
}

impl TempoMethod {
    pub fn new(
        option: PaymentOption,
        chain: Arc<dyn Chain>,
        settings: TempoSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OptionError> {
        let err = |problem: String| OptionError { option: option.name.clone(), problem };
        let chain_id = option.network.evm_chain_id().ok_or_else(|| err("Tempo needs an eip155 network".into()))?;
        let currency: Address =
            option.asset.address.parse().map_err(|_| err("the asset is not a TIP-20 token address".into()))?;
        let recipient: Address = option.pay_to.parse().map_err(|_| err("pay_to is not an address".into()))?;
        if option.asset.decimals != 6 {
            return Err(err(format!("TIP-20 tokens have 6 decimals, the asset says {}", option.asset.decimals)));
        }
        if chain.chain_id() != chain_id {
            return Err(err("the chain's id differs from the network's".into()));
        }
        if settings.supported_modes.is_empty() {
            return Err(err("supported_modes is empty".into()));
        }
        for (i, mode) in settings.supported_modes.iter().enumerate() {
            if !MODES.contains(&mode.as_str()) {
                return Err(err(format!("unknown mode {mode:?}: the modes are \"pull\" and \"push\"")));
            }
            if settings.supported_modes[..i].contains(mode) {
                return Err(err(format!("mode {mode:?} is listed twice")));
            }
        }
        if settings.max_gas == 0 || settings.max_validity_secs == 0 {
            return Err(err("the sponsor policy allows no gas or no validity window".into()));
        }
        let push = settings.supported_modes.iter().any(|m| m == "push");
        let pull = settings.supported_modes.iter().any(|m| m == "pull");
        Ok(TempoMethod {
            chain_id,
            currency,
            recipient,
            fee_token: settings.fee_token.unwrap_or(currency),
            push,
            pull,
            policy: settings.sponsor_policy(),
            option,
            chain,
            settings,
            clock,
        })
    }

    fn expected(&self, amount: AtomicAmount) -> ExpectedTransfer {
        ExpectedTransfer { currency: self.currency, recipient: self.recipient, amount: U256::from(amount.0) }
    }

    fn tx_key(&self, hash: &B256) -> String {
        format!("eip155:{}:tx:{hash:#x}", self.chain_id)
    }

    /// The address a `did:pkh:eip155:<chainId>:<address>` source names; it must be on this chain.
    pub fn parse_source(&self, source: &str) -> Result<Address, TempoError> {
        parse_pkh_source(source, self.chain_id)
    }

    async fn verify_hash(&self, credential: &Credential, amount: AtomicAmount) -> Result<VerifiedPayment, TempoError> {
        if !self.push {
            return Err(TempoError::ModeNotSupported("hash"));
        }
        let hash = parse_hash(payload_str(&credential.payload, "hash")?)?;
        let source = credential.source.as_deref().map(|s| self.parse_source(s)).transpose()?;
        let receipt = self
            .chain
            .receipt(hash)
            .await
            .map_err(chain_unavailable)?
            .ok_or_else(|| TempoError::TransactionNotFound(format!("{hash:#x}")))?;
        let logs: Vec<alloy::primitives::Log> = receipt.inner.logs().iter().map(|log| log.inner.clone()).collect();
        let binding = ChallengeBinding { challenge_id: &credential.challenge.id, realm: &credential.challenge.realm };
        let found = verify_transfer_logs(
            receipt.status(),
            &logs,
            &self.expected(amount),
            Some(source.unwrap_or(receipt.from)),
            &binding,
            &format!("{hash:#x}"),
        )?;
        Ok(VerifiedPayment {
            proof_key: self.tx_key(&hash),
            payer: found.from.to_checksum(None),
            amount,
            settlement: settlement_json(&Settlement::Hash { tx_hash: format!("{hash:#x}") }),
        })
    }

    async fn verify_transaction(
        &self,
        credential: &Credential,
        amount: AtomicAmount,
    ) -> Result<VerifiedPayment, TempoError> {
        if !self.pull {
            return Err(TempoError::ModeNotSupported("transaction"));
        }
        let raw = parse_hex(payload_str(&credential.payload, "signature")?, "signature")?;
        let client = ClientTransaction::decode(&raw)?;
        let fee_payer = match (client.requests_sponsorship(), &self.settings.fee_payer) {
            (true, Some(fee_payer)) => Some(fee_payer),
            (true, None) => return Err(TempoError::SponsorshipNotOffered),
            (false, _) => None,
        };
        let now = self.clock.now_unix();
        let ctx = SponsorContext {
            policy: &self.policy,
            now,
            challenge_expires: credential.challenge.expires.as_deref().and_then(parse_rfc3339),
        };
        let terms = PaymentTerms {
            chain_id: self.chain_id,
            currency: self.currency,
            recipient: self.recipient,
            amount: U256::from(amount.0),
        };
        let binding = ChallengeBinding { challenge_id: &credential.challenge.id, realm: &credential.challenge.realm };
        check_payment_transaction(client.tx(), &terms, &binding, fee_payer.map(|_| &ctx))?;
        if let Some(valid_before) = client.tx().valid_before.map(|v| v.get())
            && valid_before <= now
        {
            return Err(TempoError::TransactionExpired { valid_before, now });
        }
        if let Some(source) = &credential.source
            && self.parse_source(source)? != client.sender
        {
            return Err(TempoError::SourceMismatch);
        }
        self.simulate(client.sender, &client.tx().calls[0].input, terms.amount).await?;
        let final_tx = match fee_payer {
            Some(fee_payer) => cosign(&client, fee_payer, self.fee_token)?,
            None => client.signed.clone(),
        };
        let hash = *final_tx.hash();
        let bytes = transaction::encode_2718(&final_tx);
        Ok(VerifiedPayment {
            proof_key: self.tx_key(&hash),
            payer: client.sender.to_checksum(None),
            amount,
            settlement: settlement_json(&Settlement::Transaction {
                tx_hash: format!("{hash:#x}"),
                transaction: alloy::hex::encode_prefixed(bytes),
                sender: client.sender.to_checksum(None),
                challenge_id: credential.challenge.id.clone(),
                realm: credential.challenge.realm.clone(),
            }),
        })
    }

    /// `eth_call` of the transfer from the sender; on revert, a balance read tells a short balance apart.
    async fn simulate(&self, sender: Address, input: &Bytes, amount: U256) -> Result<(), TempoError> {
        let call = TransactionRequest::default().from(sender).to(self.currency).input(input.clone().into());
        match self.chain.call(call).await {
            Ok(_) => Ok(()),
            Err(ChainError::Reverted { message, .. }) => {
                let read = TransactionRequest::default()
                    .to(self.currency)
                    .input(Bytes::from(tip20::balanceOfCall { account: sender }.abi_encode()).into());
                let balance = match self.chain.call(read).await {
                    Ok(out) => tip20::balanceOfCall::abi_decode_returns(&out).ok(),
                    Err(_) => None,
                };
                if balance.is_some_and(|b| b < amount) {
                    Err(TempoError::InsufficientFunds)
                } else {
                    Err(TempoError::WouldRevert(error::sanitize(&message)))
                }
            }
            Err(e) => Err(chain_unavailable(e)),
        }
    }

    fn verify_proof(&self, credential: &Credential, amount: AtomicAmount) -> Result<VerifiedPayment, TempoError> {
        if amount.0 != 0 {
            return Err(TempoError::ProofNeedsZeroAmount);
        }
        let source = credential.source.as_deref().ok_or(TempoError::InvalidSource { chain_id: self.chain_id })?;
        let account = self.parse_source(source)?;
        let signature = parse_hex(payload_str(&credential.payload, "signature")?, "signature")?;
        let message = ProofMessage {
            chain_id: self.chain_id,
            challenge_id: &credential.challenge.id,
            realm: &credential.challenge.realm,
            account,
        };
        message.verify(&signature)?;
        Ok(VerifiedPayment {
            proof_key: format!("eip155:{}:proof:{}", self.chain_id, credential.challenge.id),
            payer: account.to_checksum(None),
            amount,
            settlement: settlement_json(&Settlement::Proof { challenge_id: credential.challenge.id.clone() }),
        })
    }

    async fn verify_credential(
        &self,
        credential: &Credential,
        amount: AtomicAmount,
    ) -> Result<VerifiedPayment, TempoError> {
        let kind = credential.payload.get("type").and_then(Value::as_str).unwrap_or("");
        if !["hash", "transaction", "proof"].contains(&kind) {
            return Err(TempoError::InvalidPayload(
                "the payload type is not \"hash\", \"transaction\" or \"proof\"".into(),
            ));
        }
        if amount.0 == 0 && kind != "proof" {
            return Err(TempoError::ZeroAmountNeedsProof);
        }
        match kind {
            "hash" => self.verify_hash(credential, amount).await,
            "transaction" => self.verify_transaction(credential, amount).await,
            _ => self.verify_proof(credential, amount),
        }
    }

    async fn settle_transaction(
        &self,
        payment: &VerifiedPayment,
        tx_hash: &str,
        transaction: &str,
        sender: &str,
        binding: ChallengeBinding<'_>,
    ) -> SettleOutcome {
        let failed = |reason: String| SettleOutcome::Failed { reason, reference: None };
        let (Ok(hash), Ok(raw), Ok(sender)) =
            (tx_hash.parse::<B256>(), alloy::hex::decode(transaction), sender.parse::<Address>())
        else {
            return failed("unreadable settlement data".into());
        };
        let reference = Some(format!("{hash:#x}"));
        match self.chain.send_raw_transaction(raw.into()).await {
            Ok(_) => {}
            // It may have reached the node.
            Err(ChainError::Unavailable(reason)) => {
                return SettleOutcome::Unknown { reason: format!("broadcast outcome unknown: {reason}"), reference };
            }
            Err(ChainError::Rpc { message, .. } | ChainError::Reverted { message, .. }) => {
                // Refused: perhaps because it is already known or mined (a retried settlement).
                let known = is_already_known(&message);
                let mined = matches!(self.chain.receipt(hash).await, Ok(Some(_)));
                if !known && !mined {
                    return failed(format!("the node refused the transaction: {}", error::sanitize(&message)));
                }
            }
        }
        let receipt = match wait_for_receipt(
            self.chain.as_ref(),
            hash,
            self.settings.receipt_timeout,
            self.settings.poll_interval,
        )
        .await
        {
            Ok(Some(receipt)) => receipt,
            Ok(None) => return SettleOutcome::Unknown { reason: "no receipt before the timeout".into(), reference },
            Err(e) => return SettleOutcome::Unknown { reason: format!("receipt unavailable: {e}"), reference },
        };
        let logs: Vec<alloy::primitives::Log> = receipt.inner.logs().iter().map(|log| log.inner.clone()).collect();
        match verify_transfer_logs(
            receipt.status(),
            &logs,
            &self.expected(payment.amount),
            Some(sender),
            &binding,
            tx_hash,
        ) {
            Ok(_) => SettleOutcome::Settled { reference: format!("{hash:#x}") },
            Err(e) => SettleOutcome::Failed { reason: e.to_string(), reference },
        }
    }
}

/// Whether a node's refusal says the transaction is already in its pool ("already known", "known transaction",
/// but not "unknown transaction type").
fn is_already_known(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("already known")
        || message
            .match_indices("known transaction")
            .any(|(at, _)| !message[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric()))
}

fn settlement_json(settlement: &Settlement) -> Value {
    // Plain strings always serialize.
    serde_json::to_value(settlement).expect("settlement serializes")
}

fn chain_unavailable(err: ChainError) -> TempoError {
    TempoError::ChainUnavailable(error::sanitize(&err.to_string()))
}

fn payload_str<'a>(payload: &'a Value, field: &str) -> Result<&'a str, TempoError> {
    payload
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| TempoError::InvalidPayload(format!("the payload has no string `{field}`")))
}

fn parse_hex(text: &str, field: &str) -> Result<Vec<u8>, TempoError> {
    text.strip_prefix("0x")
        .and_then(|body| alloy::hex::decode(body).ok())
        .ok_or_else(|| TempoError::InvalidPayload(format!("`{field}` is not 0x-prefixed hex")))
}

fn parse_hash(text: &str) -> Result<B256, TempoError> {
    let bytes = parse_hex(text, "hash")?;
    if bytes.len() != 32 {
        return Err(TempoError::InvalidPayload("`hash` is not 32 bytes".into()));
    }
    Ok(B256::from_slice(&bytes))
}

/// The address a `did:pkh:eip155:<chainId>:<address>` DID names, when it names one on `chain_id`.
pub fn parse_pkh_source(source: &str, chain_id: u64) -> Result<Address, TempoError> {
    crate::network::pkh_address(source, chain_id).ok_or(TempoError::InvalidSource { chain_id })
}

#[async_trait]
impl PaymentMethod for TempoMethod {
    fn rail(&self) -> &'static str {
        "tempo"
    }

    fn option(&self) -> &PaymentOption {
        &self.option
    }

    fn mpp_terms(&self, amount: AtomicAmount) -> Option<MppTerms> {
        let mut details = serde_json::Map::new();
        details.insert("chainId".into(), json!(self.chain_id));
        if self.settings.fee_payer.is_some() {
            details.insert("feePayer".into(), json!(true));
        }
        if !(self.push && self.pull) {
            details.insert("supportedModes".into(), json!(self.settings.supported_modes));
        }
        Some(MppTerms {
            method: "tempo",
            intent: "charge",
            request: json!({
                "amount": amount.to_string(),
                "currency": self.currency.to_checksum(None),
                "methodDetails": details,
                "recipient": self.recipient.to_checksum(None),
            }),
        })
    }

    async fn verify(&self, proof: Proof<'_>, amount: AtomicAmount) -> Result<VerifiedPayment, Rejection> {
        let Proof::Mpp { credential } = proof else {
            return Err(Rejection::new(
                RejectKind::MalformedCredential,
                "invalid_payload",
                "this offer is paid with an MPP tempo credential",
            ));
        };
        self.verify_credential(credential, amount).await.map_err(|e| e.to_rejection())
    }

    async fn settle(&self, payment: &VerifiedPayment) -> SettleOutcome {
        let settlement: Settlement = match serde_json::from_value(payment.settlement.clone()) {
            Ok(settlement) => settlement,
            Err(e) => {
                return SettleOutcome::Failed { reason: format!("unreadable settlement data: {e}"), reference: None };
            }
        };
        match settlement {
            Settlement::Hash { tx_hash } => SettleOutcome::Settled { reference: tx_hash },
            Settlement::Proof { challenge_id } => SettleOutcome::Settled { reference: challenge_id },
            Settlement::Transaction { tx_hash, transaction, sender, challenge_id, realm } => {
                let binding = ChallengeBinding { challenge_id: &challenge_id, realm: &realm };
                self.settle_transaction(payment, &tx_hash, &transaction, &sender, binding).await
            }
        }
    }
}
