//! The paying gateway.
//!
//! * [`engine`]: the paid-request flow, [`Gateway::handle`](engine::Gateway::handle).
//! * [`layer`]: [`PaygateLayer`](layer::PaygateLayer), the flow as a tower layer for any axum app.
//! * [`proxy`]: [`UpstreamProxy`](proxy::UpstreamProxy), the reverse proxy `paygate serve` puts behind it.
//! * [`server`] and [`tls`]: the HTTP server with graceful shutdown, and rustls for it.
//! * [`config`] and [`build`]: the operator's TOML, checked, and how it becomes a gateway (its options built by
//!   their rails, `paygate_methods::registry`).
//! * [`admin`]: the admin listener's metrics, health and admin API.
//! * [`facilitator`]: `paygate facilitator`, the x402 facilitator API over the configured networks.
//! * [`reconciler`]: finishes settlements a timeout or a crash left undecided.
//! * [`api_keys`]: API-key customers beside paying agents.
//! * [`pricing`]: per-unit prices computed from the request; [`price_hook`]: prices asked of the operator's service.
//! * [`usage`]: free calls and usage tiers, counted per client IP or payer per period in the store.
//! * [`limits`]: rate limits per client address and per payer.
//! * [`cors`]: CORS for browser clients, answering real preflights only.
//! * `identifier`: x402 payment identifiers, the answer of a paid request kept for a client that sends it again.
//! * `head_refusals` and `request_id`: a problem body and a request id on every answer, hyper's own included.
//! * [`offers`], [`credential`], [`routes`]: the 402 and its binding, reading credentials, matching routes.

pub mod admin;
pub mod api_keys;
pub mod body;
pub mod build;
pub mod config;
pub mod cors;
pub mod credential;
pub mod engine;
pub mod facilitator;
mod head_refusals;
mod identifier;
pub mod layer;
pub mod limits;
pub mod metrics;
pub mod offers;
mod payment;
pub mod price_hook;
pub mod pricing;
pub mod proxy;

pub mod reconciler;
mod request_id;
pub mod routes;
pub mod server;
pub mod tls;
pub mod usage;

pub use build::{BuildOptions, Built, build};
pub use config::Config;
pub use cors::CorsLayer;
pub use engine::Gateway;
pub use layer::PaygateLayer;
pub use proxy::UpstreamProxy;
