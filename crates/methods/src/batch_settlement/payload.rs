//! The x402 `batch-settlement` payloads a payer sends (`deposit`: fund a channel and pay this call; `voucher`: pay
//! this call from the channel; `refund`: give back what the channel did not spend, with a voucher for what it
//! charged), read and checked without IO: the channel config against the offer, the channel
//! id, the voucher's signer, and a deposit's ERC-3009 authorization.

use alloy::primitives::{Address, B256, Signature, U256, aliases::U40};
use alloy::sol_types::{Eip712Domain, SolStruct, SolValue, eip712_domain};
use serde::Deserialize;
use serde_json::Value;

use paygate_chain::escrow::{self, BatchSettlement::ChannelConfig, ReceiveWithAuthorization};
use paygate_core::reject::{RejectKind, Rejection};

/// A payload as sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(rename = "type")]
    kind: String,
    channel_config: WireConfig,
    voucher: WireVoucher,
    #[serde(default)]
    deposit: Option<WireDeposit>,
    /// A refund's amount; the whole unspent deposit when absent.
    #[serde(default)]
    amount: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireConfig {
    payer: Address,
    payer_authorizer: Address,
    receiver: Address,
    receiver_authorizer: Address,
    token: Address,
    withdraw_delay: u64,
    salt: B256,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireVoucher {
    channel_id: B256,
    max_claimable_amount: String,
    signature: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDeposit {
    amount: String,
    authorization: WireDepositAuthorization,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDepositAuthorization {
    #[serde(default)]
    erc3009_authorization: Option<WireErc3009>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireErc3009 {
    valid_after: String,
    valid_before: String,
    salt: B256,
    signature: String,
}

/// A payload read and checked locally.
#[derive(Debug, Clone)]
pub(super) struct Payment {
    pub config: ChannelConfig,
    pub channel_id: B256,
    pub voucher_max: u128,
    /// The voucher's signature, `0x` + 130 hex digits.
    pub voucher_signature: String,
    /// Who signed the voucher (the payer's authorizer).
    pub payer: Address,
    pub deposit: Option<Deposit>,
    /// A `refund` payload: the payer asks for what its channel did not spend back, and pays no call.
    pub refund: Option<Refund>,
}

/// What a `refund` payload asks for: `amount`, or all that the channel did not charge.
#[derive(Debug, Clone, Copy)]
pub(super) struct Refund {
    pub amount: Option<u128>,
}

/// A deposit to relay: its amount and the collector's data (`abi.encode(validAfter, validBefore, salt, sig)`).
#[derive(Debug, Clone)]
pub(super) struct Deposit {
    pub amount: u128,
    pub valid_before: u64,
    pub nonce: B256,
    pub collector_data: Vec<u8>,
}

/// What the offer a payload pays says the channel must be.
pub(super) struct Expected {
    pub chain_id: u64,
    pub receiver: Address,
    pub receiver_authorizer: Address,
    pub token: Address,
    pub withdraw_delay: u64,
    pub token_domain: Eip712Domain,
}

fn refused(kind: RejectKind, reason: &'static str, detail: impl Into<String>) -> Rejection {
    Rejection::new(kind, reason, detail)
}

fn malformed(detail: impl Into<String>) -> Rejection {
    refused(RejectKind::MalformedCredential, "invalid_batch_settlement_evm_payload", detail)
}

fn signature(text: &str) -> Result<Signature, Rejection> {
    let bytes = alloy::hex::decode(text).map_err(|_| malformed("a signature is not hex"))?;
    if bytes.len() != 65 {
        return Err(malformed("a signature is not 65 bytes (r, s, v)"));
    }
    let signature = Signature::try_from(bytes.as_slice()).map_err(|_| malformed("a signature is not r, s, v"))?;
    if signature.normalize_s().is_some() {
        return Err(refused(
            RejectKind::VerificationFailed,
            "invalid_batch_settlement_evm_voucher_signature",
            "the signature's s is not in the lower half of the curve order",
        ));
    }
    Ok(signature)
}

fn amount(text: &str, what: &str) -> Result<u128, Rejection> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(format!("{what} is not a decimal amount")));
    }
    text.parse().map_err(|_| malformed(format!("{what} is too large")))
}

impl Payment {
    /// Reads `payload` and checks it against the offer, without IO: the channel is the offer's (receiver, its
    /// authorizer, token, withdraw delay), its id is the config's, the voucher is signed by the payer's
    /// authorizer, and a deposit's authorization is signed by the payer for the collector.
    pub(super) fn read(payload: &Value, expected: &Expected) -> Result<Payment, Rejection> {
        let wire: Wire = serde_json::from_value(payload.clone()).map_err(|e| malformed(e.to_string()))?;
        let c = &wire.channel_config;
        let withdraw_delay = U40::try_from(c.withdraw_delay).map_err(|_| malformed("withdrawDelay is too large"))?;
        let config = ChannelConfig {
            payer: c.payer,
            payerAuthorizer: c.payer_authorizer,
            receiver: c.receiver,
            receiverAuthorizer: c.receiver_authorizer,
            token: c.token,
            withdrawDelay: withdraw_delay,
            salt: c.salt,
        };
        if config.receiver != expected.receiver || config.receiverAuthorizer != expected.receiver_authorizer {
            return Err(refused(
                RejectKind::VerificationFailed,
                "invalid_batch_settlement_evm_receiver_mismatch",
                "the channel pays another seller",
            ));
        }
        if config.token != expected.token || c.withdraw_delay != expected.withdraw_delay {
            return Err(refused(
                RejectKind::VerificationFailed,
                "invalid_batch_settlement_evm_channel_config_mismatch",
                "the channel's token or withdraw delay is not the offer's",
            ));
        }
        let channel_id = escrow::channel_id(&config, expected.chain_id);
        if channel_id != wire.voucher.channel_id {
            return Err(malformed("voucher.channelId is not the id of channelConfig"));
        }
        let voucher_max = amount(&wire.voucher.max_claimable_amount, "voucher.maxClaimableAmount")?;
        let voucher_signature = signature(&wire.voucher.signature)?;
        let digest = escrow::voucher_digest(channel_id, voucher_max, expected.chain_id);
        let signer = voucher_signature.recover_address_from_prehash(&digest).ok();
        let authorizer = if config.payerAuthorizer == Address::ZERO { config.payer } else { config.payerAuthorizer };
        if signer != Some(authorizer) {
            return Err(refused(
                RejectKind::VerificationFailed,
                "invalid_batch_settlement_evm_voucher_signature",
                "the voucher is not signed by the channel's payer authorizer",
            ));
        }
        let (deposit, refund) = match (wire.kind.as_str(), &wire.deposit) {
            ("voucher", _) => (None, None),
            ("deposit", Some(deposit)) => (Some(Deposit::read(deposit, &config, channel_id, expected)?), None),
            ("deposit", None) => return Err(malformed("a deposit payload carries `deposit`")),
            ("refund", None) => {
                let asked = wire.amount.as_deref().map(|a| amount(a, "amount")).transpose()?;
                (None, Some(Refund { amount: asked }))
            }
            (other, _) => return Err(malformed(format!("payload type {other:?} is not taken here"))),
        };
        Ok(Payment {
            config,
            channel_id,
            voucher_max,
            voucher_signature: wire.voucher.signature.to_lowercase(),
            payer: c.payer,
            deposit,
            refund,
        })
    }
}

impl Deposit {
    fn read(
        wire: &WireDeposit,
        config: &ChannelConfig,
        channel_id: B256,
        expected: &Expected,
    ) -> Result<Deposit, Rejection> {
        let amount = amount(&wire.amount, "deposit.amount")?;
        if amount == 0 {
            return Err(malformed("deposit.amount is zero"));
        }
        let Some(auth) = &wire.authorization.erc3009_authorization else {
            return Err(malformed(
                "only ERC-3009 deposits are taken here (deposit.authorization.erc3009Authorization)",
            ));
        };
        let valid_after = amount_u64(&auth.valid_after, "validAfter")?;
        let valid_before = amount_u64(&auth.valid_before, "validBefore")?;
        let nonce = escrow::deposit_nonce(channel_id, auth.salt);
        let signed = ReceiveWithAuthorization {
            from: config.payer,
            to: escrow::ERC3009_DEPOSIT_COLLECTOR,
            value: U256::from(amount),
            validAfter: U256::from(valid_after),
            validBefore: U256::from(valid_before),
            nonce,
        };
        let sig = signature(&auth.signature)?;
        let signer = sig.recover_address_from_prehash(&signed.eip712_signing_hash(&expected.token_domain)).ok();
        if signer != Some(config.payer) {
            return Err(refused(
                RejectKind::VerificationFailed,
                "invalid_batch_settlement_evm_deposit_signature",
                "the deposit's authorization is not signed by the channel's payer",
            ));
        }
        let collector_data = (
            U256::from(valid_after),
            U256::from(valid_before),
            U256::from_be_bytes(auth.salt.0),
            alloy::primitives::Bytes::from(sig.as_bytes().to_vec()),
        )
            .abi_encode_params();
        Ok(Deposit { amount, valid_before, nonce, collector_data })
    }
}

fn amount_u64(text: &str, what: &str) -> Result<u64, Rejection> {
    u64::try_from(amount(text, what)?).map_err(|_| malformed(format!("{what} is too large")))
}

/// The token's EIP-712 domain, which a deposit's authorization is signed in.
pub(super) fn token_domain(name: &str, version: &str, chain_id: u64, token: Address) -> Eip712Domain {
    eip712_domain! {
        name: name.to_owned(),
        version: version.to_owned(),
        chain_id: chain_id,
        verifying_contract: token,
    }
}
