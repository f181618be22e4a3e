//! The paying gateway: a tower layer that puts a price on the routes of any service ([`PaygateLayer`]), the
//! reverse proxy `paygate serve` puts behind it ([`UpstreamProxy`]), the server, and `paygate facilitator`.
//!
//! ```no_run
//! # async fn sell() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use paygate_gateway::{BuildOptions, Config, PaygateLayer, UpstreamProxy, build, server};
//! use tower::Layer as _;
//!
//! let config = Config::load(std::path::Path::new("paygate.toml"))?;
//! let built = build(&config, "paygate.toml", BuildOptions::default()).await?;
//! let upstream = UpstreamProxy::new(&config.upstream.url, std::time::Duration::from_secs(30), std::time::Duration::from_secs(5))?;
//! let service = PaygateLayer::new(built.gateway).layer(upstream);
//! let listener = tokio::net::TcpListener::bind(&config.server.listen).await?;
//! server::serve(listener, service, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! The modules, in the order a request meets them (`docs/ARCHITECTURE.md` draws it):
//!
//! * `server`, `head_refusals`, `request_id`: connections, hyper's own refusals made problems, request ids;
//! * `cors`: CORS for browser clients, answering real preflights only;
//! * `layer` and `engine`: the paid flow, a pipeline of steps (`engine/`); `payment`: every ledger change of a
//!   claimed payment; `identifier`: x402 payment identifiers;
//! * `offers`, `credential`, `routes`: the 402 and its binding, reading credentials, matching routes;
//! * `pricing`, `price_hook`, `usage`, `limits`, `api_keys`: per-unit prices, the pricing hook, free calls and
//!   tiers, rate limits, API-key customers;
//! * `proxy`: the reverse proxy to the upstream;
//! * `config` and `build`: the operator's TOML, checked, and how it becomes a gateway (each option built by its
//!   rail, `paygate_methods::registry`);
//! * `reconciler`, `admin`, `metrics`, `facilitator`, `tls`: what runs beside requests.

#![warn(unreachable_pub)]

mod admin;
pub mod api_keys;
mod body;
mod build;
pub mod config;
mod cors;
mod credential;
mod discovery;
mod engine;
mod facilitator;
mod head_refusals;
mod identifier;
mod layer;
mod limits;
mod mcp;
mod meter;
mod metrics;
mod offers;
mod payment;
mod paywall;
mod price_hook;
mod pricing;
mod proxy;
mod reconciler;
mod request_id;
mod routes;
pub mod server;
pub mod tls;
mod usage;

pub use admin::{Admin, router as admin_router};
pub use body::Body;
pub use build::{BuildOptions, Built, build};
pub use config::{Config, ConfigError};
pub use cors::CorsLayer;
pub use credential::{Presented, extract as extract_credential};
pub use engine::{Gateway, Inner, Route};
pub use facilitator::{Facilitator, router as facilitator_router};
pub use layer::{PaygateLayer, PaygateService};
pub use mcp::tool_call_request as mcp_tool_call_request;
pub use metrics::{Metrics, Outcome, Phase};
pub use proxy::{BadUpstream, ClientAddr, ClientTls, UpstreamProxy};
pub use reconciler::{Reconciled, Reconciler};
pub use usage::{PayerTiers, period_start};
