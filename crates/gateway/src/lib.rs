//! The paying gateway.
//!
//! * [`engine`]: the paid-request flow, [`Gateway::handle`](engine::Gateway::handle).
//! * [`layer`]: [`PaygateLayer`](layer::PaygateLayer), the flow as a tower layer for any axum app.
//! * [`proxy`]: [`UpstreamProxy`](proxy::UpstreamProxy), the reverse proxy `paygate serve` puts behind it.
//! * [`server`] and [`tls`]: the HTTP server with graceful shutdown, and rustls for it.
//! * [`config`], [`build`] and `rails`: the operator's TOML, how it becomes a gateway, and the rail registry.
//! * [`admin`]: the admin listener's metrics, health and admin API.
//! * [`facilitator`]: `paygate facilitator`, the x402 facilitator API over the configured networks.
//! * [`reconciler`]: finishes settlements a timeout or a crash left undecided.
//! * [`api_keys`]: API-key customers beside paying agents.
//! * [`pricing`]: per-unit prices computed from the request; [`price_hook`]: prices asked of the operator's service.
//! * [`usage`]: free calls and usage tiers, counted per client IP or payer per period in the store.
//! * [`limits`]: rate limits per client address and per payer.
//! * [`offers`], [`credential`], [`routes`]: the 402 and its binding, reading credentials, matching routes.

pub mod admin;
pub mod api_keys;
pub mod body;
pub mod build;
pub mod config;
pub mod credential;
pub mod engine;
pub mod facilitator;
pub mod layer;
pub mod limits;
pub mod metrics;
pub mod offers;
pub mod price_hook;
pub mod pricing;
pub mod proxy;
mod rails;
pub mod reconciler;
pub mod routes;
pub mod server;
pub mod tls;
pub mod usage;

pub use build::{BuildOptions, Built, build};
pub use config::Config;
pub use engine::Gateway;
pub use layer::PaygateLayer;
pub use proxy::UpstreamProxy;

use tower_http::cors::{AllowOrigin, CorsLayer};

/// CORS for browser clients: they must be able to send the payment headers and read the offers and receipts.
pub fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    let names = |list: &[&'static str]| list.iter().map(|n| http::HeaderName::from_static(n)).collect::<Vec<_>>();
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods(tower_http::cors::Any)
            .allow_headers(names(&[
                "authorization",
                "content-type",
                "payment-signature",
                "x-payment",
                "payment-authorization",
                "access-control-expose-headers",
                "accept-payment",
                "x-request-id",
                "x-402-payment-proof",
                "x-402-payment",
                "x-payment-hash",
                crate::usage::PAYER_HINT,
            ]))
            .expose_headers(names(&[
                "www-authenticate",
                "payment-required",
                "payment-response",
                "x-payment-response",
                "payment-receipt",
                "paygate-settlement",
                crate::usage::FREE_CALLS_LEFT,
                "x-request-id",
                "x-402-version",
                "x-402-amount",
                "x-402-currency",
                "x-402-network",
                "x-402-token",
                "x-402-receiver",
                "x-402-expires",
                "x-payment-payto",
                "x-payment-amount",
            ]))
            .max_age(std::time::Duration::from_secs(600)),
    )
}
