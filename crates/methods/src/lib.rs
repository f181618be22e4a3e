//! Payment rails, one module each, each implementing [`paygate_core::method::PaymentMethod`].
//!
//! * [`eip3009`]: a signed EIP-3009 `transferWithAuthorization`, the payload of both x402 `exact` on EVM and
//!   MPP `evm`/`charge`: one verification path serves both protocols.
//! * [`batch_settlement`]: x402 `batch-settlement` channels: one escrowed deposit, then a voucher per call checked
//!   locally, settled in batches.
//! * [`txhash`]: pay first, prove with the transfer's hash (the `X-402-*` header dialects).
//! * [`tempo`]: MPP `tempo` charges of TIP-20 stablecoins on Tempo.
//! * [`stripe`]: MPP `stripe` charges of Shared Payment Tokens through the Stripe API.
//! * [`lightning`]: MPP `lightning` charges of BOLT11 invoices, proven by their preimage.
//! * [`facilitator`]: the client of an x402 facilitator (`/verify`, `/settle`, `/supported`), one way a rail
//!   can settle.
//! * [`rail`], [`registry`] and [`network`]: the plug-in interface (a rail's `[[accept]]` fields and how they
//!   build its method), the one list of rails, and the networks rails pay on.
//!
//! Adding a rail is a new module here and one line in [`registry::RAILS`] (`docs/adding-a-rail.md`).

pub mod batch_settlement;
pub mod cdp;
mod channel_call;
mod channel_journal;
pub mod eip3009;
pub mod evm_session;
pub mod facilitator;
pub mod lightning;
pub mod network;
pub mod rail;
pub mod registry;
pub mod stripe;
pub mod tempo;
#[cfg(feature = "test-rail")]
pub mod test_rail;
pub mod txhash;
pub mod upto;
