//! The Lightning rail: MPP `lightning`/`charge` (`draft-lightning-charge-00`), a BOLT11 invoice per challenge,
//! paid on the Lightning Network and proven by its preimage.
//!
//! 1. [`LightningMethod::challenge_terms`] asks the operator's node ([`LightningBackend`]; in production
//!    [`LndRest`]) for a fresh invoice of exactly the price, checks what the node answered (the invoice parses,
//!    its signature holds, it is for this amount, this payment hash and this network) and offers it as
//!    `{amount, currency: "sat", methodDetails: {invoice, paymentHash, network}}`. The invoice's memo is the
//!    option's name. A node that cannot be asked is `ProcessorUnavailable`: no challenge goes out without an
//!    invoice behind it.
//! 2. The payer pays the invoice; its wallet learns the preimage when the payee node settles the HTLC.
//! 3. [`LightningMethod::verify`] takes the credential's `{preimage}` (64 lowercase hex), checks
//!    `sha256(preimage)` against the payment hash of the **echoed** request, that the invoice (decoded from the
//!    echoed request) has not expired by the injected clock, and that it asks exactly the price.
//!
//! **The preimage alone proves payment; the node is not asked again.** Only the payee node knows the preimage
//! until it accepts the HTLC, and accepting it is settling it (BOLT 4), so a correct preimage means the money
//! already moved. That is the spec's answer ("no out-of-band confirmation is required"), and it keeps `verify`
//! free of IO: a node that is down cannot turn paid requests away. Hold invoices, whose preimage the merchant
//! knows before being paid, are never created here. [`LightningMethod::settle`] therefore moves nothing and
//! answers `Settled` with the payment hash as the receipt reference.
//!
//! **Why no server state.** The spec stores each issued `paymentHash` by challenge id. paygate binds the whole
//! request, invoice and payment hash included, into the challenge's HMAC instead, and the gateway checks that
//! HMAC before this rail sees the credential: an echoed request is one paygate issued, so its payment hash is
//! the one stored. Single use comes from the gateway's atomic claim on the proof key `lightning:<payment hash>`,
//! which is the same for every credential that pays the same invoice. (Every routing node on the path also
//! learns the preimage; it does not have the challenge, and the claim makes the first use the only one.)
//!
//! **Expiry.** The effective expiry is the earlier of the challenge's `expires` (checked by the gateway) and the
//! invoice's own (checked here). Keep `invoice_expiry_secs` at least the gateway's challenge TTL so a challenge
//! does not outlive its invoice.
//!
//! The preimage is a bearer secret until the claim: it never appears in a rejection, a log line or the
//! settlement data, which carries only the payment hash.

mod config;
mod lnd;
mod request;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lightning_invoice::{Bolt11Invoice, Currency};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use paygate_core::clock::Clock;
use paygate_core::method::{Asset, MppTerms, PaymentMethod, PaymentOption, Proof, SettleOutcome, VerifiedPayment};
use paygate_core::money::AtomicAmount;
use paygate_core::network::Network;
use paygate_core::reject::{RejectKind, Rejection};

pub use crate::rail::OptionError;
pub use config::{LightningConfig, LightningRailConfig, RAIL};
pub use lnd::{LndConfigError, LndRest, read_add_invoice};

/// The MPP method name.
pub const METHOD: &str = "lightning";
/// The MPP intent this rail offers.
pub const INTENT: &str = "charge";
/// The request's `currency`: amounts are whole satoshis.
pub const CURRENCY: &str = "sat";
/// The ledger's payer for Lightning payments: a payment carries no payer identity.
pub const PAYER: &str = "lightning";
/// The longest invoice expiry accepted in the settings (LND refuses more than a year).
pub const MAX_INVOICE_EXPIRY_SECS: u64 = 365 * 24 * 3600;

/// A fresh invoice, as the node created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    /// The BOLT11 payment request (`lnbc...`).
    pub bolt11: String,
    /// What the node says the invoice's payment hash is; checked against the invoice itself.
    pub payment_hash: [u8; 32],
}

/// Why a node did not hand out an invoice. Never holds credentials (the macaroon); the texts are for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Nothing answered, or the TLS handshake failed (the certificate is not the pinned one).
    #[error("the Lightning node could not be reached: {0}")]
    Unreachable(String),
    /// The node did not answer in time.
    #[error("the Lightning node did not answer in time")]
    Timeout,
    /// The node answered with an error (a wrong macaroon, a locked wallet).
    #[error("the Lightning node refused to create the invoice (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    /// The node answered something that is not an invoice.
    #[error("the Lightning node answered something unusable: {0}")]
    InvalidAnswer(String),
}

impl BackendError {
    /// A short, secret-free description for a rejection's detail.
    fn summary(&self) -> String {
        match self {
            BackendError::Unreachable(_) => "it could not be reached".into(),
            BackendError::Timeout => "it did not answer in time".into(),
            BackendError::Refused { status, .. } => format!("it refused (HTTP {status})"),
            BackendError::InvalidAnswer(_) => "its answer was unusable".into(),
        }
    }
}

/// The operator's Lightning node, as far as this rail needs it: it creates invoices.
#[async_trait]
pub trait LightningBackend: Send + Sync + std::fmt::Debug {
    /// Creates an invoice for exactly `amount_msat` millisatoshis with this memo, expiring `expiry_secs` after
    /// its creation.
    async fn create_invoice(&self, amount_msat: u64, memo: &str, expiry_secs: u64) -> Result<Invoice, BackendError>;
}

/// How an option's invoices are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LightningSettings {
    /// The node's chain: `"bitcoin"`, `"testnet"`, `"signet"` or `"regtest"`.
    pub network: String,
    /// How long each invoice is payable, from its creation (at least the gateway's challenge TTL).
    pub invoice_expiry_secs: u64,
}

/// The asset of every Lightning option: whole satoshis.
pub fn sat_asset() -> Asset {
    Asset { address: CURRENCY.into(), symbol: "SAT".into(), decimals: 0, usd: false, eip712: None }
}

/// The option network of a Lightning node on `network` (`lightning:bitcoin`).
pub fn option_network(network: &str) -> Network {
    Network::Other(format!("lightning:{network}"))
}

/// The chains a node may be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chain {
    Bitcoin,
    Testnet,
    Signet,
    Regtest,
}

impl Chain {
    fn parse(name: &str) -> Option<Chain> {
        match name {
            "bitcoin" => Some(Chain::Bitcoin),
            "testnet" => Some(Chain::Testnet),
            "signet" => Some(Chain::Signet),
            "regtest" => Some(Chain::Regtest),
            _ => None,
        }
    }

    /// The request's `methodDetails.network`. The spec lists `mainnet`, `regtest` and `signet`; testnet is
    /// written `testnet` rather than omitted, because an absent network means mainnet.
    fn wire_name(self) -> &'static str {
        match self {
            Chain::Bitcoin => "mainnet",
            Chain::Testnet => "testnet",
            Chain::Signet => "signet",
            Chain::Regtest => "regtest",
        }
    }

    /// The BOLT11 currency (the invoice prefix: `lnbc`, `lntb`, `lntbs`, `lnbcrt`).
    fn currency(self) -> Currency {
        match self {
            Chain::Bitcoin => Currency::Bitcoin,
            Chain::Testnet => Currency::BitcoinTestnet,
            Chain::Signet => Currency::Signet,
            Chain::Regtest => Currency::Regtest,
        }
    }
}

/// The Lightning rail for one payment option.
#[derive(Debug)]
pub struct LightningMethod {
    option: PaymentOption,
    backend: Arc<dyn LightningBackend>,
    chain: Chain,
    invoice_expiry_secs: u64,
    clock: Arc<dyn Clock>,
}

impl LightningMethod {
    /// Checks that the option is a Lightning one (network `lightning:<settings.network>`, the [`sat_asset`]) and
    /// that the settings are usable. `pay_to` is not used: the payee is whichever node the backend talks to.
    pub fn new(
        option: PaymentOption,
        backend: Arc<dyn LightningBackend>,
        settings: LightningSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OptionError> {
        let err = |problem: String| OptionError { option: option.name.clone(), problem };
        let chain = Chain::parse(&settings.network).ok_or_else(|| {
            err(format!(
                "unknown Lightning network {:?}: expected bitcoin, testnet, signet or regtest",
                settings.network
            ))
        })?;
        if option.network != option_network(&settings.network) {
            return Err(err(format!("a Lightning option's network must be {}", option_network(&settings.network))));
        }
        if option.asset.address != CURRENCY || option.asset.decimals != 0 {
            return Err(err("a Lightning option is priced in sats: asset \"sat\" with 0 decimals".into()));
        }
        if !(1..=MAX_INVOICE_EXPIRY_SECS).contains(&settings.invoice_expiry_secs) {
            return Err(err(format!("invoice_expiry_secs must be between 1 and {MAX_INVOICE_EXPIRY_SECS}")));
        }
        Ok(LightningMethod { option, backend, chain, invoice_expiry_secs: settings.invoice_expiry_secs, clock })
    }

    /// Checks what the node answered before it is offered: a node that hands out someone else's invoice, or one
    /// for another amount, must not make paygate sell at the wrong price.
    fn check_issued(&self, invoice: &Invoice, amount_msat: u64) -> Result<(), Rejection> {
        let garbage = |what: &str| {
            tracing::warn!(option = %self.option.name, problem = what, "the Lightning node answered an unusable invoice");
            Rejection::new(
                RejectKind::ProcessorUnavailable,
                "processor_unavailable",
                format!("the Lightning node's invoice is unusable: {what}"),
            )
        };
        let parsed: Bolt11Invoice = invoice.bolt11.parse().map_err(|_| garbage("it is not a signed BOLT11 invoice"))?;
        if parsed.amount_milli_satoshis() != Some(amount_msat) {
            return Err(garbage("it is for another amount"));
        }
        let hash: &[u8; 32] = parsed.payment_hash().as_ref();
        if *hash != invoice.payment_hash {
            return Err(garbage("its payment hash is not the one the node reported"));
        }
        if parsed.currency() != self.chain.currency() {
            return Err(garbage("it is for another network"));
        }
        if parsed.would_expire(Duration::from_secs(self.clock.now_unix())) {
            return Err(garbage("it has already expired (are the clocks of paygate and the node apart?)"));
        }
        Ok(())
    }
}

/// `sha256` of the preimage in a credential payload, which must be `{preimage: <64 lowercase hex>}`.
fn preimage_hash(payload: &Value) -> Result<[u8; 32], Rejection> {
    let malformed = || {
        Rejection::new(
            RejectKind::MalformedCredential,
            "invalid_payload",
            "the payload needs `preimage`: the invoice's 32-byte preimage as 64 lowercase hex characters",
        )
    };
    let text = payload.get("preimage").and_then(Value::as_str).ok_or_else(malformed)?;
    let preimage = request::lower_hex_32(text).ok_or_else(malformed)?;
    Ok(Sha256::digest(preimage).into())
}

fn invalid_offer(problem: &str) -> Rejection {
    Rejection::new(RejectKind::InvalidChallenge, "offer_mismatch", format!("the echoed Lightning request {problem}"))
}

#[async_trait]
impl PaymentMethod for LightningMethod {
    fn rail(&self) -> &'static str {
        "lightning"
    }

    fn option(&self) -> &PaymentOption {
        &self.option
    }

    fn mpp_method(&self) -> Option<(&'static str, &'static str)> {
        Some((METHOD, INTENT))
    }

    fn terms_per_challenge(&self) -> bool {
        true
    }

    async fn challenge_terms(&self, amount: AtomicAmount) -> Result<Option<MppTerms>, Rejection> {
        let sats = u64::try_from(amount.0).ok().filter(|sats| *sats > 0);
        let amount_msat = sats.and_then(|sats| sats.checked_mul(1000)).ok_or_else(|| {
            Rejection::new(
                RejectKind::Internal,
                "invalid_amount",
                "a Lightning price must be a positive number of sats that fits an invoice",
            )
        })?;
        let invoice = self
            .backend
            .create_invoice(amount_msat, &self.option.name, self.invoice_expiry_secs)
            .await
            .map_err(|e| {
                tracing::warn!(option = %self.option.name, error = %e, "the Lightning node did not create an invoice");
                Rejection::new(
                    RejectKind::ProcessorUnavailable,
                    "processor_unavailable",
                    format!("the Lightning node could not create an invoice: {}", e.summary()),
                )
            })?;
        self.check_issued(&invoice, amount_msat)?;
        let payment_hash = hex::encode(invoice.payment_hash);
        tracing::debug!(option = %self.option.name, %payment_hash, "Lightning invoice created");
        Ok(Some(MppTerms {
            method: METHOD,
            intent: INTENT,
            request: json!({
                "amount": amount.to_string(),
                "currency": CURRENCY,
                "methodDetails": {
                    "invoice": invoice.bolt11,
                    "network": self.chain.wire_name(),
                    "paymentHash": payment_hash,
                },
            }),
        }))
    }

    fn matches_request(&self, request: &Value, amount: AtomicAmount) -> bool {
        request::ChargeOffer::parse(request, self.chain.currency(), self.chain.wire_name())
            .is_ok_and(|offer| u128::from(offer.amount_sats) == amount.0)
    }

    async fn verify(&self, proof: Proof<'_>, amount: AtomicAmount) -> Result<VerifiedPayment, Rejection> {
        let Proof::Mpp { credential } = proof else {
            return Err(Rejection::new(
                RejectKind::MalformedCredential,
                "invalid_payload",
                "this offer is paid with the preimage of a Lightning invoice, in an MPP credential",
            ));
        };
        let challenge = &credential.challenge;
        if challenge.method != METHOD || challenge.intent != INTENT {
            return Err(invalid_offer("is not a lightning charge"));
        }
        let hash = preimage_hash(&credential.payload)?;
        let offer = request::ChargeOffer::parse(&challenge.request, self.chain.currency(), self.chain.wire_name())
            .map_err(invalid_offer)?;
        // Both hashes are public; only the preimage is secret, and it is never compared itself.
        if hash != offer.payment_hash {
            return Err(Rejection::new(
                RejectKind::VerificationFailed,
                "invalid_preimage",
                "the SHA-256 of the preimage is not the invoice's payment hash",
            ));
        }
        if offer.invoice.would_expire(Duration::from_secs(self.clock.now_unix())) {
            let expired_at = offer.invoice.expires_at().map_or(u64::MAX, |at| at.as_secs());
            return Err(Rejection::new(
                RejectKind::PaymentExpired,
                "expired_invoice",
                format!("the invoice expired at {}", paygate_core::clock::rfc3339(expired_at)),
            ));
        }
        let paid = u128::from(offer.amount_sats);
        if paid != amount.0 {
            let kind = if paid < amount.0 { RejectKind::PaymentInsufficient } else { RejectKind::VerificationFailed };
            return Err(Rejection::new(
                kind,
                "amount_mismatch",
                format!("the invoice is for {paid} sat, the price is exactly {amount} sat"),
            ));
        }
        let payment_hash = hex::encode(offer.payment_hash);
        Ok(VerifiedPayment {
            proof_key: format!("lightning:{payment_hash}"),
            payer: PAYER.into(),
            amount,
            settlement: json!({ "payment_hash": payment_hash }),
        })
    }

    async fn settle(&self, payment: &VerifiedPayment) -> SettleOutcome {
        // The preimage was the proof: the money moved before the credential was sent.
        let from_settlement = payment.settlement.get("payment_hash").and_then(Value::as_str);
        let from_key = payment.proof_key.strip_prefix("lightning:");
        match from_settlement.or(from_key).filter(|hash| request::lower_hex_32(hash).is_some()) {
            Some(hash) => SettleOutcome::Settled { reference: hash.to_owned() },
            None => SettleOutcome::Unknown { reason: "the stored payment has no payment hash".into(), reference: None },
        }
    }
}
