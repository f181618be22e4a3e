//! The EIP-3009 rail: a payer signs `transferWithAuthorization(from, to, value, validAfter, validBefore, nonce)`
//! for the token, and paygate (or a facilitator) submits it.
//!
//! The same authorization arrives framed as x402 `exact` (`PAYMENT-SIGNATURE` / `X-PAYMENT`) or as MPP
//! `evm`/`charge` (`Authorization: Payment`); both go through [`Eip3009Method::verify`]:
//!
//! 1. local checks, no IO: recipient, exact amount, time window, EIP-712 signature (for MPP also the nonce
//!    that binds the authorization to the challenge);
//! 2. against the chain, when paygate has an RPC for it: one `eth_call` simulating the transfer, diagnosed
//!    on revert (authorization used, balance short); otherwise the facilitator's `/verify`.
//!
//! Settlement is per payment option: [`Settlement::Builtin`] sends the transaction from the operator's settler
//! key and waits for the receipt; [`Settlement::Facilitator`] hands it to a remote x402 facilitator.

mod authorization;
mod config;
mod unconfirmed;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, Bytes, U256};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::{Eip712Domain, SolCall};
use async_trait::async_trait;
use serde_json::json;

use paygate_chain::abi::{AuthorizationUse, Eip3009Token, authorization_state, authorization_use};
use paygate_chain::{Chain, ChainError, TxSender, wait_for_receipt};
use paygate_core::clock::Clock;
use paygate_core::method::{
    MppTerms, NoJournal, PaymentMethod, PaymentOption, Proof, SettleJournal, SettleOutcome, SettlementStatus,
    VerifiedPayment,
};
use paygate_core::money::AtomicAmount;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_proto::x402::{self, FacilitatorRequest};

pub use authorization::{SignedAuthorization, StoredAuthorization, domain, mpp_challenge_nonces};
pub use config::{Eip3009Config, RAIL, SettlementKind};

use crate::facilitator::{FacilitatorClient, FacilitatorError};
pub use crate::rail::OptionError;

/// How long after an authorization's `validBefore` the reconciler still waits for a transaction that may use
/// it: a block's timestamp may lag the wall clock.
const RECONCILE_EXPIRY_LEEWAY_SECS: u64 = 30;

/// The x402 reference facilitators refuse authorizations that expire within 6 s: a block may take that long.
pub const VALID_BEFORE_MARGIN_SECS: u64 = 6;

/// How an option's payments are settled.
#[derive(Debug, Clone)]
pub enum Settlement {
    /// paygate submits `transferWithAuthorization` itself from the settler key and waits for the receipt.
    Builtin {
        sender: Arc<TxSender>,
        /// How long to wait for the receipt before the payment becomes `pending`.
        receipt_timeout: Duration,
        /// Receipt polling interval.
        poll_interval: Duration,
    },
    /// A remote x402 facilitator settles (and verifies, when paygate has no RPC for the chain).
    Facilitator(FacilitatorClient),
}

/// The EIP-3009 rail for one payment option.
#[derive(Debug)]
pub struct Eip3009Method {
    option: PaymentOption,
    chain_id: u64,
    token: Address,
    pay_to: Address,
    domain: Eip712Domain,
    eip712_name: String,
    eip712_version: String,
    /// For simulation before claiming; the built-in settler's chain when there is one.
    chain: Option<Arc<dyn Chain>>,
    settlement: Settlement,
    /// With `wait = "submitted"`: answer once the node took the transfer (built in) or the facilitator says it
    /// was submitted, within this per-payer cap of unconfirmed value. `None`: wait for the receipt.
    submitted: Option<Arc<unconfirmed::Unconfirmed>>,
    /// How long a submitted transfer is watched for its receipt (timeout, poll) before its value is given back.
    confirm_wait: (Duration, Duration),
    clock: Arc<dyn Clock>,
}

impl Eip3009Method {
    /// Settlement answers once the node took the transfer, or the facilitator says it was submitted
    /// (`wait = "submitted"`), while the payer's value answered for and not confirmed stays within `cap`; the
    /// reconciler confirms it from the chain. A facilitator-settled transfer is watched on `chain` for
    /// `confirm_wait` (timeout, poll) before its value counts no more.
    pub fn answer_when_submitted(mut self, cap: Option<AtomicAmount>, confirm_wait: (Duration, Duration)) -> Self {
        self.submitted = Some(Arc::new(unconfirmed::Unconfirmed::new(cap.map(|c| c.0))));
        self.confirm_wait = confirm_wait;
        self
    }

    pub fn new(
        option: PaymentOption,
        chain: Option<Arc<dyn Chain>>,
        settlement: Settlement,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OptionError> {
        let err = |problem: &str| OptionError { option: option.name.clone(), problem: problem.to_owned() };
        let chain_id = option.network.evm_chain_id().ok_or_else(|| err("EIP-3009 needs an eip155 network"))?;
        let eip712 = option.asset.eip712.clone().ok_or_else(|| err("the asset has no EIP-712 name and version"))?;
        let token: Address = option.asset.address.parse().map_err(|_| err("the asset is not an address"))?;
        let pay_to: Address = option.pay_to.parse().map_err(|_| err("pay_to is not an address"))?;
        if let Some(chain) = &chain
            && chain.chain_id() != chain_id
        {
            return Err(err("the chain's id differs from the network's"));
        }
        if matches!(settlement, Settlement::Builtin { .. }) && chain.is_none() {
            return Err(err("built-in settlement needs the chain's RPC"));
        }
        Ok(Eip3009Method {
            domain: domain(&eip712.name, &eip712.version, chain_id, token),
            eip712_name: eip712.name,
            eip712_version: eip712.version,
            option,
            chain_id,
            token,
            pay_to,
            chain,
            settlement,
            submitted: None,
            confirm_wait: (Duration::from_secs(60), Duration::from_secs(1)),
            clock,
        })
    }

    /// The signed authorization in a proof, with the MPP nonce binding checked.
    fn authorization(&self, proof: Proof<'_>) -> Result<SignedAuthorization, Rejection> {
        let malformed =
            |e: authorization::PayloadError| Rejection::new(RejectKind::MalformedCredential, "invalid_payload", e.0);
        match proof {
            Proof::X402 { payload, .. } => SignedAuthorization::from_x402(payload).map_err(malformed),
            Proof::TxHash(_) => Err(Rejection::new(
                RejectKind::MalformedCredential,
                "invalid_payload",
                "this offer is paid with a signed authorization, not a transaction hash",
            )),
            Proof::Mpp { credential } => {
                let auth = SignedAuthorization::from_mpp(&credential.payload).map_err(malformed)?;
                let challenge = &credential.challenge;
                if !mpp_challenge_nonces(&challenge.id, &challenge.realm).contains(&auth.nonce) {
                    return Err(Rejection::new(
                        RejectKind::VerificationFailed,
                        "challenge_nonce_mismatch",
                        "the authorization nonce is not derived from this challenge",
                    ));
                }
                if let Some(source) = &credential.source {
                    let expected = format!("did:pkh:eip155:{}:{}", self.chain_id, auth.from);
                    if !source.eq_ignore_ascii_case(&expected) {
                        return Err(Rejection::new(
                            RejectKind::VerificationFailed,
                            "source_mismatch",
                            "the credential source is not the authorization's signer",
                        ));
                    }
                }
                Ok(auth)
            }
        }
    }

    /// The money itself: this chain, this payer, this authorization nonce.
    fn proof_key_of(&self, auth: &SignedAuthorization) -> String {
        format!("eip155:{}:{:#x}:{:#x}", self.chain_id, auth.from, auth.nonce)
    }

    /// Everything that can be checked without IO.
    fn check_locally(&self, auth: &SignedAuthorization, amount: AtomicAmount) -> Result<(), Rejection> {
        use RejectKind::*;
        if auth.to != self.pay_to {
            return Err(Rejection::new(
                VerificationFailed,
                "recipient_mismatch",
                "the authorization pays someone else",
            ));
        }
        let expected = U256::from(amount.0);
        if auth.value < expected {
            return Err(Rejection::new(
                PaymentInsufficient,
                "amount_mismatch",
                format!("the authorization pays {} atomic units, the price is {expected}", auth.value),
            ));
        }
        if auth.value > expected {
            return Err(Rejection::new(
                VerificationFailed,
                "amount_mismatch",
                format!("the authorization pays {} atomic units, the price is exactly {expected}", auth.value),
            ));
        }
        let now = U256::from(self.clock.now_unix());
        if auth.valid_after > now {
            return Err(Rejection::new(
                VerificationFailed,
                "authorization_not_yet_valid",
                "validAfter is in the future",
            ));
        }
        if auth.valid_before < now + U256::from(VALID_BEFORE_MARGIN_SECS) {
            return Err(Rejection::new(
                PaymentExpired,
                "authorization_expired",
                "validBefore has passed or is too close",
            ));
        }
        if auth.signature.len() == 65 && auth.recover_signer(&self.domain) != Some(auth.from) {
            return Err(Rejection::new(
                VerificationFailed,
                "invalid_signature",
                "the signature is not the payer's over this token, chain and amount",
            ));
        }
        Ok(())
    }

    /// Simulates the transfer; on revert, finds out why with two cheap reads.
    async fn simulate(&self, chain: &dyn Chain, auth: &SignedAuthorization) -> Result<(), Rejection> {
        let from = match &self.settlement {
            Settlement::Builtin { sender, .. } => sender.address(),
            Settlement::Facilitator(_) => Address::ZERO,
        };
        let tx = TransactionRequest::default().from(from).to(self.token).input(auth.transfer_call().into());
        match chain.call(tx).await {
            Ok(_) => Ok(()),
            Err(ChainError::Reverted { message, .. }) => Err(self.diagnose(chain, auth, &message).await),
            Err(e) => Err(chain_unavailable(&e)),
        }
    }

    async fn diagnose(&self, chain: &dyn Chain, auth: &SignedAuthorization, revert: &str) -> Rejection {
        let read =
            |data: Vec<u8>| chain.call(TransactionRequest::default().to(self.token).input(Bytes::from(data).into()));
        if authorization_state(chain, self.token, auth.from, auth.nonce).await == Ok(true) {
            return Rejection::new(
                RejectKind::Replayed,
                "nonce_already_used",
                "this authorization was already used on chain",
            );
        }
        let balance = read(Eip3009Token::balanceOfCall { account: auth.from }.abi_encode())
            .await
            .ok()
            .and_then(|out| Eip3009Token::balanceOfCall::abi_decode_returns(&out).ok());
        if balance.is_some_and(|b| b < auth.value) {
            return Rejection::new(
                RejectKind::InsufficientFunds,
                "insufficient_funds",
                "the payer's balance is too low",
            );
        }
        let revert: String = revert.chars().filter(|c| !c.is_control()).take(200).collect();
        Rejection::new(
            RejectKind::VerificationFailed,
            "simulation_failed",
            format!("the transfer would revert: {revert}"),
        )
    }

    fn stored(&self, auth: &SignedAuthorization, amount: AtomicAmount) -> StoredAuthorization {
        StoredAuthorization {
            payload: auth.to_x402(),
            // Plain data always serializes.
            requirements: serde_json::to_value(self.requirements(amount)).expect("requirements serialize"),
        }
    }

    fn requirements(&self, amount: AtomicAmount) -> x402::PaymentRequirements {
        let mut extra = serde_json::Map::new();
        extra.insert("name".into(), json!(self.eip712_name));
        extra.insert("version".into(), json!(self.eip712_version));
        x402::PaymentRequirements {
            scheme: x402::SCHEME_EXACT.into(),
            network: self.option.network.to_string(),
            amount: amount.to_string(),
            asset: self.token.to_checksum(None),
            pay_to: self.pay_to.to_checksum(None),
            max_timeout_seconds: self.option.max_timeout_secs,
            extra: Some(extra),
        }
    }

    fn facilitator_request(stored: &StoredAuthorization, wait_until: Option<&str>) -> FacilitatorRequest {
        // An x402 v2 payload whose `accepted` is exactly the requirements sent beside it.
        let payload = json!({
            "x402Version": 2,
            "accepted": stored.requirements,
            "payload": stored.payload,
        });
        FacilitatorRequest {
            x402_version: 2,
            payment_payload: payload,
            payment_requirements: stored.requirements.clone(),
            wait_until: wait_until.map(str::to_owned),
        }
    }

    async fn verify_with_facilitator(
        &self,
        facilitator: &FacilitatorClient,
        stored: &StoredAuthorization,
    ) -> Result<(), Rejection> {
        let answer =
            facilitator.verify(&Self::facilitator_request(stored, None)).await.map_err(facilitator_unavailable)?;
        if answer.is_valid {
            return Ok(());
        }
        // The facilitator's own words may name its internals (URLs, keys, stack traces): they go to the log, and
        // the payer gets one of ours.
        let reason = answer.invalid_reason.unwrap_or_default();
        let message = answer.invalid_message.unwrap_or_default();
        let refusal = facilitator_refusal(&reason);
        tracing::warn!(option = %self.option.name, facilitator_reason = %reason, facilitator_message = %message, reason = refusal.reason, "the facilitator refused a payment");
        Err(refusal)
    }
}

/// paygate's refusal for a facilitator's `invalidReason` (x402's reason codes, or whatever text a facilitator
/// sends): the kind and reason code are ours, the detail is fixed text, nothing of the facilitator's is copied.
pub fn facilitator_refusal(reason: &str) -> Rejection {
    use RejectKind::*;
    let reason = reason.to_ascii_lowercase();
    let has = |needle: &str| reason.contains(needle);
    let (kind, code, detail) = if has("insufficient") {
        (InsufficientFunds, "insufficient_funds", "the payer's balance is too low")
    } else if has("nonce") || has("used") || has("replay") {
        (Replayed, "nonce_already_used", "this authorization was already used")
    } else if has("valid_before") || has("expired") {
        (PaymentExpired, "authorization_expired", "the authorization has expired or expires too soon")
    } else if has("valid_after") {
        (VerificationFailed, "authorization_not_yet_valid", "the authorization is not valid yet")
    } else if has("signature") {
        (VerificationFailed, "invalid_signature", "the signature is not the payer's over this payment")
    } else if has("recipient") || has("pay_to") || has("payto") {
        (VerificationFailed, "recipient_mismatch", "the authorization pays someone else")
    } else if has("value") || has("amount") {
        (VerificationFailed, "amount_mismatch", "the authorization does not pay the price")
    } else {
        (VerificationFailed, "facilitator_rejected", "the facilitator refused the payment")
    };
    Rejection::new(kind, code, detail)
}

fn chain_unavailable(err: &ChainError) -> Rejection {
    Rejection::new(RejectKind::ChainUnavailable, "chain_unavailable", format!("the chain could not be asked: {err}"))
}

fn facilitator_unavailable(err: FacilitatorError) -> Rejection {
    Rejection::new(RejectKind::FacilitatorUnavailable, "facilitator_unavailable", err.to_string())
}

#[async_trait]
impl PaymentMethod for Eip3009Method {
    fn rail(&self) -> &'static str {
        "eip3009"
    }

    fn option(&self) -> &PaymentOption {
        &self.option
    }

    fn x402_requirements(&self, amount: AtomicAmount) -> Option<x402::PaymentRequirements> {
        Some(self.requirements(amount))
    }

    fn mpp_terms(&self, amount: AtomicAmount) -> Option<MppTerms> {
        // Exactly the request mppx's `evm.charge` server emits, so mppx clients accept it.
        Some(MppTerms {
            method: "evm",
            intent: "charge",
            request: json!({
                "amount": amount.to_string(),
                "currency": self.token.to_checksum(None),
                "methodDetails": {
                    "chainId": self.chain_id,
                    "credentialTypes": ["authorization"],
                    "decimals": self.option.asset.decimals,
                },
                "recipient": self.pay_to.to_checksum(None),
            }),
        })
    }

    async fn verify(&self, proof: Proof<'_>, amount: AtomicAmount) -> Result<VerifiedPayment, Rejection> {
        let auth = self.authorization(proof)?;
        self.check_locally(&auth, amount)?;
        let stored = self.stored(&auth, amount);
        match (&self.chain, &self.settlement) {
            (Some(chain), _) => self.simulate(chain.as_ref(), &auth).await?,
            (None, Settlement::Facilitator(facilitator)) => self.verify_with_facilitator(facilitator, &stored).await?,
            (None, Settlement::Builtin { .. }) => {
                return Err(Rejection::new(RejectKind::Internal, "no_chain", "built-in settlement without a chain"));
            }
        }
        Ok(VerifiedPayment {
            proof_key: self.proof_key_of(&auth),
            payer: auth.from.to_checksum(None),
            amount,
            // Plain data always serializes.
            settlement: serde_json::to_value(&stored).expect("authorization serializes"),
        })
    }

    async fn settle(&self, payment: &VerifiedPayment) -> SettleOutcome {
        self.settle_recorded(payment, &NoJournal).await
    }

    async fn settle_recorded(&self, payment: &VerifiedPayment, journal: &dyn SettleJournal) -> SettleOutcome {
        let stored: StoredAuthorization = match serde_json::from_value(payment.settlement.clone()) {
            Ok(stored) => stored,
            Err(e) => {
                return SettleOutcome::Failed { reason: format!("unreadable settlement data: {e}"), reference: None };
            }
        };
        match &self.settlement {
            Settlement::Builtin { sender, receipt_timeout, poll_interval } => {
                let auth = match SignedAuthorization::from_exact(&stored.payload) {
                    Ok(auth) => auth,
                    Err(e) => return SettleOutcome::Failed { reason: e.0, reference: None },
                };
                let wait = Wait { receipt_timeout: *receipt_timeout, poll_interval: *poll_interval };
                let submitted = self.submitted.clone().filter(|u| u.take(auth.from, payment.amount.0));
                settle_builtin(sender, self.token, &auth, journal, wait, submitted).await
            }
            Settlement::Facilitator(facilitator) => self.settle_through(facilitator, &stored, payment).await,
        }
    }

    /// The chain decides: a used authorization has paid the seller, whoever broadcast it. An unused one is
    /// settled again only when paygate's own settler certainly broadcast nothing for it (no reference was
    /// journaled) and it is still valid; a journaled transaction, or a facilitator's attempt, is waited for
    /// until the authorization has expired, then the payment has failed and nothing was charged.
    async fn settlement_status(&self, payment: &VerifiedPayment, reference: Option<&str>) -> SettlementStatus {
        let unknown = |reason: String| SettlementStatus::Unknown { reason };
        let Some(chain) = &self.chain else {
            return unknown("no RPC for the chain is configured to ask".into());
        };
        let auth = match serde_json::from_value::<StoredAuthorization>(payment.settlement.clone())
            .map_err(|e| e.to_string())
            .and_then(|stored| SignedAuthorization::from_exact(&stored.payload).map_err(|e| e.0))
        {
            Ok(auth) => auth,
            Err(e) => return SettlementStatus::Failed { reason: format!("unreadable settlement data: {e}") },
        };
        match authorization_use(chain.as_ref(), self.token, auth.from, auth.nonce).await {
            Err(e) => return unknown(format!("the chain could not be asked: {e}")),
            Ok(AuthorizationUse::Used { tx }) => {
                let reference = tx.map(|h| h.to_string()).or(reference.map(str::to_owned)).unwrap_or_default();
                return SettlementStatus::Settled { reference };
            }
            Ok(AuthorizationUse::Unused) => {}
        }
        let now = U256::from(self.clock.now_unix());
        // Past validBefore (with a block's leeway) no transaction can use it any more.
        let expired = auth.valid_before + U256::from(RECONCILE_EXPIRY_LEEWAY_SECS) < now;
        let expired_unused = || SettlementStatus::Failed { reason: "the authorization expired unused".into() };
        if let Some(reference) = reference {
            let Ok(hash) = reference.parse() else {
                return unknown(format!("the recorded reference {reference:?} is not a transaction hash"));
            };
            return match chain.receipt(hash).await {
                Ok(Some(receipt)) if !receipt.status() => {
                    SettlementStatus::Failed { reason: "the settlement transaction reverted".into() }
                }
                Ok(Some(_)) => unknown("the settlement transaction succeeded but the authorization is unused".into()),
                Ok(None) if expired => expired_unused(),
                Ok(None) => SettlementStatus::InFlight,
                Err(e) => unknown(format!("the chain could not be asked: {e}")),
            };
        }
        match &self.settlement {
            _ if expired => expired_unused(),
            Settlement::Builtin { .. } if auth.valid_before >= now + U256::from(VALID_BEFORE_MARGIN_SECS) => {
                SettlementStatus::Retry
            }
            _ => SettlementStatus::InFlight,
        }
    }

    fn proof_key(&self, proof: Proof<'_>) -> Option<String> {
        self.authorization(proof).ok().map(|auth| self.proof_key_of(&auth))
    }
}

impl Eip3009Method {
    /// Settles through the facilitator: asked to answer once the transfer is submitted when the option answers
    /// then (`wait = "submitted"`) and the payer's unconfirmed value is under its cap.
    async fn settle_through(
        &self,
        facilitator: &FacilitatorClient,
        stored: &StoredAuthorization,
        payment: &VerifiedPayment,
    ) -> SettleOutcome {
        let unconfirmed = self.submitted.clone();
        let taken = unconfirmed.as_ref().and_then(|unconfirmed| {
            let auth = SignedAuthorization::from_exact(&stored.payload).ok()?;
            unconfirmed.take(auth.from, payment.amount.0).then_some((auth.from, payment.amount.0))
        });
        let wait_until = taken.map(|_| crate::facilitator::SUBMITTED);
        let outcome =
            facilitator.settle_outcome(&Self::facilitator_request(stored, wait_until), &self.option.name).await;
        if let (Some(unconfirmed), Some((payer, amount))) = (unconfirmed, taken) {
            self.confirm_then_release(&outcome, unconfirmed, payer, amount);
        }
        outcome
    }

    /// Gives the payer's unconfirmed value back once a submitted settlement is confirmed (or the wait for it ended),
    /// at once for any other outcome.
    fn confirm_then_release(
        &self,
        outcome: &SettleOutcome,
        unconfirmed: Arc<unconfirmed::Unconfirmed>,
        payer: Address,
        amount: u128,
    ) {
        let (SettleOutcome::Submitted { reference }, Some(chain)) = (outcome, self.chain.clone()) else {
            unconfirmed.release(payer, amount);
            return;
        };
        let Ok(hash) = reference.parse() else {
            unconfirmed.release(payer, amount);
            return;
        };
        let (timeout, poll) = self.confirm_wait;
        tokio::spawn(async move {
            let _ = wait_for_receipt(chain.as_ref(), hash, timeout, poll).await;
            unconfirmed.release(payer, amount);
        });
    }
}

/// How long built-in settlement waits for a receipt.
#[derive(Debug, Clone, Copy)]
struct Wait {
    receipt_timeout: Duration,
    poll_interval: Duration,
}

/// Submits the transfer and waits for its receipt; or, with `submitted` (the payer's unconfirmed value, this
/// payment already counted in it), answers once the node took it and lets a task wait for the receipt.
async fn settle_builtin(
    sender: &TxSender,
    token: Address,
    auth: &SignedAuthorization,
    journal: &dyn SettleJournal,
    wait: Wait,
    submitted: Option<Arc<unconfirmed::Unconfirmed>>,
) -> SettleOutcome {
    let (payer, amount) = (auth.from, auth.value.saturating_to::<u128>());
    let give_back = |submitted: &Option<Arc<unconfirmed::Unconfirmed>>| {
        if let Some(unconfirmed) = submitted {
            unconfirmed.release(payer, amount);
        }
    };
    let Wait { receipt_timeout, poll_interval } = wait;
    let hash = match crate::rail::broadcast(sender, token, auth.transfer_call(), journal).await {
        Ok(hash) => hash,
        Err(outcome) => {
            give_back(&submitted);
            return outcome;
        }
    };
    if let Some(unconfirmed) = submitted {
        // Answered now; the reconciler confirms the `pending` row from the chain. The payer's unconfirmed value
        // falls back once the receipt came (or the wait for it ended).
        let chain = sender.chain().clone();
        tokio::spawn(async move {
            let _ = wait_for_receipt(chain.as_ref(), hash, receipt_timeout, poll_interval).await;
            unconfirmed.release(payer, amount);
        });
        return SettleOutcome::Submitted { reference: hash.to_string() };
    }
    let reference = Some(hash.to_string());
    match wait_for_receipt(sender.chain().as_ref(), hash, receipt_timeout, poll_interval).await {
        Ok(Some(receipt)) if receipt.status() => SettleOutcome::Settled { reference: hash.to_string() },
        Ok(Some(_)) => SettleOutcome::Failed { reason: "the settlement transaction reverted".into(), reference },
        Ok(None) => SettleOutcome::Unknown { reason: "no receipt before the timeout".into(), reference },
        Err(e) => SettleOutcome::Unknown { reason: format!("receipt unavailable: {e}"), reference },
    }
}
