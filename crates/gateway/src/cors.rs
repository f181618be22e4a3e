//! CORS for browser clients: they must be able to send the payment headers and read the offers and receipts.
//!
//! tower-http's `Cors` answers every `OPTIONS` request itself as if it were a preflight. An `OPTIONS` request that
//! is not a preflight (no `Origin`, or no `Access-Control-Request-Method`) belongs to the upstream API, which may
//! answer it (`Allow`, WebDAV, its own CORS): [`CorsLayer`] sends only real preflights to `Cors` and lets every
//! other `OPTIONS` through to the service behind it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderName, Method, Request, header};
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Cors};

/// CORS for the configured origins, preflights only for real preflights.
#[derive(Debug, Clone)]
pub struct CorsLayer {
    cors: tower_http::cors::CorsLayer,
}

impl CorsLayer {
    /// The layer for `origins` (`*` for any); `None` when no origin is configured.
    pub fn new(origins: &[String]) -> Option<CorsLayer> {
        if origins.is_empty() {
            return None;
        }
        let allow_origin = if origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
        };
        let cors = tower_http::cors::CorsLayer::new()
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
            .max_age(std::time::Duration::from_secs(600));
        Some(CorsLayer { cors })
    }
}

fn names(list: &[&'static str]) -> Vec<HeaderName> {
    list.iter().map(|n| HeaderName::from_static(n)).collect()
}

impl<S: Clone> Layer<S> for CorsLayer {
    type Service = CorsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CorsService { cors: self.cors.layer(inner.clone()), inner }
    }
}

/// The service [`CorsLayer`] makes.
#[derive(Debug, Clone)]
pub struct CorsService<S> {
    cors: Cors<S>,
    inner: S,
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method` (the Fetch standard's).
fn is_preflight<B>(request: &Request<B>) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ORIGIN)
        && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

impl<S, B> Service<Request<B>> for CorsService<S>
where
    S: Service<Request<B>> + Clone,
    Cors<S>: Service<Request<B>, Response = S::Response, Error = S::Error>,
    <Cors<S> as Service<Request<B>>>::Future: Unpin,
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = CorsFuture<<Cors<S> as Service<Request<B>>>::Future, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        std::task::ready!(self.cors.poll_ready(cx))?;
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.method() == Method::OPTIONS && !is_preflight(&request) {
            return CorsFuture::Direct(self.inner.call(request));
        }
        CorsFuture::Cors(self.cors.call(request))
    }
}

/// The future of [`CorsService`]: through `Cors`, or straight to the service behind it.
#[derive(Debug)]
pub enum CorsFuture<C, D> {
    Cors(C),
    Direct(D),
}

impl<C, D, T> Future for CorsFuture<C, D>
where
    C: Future<Output = T> + Unpin,
    D: Future<Output = T> + Unpin,
{
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            CorsFuture::Cors(future) => Pin::new(future).poll(cx),
            CorsFuture::Direct(future) => Pin::new(future).poll(cx),
        }
    }
}
