//! The MPP `evm` session credentials a payer sends (`draft-evm-session-00`, `payload.action`), read and checked
//! without IO: `open` (a relayed ERC-3009 deposit, or the hash of an `open` the payer sent), `voucher` (pay this
//! call, optionally topping up first), `topUp` and `close` (channel management, no call).

use alloy::primitives::{Address, B256, Signature, U256};
use alloy::sol_types::{Eip712Domain, SolStruct};
use serde::Deserialize;
use serde_json::Value;

use paygate_chain::escrow::ReceiveWithAuthorization;
use paygate_chain::session_escrow::{self, ChannelTerms};
use paygate_core::reject::{RejectKind, Rejection};

/// What the offer says every channel must be.
pub(super) struct Expected {
    pub chain_id: u64,
    pub escrow: Address,
    pub payee: Address,
    pub token: Address,
    pub token_domain: Eip712Domain,
}

/// A credential's payload, read.
#[derive(Debug, Clone)]
pub(super) enum Action {
    /// Open a channel and pay this call with its first voucher.
    Open { funding: Funding, voucher: Voucher },
    /// Pay this call from a known channel, topping it up first when `top_up` says.
    Voucher { voucher: Voucher, top_up: Option<Funding> },
    /// Add to a channel's deposit; no call.
    TopUp { channel_id: B256, funding: Funding },
    /// Close the channel cooperatively with this final voucher; no call.
    Close { voucher: Voucher },
}

/// A voucher as sent: its signature is checked against the channel's signer once the channel is known.
#[derive(Debug, Clone)]
pub(super) struct Voucher {
    pub channel_id: B256,
    pub cumulative: u128,
    pub signature: Signature,
    /// As sent, lowercase.
    pub signature_hex: String,
}

/// Money moving into the escrow.
#[derive(Debug, Clone)]
pub(super) enum Funding {
    /// An ERC-3009 authorization paygate relays (`openWithAuthorization` / `topUpWithAuthorization`).
    Relayed(Box<Relayed>),
    /// A transaction the payer sent itself.
    Sent { hash: B256 },
}

#[derive(Debug, Clone)]
pub(super) struct Relayed {
    pub terms: ChannelTerms,
    pub amount: u128,
    pub valid_after: U256,
    pub valid_before: u64,
    pub nonce: B256,
    /// The top-up's salt (a top-up's nonce binds it); the channel's salt for an open.
    pub salt: B256,
    pub signature: Signature,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    action: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    channel_id: B256,
    #[serde(default)]
    cumulative_amount: Option<String>,
    /// The voucher's signature (`voucher`, `close`, a `hash` open), or the ERC-3009 signature of a relayed open.
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    voucher_signature: Option<String>,
    #[serde(default)]
    authorization: Option<WireAuthorization>,
    #[serde(default)]
    authorized_signer: Option<Address>,
    #[serde(default)]
    salt: Option<B256>,
    #[serde(default)]
    hash: Option<B256>,
    #[serde(default)]
    additional_deposit: Option<String>,
    #[serde(default)]
    deposit: Option<Box<WireDeposit>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAuthorization {
    from: Address,
    to: Address,
    value: String,
    valid_after: String,
    valid_before: String,
    nonce: B256,
}

/// A funding merged into a `voucher` credential.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDeposit {
    action: String,
    #[serde(rename = "type")]
    kind: String,
    authorization: Option<WireAuthorization>,
    signature: Option<String>,
    #[serde(default)]
    salt: Option<B256>,
    #[serde(default)]
    hash: Option<B256>,
    #[serde(default)]
    additional_deposit: Option<String>,
}

pub(super) fn malformed(detail: impl Into<String>) -> Rejection {
    Rejection::new(RejectKind::MalformedCredential, "session_malformed", detail)
}

pub(super) fn bad_signature(detail: impl Into<String>) -> Rejection {
    Rejection::new(RejectKind::VerificationFailed, "session_invalid_signature", detail)
}

fn decimal(text: &str, what: &str) -> Result<u128, Rejection> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(format!("{what} is not a decimal amount")));
    }
    text.parse().map_err(|_| malformed(format!("{what} is too large")))
}

/// A 65-byte `r||s||v` signature with a low `s` (the draft refuses EIP-2098 compact and high-s signatures).
fn signature(text: &str, what: &str) -> Result<Signature, Rejection> {
    let bytes = alloy::hex::decode(text).map_err(|_| malformed(format!("{what} is not hex")))?;
    if bytes.len() != 65 {
        return Err(malformed(format!("{what} is not 65 bytes (r, s, v)")));
    }
    let signature = Signature::try_from(bytes.as_slice()).map_err(|_| malformed(format!("{what} is not r, s, v")))?;
    if signature.normalize_s().is_some() {
        return Err(bad_signature(format!("{what}'s s is not in the lower half of the curve order")));
    }
    Ok(signature)
}

fn required<'a, T>(value: &'a Option<T>, field: &str) -> Result<&'a T, Rejection> {
    value.as_ref().ok_or_else(|| malformed(format!("this action carries `{field}`")))
}

impl Voucher {
    fn read(
        channel_id: B256,
        cumulative: &Option<String>,
        signature_text: &Option<String>,
    ) -> Result<Voucher, Rejection> {
        let cumulative = decimal(required(cumulative, "cumulativeAmount")?, "cumulativeAmount")?;
        let text = required(signature_text, "signature")?;
        Ok(Voucher {
            channel_id,
            cumulative,
            signature: signature(text, "the voucher signature")?,
            signature_hex: text.to_lowercase(),
        })
    }

    /// Whether `signer` signed it, on the escrow of `expected`.
    pub fn signed_by(&self, signer: Address, expected: &Expected) -> Result<(), Rejection> {
        let digest =
            session_escrow::voucher_digest(self.channel_id, self.cumulative, expected.chain_id, expected.escrow);
        match self.signature.recover_address_from_prehash(&digest) {
            Ok(recovered) if recovered == signer => Ok(()),
            _ => Err(Rejection::new(
                RejectKind::VerificationFailed,
                "session_signer_mismatch",
                "the voucher is not signed by the channel's authorized signer",
            )),
        }
    }
}

impl Action {
    /// Reads a credential's payload; `source` is the credential's `did:pkh` payer when it names one.
    pub fn read(payload: &Value, source: Option<Address>, expected: &Expected) -> Result<Action, Rejection> {
        let wire = Wire::deserialize(payload).map_err(|e| malformed(e.to_string()))?;
        match wire.action.as_str() {
            "open" => Self::open(&wire, source, expected),
            "voucher" => {
                let voucher = Voucher::read(wire.channel_id, &wire.cumulative_amount, &wire.signature)?;
                let top_up = match &wire.deposit {
                    None => None,
                    Some(d) if d.action == "topUp" => Some(Funding::top_up(
                        wire.channel_id,
                        &d.kind,
                        d.authorization.as_ref(),
                        d.signature.as_deref(),
                        d.salt,
                        d.hash,
                        d.additional_deposit.as_deref(),
                        expected,
                    )?),
                    Some(_) => return Err(malformed("a voucher's `deposit` tops up a known channel (action topUp)")),
                };
                Ok(Action::Voucher { voucher, top_up })
            }
            "topUp" => Ok(Action::TopUp {
                channel_id: wire.channel_id,
                funding: Funding::top_up(
                    wire.channel_id,
                    required(&wire.kind, "type")?,
                    wire.authorization.as_ref(),
                    wire.signature.as_deref(),
                    wire.salt,
                    wire.hash,
                    wire.additional_deposit.as_deref(),
                    expected,
                )?,
            }),
            "close" => {
                Ok(Action::Close { voucher: Voucher::read(wire.channel_id, &wire.cumulative_amount, &wire.signature)? })
            }
            other => Err(malformed(format!("action {other:?} is not one of open, voucher, topUp, close"))),
        }
    }

    fn open(wire: &Wire, source: Option<Address>, expected: &Expected) -> Result<Action, Rejection> {
        let salt = *required(&wire.salt, "salt")?;
        let authorized_signer = wire.authorized_signer.unwrap_or(Address::ZERO);
        match required(&wire.kind, "type")?.as_str() {
            "authorization" => {
                let auth = required(&wire.authorization, "authorization")?;
                let terms = ChannelTerms {
                    payer: auth.from,
                    payee: expected.payee,
                    token: expected.token,
                    salt,
                    authorized_signer,
                };
                if terms.channel_id(expected.escrow, expected.chain_id) != wire.channel_id {
                    return Err(malformed("channelId is not the id of this payer, payee, token, salt and signer"));
                }
                if auth.nonce != terms.open_nonce() {
                    return Err(malformed(
                        "authorization.nonce is not keccak256(abi.encode(from, payee, token, salt, authorizedSigner))",
                    ));
                }
                let signature_text = required(&wire.signature, "signature")?;
                let funding = Relayed::read(terms, auth, signature_text, salt, expected)?;
                let voucher = Voucher::read(wire.channel_id, &wire.cumulative_amount, &wire.voucher_signature)?;
                voucher.signed_by(terms.signer(), expected)?;
                Ok(Action::Open { funding: Funding::Relayed(Box::new(funding)), voucher })
            }
            "hash" => {
                let payer =
                    source.ok_or_else(|| malformed("an open by hash names its payer in the credential's source"))?;
                let terms =
                    ChannelTerms { payer, payee: expected.payee, token: expected.token, salt, authorized_signer };
                if terms.channel_id(expected.escrow, expected.chain_id) != wire.channel_id {
                    return Err(malformed("channelId is not the id of this payer, payee, token, salt and signer"));
                }
                let voucher = Voucher::read(wire.channel_id, &wire.cumulative_amount, &wire.signature)?;
                voucher.signed_by(terms.signer(), expected)?;
                Ok(Action::Open { funding: Funding::Sent { hash: *required(&wire.hash, "hash")? }, voucher })
            }
            other => Err(malformed(format!("open type {other:?} is not taken here (authorization, hash)"))),
        }
    }
}

impl Funding {
    #[allow(clippy::too_many_arguments)]
    fn top_up(
        channel_id: B256,
        kind: &str,
        auth: Option<&WireAuthorization>,
        signature_text: Option<&str>,
        salt: Option<B256>,
        hash: Option<B256>,
        additional: Option<&str>,
        expected: &Expected,
    ) -> Result<Funding, Rejection> {
        match kind {
            "authorization" => {
                let auth = auth.ok_or_else(|| malformed("a top-up by authorization carries `authorization`"))?;
                let salt = salt.ok_or_else(|| malformed("a top-up by authorization carries `salt`"))?;
                let additional = decimal(
                    additional.ok_or_else(|| malformed("a top-up carries `additionalDeposit`"))?,
                    "additionalDeposit",
                )?;
                if decimal(&auth.value, "authorization.value")? != additional {
                    return Err(malformed("additionalDeposit is not the authorized value"));
                }
                if auth.nonce != session_escrow::top_up_nonce(channel_id, additional, auth.from, salt) {
                    return Err(malformed(
                        "authorization.nonce is not keccak256(abi.encode(channelId, additionalDeposit, from, salt))",
                    ));
                }
                // The channel's other terms are the escrow's; only the payer and token matter to the authorization.
                let terms = ChannelTerms {
                    payer: auth.from,
                    payee: expected.payee,
                    token: expected.token,
                    salt,
                    authorized_signer: Address::ZERO,
                };
                let signature_text =
                    signature_text.ok_or_else(|| malformed("a top-up by authorization carries `signature`"))?;
                Ok(Funding::Relayed(Box::new(Relayed::read(terms, auth, signature_text, salt, expected)?)))
            }
            "hash" => Ok(Funding::Sent { hash: hash.ok_or_else(|| malformed("a top-up by hash carries `hash`"))? }),
            other => Err(malformed(format!("top-up type {other:?} is not taken here (authorization, hash)"))),
        }
    }
}

impl Relayed {
    /// An ERC-3009 `ReceiveWithAuthorization` to the escrow, signed by its `from` in the token's domain.
    fn read(
        terms: ChannelTerms,
        auth: &WireAuthorization,
        signature_text: &str,
        salt: B256,
        expected: &Expected,
    ) -> Result<Relayed, Rejection> {
        if auth.to != expected.escrow {
            return Err(malformed("authorization.to is not the escrow"));
        }
        let amount = decimal(&auth.value, "authorization.value")?;
        if amount == 0 {
            return Err(malformed("authorization.value is zero"));
        }
        let valid_after = U256::from(decimal(&auth.valid_after, "authorization.validAfter")?);
        let valid_before = u64::try_from(decimal(&auth.valid_before, "authorization.validBefore")?)
            .map_err(|_| malformed("authorization.validBefore is too large"))?;
        let signature = signature(signature_text, "the authorization signature")?;
        let signed = ReceiveWithAuthorization {
            from: auth.from,
            to: expected.escrow,
            value: U256::from(amount),
            validAfter: valid_after,
            validBefore: U256::from(valid_before),
            nonce: auth.nonce,
        };
        if signature.recover_address_from_prehash(&signed.eip712_signing_hash(&expected.token_domain)).ok()
            != Some(auth.from)
        {
            return Err(bad_signature("the deposit's authorization is not signed by its `from`"));
        }
        Ok(Relayed { terms, amount, valid_after, valid_before, nonce: auth.nonce, salt, signature })
    }
}
