//! The `lightning`/`charge` request object a challenge carries and a credential echoes, decoded and checked
//! against the invoice inside it (the invoice is authoritative; the other fields must agree with it).

use lightning_invoice::{Bolt11Invoice, Currency};
use serde::Deserialize;
use serde_json::Value;

use paygate_core::money::AtomicAmount;

use super::CURRENCY;

/// `{amount, currency, description?, methodDetails: {invoice, paymentHash?, network?}}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest {
    amount: String,
    currency: String,
    method_details: WireDetails,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDetails {
    invoice: String,
    #[serde(default)]
    payment_hash: Option<String>,
    #[serde(default)]
    network: Option<String>,
}

/// An echoed request whose fields agree with its invoice.
#[derive(Debug)]
pub(crate) struct ChargeOffer {
    pub amount_sats: u64,
    pub invoice: Bolt11Invoice,
    pub payment_hash: [u8; 32],
}

impl ChargeOffer {
    /// Decodes `request` and checks it is a charge of whole sats on `currency` (the node's chain, written
    /// `network` in the request) whose invoice asks exactly `amount` and has the stated payment hash. The error
    /// says what is wrong, for a rejection's detail.
    pub fn parse(request: &Value, currency: Currency, network: &str) -> Result<ChargeOffer, &'static str> {
        let wire = WireRequest::deserialize(request).map_err(|_| "is not a Lightning charge request")?;
        let amount_sats = wire
            .amount
            .parse::<AtomicAmount>()
            .ok()
            .and_then(|amount| u64::try_from(amount.0).ok())
            .filter(|sats| *sats > 0)
            .ok_or("has no valid amount")?;
        if wire.currency != CURRENCY {
            return Err("is not priced in sats");
        }
        if wire.method_details.network.as_deref().is_some_and(|n| n != network) {
            return Err("is for another network");
        }
        let invoice: Bolt11Invoice =
            wire.method_details.invoice.parse().map_err(|_| "does not hold a signed BOLT11 invoice")?;
        if invoice.currency() != currency {
            return Err("holds an invoice for another network");
        }
        if invoice.amount_milli_satoshis() != amount_sats.checked_mul(1000) {
            return Err("holds an invoice for another amount");
        }
        let payment_hash: &[u8; 32] = invoice.payment_hash().as_ref();
        let payment_hash = *payment_hash;
        if let Some(stated) = &wire.method_details.payment_hash
            && lower_hex_32(stated) != Some(payment_hash)
        {
            return Err("states a payment hash that is not its invoice's");
        }
        Ok(ChargeOffer { amount_sats, invoice, payment_hash })
    }
}

/// 32 bytes written as exactly 64 lowercase hex characters, the spec's form of preimages and payment hashes.
pub(crate) fn lower_hex_32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}
