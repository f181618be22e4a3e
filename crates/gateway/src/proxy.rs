//! The reverse proxy to the upstream API: streams both bodies, removes hop-by-hop and payment headers, sets
//! `X-Forwarded-*`, and turns connection failures and timeouts into problem responses.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderName};
use http::uri::{PathAndQuery, Uri};
use http::{HeaderMap, HeaderValue, Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::Service;

use paygate_core::reject::{RejectKind, Rejection};

use crate::body::Body;
use crate::credential::CREDENTIAL_HEADERS;
use crate::offers::rejection_response;
use crate::request_id::REQUEST_ID;

/// The address of the client that opened the connection, set by the server as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Set by the server as a request extension when the client connected over TLS: the upstream is then told
/// `X-Forwarded-Proto: https`.
#[derive(Debug, Clone, Copy)]
pub struct ClientTls;

/// A client for one upstream base URL.
#[derive(Debug, Clone)]
pub struct UpstreamProxy {
    inner: Arc<ProxyInner>,
}

#[derive(Debug)]
struct ProxyInner {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The base URL's path, without a trailing slash (`""` for none).
    prefix: String,
    timeout: Duration,
}

/// An upstream URL that cannot be proxied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upstream URL {0:?} must be an absolute http:// or https:// URL")]
pub struct BadUpstream(pub String);

impl UpstreamProxy {
    pub fn new(base_url: &str, timeout: Duration, connect_timeout: Duration) -> Result<Self, BadUpstream> {
        let bad = || BadUpstream(base_url.to_owned());
        let uri: Uri = base_url.parse().map_err(|_| bad())?;
        let scheme = uri
            .scheme()
            .cloned()
            .filter(|s| *s == http::uri::Scheme::HTTP || *s == http::uri::Scheme::HTTPS)
            .ok_or_else(bad)?;
        let authority = uri.authority().cloned().ok_or_else(bad)?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|_| bad())?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build(https);
        Ok(UpstreamProxy {
            inner: Arc::new(ProxyInner {
                client,
                scheme,
                authority,
                prefix: uri.path().trim_end_matches('/').to_owned(),
                timeout,
            }),
        })
    }
}

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID);

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(listed.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

impl ProxyInner {
    async fn forward(&self, mut request: Request<Body>) -> Response<Body> {
        // Only the proxy's own problem bodies need it: a cheap clone of the header, turned into text if one is made.
        let request_id = request.headers().get(X_REQUEST_ID).cloned();
        let request_id = move || request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let path_and_query = request.uri().path_and_query().map_or("/", PathAndQuery::as_str);
        let target = format!("{}{}", self.prefix, path_and_query);
        let uri =
            Uri::builder().scheme(self.scheme.clone()).authority(self.authority.clone()).path_and_query(target).build();
        let Ok(uri) = uri else {
            let rejection =
                Rejection::new(RejectKind::AmbiguousPath, "bad_target", "the request target cannot be forwarded");
            return rejection_response(&rejection, &request_id());
        };

        let client_ip = request.extensions().get::<ClientAddr>().map(|a| a.0.ip());
        let proto = if request.extensions().get::<ClientTls>().is_some() { "https" } else { "http" };
        let headers = request.headers_mut();
        strip_hop_by_hop(headers);
        for name in &CREDENTIAL_HEADERS {
            headers.remove(name);
        }
        // The payer's MPP credential is a bearer instrument; the upstream has no use for it.
        if headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().get(..8).is_some_and(|s| s.eq_ignore_ascii_case("payment ")))
        {
            headers.remove(header::AUTHORIZATION);
        }
        if let Some(host) = headers.remove(header::HOST) {
            headers.insert(X_FORWARDED_HOST, host);
        }
        if let Some(ip) = client_ip {
            let forwarded_for = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
                Some(previous) => format!("{previous}, {ip}"),
                None => ip.to_string(),
            };
            if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
                headers.insert(X_FORWARDED_FOR, value);
            }
        }
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        *request.uri_mut() = uri;
        *request.version_mut() = http::Version::HTTP_11;

        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Ok(Ok(response)) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Body::new(body))
            }
            // The client's own body broke (malformed chunked framing, or the client stopped sending it): its
            // fault, not the upstream's.
            Ok(Err(e)) if client_body_failed(&e) => {
                tracing::info!(error = %e, "the request body could not be read");
                let rejection = Rejection::new(
                    RejectKind::MalformedRequest,
                    "body_unreadable",
                    "the request body could not be read (its framing is malformed, or it was cut off)",
                );
                rejection_response(&rejection, &request_id())
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "upstream request failed");
                let rejection = Rejection::new(
                    RejectKind::UpstreamUnavailable,
                    "upstream_unavailable",
                    "the upstream API could not be reached; nothing was charged",
                );
                rejection_response(&rejection, &request_id())
            }
            Err(_) => {
                let rejection = Rejection::new(
                    RejectKind::UpstreamTimeout,
                    "upstream_timeout",
                    "the upstream API did not answer in time; nothing was charged",
                );
                rejection_response(&rejection, &request_id())
            }
        }
    }
}

/// Whether the upstream request failed because the request body it was streaming failed: hyper reports an error of
/// the body it sends as a "user" error.
fn client_body_failed(err: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_user) {
            return true;
        }
        source = e.source();
    }
    false
}

impl Service<Request<Body>> for UpstreamProxy {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { Ok(inner.forward(request).await) })
    }
}
