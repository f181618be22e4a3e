//! The buyer's side of paygate: an HTTP client that answers a 402 by itself.
//!
//! On a 402 the [`PayingClient`] reads every offer (x402 v2 header, x402 v1 body, MPP `WWW-Authenticate:
//! Payment` challenges), keeps those it can pay from its local [`Wallet`], lets an [`OfferChooser`] pick one
//! (by default the cheapest in US dollars), checks the owner's [`Policy`] (and an optional confirmation) and
//! records the payment as `pending` in the [`SpendLog`] in one transaction, and only then signs and retries.
//! A payment a crash left `pending` is decided later from the chain by [`reconcile`]. Given a session deposit, it
//! pays MPP `evm` sessions ([`session`]) and x402 `batch-settlement` channels ([`x402_channel`]) from a channel.
//! Money is atomic units and micro-dollars, never floats.

mod channel_refunds;
mod client;
mod offer;
mod payer_channel;
mod policy;
mod reconcile;
pub mod session;
mod session_pay;
mod session_stream;
mod sign;
mod spend;
mod spend_sessions;
mod wallet;
pub mod x402_channel;

pub use client::{CardToken, Confirm, DryRun, OnProgress, Paid, PayError, PayingClient, Payment, Progress, StreamSink};
pub use offer::{AssetBook, KnownAsset, Offer, OfferError, Protocol, parse_offers};
pub use policy::{CheapestOffer, OfferChooser, Policy, PolicyViolation, host_of};
pub use reconcile::{ReconcileError, Reconciled, reconcile};
pub use session_pay::SessionClosed;
pub use sign::{CredentialHeader, SignError, credential};
pub use spend::{SpendError, SpendLog, SpendRecord, SpendState, Spent, now_ms};
pub use spend_sessions::SessionRecord;
pub use wallet::{Wallet, WalletError};

/// The environment variable holding the wallet's hex private key.
pub const WALLET_KEY_ENV: &str = "PAYGATE_WALLET_KEY";
/// The environment variable naming an encrypted keystore file (Web3 Secret Storage v3, as geth, foundry's
/// `cast wallet` and alloy write it); it takes precedence over [`WALLET_KEY_ENV`].
pub const WALLET_KEYSTORE_ENV: &str = "PAYGATE_WALLET_KEYSTORE";
/// The environment variable holding the keystore's password.
pub const WALLET_PASSWORD_ENV: &str = "PAYGATE_WALLET_PASSWORD";
