//! The x402 `batch-settlement` payloads a payer sends (`deposit`: fund a channel and pay this call; `voucher`: pay
//! this call from the channel; `refund`: give back what the channel did not spend, with a voucher for what it
//! charged), read and checked without IO: the channel config against the offer, the channel
//! id, the voucher's signer, and a deposit's ERC-3009 or Permit2 authorization.

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
    #[serde(default)]
    permit2_authorization: Option<WirePermit2>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePermit2 {
    from: Address,
    permitted: WirePermitted,
    spender: Address,
    nonce: String,
    deadline: String,
    witness: WireDepositWitness,
    signature: String,
}

#[derive(Debug, Clone, Deserialize)]
struct WirePermitted {
    token: Address,
    amount: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDepositWitness {
    channel_id: B256,
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

/// A deposit to relay: its amount, how the collector pulls it, and the collector's data.
#[derive(Debug, Clone)]
pub(super) struct Deposit {
    pub amount: u128,
    /// When the payer's authorization expires (ERC-3009 `validBefore`, Permit2 `deadline`).
    pub valid_before: u64,
    pub pull: Pull,
    pub collector_data: Vec<u8>,
}

/// How the deposit collector pulls a deposit from the payer, with the nonce that makes it happen once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pull {
    /// The token's ERC-3009 `receiveWithAuthorization`; data `abi.encode(validAfter, validBefore, salt, sig)`.
    Erc3009 { nonce: B256 },
    /// Permit2's `permitWitnessTransferFrom` (the payer approved Permit2 on the token); data
    /// `abi.encode(nonce, deadline, sig, "")`.
    Permit2 { nonce: U256 },
}

impl Pull {
    /// The collector contract the escrow's `deposit` is told to use.
    pub fn collector(self) -> Address {
        match self {
            Pull::Erc3009 { .. } => escrow::ERC3009_DEPOSIT_COLLECTOR,
            Pull::Permit2 { .. } => escrow::PERMIT2_DEPOSIT_COLLECTOR,
        }
    }
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
        let wire = Wire::deserialize(payload).map_err(|e| malformed(e.to_string()))?;
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
        let auth = match (&wire.authorization.erc3009_authorization, &wire.authorization.permit2_authorization) {
            (Some(auth), None) => auth,
            (None, Some(permit)) => return Deposit::permit2(amount, permit, config, channel_id, expected),
            _ => {
                return Err(malformed(
                    "deposit.authorization carries one of erc3009Authorization and permit2Authorization",
                ));
            }
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
        Ok(Deposit { amount, valid_before, pull: Pull::Erc3009 { nonce }, collector_data })
    }

    /// A Permit2 deposit: the payer's `PermitWitnessTransferFrom` for the Permit2 deposit collector, of exactly
    /// the deposit, witnessing this channel, checked as the official facilitator checks it.
    fn permit2(
        deposit: u128,
        permit: &WirePermit2,
        config: &ChannelConfig,
        channel_id: B256,
        expected: &Expected,
    ) -> Result<Deposit, Rejection> {
        let invalid = |reason: &'static str, detail: &str| refused(RejectKind::VerificationFailed, reason, detail);
        if permit.spender != escrow::PERMIT2_DEPOSIT_COLLECTOR {
            return Err(invalid(
                "invalid_batch_settlement_evm_permit2_invalid_spender",
                "the Permit2 authorization's spender is not the Permit2 deposit collector",
            ));
        }
        if permit.permitted.token != config.token {
            return Err(invalid(
                "invalid_batch_settlement_evm_token_mismatch",
                "the Permit2 token is not the channel's",
            ));
        }
        if amount(&permit.permitted.amount, "permit2Authorization.permitted.amount")? != deposit {
            return Err(invalid(
                "invalid_batch_settlement_evm_permit2_amount_mismatch",
                "the Permit2 authorization is not for the deposit's amount",
            ));
        }
        if permit.witness.channel_id != channel_id {
            return Err(invalid(
                "invalid_batch_settlement_evm_channel_id_mismatch",
                "the Permit2 authorization witnesses another channel",
            ));
        }
        let nonce = U256::from_str_radix(&permit.nonce, 10)
            .map_err(|_| malformed("permit2Authorization.nonce is not a decimal number"))?;
        let deadline = amount_u64(&permit.deadline, "permit2Authorization.deadline")?;
        let sig = signature(&permit.signature)?;
        let digest =
            escrow::permit2_deposit_digest(config.token, deposit, nonce, deadline, channel_id, expected.chain_id);
        if permit.from != config.payer || sig.recover_address_from_prehash(&digest).ok() != Some(config.payer) {
            return Err(invalid(
                "invalid_batch_settlement_evm_permit2_invalid_signature",
                "the Permit2 authorization is not signed by the channel's payer",
            ));
        }
        let collector_data = (
            nonce,
            U256::from(deadline),
            alloy::primitives::Bytes::from(sig.as_bytes().to_vec()),
            alloy::primitives::Bytes::new(),
        )
            .abi_encode_params();
        Ok(Deposit { amount: deposit, valid_before: deadline, pull: Pull::Permit2 { nonce }, collector_data })
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

#[cfg(test)]
mod tests {
    use alloy::signers::SignerSync;
    use paygate_chain::devtoken::dev_account;
    use serde_json::json;

    use super::*;

    const CHAIN: u64 = 31337;
    const DEPOSIT: u128 = 100_000;

    fn expected() -> Expected {
        Expected {
            chain_id: CHAIN,
            receiver: dev_account(9).address(),
            receiver_authorizer: dev_account(0).address(),
            token: dev_account(7).address(),
            withdraw_delay: 900,
            token_domain: token_domain("USDC", "2", CHAIN, dev_account(7).address()),
        }
    }

    /// A Permit2 deposit payload from dev account 1, as the official client builds it; `edit` changes the
    /// authorization after it was signed.
    fn permit2_deposit(edit: impl FnOnce(&mut Value)) -> Value {
        let e = expected();
        let payer = dev_account(1);
        let config = ChannelConfig {
            payer: payer.address(),
            payerAuthorizer: payer.address(),
            receiver: e.receiver,
            receiverAuthorizer: e.receiver_authorizer,
            token: e.token,
            withdrawDelay: U40::from(900),
            salt: B256::ZERO,
        };
        let id = escrow::channel_id(&config, CHAIN);
        let hex = |s: alloy::primitives::Signature| format!("0x{}", alloy::hex::encode(s.as_bytes()));
        let voucher = payer.sign_hash_sync(&escrow::voucher_digest(id, 10_000, CHAIN)).unwrap();
        let digest = escrow::permit2_deposit_digest(e.token, DEPOSIT, U256::from(7), 2_000_000_000, id, CHAIN);
        let mut permit = json!({
            "from": payer.address(), "spender": escrow::PERMIT2_DEPOSIT_COLLECTOR,
            "permitted": {"token": e.token, "amount": DEPOSIT.to_string()},
            "nonce": "7", "deadline": "2000000000", "witness": {"channelId": id},
            "signature": hex(payer.sign_hash_sync(&digest).unwrap()),
        });
        edit(&mut permit);
        json!({
            "type": "deposit",
            "channelConfig": {
                "payer": payer.address(), "payerAuthorizer": payer.address(), "receiver": e.receiver,
                "receiverAuthorizer": e.receiver_authorizer, "token": e.token, "withdrawDelay": 900, "salt": B256::ZERO,
            },
            "voucher": {"channelId": id, "maxClaimableAmount": "10000", "signature": hex(voucher)},
            "deposit": {"amount": DEPOSIT.to_string(), "authorization": {"permit2Authorization": permit}},
        })
    }

    fn refusal(payload: &Value) -> &'static str {
        Payment::read(payload, &expected()).unwrap_err().reason
    }

    #[test]
    fn a_permit2_deposit_is_read_for_the_permit2_collector() {
        let payment = Payment::read(&permit2_deposit(|_| {}), &expected()).unwrap();
        let deposit = payment.deposit.unwrap();
        assert_eq!((deposit.amount, deposit.valid_before), (DEPOSIT, 2_000_000_000));
        assert_eq!(deposit.pull, Pull::Permit2 { nonce: U256::from(7) });
        assert_eq!(deposit.pull.collector(), escrow::PERMIT2_DEPOSIT_COLLECTOR);
        // abi.encode(nonce, deadline, signature, ""): two words, two offsets, then the 65-byte signature.
        assert_eq!(U256::from_be_slice(&deposit.collector_data[..32]), U256::from(7));
        assert_eq!(U256::from_be_slice(&deposit.collector_data[32..64]), U256::from(2_000_000_000u64));
    }

    #[test]
    fn a_permit2_deposit_that_does_not_match_its_channel_is_refused() {
        let other = dev_account(5).address();
        type Edit = fn(&mut Value);
        let cases: [(Edit, &str); 5] = [
            (
                |p| p["spender"] = json!(escrow::ERC3009_DEPOSIT_COLLECTOR),
                "invalid_batch_settlement_evm_permit2_invalid_spender",
            ),
            (|p| p["permitted"]["amount"] = json!("99999"), "invalid_batch_settlement_evm_permit2_amount_mismatch"),
            (
                |p| p["witness"]["channelId"] = json!(B256::repeat_byte(1)),
                "invalid_batch_settlement_evm_channel_id_mismatch",
            ),
            (|p| p["nonce"] = json!("8"), "invalid_batch_settlement_evm_permit2_invalid_signature"),
            (|p| p["from"] = json!(dev_account(2).address()), "invalid_batch_settlement_evm_permit2_invalid_signature"),
        ];
        for (edit, reason) in cases {
            assert_eq!(refusal(&permit2_deposit(edit)), reason);
        }
        let token = permit2_deposit(|p| p["permitted"]["token"] = json!(other));
        assert_eq!(refusal(&token), "invalid_batch_settlement_evm_token_mismatch");
        let mut both = permit2_deposit(|_| {});
        both["deposit"]["authorization"]["erc3009Authorization"] = json!({});
        assert_eq!(refusal(&both), "invalid_batch_settlement_evm_payload");
    }
}
