//! The payment-method plug-in interface.
//!
//! A *rail* (EIP-3009 authorizations, a Stripe card, a Lightning invoice, ...) is one implementation of
//! [`PaymentMethod`], instantiated once per configured [`PaymentOption`] (rail + network + asset + recipient).
//! The gateway asks it for the terms of an offer in each protocol's framing, hands it the proof a client sent
//! back, and later asks it to settle. Everything protocol-generic (challenge binding, expiry, route scope,
//! replay claims, receipts) stays in the gateway, so a new rail is one module and one registry line.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use paygate_proto::{mpp, x402};

use crate::channel::{Channel, ChannelBook, ChannelBookError};
use crate::money::AtomicAmount;
use crate::network::Network;
use crate::reject::{RejectKind, Rejection};

/// The EIP-712 domain name and version of a token, which differ per chain (`"USD Coin"` on Base, `"USDC"` on
/// Base Sepolia).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eip712Domain {
    pub name: String,
    pub version: String,
}

/// A token an offer is priced in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// Contract address, EIP-55 checksummed.
    pub address: String,
    pub symbol: String,
    pub decimals: u8,
    /// A USD stablecoin: `$` prices are paid in it one to one.
    pub usd: bool,
    /// Present when the token implements EIP-3009.
    pub eip712: Option<Eip712Domain>,
}

/// One way the seller accepts money, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentOption {
    /// The operator's name for it (`usdc-base`), used in routes, the ledger and metrics.
    pub name: String,
    pub network: Network,
    pub asset: Asset,
    /// The seller's address.
    pub pay_to: String,
    /// How long a payer has to complete payment (x402 `maxTimeoutSeconds`).
    pub max_timeout_secs: u64,
}

/// An offer in MPP terms: the challenge's method, intent and request object (the binding is the gateway's).
#[derive(Debug, Clone, PartialEq)]
pub struct MppTerms {
    pub method: &'static str,
    pub intent: &'static str,
    pub request: Value,
}

/// The proof of payment a client sent, in the framing it came in.
#[derive(Debug, Clone, Copy)]
pub enum Proof<'a> {
    /// x402 (v2 `PAYMENT-SIGNATURE` or v1 `X-PAYMENT`): the scheme `payload`.
    X402 { version: u32, payload: &'a Value },
    /// MPP `Authorization: Payment`: the credential, whose echoed challenge some rails bind into the proof.
    Mpp { credential: &'a mpp::Credential },
    /// Pay first, prove later: the hash of a transfer the payer already made (`X-402-Payment-Proof`,
    /// `x-402-payment`, `X-Payment-Hash`), with what the payer says it pays when the dialect says it.
    TxHash(&'a TxHashProof),
}

/// A transfer a payer made and names by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxHashProof {
    /// The header it came in, for the ledger (`x-402-payment-proof`).
    pub dialect: &'static str,
    pub tx_hash: String,
    pub network: Option<String>,
    pub token: Option<String>,
    pub amount: Option<String>,
}

/// A proof that checked out, ready to be claimed and settled.
///
/// `settlement` is what the rail needs to settle later (for EIP-3009 the signed authorization); it is stored in
/// the ledger so that a settlement interrupted by a crash can be finished by the reconciler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifiedPayment {
    /// The money itself, unique across all instances: `eip155:8453:<payer>:<nonce>`, a tx hash, a payment hash.
    pub proof_key: String,
    pub payer: String,
    pub amount: AtomicAmount,
    pub settlement: Value,
}

/// How a settlement ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleOutcome {
    /// The money moved; `reference` is the transaction hash or the rail's id for it.
    Settled { reference: String },
    /// The money definitely did not move (the transaction reverted, the facilitator refused).
    Failed { reason: String, reference: Option<String> },
    /// Nobody knows yet (a timeout after broadcasting): the ledger marks it `pending` for reconciliation.
    Unknown { reason: String, reference: Option<String> },
    /// Accepted by the node (simulated, then taken into its pool) and not waited for, as the option's
    /// `wait = "submitted"` asks: the answer goes out with the receipt, and the ledger marks it `pending` for the
    /// reconciler to confirm from the chain.
    Submitted { reference: String },
    /// Certainly nothing was sent to be broadcast (the facilitator could not be reached, the node refused the
    /// transaction before taking it): nothing moved and nothing can move later, so the request is refused with
    /// `refusal` and the payer may send the same proof again.
    NotSent { refusal: Rejection },
}

/// Where a rail writes down what it is about to broadcast, before it does: the gateway records the reference
/// (a transaction hash) in the ledger, so that after a crash the reconciler knows what to look for and never
/// broadcasts the same payment twice.
#[async_trait]
pub trait SettleJournal: Send + Sync {
    /// Records `reference` as the payment's settlement; an error means it was not recorded, and the rail must
    /// then not broadcast.
    async fn broadcasting(&self, reference: &str) -> Result<(), String>;

    /// The node refused what [`SettleJournal::broadcasting`] recorded: nothing was broadcast, forget it.
    async fn not_broadcast(&self);

    /// Records the payment settled as `reference` in the same store write as its channel's compare-and-swap from
    /// version `expected` to `next`: the settlement of a rail that settles in the store
    /// ([`PaymentMethod::settles_in_store`]) and its ledger row change together or not at all. `Ok(false)`: the
    /// channel changed since, nothing written. `Err`: nothing written. A journal that keeps no ledger writes the
    /// swap alone.
    async fn settled_with_channel(
        &self,
        book: &dyn ChannelBook,
        expected: i64,
        next: &Channel,
        _reference: &str,
    ) -> Result<bool, ChannelBookError> {
        book.swap_channel(expected, next).await
    }
}

/// Claims a payment (writes its ledger row) in the same store write as its channel's reservation: a rail that
/// holds in the store ([`PaymentMethod::claim_and_hold`]) pays one write for both.
#[async_trait]
pub trait ClaimJournal: Send + Sync {
    /// Writes the claim and the channel's compare-and-swap from version `expected` to `next`, both or neither.
    /// `Ok(false)`: the channel changed since, nothing written. `Err`: nothing written, and trying again would not
    /// help (the proof is already claimed, or the store failed): the payment is claimed the usual way.
    async fn claimed_with_channel(&self, expected: i64, next: &Channel) -> Result<bool, ChannelBookError>;
}

/// A journal that records nothing, for settlements nobody will reconcile (tests, one-off tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJournal;

#[async_trait]
impl SettleJournal for NoJournal {
    async fn broadcasting(&self, _reference: &str) -> Result<(), String> {
        Ok(())
    }

    async fn not_broadcast(&self) {}
}

/// What the chain or processor says of a payment whose settlement outcome the ledger does not know (it is
/// `pending`, or a gateway died while it was `settling`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettlementStatus {
    /// The money moved; `reference` is the transaction (empty when it cannot be found).
    Settled { reference: String },
    /// The money did not move and never will (the authorization expired unused, the transaction reverted).
    Failed { reason: String },
    /// A broadcast may still land: ask again later, do not broadcast again.
    InFlight,
    /// Certainly nothing was broadcast and the proof is still good: settle it now.
    Retry,
    /// The rail cannot tell (its processor is unreachable, or it has no way to ask).
    Unknown { reason: String },
}

/// A payment rail bound to one [`PaymentOption`].
#[async_trait]
pub trait PaymentMethod: Send + Sync + Debug {
    /// The rail's name in the ledger and metrics (`eip3009`).
    fn rail(&self) -> &'static str;

    /// The option this instance serves.
    fn option(&self) -> &PaymentOption;

    /// The x402 v2 `accepts[]` entry for `amount`, if the rail speaks x402. The gateway adds its binding to
    /// `extra` and derives the v1 form.
    fn x402_requirements(&self, _amount: AtomicAmount) -> Option<x402::PaymentRequirements> {
        None
    }

    /// The MPP method, intent and request for `amount` when they are the same for every request (computed once
    /// per route). `None` for rails without MPP, or whose terms are made per challenge.
    fn mpp_terms(&self, _amount: AtomicAmount) -> Option<MppTerms> {
        None
    }

    /// The MPP `(method, intent)` of this rail's challenges, if it speaks MPP. Rails with per-challenge terms
    /// must say it here; the default reads it from [`PaymentMethod::mpp_terms`].
    fn mpp_method(&self) -> Option<(&'static str, &'static str)> {
        self.mpp_terms(AtomicAmount(0)).map(|terms| (terms.method, terms.intent))
    }

    /// Whether the MPP terms are made for each challenge ([`PaymentMethod::challenge_terms`]), such as a
    /// Lightning invoice per 402.
    fn terms_per_challenge(&self) -> bool {
        false
    }

    /// The MPP terms of one challenge, for rails whose [`PaymentMethod::terms_per_challenge`] is true. Called
    /// for every 402 that offers this rail.
    async fn challenge_terms(&self, _amount: AtomicAmount) -> Result<Option<MppTerms>, Rejection> {
        Ok(None)
    }

    /// Whether an MPP `request` echoed by a client (its challenge id already checked) is this option's offer of
    /// `amount`. Rails with per-challenge terms check the fields that must not change.
    fn matches_request(&self, request: &Value, amount: AtomicAmount) -> bool {
        self.mpp_terms(amount).is_some_and(|terms| terms.request == *request)
    }

    /// Plain headers that pay-first dialects read from the 402 (`X-402-Amount`, `X-Payment-PayTo`, ...).
    fn dialect_headers(&self, _amount: AtomicAmount, _expires_unix: u64) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Whether this rail takes tx-hash proofs.
    fn accepts_tx_hash(&self) -> bool {
        false
    }

    /// Checks a proof against the offer of `amount`: locally first, then against the chain or processor. Has no
    /// side effect: nothing is moved, and a verified proof may still be refused later as a replay.
    async fn verify(&self, proof: Proof<'_>, amount: AtomicAmount) -> Result<VerifiedPayment, Rejection>;

    /// Moves the money. Called at most once per claim. Rails whose payer already moved it (a tx-hash proof)
    /// answer `Settled` with its reference.
    async fn settle(&self, payment: &VerifiedPayment) -> SettleOutcome;

    /// [`PaymentMethod::settle`], writing the broadcast's reference to `journal` before broadcasting. Rails that
    /// broadcast nothing of their own keep the default.
    async fn settle_recorded(&self, payment: &VerifiedPayment, _journal: &dyn SettleJournal) -> SettleOutcome {
        self.settle(payment).await
    }

    /// Finds out what became of a settlement whose outcome was not recorded; `reference` is what the journal
    /// recorded, if anything. The default cannot tell.
    async fn settlement_status(&self, _payment: &VerifiedPayment, _reference: Option<&str>) -> SettlementStatus {
        SettlementStatus::Unknown { reason: format!("the {} rail cannot be reconciled", self.rail()) }
    }

    /// The key [`VerifiedPayment::proof_key`] of a proof, read without IO, so that a proof the chain already
    /// took can be found in the ledger. `None` when the proof is unreadable or the rail does not say.
    fn proof_key(&self, _proof: Proof<'_>) -> Option<String> {
        None
    }

    /// Holds what a claimed payment pays for while its request runs: a channel reserves the call's price from its
    /// deposit with one compare-and-swap, so that racing requests never spend more than the deposit. Called once,
    /// right after the claim; a refusal voids the claim (nothing held, nothing charged). What is held is taken by
    /// `settle` or given back by `release`. Most rails hold nothing here.
    async fn hold(&self, _payment: &VerifiedPayment) -> Result<(), Rejection> {
        Ok(())
    }

    /// Claims the payment through `journal` and holds what it pays for in the same write, when the channel
    /// accepts the call: `true` when both are written. `false` when nothing
    /// was: the caller claims, then [`PaymentMethod::hold`]s, the usual way, which also words any refusal.
    async fn claim_and_hold(&self, _payment: &VerifiedPayment, _journal: &dyn ClaimJournal) -> bool {
        false
    }

    /// Undoes what `verify` or `hold` holds for a payment whose request failed upstream, so nothing stays
    /// reserved (a card authorization is cancelled, a channel's reservation given back). Most rails hold nothing.
    async fn release(&self, _payment: &VerifiedPayment) {}

    /// What an x402 `PAYMENT-RESPONSE` for a settled payment says beyond success, network and payer, when the
    /// scheme defines more than the settlement's reference (x402 `batch-settlement`: the charged amount and the
    /// channel's state). `None`: the reference is the transaction, and nothing else is said.
    fn x402_receipt(&self, _payment: &VerifiedPayment, _reference: &str) -> Option<X402Receipt> {
        None
    }

    /// Whether the rail can charge less than the amount it verified (a channel's call, an x402 `upto`): then a
    /// route priced by its response ([`VerifiedPayment::amount`] lowered to what the call used before `settle`)
    /// charges what was used; other rails charge the amount verified, the route's maximum.
    fn charges_usage(&self) -> bool {
        false
    }

    /// Whether a settlement is a change of a channel in the store, made together with the payment's ledger row
    /// through [`SettleJournal::settled_with_channel`]: then the row is not moved to `settling` first, as it is
    /// for a settlement that leaves the store (a transaction, a card charge), whose outcome a crash can hide.
    fn settles_in_store(&self) -> bool {
        false
    }

    /// What an MPP `Payment-Receipt` adds for this rail beyond its method, reference and challenge (a session's
    /// `intent`, channel and amounts), given the settlement's reference.
    fn mpp_receipt(&self, _payment: &VerifiedPayment, _reference: &str) -> Vec<(&'static str, Value)> {
        Vec::new()
    }

    /// Channel management a credential asks for instead of paying a call (an MPP session's `topUp` or `close`,
    /// and its `open` or `voucher` sent with no request of its own, `asked` [`Asked::CredentialOnly`]): `None`
    /// when the proof pays a call. The rail does it; the gateway answers 204 with a receipt, claims nothing and
    /// never calls the upstream.
    async fn manage(&self, _proof: Proof<'_>, _asked: Asked) -> Option<Result<Managed, Rejection>> {
        None
    }

    /// Whether a call paid on this rail can be paid as it is delivered: a metered stream over a session, whose
    /// parts are reserved one by one ([`PaymentMethod::hold_more`]) and whose payer signs more while it runs. A
    /// 402 then quotes such a stream one part, not its maximum.
    fn pays_streams(&self) -> bool {
        false
    }

    /// Resolves when a voucher may have arrived for the paused call `payment`: a rail that takes vouchers in
    /// this process wakes its waiters at once. The default never resolves: the engine bounds every wait, and sees
    /// vouchers another instance took when it ends.
    async fn voucher_arrival(&self, _payment: &VerifiedPayment) {
        std::future::pending::<()>().await;
    }

    /// Reserves `more` on top of what a call paid as it is delivered holds, just before that part is sent; what
    /// the payer must sign first when its vouchers or deposit do not cover it. `settle` later charges what was
    /// delivered. Only rails that [`PaymentMethod::pays_streams`] are asked.
    async fn hold_more(&self, _payment: &VerifiedPayment, _more: AtomicAmount) -> Result<(), NotHeldMore> {
        Err(NotHeldMore::Stopped(Rejection::new(
            RejectKind::VerificationFailed,
            "stream_not_payable",
            format!("the {} rail does not pay streams", self.rail()),
        )))
    }

    /// Settles on chain, in one batch, what the rail charged without settling each call (a channel's vouchers):
    /// when its schedule says so, or `now`. The reconciler's loop calls it on every pass. Most rails settle per
    /// call and have nothing here.
    async fn settle_accepted(&self, _now: bool) -> Result<BatchSettled, String> {
        Ok(BatchSettled::default())
    }
}

/// What a request that carries a credential asks for ([`PaymentMethod::manage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// The resource: a call to pay.
    Resource,
    /// Nothing but what its credential does: a `POST` with no body and no query (how MPP clients send a voucher
    /// while a stream waits for it, or open a channel ahead of their calls).
    CredentialOnly,
}

/// Why a call paid as it is delivered cannot reserve its next part ([`PaymentMethod::hold_more`]).
#[derive(Debug, Clone, PartialEq)]
pub enum NotHeldMore {
    /// The payer must sign more first (and top up when `required_cumulative` passes the deposit): what an MPP
    /// `payment-need-voucher` event says.
    Voucher(VoucherNeeded),
    /// The call cannot go on (its channel is gone or closing, the store failed).
    Stopped(Rejection),
}

/// What a payer must sign for a paused stream to go on: amounts in atomic units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherNeeded {
    pub channel_id: String,
    /// The cumulative amount the next voucher must allow.
    pub required_cumulative: u128,
    /// The highest cumulative amount accepted so far.
    pub accepted_cumulative: u128,
    pub deposit: u128,
}

impl VoucherNeeded {
    /// The `data` of a `payment-need-voucher` event (amounts as decimal strings).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "channelId": self.channel_id,
            "requiredCumulative": self.required_cumulative.to_string(),
            "acceptedCumulative": self.accepted_cumulative.to_string(),
            "deposit": self.deposit.to_string(),
        })
    }
}

/// What one batch settlement did ([`PaymentMethod::settle_accepted`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchSettled {
    /// Channels whose charged value was claimed.
    pub channels: usize,
    /// Atomic units newly claimed.
    pub claimed: u128,
    /// Atomic units given back to payers of idle channels.
    pub refunded: u128,
    /// The transactions sent, in order.
    pub transactions: Vec<String>,
}

/// Channel management done ([`PaymentMethod::manage`]): the receipt's reference (a transaction, or the channel)
/// and what else it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Managed {
    pub reference: String,
    pub receipt: Vec<(&'static str, Value)>,
}

/// The scheme-specific part of an x402 `PAYMENT-RESPONSE` ([`PaymentMethod::x402_receipt`]).
#[derive(Debug, Clone, PartialEq)]
pub struct X402Receipt {
    pub transaction: String,
    pub amount: Option<String>,
    pub extra: Option<Value>,
}
