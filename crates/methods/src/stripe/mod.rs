//! The Stripe rail: MPP `stripe`/`charge`, paid with a Shared Payment Token (SPT) that the payer granted the
//! seller, charged through the Stripe API. Stripe is MPP only: it has no x402 framing.
//!
//! * **Offer** ([`StripeMethod::mpp_terms`]): exactly the request mppx 0.11.0's `stripe.charge` server emits
//!   (`mppx@0.11.0:dist/stripe/Methods.js`): `{amount, currency, methodDetails: {networkId, paymentMethodTypes}}`,
//!   amounts in the currency's minor units. Amounts under Stripe's minimum charge are not offered, as mppx's
//!   `canOffer` does (`dist/stripe/server/Charge.js`).
//! * **Verify** authorizes: `POST /v1/payment_intents` with `confirm=true` and `capture_method=manual`, the token,
//!   mppx's `automatic_payment_methods` and `metadata`, and `Idempotency-Key: mpp_<challengeId>_<spt>`. The money
//!   is held, not taken: a PaymentIntent in `requires_capture` is a verified payment.
//! * **Settle** captures it (`/capture`) once the upstream answered below 400; **release** cancels it (`/cancel`)
//!   when the upstream failed, so the payer is not charged.
//!
//! A credential sent again gets Stripe's answer from its idempotency cache (`Idempotent-Replayed: true`); the
//! rail then reads the PaymentIntent as it is now: captured or cancelled means the credential was used
//! ([`RejectKind::Replayed`]), still held means the same verified payment again (the gateway's claim on the
//! same `proof_key` decides who settles it).
//!
//! Rejections never carry the secret key, the API URL or Stripe's error text: at most a short decline code.

mod api;
mod config;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use paygate_core::method::{MppTerms, PaymentMethod, PaymentOption, Proof, SettleOutcome, VerifiedPayment};
use paygate_core::money::AtomicAmount;
use paygate_core::network::Network;
use paygate_core::reject::{RejectKind, Rejection};
use paygate_proto::mpp;

pub use api::STRIPE_VERSION;
use api::{Answer, Api, Transport};
pub use config::{RAIL, StripeConfig, StripeRailConfig};

pub use crate::rail::OptionError;

/// Stripe's API.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
/// The form field of `POST /v1/payment_intents` that carries a Shared Payment Token.
pub const DEFAULT_TOKEN_PARAM: &str = "shared_payment_granted_token";
/// How long one Stripe call may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// The network of every Stripe payment option.
pub const NETWORK: &str = "stripe";

/// How to reach Stripe, and what the offers say.
#[derive(Clone)]
pub struct StripeSettings {
    /// The API base, [`DEFAULT_API_BASE`] unless testing.
    pub api_base: String,
    /// `sk_...` (or a restricted `rk_...`). Never logged or printed: `Debug` shows `<redacted>`.
    pub secret_key: String,
    /// The seller's Stripe Business Network profile, `methodDetails.networkId` of the offer. mppx clients
    /// refuse an offer without it, so leave it `None` only for clients that mint tokens without it.
    pub network_id: Option<String>,
    /// `methodDetails.paymentMethodTypes` of the offer; `["card"]` by default.
    pub payment_method_types: Vec<String>,
    /// The limit of each Stripe call, [`DEFAULT_TIMEOUT`] by default.
    pub timeout: Duration,
    /// The form field that carries the token, [`DEFAULT_TOKEN_PARAM`] by default (tests against a Stripe fake
    /// without SPTs use `payment_method` with a `pm_...` id standing in for the token).
    pub token_param: String,
    /// The smallest amount offered, minor units; `None`: Stripe's minimum charge for the currency (50 cents for
    /// usd), under which Stripe refuses charges and mppx makes no offer.
    pub min_amount: Option<u128>,
}

impl StripeSettings {
    /// Stripe's API with `secret_key` and every other setting at its default.
    pub fn new(secret_key: impl Into<String>) -> Self {
        StripeSettings { secret_key: secret_key.into(), ..StripeSettings::default() }
    }
}

impl Default for StripeSettings {
    /// Everything but the key, which is empty (and refused by [`StripeMethod::new`]).
    fn default() -> Self {
        StripeSettings {
            api_base: DEFAULT_API_BASE.to_owned(),
            secret_key: String::new(),
            network_id: None,
            payment_method_types: vec!["card".to_owned()],
            timeout: DEFAULT_TIMEOUT,
            token_param: DEFAULT_TOKEN_PARAM.to_owned(),
            min_amount: None,
        }
    }
}

impl fmt::Debug for StripeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeSettings")
            .field("api_base", &self.api_base)
            .field("secret_key", &"<redacted>")
            .field("network_id", &self.network_id)
            .field("payment_method_types", &self.payment_method_types)
            .field("timeout", &self.timeout)
            .field("token_param", &self.token_param)
            .field("min_amount", &self.min_amount)
            .finish()
    }
}

/// The Stripe rail for one payment option (its asset is the currency, `usd`).
#[derive(Debug)]
pub struct StripeMethod {
    option: PaymentOption,
    /// Lowercase ISO 4217 code.
    currency: String,
    network_id: Option<String>,
    payment_method_types: Vec<String>,
    token_param: String,
    min_amount: Option<u128>,
    api: Api,
}

/// What `verify` stores for `settle` and `release`: the held PaymentIntent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct HeldIntent {
    payment_intent: String,
    /// Already captured at verify time (a PaymentIntent that answered `succeeded`): nothing left to capture.
    captured: bool,
    /// The `externalId` the offer bound, for the receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
}

impl HeldIntent {
    /// What `verify` stored in `payment`, when it is readable and names a PaymentIntent.
    fn of(payment: &VerifiedPayment) -> Option<HeldIntent> {
        serde_json::from_value::<HeldIntent>(payment.settlement.clone())
            .ok()
            .filter(|held| is_intent_id(&held.payment_intent))
    }
}

/// The longest token accepted (SPT ids are about 30 characters; Stripe's idempotency keys stop at 255).
const MAX_TOKEN_LEN: usize = 160;
/// The longest challenge id accepted into the idempotency key (paygate's are 43).
const MAX_CHALLENGE_ID_LEN: usize = 64;
/// The longest `externalId` accepted.
const MAX_EXTERNAL_ID_LEN: usize = 256;

impl StripeMethod {
    pub fn new(option: PaymentOption, settings: StripeSettings) -> Result<Self, OptionError> {
        let err = |problem: &str| OptionError { option: option.name.clone(), problem: problem.to_owned() };
        if option.network != Network::Other(NETWORK.to_owned()) {
            return Err(err("the Stripe rail needs the network \"stripe\""));
        }
        let currency = option.asset.address.to_ascii_lowercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(err("the asset of a Stripe option is a three-letter currency code such as \"usd\""));
        }
        let base = reqwest::Url::parse(&settings.api_base).map_err(|_| err("the Stripe API base is not a URL"))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(err("the Stripe API base must be an http(s) URL"));
        }
        if settings.secret_key.is_empty() || !settings.secret_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(err("the Stripe secret key is empty or not printable ASCII"));
        }
        let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !plain(&settings.token_param) {
            return Err(err(
                "the Stripe token parameter must be a form field name such as shared_payment_granted_token",
            ));
        }
        if settings.payment_method_types.is_empty() || settings.payment_method_types.iter().any(|t| !plain(t)) {
            return Err(err("the Stripe payment method types must be a non-empty list such as [\"card\"]"));
        }
        if settings.network_id.as_deref().is_some_and(str::is_empty) {
            return Err(err("the Stripe network id is empty"));
        }
        if settings.timeout.is_zero() {
            return Err(err("the Stripe timeout is zero"));
        }
        let api = Api::new(&settings.api_base, &settings.secret_key, settings.timeout)
            .map_err(|_| err("the HTTP client for Stripe could not be built"))?;
        Ok(StripeMethod {
            option,
            currency,
            network_id: settings.network_id,
            payment_method_types: settings.payment_method_types,
            token_param: settings.token_param,
            min_amount: settings.min_amount,
            api,
        })
    }

    /// `POST /v1/payment_intents`: authorizes `amount` with the token, and maps Stripe's answer.
    async fn authorize(
        &self,
        challenge: &mpp::Challenge,
        token: &str,
        external_id: Option<String>,
        amount: AtomicAmount,
    ) -> Result<VerifiedPayment, Rejection> {
        let key = format!("mpp_{}_{token}", challenge.id);
        let amount_text = amount.to_string();
        let sdk = concat!("paygate/", env!("CARGO_PKG_VERSION"));
        // mppx's fields (`createWithSecretKey`), plus `capture_method=manual`: capture waits for the upstream.
        let form: [(&str, &str); 12] = [
            ("amount", &amount_text),
            ("automatic_payment_methods[allow_redirects]", "never"),
            ("automatic_payment_methods[enabled]", "true"),
            ("capture_method", "manual"),
            ("confirm", "true"),
            ("currency", &self.currency),
            (&self.token_param, token),
            ("metadata[machine_payment]", "true"),
            ("metadata[mpp_sdk]", sdk),
            ("metadata[mpp_intent]", "charge"),
            ("metadata[mpp_challenge_id]", &challenge.id),
            ("metadata[paygate_option]", &self.option.name),
        ];
        let answer = self.api.post("/v1/payment_intents", &form, Some(&key)).await.map_err(unreachable)?;
        if !answer.ok() {
            return Err(refusal(&answer));
        }
        let mut intent = Intent::read(&answer)?;
        if answer.replayed {
            // The cached body is the PaymentIntent as it was first created; what matters is what it is now.
            let now = self.api.get(&intent_path(&intent.id, "")).await.map_err(unreachable)?;
            if !now.ok() {
                return Err(refusal(&now));
            }
            intent = Intent::read(&now)?;
            if matches!(intent.status.as_str(), "succeeded" | "canceled" | "processing") {
                return Err(Rejection::new(
                    RejectKind::Replayed,
                    "payment_replayed",
                    "this credential was already used: its payment was already captured or cancelled",
                ));
            }
        }
        let captured = match intent.status.as_str() {
            "requires_capture" => false,
            "succeeded" => true,
            "requires_action" => {
                return Err(Rejection::new(
                    RejectKind::PaymentActionRequired,
                    "action_required",
                    "the payment needs the payer's action first (such as 3-D Secure)",
                ));
            }
            "requires_payment_method" => {
                return Err(Rejection::new(RejectKind::VerificationFailed, "card_declined", "the card was declined"));
            }
            other => {
                tracing::warn!(payment_intent = %intent.id, status = other, "Stripe did not authorize the payment");
                return Err(Rejection::new(
                    RejectKind::VerificationFailed,
                    "payment_refused",
                    format!("Stripe did not authorize the payment (status {other})"),
                ));
            }
        };
        let payer = match intent.payment_method {
            Some(pm) => format!("stripe:{pm}"),
            None => "stripe:spt".to_owned(),
        };
        let held = HeldIntent { payment_intent: intent.id, captured, external_id };
        Ok(VerifiedPayment {
            proof_key: format!("stripe:{key}"),
            payer,
            amount,
            // Plain data always serializes.
            settlement: serde_json::to_value(&held).expect("held intent serializes"),
        })
    }
}

/// Reads a Stripe answer of `status` with `body` as the rail does: a PaymentIntent when the status is below 300,
/// else the refusal. Pure, for the fuzz targets: what reaches a client of it is only paygate's own text and codes
/// Stripe documents (`Answer::error_code`).
pub fn read_answer(status: u16, body: &[u8]) -> Result<String, Rejection> {
    let answer = Answer { status, replayed: false, body: serde_json::from_slice(body).unwrap_or(Value::Null) };
    if !answer.ok() {
        return Err(refusal(&answer));
    }
    Intent::read(&answer).map(|intent| intent.status)
}

/// The fields of a PaymentIntent the rail reads, checked.
struct Intent {
    id: String,
    status: String,
    payment_method: Option<String>,
}

impl Intent {
    fn read(answer: &Answer) -> Result<Intent, Rejection> {
        let garbage = || {
            tracing::warn!(status = answer.status, "Stripe answered something that is not a PaymentIntent");
            Rejection::new(
                RejectKind::ProcessorUnavailable,
                "processor_unavailable",
                "Stripe answered something unreadable",
            )
        };
        let body = &answer.body;
        let id = body.get("id").and_then(Value::as_str).filter(|id| is_intent_id(id)).ok_or_else(garbage)?;
        let status = body.get("status").and_then(Value::as_str).filter(|s| is_plain(s)).ok_or_else(garbage)?;
        let payment_method = body.get("payment_method").and_then(Value::as_str).filter(|pm| is_plain_id(pm));
        Ok(Intent { id: id.to_owned(), status: status.to_owned(), payment_method: payment_method.map(str::to_owned) })
    }
}

/// `pi_` and letters and digits: safe in a URL path.
fn is_intent_id(id: &str) -> bool {
    id.len() <= 255 && id.strip_prefix("pi_").is_some_and(|rest| !rest.is_empty() && is_plain_id(rest))
}

/// Letters, digits and `_`, at most 255 characters.
fn is_plain_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A lowercase status word.
fn is_plain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

fn intent_path(id: &str, action: &str) -> String {
    format!("/v1/payment_intents/{id}{action}")
}

fn unreachable(err: Transport) -> Rejection {
    tracing::warn!(error = %err, "Stripe could not be reached");
    Rejection::new(
        RejectKind::ProcessorUnavailable,
        "processor_unavailable",
        format!("Stripe could not be asked: {err}"),
    )
}

/// The rejection for a Stripe answer of 400 or more.
fn refusal(answer: &Answer) -> Rejection {
    let code = answer.error_code();
    let kind = answer.error_type();
    match answer.status {
        402 => {
            let detail = match &code {
                Some(code) => format!("the card was declined ({code})"),
                None => "the card was declined".to_owned(),
            };
            Rejection::new(RejectKind::VerificationFailed, "card_declined", detail)
        }
        // Stripe answers 409 to a request whose idempotency key another request is using right now.
        409 if kind.as_deref() == Some("idempotency_error") => Rejection::new(
            RejectKind::InFlight,
            "payment_in_flight",
            "this credential is being processed by another request",
        ),
        401 | 403 => {
            tracing::error!(status = answer.status, "Stripe refused paygate's secret key: check the Stripe settings");
            Rejection::new(
                RejectKind::ProcessorUnavailable,
                "processor_unavailable",
                format!("Stripe could not be asked (HTTP {})", answer.status),
            )
        }
        400..=499 if answer.status != 429 && answer.body.get("error").is_some() => {
            tracing::warn!(status = answer.status, code = ?code, kind = ?kind, "Stripe refused the payment");
            let detail = match &code {
                Some(code) => format!("Stripe refused the payment ({code})"),
                None => "Stripe refused the payment".to_owned(),
            };
            Rejection::new(RejectKind::VerificationFailed, "payment_refused", detail)
        }
        status => {
            tracing::warn!(status, code = ?code, "Stripe answered an error");
            Rejection::new(
                RejectKind::ProcessorUnavailable,
                "processor_unavailable",
                format!("Stripe could not be asked (HTTP {status})"),
            )
        }
    }
}

fn malformed(detail: &str) -> Rejection {
    Rejection::new(RejectKind::MalformedCredential, "invalid_payload", detail)
}

/// The payload `{spt, externalId?}`, checked: the token and the optional `externalId`.
fn read_payload(payload: &Value) -> Result<(&str, Option<&str>), Rejection> {
    let payload = payload.as_object().ok_or_else(|| malformed("the payload is not an object {spt, externalId?}"))?;
    let token = payload
        .get("spt")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("the payload has no spt (Shared Payment Token) string"))?;
    if token.len() > MAX_TOKEN_LEN || !is_plain_id(token) {
        return Err(malformed("the spt is not a Stripe token id"));
    }
    let external_id = match payload.get("externalId") {
        None => None,
        Some(Value::String(id)) if id.len() <= MAX_EXTERNAL_ID_LEN => Some(id.as_str()),
        Some(_) => return Err(malformed("the payload's externalId is not a string of at most 256 bytes")),
    };
    Ok((token, external_id))
}

/// The minimum charge of each currency in minor units (`mppx@0.11.0:dist/stripe/server/Charge.js`, after
/// <https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts>).
fn minimum_charge(currency: &str) -> Option<u128> {
    Some(match currency {
        "bgn" => 100,
        "aed" | "myr" | "pln" | "ron" => 200,
        "ars" | "aud" | "brl" | "cad" | "chf" | "cop" | "eur" | "idr" | "ils" | "inr" | "jpy" | "krw" | "nzd"
        | "php" | "rub" | "sgd" | "usd" | "zar" => 50,
        "czk" => 1500,
        "dkk" => 250,
        "gbp" => 30,
        "hkd" => 400,
        "huf" => 17500,
        "mxn" | "thb" => 1000,
        "nok" | "sek" => 300,
        _ => return None,
    })
}

#[async_trait]
impl PaymentMethod for StripeMethod {
    fn rail(&self) -> &'static str {
        "stripe"
    }

    fn option(&self) -> &PaymentOption {
        &self.option
    }

    fn mpp_method(&self) -> Option<(&'static str, &'static str)> {
        Some(("stripe", "charge"))
    }

    /// The request mppx's `stripe.charge` server emits for `amount` (minor units), or `None` under Stripe's
    /// minimum charge, which mppx does not offer either.
    fn mpp_terms(&self, amount: AtomicAmount) -> Option<MppTerms> {
        if self.min_amount.or_else(|| minimum_charge(&self.currency)).is_some_and(|minimum| amount.0 < minimum) {
            return None;
        }
        let mut method_details = serde_json::Map::new();
        if let Some(network_id) = &self.network_id {
            method_details.insert("networkId".into(), json!(network_id));
        }
        method_details.insert("paymentMethodTypes".into(), json!(self.payment_method_types));
        Some(MppTerms {
            method: "stripe",
            intent: "charge",
            request: json!({
                "amount": amount.to_string(),
                "currency": self.currency,
                "methodDetails": method_details,
            }),
        })
    }

    async fn verify(&self, proof: Proof<'_>, amount: AtomicAmount) -> Result<VerifiedPayment, Rejection> {
        let Proof::Mpp { credential } = proof else {
            return Err(malformed("this offer is paid with a Stripe Shared Payment Token in an MPP credential"));
        };
        let (token, payload_external_id) = read_payload(&credential.payload)?;
        let challenge = &credential.challenge;
        let id_ok = challenge.id.len() <= MAX_CHALLENGE_ID_LEN && is_plain_or_dash(&challenge.id);
        if !id_ok {
            return Err(Rejection::new(
                RejectKind::InvalidChallenge,
                "unknown_challenge",
                "the challenge id is not one paygate issues",
            ));
        }
        // The offer's externalId binds the payment to the seller's order: the payload must echo it
        // (`tempoxyz/mpp-tools:conformance/vectors/stripe-external-id-binding.json`).
        let bound = match challenge.request.get("externalId") {
            None => None,
            Some(Value::String(id)) => Some(id.clone()),
            Some(_) => {
                return Err(Rejection::new(
                    RejectKind::InvalidChallenge,
                    "external_id_mismatch",
                    "the offer's externalId is not a string",
                ));
            }
        };
        if let Some(bound) = &bound
            && payload_external_id != Some(bound.as_str())
        {
            return Err(Rejection::new(
                RejectKind::InvalidChallenge,
                "external_id_mismatch",
                "the credential's externalId is not the one this offer is bound to",
            ));
        }
        self.authorize(challenge, token, bound, amount).await
    }

    /// Captures the held PaymentIntent.
    async fn settle(&self, payment: &VerifiedPayment) -> SettleOutcome {
        let Some(held) = HeldIntent::of(payment) else {
            return SettleOutcome::Failed { reason: "unreadable settlement data".into(), reference: None };
        };
        let reference = Some(held.payment_intent.clone());
        if held.captured {
            return SettleOutcome::Settled { reference: held.payment_intent };
        }
        // The key makes a retry after a lost answer (the reconciler's) get the first capture's answer.
        let key = format!("paygate_capture_{}", held.payment_intent);
        let path = intent_path(&held.payment_intent, "/capture");
        let answer = match self.api.post(&path, &[], Some(&key)).await {
            Ok(answer) => answer,
            // The capture may have happened.
            Err(e) => return SettleOutcome::Unknown { reason: format!("Stripe could not be asked: {e}"), reference },
        };
        if answer.ok() {
            return match Intent::read(&answer) {
                Ok(intent) if intent.status == "succeeded" => SettleOutcome::Settled { reference: intent.id },
                Ok(intent) => SettleOutcome::Unknown {
                    reason: format!("the PaymentIntent is {} after the capture", intent.status),
                    reference,
                },
                Err(_) => SettleOutcome::Unknown { reason: "Stripe answered something unreadable".into(), reference },
            };
        }
        if matches!(answer.status, 401 | 403 | 429) || answer.status >= 500 || answer.body.get("error").is_none() {
            tracing::warn!(status = answer.status, "Stripe did not capture; the authorization is still held");
            return SettleOutcome::Unknown {
                reason: format!("Stripe could not capture (HTTP {})", answer.status),
                reference,
            };
        }
        // A definite refusal, unless the PaymentIntent was captured already (by an earlier attempt).
        if let Ok(now) = self.api.get(&intent_path(&held.payment_intent, "")).await
            && let Ok(intent) = Intent::read(&now)
            && intent.status == "succeeded"
        {
            return SettleOutcome::Settled { reference: intent.id };
        }
        let reason = match answer.error_code() {
            Some(code) => format!("Stripe refused the capture ({code})"),
            None => format!("Stripe refused the capture (HTTP {})", answer.status),
        };
        SettleOutcome::Failed { reason, reference }
    }

    /// Cancels the held PaymentIntent, so the payer's authorization is released. Failures are only logged.
    async fn release(&self, payment: &VerifiedPayment) {
        let Some(held) = HeldIntent::of(payment) else {
            let proof_key = &payment.proof_key;
            tracing::error!(%proof_key, "cannot release a Stripe payment: unreadable settlement data");
            return;
        };
        if held.captured {
            let payment_intent = &held.payment_intent;
            tracing::warn!(%payment_intent, "a captured Stripe payment cannot be cancelled: refund it");
            return;
        }
        let key = format!("paygate_cancel_{}", held.payment_intent);
        match self.api.post(&intent_path(&held.payment_intent, "/cancel"), &[], Some(&key)).await {
            Ok(answer) if answer.ok() => {
                tracing::info!(payment_intent = %held.payment_intent, "Stripe authorization cancelled");
            }
            Ok(answer) => tracing::error!(
                payment_intent = %held.payment_intent,
                status = answer.status,
                code = ?answer.error_code(),
                "Stripe refused to cancel the authorization"
            ),
            Err(e) => tracing::error!(
                payment_intent = %held.payment_intent,
                error = %e,
                "Stripe could not be asked to cancel the authorization"
            ),
        }
    }
}

/// Letters, digits, `_` and `-` (base64url).
fn is_plain_or_dash(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_read_strictly() {
        assert_eq!(read_payload(&json!({"spt": "spt_123"})).unwrap(), ("spt_123", None));
        assert_eq!(read_payload(&json!({"spt": "spt_1", "externalId": "o-1"})).unwrap(), ("spt_1", Some("o-1")));
        for bad in [
            json!(null),
            json!("spt_123"),
            json!({}),
            json!({"spt": 5}),
            json!({"spt": ""}),
            json!({"spt": "spt_1\r\nX-Evil: 1"}),
            json!({"spt": "spt_1&amount=1"}),
            json!({"spt": "x".repeat(MAX_TOKEN_LEN + 1)}),
            json!({"spt": "spt_1", "externalId": 7}),
        ] {
            let rejection = read_payload(&bad).unwrap_err();
            assert_eq!((rejection.kind, rejection.reason), (RejectKind::MalformedCredential, "invalid_payload"));
        }
    }

    #[test]
    fn intent_ids_are_safe_in_a_path() {
        assert!(is_intent_id("pi_3MtwBwLkdIwHu7ix28a3tqPa"));
        for bad in ["pi_", "ch_123", "pi_../../v1/charges", "pi_1?x=1", "pi_1/cancel"] {
            assert!(!is_intent_id(bad), "{bad}");
        }
    }

    #[test]
    fn minimum_charges_follow_mppx() {
        assert_eq!(minimum_charge("usd"), Some(50));
        assert_eq!(minimum_charge("aed"), Some(200));
        assert_eq!(minimum_charge("bgn"), Some(100));
        assert_eq!(minimum_charge("huf"), Some(17500));
        assert_eq!(minimum_charge("xyz"), None);
    }
}
