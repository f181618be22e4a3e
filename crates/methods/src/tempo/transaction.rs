//! The `transaction` credential: a client-signed Tempo transaction (EIP-2718 type `0x76`) that paygate
//! checks, co-signs as fee payer when it sponsors, and broadcasts at settlement.
//!
//! Two wire forms arrive:
//!
//! * `0x76 || rlp([...tx fields, fee_payer_signature, ..., sender signature])`: a complete Tempo transaction.
//!   Its fee-payer slot is empty (the payer pays its own fees), the marker signature `(0, 0, false)` (a request
//!   for sponsorship, what `TempoTransaction::encode_for_fee_payer_service`-style tools emit), or a signature
//!   (someone else already sponsored it; paygate does not touch it).
//! * `0x78 || rlp([...tx fields, sender address, ..., sender signature])`: the fee-payer envelope that mppx /
//!   viem clients send when the challenge says `feePayer: true` (ox `TxEnvelopeTempo.serialize(..., {format:
//!   'feePayer'})`, mpp-rs `FeePayerEnvelope78`). It is always a request for sponsorship.
//!
//! The sender signs over the transaction without `fee_token` when a fee payer is involved, so the sponsor picks
//! the fee token and adds its own signature over `0x78 || rlp(fields with fee_token and the sender address)`
//! ([`TempoTransaction::fee_payer_signature_hash`]) without invalidating the sender's.
//!
//! The checks (rules and messages of the mpp-tools vector `tempo-fee-payer-cosign.json`; order such that every
//! vector gets the message it names):
//!
//! 1. the chain id is the offer's;
//! 2. when sponsoring: no access list, no client-chosen `fee_token`, no EIP-7702-style authorization list, the
//!    expiring nonce key (`U256::MAX`), the gas limit and fees within the sponsor policy, `validBefore` set, in
//!    the future and within the policy's window (and at most 60 s past the challenge's expiry, as mppx);
//! 3. exactly one call;
//! 4. that call is `transfer` or `transferWithMemo` on the currency, with no value, canonical calldata, to the
//!    recipient, of exactly the price, with an attribution memo bound to the challenge (a plain `transfer` has
//!    no memo and is refused, as the vectors require).

use std::num::NonZeroU64;

use alloy::eips::eip2930::AccessList;
use alloy::primitives::{Address, B256, Bytes, TxKind, U256};
use alloy::rlp::{Decodable, Encodable, Header};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use tempo_primitives::transaction::{
    Call, FEE_PAYER_SIGNATURE_MARKER, SignedKeyAuthorization, TEMPO_EXPIRING_NONCE_KEY, TempoSignedAuthorization,
};
use tempo_primitives::{AASigned, TEMPO_TX_TYPE_ID, TempoSignature, TempoTransaction};

use super::error::TempoError;
use super::memo::is_memo_bound;
use super::{ChallengeBinding, tip20};

/// The first byte of the fee-payer envelope (and the domain separator of fee-payer signatures).
pub const FEE_PAYER_ENVELOPE_TYPE: u8 = 0x78;

/// How the transaction arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// A `0x76` Tempo transaction.
    Tempo,
    /// A `0x78` fee-payer envelope.
    FeePayer,
}

/// A decoded client transaction whose sender signature checked out.
#[derive(Debug, Clone)]
pub struct ClientTransaction {
    /// The transaction and the sender's signature. For a `0x78` envelope, the fee-payer slot holds the marker.
    pub signed: AASigned,
    /// The recovered sender (for keychain signatures, the account the access key acts for).
    pub sender: Address,
    pub envelope: Envelope,
}

impl ClientTransaction {
    /// Decodes either wire form and recovers the sender. Nothing in `raw` can make this panic.
    pub fn decode(raw: &[u8]) -> Result<ClientTransaction, TempoError> {
        let invalid = |what: String| TempoError::InvalidPayload(format!("the transaction does not decode: {what}"));
        match raw.first() {
            Some(&TEMPO_TX_TYPE_ID) => {
                let mut body = &raw[1..];
                let signed = AASigned::rlp_decode(&mut body).map_err(|e| invalid(e.to_string()))?;
                if !body.is_empty() {
                    return Err(invalid("trailing bytes".into()));
                }
                let sender = recover_sender(&signed)?;
                Ok(ClientTransaction { signed, sender, envelope: Envelope::Tempo })
            }
            Some(&FEE_PAYER_ENVELOPE_TYPE) => {
                let (signed, claimed) = decode_fee_payer_envelope(&raw[1..]).map_err(|e| invalid(e.to_string()))?;
                let sender = recover_sender(&signed)?;
                if sender != claimed {
                    return Err(TempoError::InvalidSignature(
                        "the fee-payer envelope's sender is not the transaction's signer".into(),
                    ));
                }
                Ok(ClientTransaction { signed, sender, envelope: Envelope::FeePayer })
            }
            Some(other) => Err(TempoError::InvalidPayload(format!(
                "only Tempo transactions (0x76, or the 0x78 fee-payer envelope) are accepted, not type 0x{other:02x}"
            ))),
            None => Err(invalid("empty".into())),
        }
    }

    /// Whether the client asks the server to pay the fees (a `0x78` envelope, or the marker in the slot).
    pub fn requests_sponsorship(&self) -> bool {
        self.envelope == Envelope::FeePayer || self.signed.tx().fee_payer_signature == Some(FEE_PAYER_SIGNATURE_MARKER)
    }

    pub fn tx(&self) -> &TempoTransaction {
        self.signed.tx()
    }
}

fn recover_sender(signed: &AASigned) -> Result<Address, TempoError> {
    use alloy::consensus::transaction::SignerRecoverable;
    signed
        .recover_signer()
        .map_err(|_| TempoError::InvalidSignature("the transaction's signature does not verify".into()))
}

fn decode_optional<T: Decodable>(buf: &mut &[u8]) -> alloy::rlp::Result<Option<T>> {
    match buf.first() {
        Some(&alloy::rlp::EMPTY_STRING_CODE) => {
            *buf = &buf[1..];
            Ok(None)
        }
        Some(_) => T::decode(buf).map(Some),
        None => Err(alloy::rlp::Error::InputTooShort),
    }
}

/// Decodes the RLP list of a `0x78` envelope (without its type byte) into the transaction the sender signed
/// (fee-payer slot = marker) and the sender address it names.
fn decode_fee_payer_envelope(mut buf: &[u8]) -> alloy::rlp::Result<(AASigned, Address)> {
    let header = Header::decode(&mut buf)?;
    if !header.list {
        return Err(alloy::rlp::Error::UnexpectedString);
    }
    if header.payload_length != buf.len() {
        return Err(alloy::rlp::Error::UnexpectedLength);
    }
    let fields = &mut buf;
    let chain_id: u64 = Decodable::decode(fields)?;
    let max_priority_fee_per_gas: u128 = Decodable::decode(fields)?;
    let max_fee_per_gas: u128 = Decodable::decode(fields)?;
    let gas_limit: u64 = Decodable::decode(fields)?;
    let calls: Vec<Call> = Decodable::decode(fields)?;
    let access_list: AccessList = Decodable::decode(fields)?;
    let nonce_key: U256 = Decodable::decode(fields)?;
    let nonce: u64 = Decodable::decode(fields)?;
    let valid_before = NonZeroU64::new(u64::decode(fields)?);
    let valid_after = NonZeroU64::new(u64::decode(fields)?);
    let fee_token: Option<Address> = decode_optional(fields)?;
    let sender: Address = Decodable::decode(fields)?;
    let tempo_authorization_list: Vec<TempoSignedAuthorization> = Decodable::decode(fields)?;
    // The key authorization, when present, is a list; the signature that follows is a string.
    let key_authorization: Option<SignedKeyAuthorization> = match fields.first() {
        Some(&b) if b >= 0xc0 => Some(Decodable::decode(fields)?),
        Some(_) => None,
        None => return Err(alloy::rlp::Error::InputTooShort),
    };
    let signature: Bytes = Decodable::decode(fields)?;
    if !fields.is_empty() {
        return Err(alloy::rlp::Error::UnexpectedLength);
    }
    let signature = TempoSignature::from_bytes(&signature).map_err(alloy::rlp::Error::Custom)?;
    let tx = TempoTransaction {
        chain_id,
        fee_token,
        max_priority_fee_per_gas,
        max_fee_per_gas,
        gas_limit,
        calls,
        access_list,
        nonce_key,
        nonce,
        fee_payer_signature: Some(FEE_PAYER_SIGNATURE_MARKER),
        valid_before,
        valid_after,
        key_authorization,
        tempo_authorization_list,
    };
    tx.validate().map_err(alloy::rlp::Error::Custom)?;
    Ok((tx.into_signed(signature), sender))
}

/// Encodes the `0x78` fee-payer envelope a client sends to ask for sponsorship (what viem's Tempo serializer
/// emits for `feePayer: true`). `signature` is the sender's over `tx.signature_hash()` with the fee-payer slot
/// holding the marker.
pub fn encode_fee_payer_envelope(tx: &TempoTransaction, sender: Address, signature: &TempoSignature) -> Vec<u8> {
    let mut fields = Vec::new();
    tx.chain_id.encode(&mut fields);
    tx.max_priority_fee_per_gas.encode(&mut fields);
    tx.max_fee_per_gas.encode(&mut fields);
    tx.gas_limit.encode(&mut fields);
    tx.calls.encode(&mut fields);
    tx.access_list.encode(&mut fields);
    tx.nonce_key.encode(&mut fields);
    tx.nonce.encode(&mut fields);
    tx.valid_before.map_or(0, NonZeroU64::get).encode(&mut fields);
    tx.valid_after.map_or(0, NonZeroU64::get).encode(&mut fields);
    match tx.fee_token {
        Some(token) => token.encode(&mut fields),
        None => fields.push(alloy::rlp::EMPTY_STRING_CODE),
    }
    sender.encode(&mut fields);
    tx.tempo_authorization_list.encode(&mut fields);
    if let Some(key_authorization) = &tx.key_authorization {
        key_authorization.encode(&mut fields);
    }
    signature.encode(&mut fields);
    let mut out = vec![FEE_PAYER_ENVELOPE_TYPE];
    Header { list: true, payload_length: fields.len() }.encode(&mut out);
    out.extend_from_slice(&fields);
    out
}

/// What the transaction must pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentTerms {
    pub chain_id: u64,
    /// The TIP-20 token.
    pub currency: Address,
    pub recipient: Address,
    /// Atomic units.
    pub amount: U256,
}

/// What a sponsor pays for at most. Defaults are mppx's and mpp-rs's (`FeePayerPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SponsorPolicy {
    pub max_gas: u64,
    /// The longest `validBefore - now` accepted, seconds.
    pub max_validity_secs: u64,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
    /// Ceiling of `gas_limit * max_fee_per_gas`.
    pub max_total_fee: u128,
}

impl Default for SponsorPolicy {
    fn default() -> Self {
        SponsorPolicy {
            max_gas: 2_000_000,
            max_validity_secs: 15 * 60,
            max_fee_per_gas: 100_000_000_000,
            max_priority_fee_per_gas: 50_000_000_000,
            max_total_fee: 50_000_000_000_000_000,
        }
    }
}

/// The moment and challenge a sponsorship is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SponsorContext<'a> {
    pub policy: &'a SponsorPolicy,
    /// Unix seconds.
    pub now: u64,
    /// The challenge's `expires`, Unix seconds, when it has one.
    pub challenge_expires: Option<u64>,
}

/// The sponsor-policy rules, in the order the vectors need.
pub fn check_sponsor_policy(tx: &TempoTransaction, ctx: &SponsorContext<'_>) -> Result<(), TempoError> {
    let fail = |text: String| Err(TempoError::SponsorPolicy(text));
    let policy = ctx.policy;
    if !tx.access_list.is_empty() {
        return fail("fee-sponsored transaction access list is not allowed".into());
    }
    if tx.fee_token.is_some() {
        return fail("fee-sponsored transaction must not include fee_token (the server sets it)".into());
    }
    if !tx.tempo_authorization_list.is_empty() {
        return fail("fee-sponsored transaction authorization list is not allowed".into());
    }
    if tx.nonce_key != TEMPO_EXPIRING_NONCE_KEY {
        return fail("fee-sponsored transaction must use expiring nonce key (U256::MAX)".into());
    }
    if tx.gas_limit == 0 {
        return fail("fee-sponsored transaction must declare gas".into());
    }
    if tx.gas_limit > policy.max_gas {
        return fail(format!(
            "fee-sponsored transaction gas limit exceeds sponsor policy ({} > {})",
            tx.gas_limit, policy.max_gas
        ));
    }
    if tx.max_fee_per_gas == 0 {
        return fail("fee-sponsored transaction must declare maxFeePerGas".into());
    }
    if tx.max_fee_per_gas > policy.max_fee_per_gas {
        return fail(format!(
            "fee-sponsored transaction maxFeePerGas exceeds sponsor policy ({} > {})",
            tx.max_fee_per_gas, policy.max_fee_per_gas
        ));
    }
    let total_fee = u128::from(tx.gas_limit).saturating_mul(tx.max_fee_per_gas);
    if total_fee > policy.max_total_fee {
        return fail(format!(
            "fee-sponsored transaction total fee budget exceeds sponsor policy ({total_fee} > {})",
            policy.max_total_fee
        ));
    }
    if tx.max_priority_fee_per_gas > tx.max_fee_per_gas {
        return fail("fee-sponsored transaction maxPriorityFeePerGas exceeds maxFeePerGas".into());
    }
    if tx.max_priority_fee_per_gas > policy.max_priority_fee_per_gas {
        return fail(format!(
            "fee-sponsored transaction maxPriorityFeePerGas exceeds sponsor policy ({} > {})",
            tx.max_priority_fee_per_gas, policy.max_priority_fee_per_gas
        ));
    }
    let Some(valid_before) = tx.valid_before.map(NonZeroU64::get) else {
        return fail("fee-sponsored transaction must declare validBefore for the expiring nonce".into());
    };
    if valid_before <= ctx.now {
        return fail(format!("fee-sponsored transaction has already expired (validBefore {valid_before})"));
    }
    let mut max_valid_before = ctx.now.saturating_add(policy.max_validity_secs);
    if let Some(expires) = ctx.challenge_expires {
        max_valid_before = max_valid_before.min(expires.saturating_add(60));
    }
    if valid_before > max_valid_before {
        return fail(format!(
            "fee-sponsored transaction validity window exceeds sponsor policy \
             (validBefore {valid_before}, at most {max_valid_before})"
        ));
    }
    Ok(())
}

/// The payment call of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentCall {
    pub recipient: Address,
    pub amount: U256,
    /// `None` for a plain `transfer`.
    pub memo: Option<B256>,
}

/// Decodes a TIP-20 `transfer` / `transferWithMemo` calldata, refusing non-canonical encodings (padding bytes,
/// trailing data) that would cost a sponsor gas without changing the payment.
pub fn decode_payment_call(input: &[u8]) -> Option<PaymentCall> {
    let selector: [u8; 4] = input.get(..4)?.try_into().ok()?;
    let canonical = |encoded: Vec<u8>| encoded == input;
    if selector == tip20::transferCall::SELECTOR {
        let call = tip20::transferCall::abi_decode(input).ok()?;
        canonical(call.abi_encode()).then_some(PaymentCall { recipient: call.to, amount: call.amount, memo: None })
    } else if selector == tip20::transferWithMemoCall::SELECTOR {
        let call = tip20::transferWithMemoCall::abi_decode(input).ok()?;
        canonical(call.abi_encode()).then_some(PaymentCall {
            recipient: call.to,
            amount: call.amount,
            memo: Some(call.memo),
        })
    } else {
        None
    }
}

/// Checks a client transaction against the terms and the challenge; `sponsor` is set when paygate will pay
/// the fees. Pure: no clock, no chain.
pub fn check_payment_transaction(
    tx: &TempoTransaction,
    terms: &PaymentTerms,
    binding: &ChallengeBinding<'_>,
    sponsor: Option<&SponsorContext<'_>>,
) -> Result<PaymentCall, TempoError> {
    if tx.chain_id != terms.chain_id {
        return Err(TempoError::ChainMismatch { got: tx.chain_id, expected: terms.chain_id });
    }
    if let Some(ctx) = sponsor {
        check_sponsor_policy(tx, ctx)?;
    }
    if tx.calls.len() != 1 {
        return Err(TempoError::ExtraCalls { count: tx.calls.len() });
    }
    let call = &tx.calls[0];
    if call.to != TxKind::Call(terms.currency) {
        return Err(TempoError::NoMatchingPaymentCall("the call is not to the currency"));
    }
    if !call.value.is_zero() {
        return Err(TempoError::NoMatchingPaymentCall("the call carries value"));
    }
    let payment = decode_payment_call(&call.input)
        .ok_or(TempoError::NoMatchingPaymentCall("the call is not a canonical transfer or transferWithMemo"))?;
    if payment.recipient != terms.recipient {
        return Err(TempoError::NoMatchingPaymentCall("the transfer pays another recipient"));
    }
    if payment.amount != terms.amount {
        return Err(TempoError::NoMatchingPaymentCall("the transfer is not of exactly the price"));
    }
    match payment.memo {
        Some(memo) if is_memo_bound(&memo, binding.realm, binding.challenge_id) => Ok(payment),
        Some(_) => Err(TempoError::NoMatchingPaymentCall("the memo is not bound to this challenge")),
        None => Err(TempoError::NoMatchingPaymentCall("a plain transfer carries no challenge-bound memo")),
    }
}

/// Adds the fee payer's signature with `fee_token` as the fee token: the transaction ready to broadcast.
pub fn cosign(
    client: &ClientTransaction,
    fee_payer: &PrivateKeySigner,
    fee_token: Address,
) -> Result<AASigned, TempoError> {
    let mut tx = client.tx().clone();
    tx.fee_token = Some(fee_token);
    tx.fee_payer_signature = Some(FEE_PAYER_SIGNATURE_MARKER);
    let hash = tx.fee_payer_signature_hash(client.sender);
    let signature =
        fee_payer.sign_hash_sync(&hash).map_err(|_| TempoError::Internal("the fee payer could not sign".into()))?;
    tx.fee_payer_signature = Some(signature);
    let signed = tx.into_signed(client.signed.signature().clone());
    // The sender signed without the fee token, so its signature must still name the same sender.
    if recover_sender(&signed)? != client.sender {
        return Err(TempoError::InvalidSignature("the sender's signature does not survive co-signing".into()));
    }
    Ok(signed)
}

/// The whole sponsorship step of the vectors (`tempo.fee_payer.cosign`): decode, check the sponsor policy and
/// the payment call, co-sign. Pure apart from the signing.
pub fn sponsor_transaction(
    raw: &[u8],
    terms: &PaymentTerms,
    binding: &ChallengeBinding<'_>,
    ctx: &SponsorContext<'_>,
    fee_payer: &PrivateKeySigner,
    fee_token: Address,
) -> Result<AASigned, TempoError> {
    let client = ClientTransaction::decode(raw)?;
    if !client.requests_sponsorship() {
        return Err(TempoError::SponsorPolicy(
            "fee-sponsored transaction must be signed for sponsorship (a 0x78 envelope or the fee-payer marker)".into(),
        ));
    }
    check_payment_transaction(client.tx(), terms, binding, Some(ctx))?;
    cosign(&client, fee_payer, fee_token)
}

/// The EIP-2718 bytes of a signed transaction (what goes to `eth_sendRawTransaction`).
pub fn encode_2718(signed: &AASigned) -> Vec<u8> {
    let mut out = Vec::new();
    signed.eip2718_encode(&mut out);
    out
}
