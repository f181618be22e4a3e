//! [`PayerChannel`]: the channel a payer pays one seller from, whichever protocol frames it (an MPP `evm`
//! session, [`crate::session`]; an x402 `batch-settlement` channel, [`crate::x402_channel`]), so that opening,
//! vouchers, top-ups, the spend log, the budgets and the close are one path (`session_pay.rs`). What differs is
//! here: the payloads, the header that carries them, and how the seller's receipt reads.

use alloy::primitives::B256;
use paygate_chain::escrow;
use paygate_proto::mpp::{self, Challenge};
use paygate_proto::x402;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::client::{PayError, authorization_name};
use crate::offer::{Offer, Source};
use crate::reconcile::AuthorizationNonce;
use crate::session::{EvmSession, SessionError};
use crate::spend_sessions::SessionRecord;
use crate::x402_channel::X402Channel;

/// The x402 error of a voucher for a channel the seller does not hold (`scheme_batch_settlement_evm.md`).
const X402_CHANNEL_NOT_FOUND: &str = "invalid_batch_settlement_evm_channel_not_found";

/// The x402 error of a voucher above what the channel holds, whose 402 carries the channel's state.
const X402_EXCEEDS_BALANCE: &str = "invalid_batch_settlement_evm_cumulative_exceeds_balance";

/// The x402 402 a seller refused a payment with (`status`, `headers`), if it is one.
fn x402_refusal(status: reqwest::StatusCode, headers: &HeaderMap) -> Option<x402::PaymentRequired> {
    if status != reqwest::StatusCode::PAYMENT_REQUIRED {
        return None;
    }
    let required = headers.get(x402::PAYMENT_REQUIRED)?.to_str().ok()?;
    x402::decode_header::<x402::PaymentRequired>(required).ok()
}

/// A channel being paid from.
pub(crate) enum PayerChannel {
    Mpp { session: Box<EvmSession>, challenge: Box<Challenge> },
    X402(Box<X402Channel>),
}

/// What a seller's answer says of a channel payment.
#[derive(Debug, Default)]
pub(crate) struct ChannelReceipt {
    /// The payment's reference for the spend log.
    pub reference: Option<String>,
    /// The transaction the answer names: a deposit the call carried, or the close or refund.
    pub transaction: Option<String>,
    /// What the channel was charged in all after this call, when the seller says (a call priced by its response
    /// may use less than its voucher allowed).
    pub spent: Option<u128>,
    /// A close or refund: what came back to the payer.
    pub refunded: Option<u128>,
}

fn invalid(e: SessionError) -> PayError {
    PayError::InvalidRequest(e.to_string())
}

impl PayerChannel {
    /// Where `offer`'s channels live (its escrow), as the spend log keys them.
    pub fn escrow_of(offer: &Offer) -> Option<String> {
        match &offer.source {
            Source::EvmSession { challenge } => {
                let escrow = challenge.request.pointer("/methodDetails/escrowContract").and_then(Value::as_str);
                escrow.map(str::to_owned)
            }
            Source::X402Channel { .. } => Some(escrow::BATCH_SETTLEMENT.to_checksum(None)),
            _ => None,
        }
    }

    /// The channel `offer` is paid from: the one in `record`, or a new one.
    pub fn of(
        signer: alloy::signers::local::PrivateKeySigner,
        offer: &Offer,
        record: Option<&SessionRecord>,
    ) -> Result<PayerChannel, PayError> {
        let domain = offer.eip712.clone();
        match &offer.source {
            Source::EvmSession { challenge } => {
                let domain =
                    domain.ok_or_else(|| PayError::InvalidRequest("the token has no EIP-712 domain".into()))?;
                let session = match record {
                    Some(record) => EvmSession::restore(signer, challenge, domain, record),
                    None => EvmSession::new(signer, challenge, domain, B256::random()),
                };
                Ok(PayerChannel::Mpp { session: Box::new(session.map_err(invalid)?), challenge: challenge.clone() })
            }
            Source::X402Channel { resource, requirements } => {
                let channel = match record {
                    Some(record) => X402Channel::restore(signer, resource, requirements, domain, record),
                    None => X402Channel::new(signer, resource, requirements, domain, B256::random()),
                };
                Ok(PayerChannel::X402(Box::new(channel.map_err(invalid)?)))
            }
            _ => Err(PayError::InvalidRequest("the offer is not paid from a channel".into())),
        }
    }

    pub fn channel_id(&self) -> B256 {
        match self {
            PayerChannel::Mpp { session, .. } => session.channel_id(),
            PayerChannel::X402(channel) => channel.channel_id(),
        }
    }

    /// (deposit, cumulative): what is in escrow and what the vouchers allow so far.
    pub fn amounts(&self) -> (u128, u128) {
        match self {
            PayerChannel::Mpp { session, .. } => (session.deposit, session.cumulative),
            PayerChannel::X402(channel) => (channel.deposit, channel.cumulative),
        }
    }

    /// Opens the channel with `deposit`, paying the first call (`price`); the payload and the channel's salt.
    pub fn open(&mut self, deposit: u128, price: u128, valid_before: u64) -> Result<(Value, B256), PayError> {
        match self {
            PayerChannel::Mpp { session, .. } => {
                let payload = session.open(deposit, price, valid_before).map_err(invalid)?;
                let salt = payload["salt"].as_str().and_then(|s| s.parse().ok()).unwrap_or_default();
                Ok((payload, salt))
            }
            PayerChannel::X402(channel) => {
                Ok((channel.open(deposit, price, valid_before).map_err(invalid)?, channel.salt()))
            }
        }
    }

    /// The nonce of the last deposit signed (the open or a top-up): what `reconcile` asks the chain about.
    pub fn deposit_nonce(&self) -> AuthorizationNonce {
        match self {
            PayerChannel::Mpp { session, .. } => AuthorizationNonce::Erc3009(session.deposit_nonce()),
            PayerChannel::X402(channel) => channel.deposit_nonce(),
        }
    }

    pub fn voucher(&mut self, price: u128) -> Result<Value, PayError> {
        match self {
            PayerChannel::Mpp { session, .. } => session.voucher(price).map_err(invalid),
            PayerChannel::X402(channel) => channel.voucher(price).map_err(invalid),
        }
    }

    pub fn voucher_with_top_up(&mut self, price: u128, amount: u128, valid_before: u64) -> Value {
        let salt = B256::random();
        match self {
            PayerChannel::Mpp { session, .. } => session.voucher_with_top_up(price, amount, salt, valid_before),
            PayerChannel::X402(channel) => channel.voucher_with_top_up(price, amount, salt, valid_before),
        }
    }

    /// Whether closing needs the seller: an x402 channel whose deposit was all spent has nothing to refund (the
    /// seller claims what it charged), so it is closed in the spend log alone.
    pub fn close_needs_seller(&self) -> bool {
        let (deposit, cumulative) = self.amounts();
        matches!(self, PayerChannel::Mpp { .. }) || deposit > cumulative
    }

    /// The closing payload: MPP's `close` with the final voucher; x402's `refund` of what was not spent.
    pub fn close(&self) -> Value {
        match self {
            PayerChannel::Mpp { session, .. } => session.close(),
            PayerChannel::X402(channel) => channel.refund(),
        }
    }

    /// The header carrying `payload`.
    pub fn credential(&self, payload: Value) -> Result<(HeaderName, HeaderValue), PayError> {
        let (name, value) = match self {
            PayerChannel::Mpp { session, challenge } => {
                (authorization_name(challenge)?, session.credential(challenge, payload))
            }
            PayerChannel::X402(channel) => {
                (HeaderName::from_static(x402::PAYMENT_SIGNATURE), channel.credential(payload))
            }
        };
        let value = HeaderValue::from_str(&value).map_err(|e| PayError::InvalidRequest(e.to_string()))?;
        Ok((name, value))
    }

    /// Whether the seller's refusal (`status`, `headers`) says it holds no such channel (MPP: 410; x402: a 402
    /// whose error is `invalid_batch_settlement_evm_channel_not_found`): its open never landed, so the payer stops
    /// paying from it (a deposit whose fate is unknown stays `pending` for `reconcile`).
    pub fn unknown_to_seller(&self, status: reqwest::StatusCode, headers: &HeaderMap) -> bool {
        match self {
            PayerChannel::Mpp { .. } => status == reqwest::StatusCode::GONE,
            PayerChannel::X402(_) => {
                x402_refusal(status, headers).and_then(|r| r.error).as_deref() == Some(X402_CHANNEL_NOT_FOUND)
            }
        }
    }

    /// What the seller says the channel holds, when its refusal (`status`, `headers`) says the voucher is above it
    /// and states the channel (x402: `cumulative_exceeds_balance` with `extra.channelState`) and that is less
    /// than this payer deposited: the seller refunded the rest (its idle close) or the payer withdrew it. The
    /// payer then tops the channel up. MPP has no such state: a channel its seller closed is answered with 410.
    pub fn held_per_seller(&self, status: reqwest::StatusCode, headers: &HeaderMap) -> Option<u128> {
        let PayerChannel::X402(channel) = self else { return None };
        let refusal = x402_refusal(status, headers).filter(|r| r.error.as_deref() == Some(X402_EXCEEDS_BALANCE))?;
        let id = format!("{:#x}", channel.channel_id());
        let state = refusal.accepts.iter().find_map(|offer| {
            let state = offer.extra.as_ref()?.get("channelState")?;
            state["channelId"].as_str().is_some_and(|c| c.eq_ignore_ascii_case(&id)).then_some(state)
        })?;
        let balance = state["balance"].as_str()?.parse::<u128>().ok()?;
        (balance < channel.deposit).then_some(balance)
    }

    /// What the seller's answer (`headers`) says of the payment; `None` when it carries no receipt.
    pub fn receipt(&self, headers: &HeaderMap) -> Option<ChannelReceipt> {
        let amount = |v: Option<&Value>| v.and_then(Value::as_str).and_then(|s| s.parse::<u128>().ok());
        match self {
            PayerChannel::Mpp { session, .. } => {
                let value = headers.get(mpp::PAYMENT_RECEIPT)?.to_str().ok()?;
                let receipt = mpp::Receipt::from_header(value).ok()?;
                let settled = amount(receipt.extra.get("deposit"));
                Some(ChannelReceipt {
                    transaction: receipt.extra.get("txHash").and_then(Value::as_str).map(str::to_owned),
                    spent: amount(receipt.extra.get("spent")),
                    refunded: settled.map(|settled| session.deposit.saturating_sub(settled)),
                    reference: Some(receipt.reference),
                })
            }
            PayerChannel::X402(channel) => {
                let value = headers.get(x402::PAYMENT_RESPONSE)?.to_str().ok()?;
                let settled: x402::SettleResponse = x402::decode_header(value).ok()?;
                let state = settled.extra.as_ref().and_then(|e| e.get("channelState"));
                let transaction = Some(settled.transaction.clone()).filter(|t| !t.is_empty());
                Some(ChannelReceipt {
                    reference: Some(format!("{:#x}", channel.channel_id())),
                    spent: amount(state.and_then(|s| s.get("chargedCumulativeAmount"))),
                    refunded: settled.amount.as_deref().and_then(|a| a.parse().ok()),
                    transaction,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::B256;
    use paygate_chain::devtoken::dev_account;
    use reqwest::StatusCode;
    use serde_json::json;

    use super::*;

    /// An x402 channel of payer dev account 1 that deposited 50,000 and paid one call.
    fn channel() -> PayerChannel {
        let requirements: x402::PaymentRequirements = serde_json::from_value(json!({
            "scheme": "batch-settlement", "network": "eip155:31337", "amount": "10000",
            "asset": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "payTo": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "maxTimeoutSeconds": 60,
            "extra": {"name": "USD Coin", "version": "2", "withdrawDelay": 900,
                      "receiverAuthorizer": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"},
        }))
        .unwrap();
        let resource = x402::ResourceInfo { url: "http://x/".into(), description: None, mime_type: None };
        let domain = Some(("USD Coin".to_owned(), "2".to_owned()));
        let mut channel = X402Channel::new(dev_account(1), &resource, &requirements, domain, B256::ZERO).unwrap();
        channel.open(50_000, 10_000, 2_000_000_000).unwrap();
        PayerChannel::X402(Box::new(channel))
    }

    /// The headers of a seller's 402 refusing with `error` and stating channel `id` holds `balance`.
    fn refusal(error: &str, id: &str, balance: &str) -> HeaderMap {
        let required = json!({
            "x402Version": 2, "error": error, "resource": {"url": "http://x/"},
            "accepts": [{
                "scheme": "batch-settlement", "network": "eip155:31337", "amount": "10000",
                "asset": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
                "payTo": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "maxTimeoutSeconds": 60,
                "extra": {"channelState": {"channelId": id, "balance": balance, "totalClaimed": "10000"}},
            }],
        });
        let mut headers = HeaderMap::new();
        headers.insert(x402::PAYMENT_REQUIRED, HeaderValue::from_str(&x402::encode_header(&required)).unwrap());
        headers
    }

    /// Only a refusal that says this very channel holds less than was deposited tops it up: another error, another
    /// channel's state, a balance at or above the deposit, a malformed balance or another status change nothing.
    #[test]
    fn a_channel_is_taken_to_hold_less_only_when_its_seller_states_so_for_it() {
        let channel = channel();
        let id = format!("{:#x}", channel.channel_id());
        let payment_required = StatusCode::PAYMENT_REQUIRED;
        let held = |status, headers: &HeaderMap| channel.held_per_seller(status, headers);

        assert_eq!(held(payment_required, &refusal(X402_EXCEEDS_BALANCE, &id, "10000")), Some(10_000));
        assert_eq!(
            held(payment_required, &refusal(X402_EXCEEDS_BALANCE, &id.to_uppercase().replace("0X", "0x"), "0")),
            Some(0)
        );
        assert_eq!(held(payment_required, &refusal(X402_EXCEEDS_BALANCE, &id, "50000")), None, "the whole deposit");
        assert_eq!(held(payment_required, &refusal(X402_EXCEEDS_BALANCE, &id, "-1")), None);
        assert_eq!(held(payment_required, &refusal(X402_EXCEEDS_BALANCE, &format!("{:#x}", B256::ZERO), "0")), None);
        let mismatch = "invalid_batch_settlement_evm_cumulative_amount_mismatch";
        assert_eq!(held(payment_required, &refusal(mismatch, &id, "10000")), None);
        assert_eq!(held(StatusCode::BAD_REQUEST, &refusal(X402_EXCEEDS_BALANCE, &id, "10000")), None);
        assert_eq!(held(payment_required, &HeaderMap::new()), None);
        assert!(channel.unknown_to_seller(payment_required, &refusal(X402_CHANNEL_NOT_FOUND, &id, "0")));
        assert!(!channel.unknown_to_seller(payment_required, &refusal(X402_EXCEEDS_BALANCE, &id, "0")));
    }
}
