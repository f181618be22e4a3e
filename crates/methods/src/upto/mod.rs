//! The `upto` rail: x402's `upto` scheme on EVM (`scheme_upto_evm.md`). The payer signs a Permit2 transfer of at
//! most the route's maximum to the x402 upto proxy ([`paygate_chain::upto`]), bound to a witness naming the seller
//! and this facilitator; paygate checks it (signature, window, Permit2 allowance, a simulation at the maximum),
//! and after the upstream answered settles only what the call used (a route priced by its response), sending
//! nothing when that is zero. `PAYMENT-RESPONSE` carries the amount settled. The settlement is sent from the
//! settler key, or by a remote x402 facilitator (`paygate facilitator`) asked to settle the amount used, whose
//! address (from its `/supported`) the offers then name.
//!
//! The proof key is `eip155:<chain>:permit2:<payer>:<nonce>`: a Permit2 nonce moves money once.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, Bytes, Signature, U256};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use paygate_chain::upto::{self, X402UptoPermit2Proxy};
use paygate_chain::{Chain, ChainError, TxSender, wait_for_receipt};
use paygate_core::clock::Clock;
use paygate_core::method::{
    PaymentMethod, PaymentOption, Proof, SettleJournal, SettleOutcome, SettlementStatus, VerifiedPayment, X402Receipt,
};
use paygate_core::money::AtomicAmount;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_proto::x402::{self, FacilitatorRequest};

mod config;

pub use config::{RAIL, UptoConfig};

use crate::facilitator::FacilitatorClient;

/// The scheme's name in x402 offers.
const SCHEME: &str = "upto";

/// x402 `upto` payments of one ERC-20 to one seller, settled by one facilitator: this gateway's settler key, or
/// a remote x402 facilitator (`paygate facilitator`) whose address the offers name.
#[derive(Debug)]
pub struct UptoMethod {
    option: PaymentOption,
    chain: Arc<dyn Chain>,
    chain_id: u64,
    /// The only address the proxy lets settle these authorizations.
    facilitator: Address,
    settlement: UptoSettlement,
    clock: Arc<dyn Clock>,
}

/// Who submits an `upto` settlement.
#[derive(Debug)]
pub enum UptoSettlement {
    /// The settler key's sender, through the upto proxy, waiting for the receipt.
    Builtin { sender: Arc<TxSender>, receipt_timeout: Duration, poll_interval: Duration },
    /// A remote x402 facilitator's `/settle`, asked to settle the amount used.
    Facilitator(FacilitatorClient),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    signature: String,
    permit2_authorization: Authorization,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Authorization {
    from: Address,
    permitted: Permitted,
    spender: Address,
    nonce: String,
    deadline: String,
    witness: WireWitness,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Permitted {
    token: Address,
    amount: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireWitness {
    to: Address,
    facilitator: Address,
    valid_after: String,
}

/// A payload read and checked locally.
struct Signed {
    owner: Address,
    permit: X402UptoPermit2Proxy::PermitTransferFrom,
    witness: X402UptoPermit2Proxy::Witness,
    signature: Bytes,
}

fn refused(kind: RejectKind, reason: &'static str, detail: impl Into<String>) -> Rejection {
    Rejection::new(kind, reason, detail)
}

fn malformed(detail: impl Into<String>) -> Rejection {
    refused(RejectKind::MalformedCredential, "invalid_upto_evm_payload", detail)
}

fn number(text: &str, what: &str) -> Result<U256, Rejection> {
    text.parse::<U256>().map_err(|_| malformed(format!("{what} is not a decimal number")))
}

fn chain_unavailable(err: &ChainError) -> Rejection {
    Rejection::new(RejectKind::ChainUnavailable, "chain_unavailable", format!("the chain could not be asked: {err}"))
}

impl UptoMethod {
    /// The rail for `option` on `chain`, settled by `facilitator` (the address offers name and only which the proxy
    /// lets settle) as `settlement` says.
    pub fn new(
        option: PaymentOption,
        (chain, chain_id): (Arc<dyn Chain>, u64),
        facilitator: Address,
        settlement: UptoSettlement,
        clock: Arc<dyn Clock>,
    ) -> UptoMethod {
        UptoMethod { option, chain, chain_id, facilitator, settlement, clock }
    }

    /// What a remote facilitator's `/settle` is asked: the payload, echoing the offer of its maximum, and the same
    /// requirements carrying the amount used.
    fn facilitator_request(&self, payment: &VerifiedPayment, max: AtomicAmount) -> Option<FacilitatorRequest> {
        let accepted = serde_json::to_value(self.x402_requirements(max)?).ok()?;
        let mut used = accepted.clone();
        used["amount"] = payment.amount.to_string().into();
        Some(FacilitatorRequest {
            x402_version: 2,
            payment_payload: json!({"x402Version": 2, "accepted": accepted, "payload": payment.settlement["payload"]}),
            payment_requirements: used,
            wait_until: None,
        })
    }

    /// Settles through a remote facilitator.
    async fn settle_remotely(&self, client: &FacilitatorClient, payment: &VerifiedPayment) -> SettleOutcome {
        let max = payment.settlement["max"].as_str().and_then(|m| m.parse().ok()).map(AtomicAmount);
        let Some(request) = max.and_then(|max| self.facilitator_request(payment, max)) else {
            return SettleOutcome::Failed { reason: "unreadable settlement data".into(), reference: None };
        };
        // What the facilitator settles is the amount used; Permit2's nonce tells after a crash.
        client.settle_outcome(&request, &self.option.name).await
    }

    /// A payment to settle for `used` (a facilitator's `/settle`, whose requirements carry the amount used): the
    /// authorization is verified at the maximum it permits, and `used` must not exceed it.
    pub async fn verify_settlement(&self, payload: &Value, used: AtomicAmount) -> Result<VerifiedPayment, Rejection> {
        let permitted = payload
            .pointer("/permit2Authorization/permitted/amount")
            .and_then(Value::as_str)
            .and_then(|a| a.parse::<u128>().ok())
            .ok_or_else(|| malformed("permit2Authorization.permitted.amount is not a decimal number"))?;
        if used.0 > permitted {
            return Err(refused(
                RejectKind::PaymentInsufficient,
                "invalid_upto_evm_payload_settlement_exceeds_amount",
                "the amount to settle exceeds the authorization's maximum",
            ));
        }
        let verified = self.verify(Proof::X402 { version: 2, payload }, AtomicAmount(permitted)).await?;
        Ok(VerifiedPayment { amount: used, ..verified })
    }

    fn token(&self) -> Address {
        self.option.asset.address.parse().unwrap_or(Address::ZERO)
    }

    /// Reads `payload` and checks it against the offer of `max`, without IO.
    fn read(&self, payload: &Value, max: AtomicAmount) -> Result<Signed, Rejection> {
        let wire = Payload::deserialize(payload).map_err(|e| malformed(e.to_string()))?;
        let a = &wire.permit2_authorization;
        let mismatch = |reason, detail: &str| refused(RejectKind::VerificationFailed, reason, detail.to_owned());
        if a.spender != upto::UPTO_PROXY {
            return Err(mismatch("invalid_upto_evm_payload_spender", "the spender is not the x402 upto proxy"));
        }
        if a.permitted.token != self.token() {
            return Err(mismatch("invalid_upto_evm_payload_asset", "the authorization moves another token"));
        }
        if a.witness.to != self.option.pay_to.parse().unwrap_or(Address::ZERO) {
            return Err(mismatch("invalid_upto_evm_payload_recipient", "the witness pays another seller"));
        }
        if a.witness.facilitator != self.facilitator {
            return Err(mismatch("invalid_upto_evm_payload_facilitator", "the witness names another facilitator"));
        }
        let amount = number(&a.permitted.amount, "permitted.amount")?;
        if amount != U256::from(max.0) {
            return Err(refused(
                RejectKind::PaymentInsufficient,
                "invalid_upto_evm_payload_amount",
                "the authorization's maximum is not the offer's",
            ));
        }
        let (deadline, valid_after) = (number(&a.deadline, "deadline")?, number(&a.witness.valid_after, "validAfter")?);
        let now = U256::from(self.clock.now_unix());
        if deadline <= now + U256::from(6) {
            return Err(refused(
                RejectKind::PaymentExpired,
                "authorization_expired",
                "the authorization's deadline passed",
            ));
        }
        if valid_after > now {
            return Err(mismatch("authorization_not_yet_valid", "the witness is not valid yet"));
        }
        let permit = X402UptoPermit2Proxy::PermitTransferFrom {
            permitted: X402UptoPermit2Proxy::TokenPermissions { token: a.permitted.token, amount },
            nonce: number(&a.nonce, "nonce")?,
            deadline,
        };
        let witness = X402UptoPermit2Proxy::Witness {
            to: a.witness.to,
            facilitator: a.witness.facilitator,
            validAfter: valid_after,
        };
        let bytes = alloy::hex::decode(&wire.signature).map_err(|_| malformed("the signature is not hex"))?;
        let signature = Signature::try_from(bytes.as_slice()).map_err(|_| malformed("the signature is not r, s, v"))?;
        let digest = upto::permit_digest(&permit, &witness, self.chain_id);
        if signature.normalize_s().is_some() || signature.recover_address_from_prehash(&digest).ok() != Some(a.from) {
            return Err(mismatch(
                "invalid_upto_evm_payload_signature",
                "the authorization is not signed by its `from`",
            ));
        }
        Ok(Signed { owner: a.from, permit, witness, signature: bytes.into() })
    }

    fn settle_call(signed: &Signed, amount: u128) -> Bytes {
        X402UptoPermit2Proxy::settleCall {
            permit: signed.permit.clone(),
            amount: U256::from(amount),
            owner: signed.owner,
            witness: signed.witness.clone(),
            signature: signed.signature.clone(),
        }
        .abi_encode()
        .into()
    }

    /// Whether Permit2 has used the authorization's nonce (its transfer happened).
    async fn nonce_used(&self, signed: &Signed) -> Result<bool, ChainError> {
        upto::permit2_nonce_used(self.chain.as_ref(), signed.owner, signed.permit.nonce).await
    }

    fn proof_key_of(&self, signed: &Signed) -> String {
        format!("eip155:{}:permit2:{:#x}:{}", self.chain_id, signed.owner, signed.permit.nonce)
    }

    fn stored(&self, payment: &VerifiedPayment) -> Option<Signed> {
        self.read(&payment.settlement["payload"], AtomicAmount(payment.settlement["max"].as_str()?.parse().ok()?)).ok()
    }
}

#[async_trait]
impl PaymentMethod for UptoMethod {
    fn rail(&self) -> &'static str {
        RAIL.name
    }

    fn option(&self) -> &PaymentOption {
        &self.option
    }

    fn x402_requirements(&self, amount: AtomicAmount) -> Option<x402::PaymentRequirements> {
        let facilitator = ("facilitatorAddress", self.facilitator.to_checksum(None).into());
        Some(crate::rail::eip712_requirements(&self.option, SCHEME, amount, [facilitator]))
    }

    fn proof_key(&self, proof: Proof<'_>) -> Option<String> {
        let Proof::X402 { payload, .. } = proof else { return None };
        let wire = Payload::deserialize(payload).ok()?;
        let a = wire.permit2_authorization;
        Some(format!("eip155:{}:permit2:{:#x}:{}", self.chain_id, a.from, a.nonce))
    }

    async fn verify(&self, proof: Proof<'_>, amount: AtomicAmount) -> Result<VerifiedPayment, Rejection> {
        let Proof::X402 { payload, .. } = proof else {
            return Err(malformed("upto payments are x402 payloads"));
        };
        let signed = self.read(payload, amount)?;
        let allowance = paygate_chain::abi::allowance(self.chain.as_ref(), self.token(), signed.owner, upto::PERMIT2)
            .await
            .map_err(|e| chain_unavailable(&e))?;
        if allowance < U256::from(amount.0) {
            return Err(refused(
                RejectKind::VerificationFailed,
                "permit2_allowance_required",
                "the payer has not approved Permit2 for this token: approve it, then pay again",
            ));
        }
        // The whole maximum must be able to move now: balance, nonce, signature and window, as the proxy checks.
        let simulated = TransactionRequest::default()
            .from(self.facilitator)
            .to(upto::UPTO_PROXY)
            .input(Self::settle_call(&signed, amount.0).into());
        if let Err(e) = self.chain.call(simulated).await {
            return Err(match e {
                ChainError::Reverted { .. } => refused(
                    RejectKind::VerificationFailed,
                    "simulation_failed",
                    "the authorization cannot move its maximum now (balance, nonce or window)",
                ),
                other => chain_unavailable(&other),
            });
        }
        Ok(VerifiedPayment {
            proof_key: self.proof_key_of(&signed),
            payer: signed.owner.to_checksum(None),
            amount,
            settlement: json!({ "payload": payload, "max": amount.to_string() }),
        })
    }

    fn charges_usage(&self) -> bool {
        true
    }

    async fn settle(&self, payment: &VerifiedPayment) -> SettleOutcome {
        self.settle_recorded(payment, &paygate_core::method::NoJournal).await
    }

    async fn settle_recorded(&self, payment: &VerifiedPayment, journal: &dyn SettleJournal) -> SettleOutcome {
        let Some(signed) = self.stored(payment) else {
            return SettleOutcome::Failed { reason: "unreadable settlement data".into(), reference: None };
        };
        // Nothing used: nothing moves, and no transaction is sent.
        if payment.amount.0 == 0 {
            return SettleOutcome::Settled { reference: String::new() };
        }
        let (sender, receipt_timeout, poll_interval) = match &self.settlement {
            UptoSettlement::Builtin { sender, receipt_timeout, poll_interval } => {
                (sender, *receipt_timeout, *poll_interval)
            }
            UptoSettlement::Facilitator(client) => return self.settle_remotely(client, payment).await,
        };
        let data = Self::settle_call(&signed, payment.amount.0);
        let hash = match crate::rail::broadcast(sender, upto::UPTO_PROXY, data, journal).await {
            Ok(hash) => hash,
            Err(outcome) => return outcome,
        };
        let reference = Some(hash.to_string());
        match wait_for_receipt(self.chain.as_ref(), hash, receipt_timeout, poll_interval).await {
            Ok(Some(receipt)) if receipt.status() => SettleOutcome::Settled { reference: hash.to_string() },
            Ok(Some(_)) => SettleOutcome::Failed { reason: "the settlement transaction reverted".into(), reference },
            Ok(None) => SettleOutcome::Unknown { reason: "no receipt before the timeout".into(), reference },
            Err(e) => SettleOutcome::Unknown { reason: format!("receipt unavailable: {e}"), reference },
        }
    }

    /// Settled once Permit2 used the nonce; otherwise it may be settled again.
    async fn settlement_status(&self, payment: &VerifiedPayment, reference: Option<&str>) -> SettlementStatus {
        let Some(signed) = self.stored(payment) else {
            return SettlementStatus::Unknown { reason: "unreadable settlement data".into() };
        };
        match self.nonce_used(&signed).await {
            Ok(true) => SettlementStatus::Settled { reference: reference.unwrap_or_default().to_owned() },
            Ok(false) if payment.amount.0 == 0 => SettlementStatus::Settled { reference: String::new() },
            Ok(false) => SettlementStatus::Retry,
            Err(e) => SettlementStatus::Unknown { reason: format!("Permit2 could not be asked: {e}") },
        }
    }

    fn x402_receipt(&self, payment: &VerifiedPayment, reference: &str) -> Option<X402Receipt> {
        Some(X402Receipt { transaction: reference.to_owned(), amount: Some(payment.amount.to_string()), extra: None })
    }
}
