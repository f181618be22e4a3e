//! paygate's domain, independent of HTTP, chains and storage.
//!
//! * [`money`]: integer atomic amounts and exact decimal prices (`"$0.04"`), converted once at config load.
//! * [`network`]: CAIP-2 network ids.
//! * [`binding`]: the HMAC challenge id that binds a 402's offer to the request, its route, its body and its
//!   expiry, so a paid retry can be checked statelessly.
//! * [`digest`]: the request-body digest MPP challenges carry.
//! * [`method`]: the [`PaymentMethod`](method::PaymentMethod) trait every payment rail implements, the
//!   [`Offer`](method::PaymentOption) it prices, and what verification and settlement return.
//! * [`reject`]: every way a paid request can be refused, with its HTTP status and stable problem type.
//! * [`registry`]: built-in networks and assets (Base, Base Sepolia, Ethereum, Polygon, Tempo, anvil).
//! * [`clock`]: wall-clock time, injectable for tests.
//! * [`secret`]: secrets from configuration, which never print.
//! * [`error`]: an error printed with its causes.
//! * [`channel`]: payment channels (escrowed deposits paid by vouchers): their accounting and where they are kept.
//! * [`channel_journal`]: the transactions channel settlers send, journaled before they are broadcast.
//!
//! Architecture invariant: money is `u128` atomic units everywhere; no float carries an amount.

pub mod binding;
pub mod channel;
pub mod channel_cache;
pub mod channel_journal;
pub mod clock;
pub mod digest;
pub mod error;
pub mod method;
pub mod money;
pub mod network;
pub mod registry;
pub mod reject;
pub mod secret;
