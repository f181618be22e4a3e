//! The HTTP server: accepts connections (HTTP/1.1 and h2c, or both over TLS with ALPN), tags each request with
//! the client's address, and shuts down gracefully, letting in-flight requests (and their settlements) finish.
//! Requests hyper refuses before any service sees them (heads it cannot parse or that are too large) get a
//! problem body too (`head_refusals.rs`).

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::{Service, ServiceExt};

use crate::body::Body;
use crate::head_refusals::HeadRefusals;
use crate::proxy::{ClientAddr, ClientTls};
use crate::request_id::REQUEST_IDS;

/// How long a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `service` on `listener` until `shutdown` completes, then drains connections.
pub async fn serve<S>(listener: TcpListener, service: S, shutdown: impl Future<Output = ()>) -> std::io::Result<()>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    serve_with(listener, Listening::default(), service, shutdown).await
}

/// A connection's IO as hyper takes it, with problem bodies for the heads it refuses.
fn io<T>(stream: T) -> HeadRefusals<TokioIo<T>> {
    HeadRefusals::new(TokioIo::new(stream), &REQUEST_IDS)
}

/// How connections are taken.
#[derive(Clone)]
pub struct Listening {
    /// TLS, when given (the handshake runs in each connection's task).
    pub tls: Option<TlsAcceptor>,
    /// Largest request head of HTTP/1.1 (at least 8 KiB) and header list of HTTP/2.
    pub max_header_bytes: usize,
}

impl Default for Listening {
    fn default() -> Self {
        Listening { tls: None, max_header_bytes: 64 * 1024 }
    }
}

/// [`serve`] with these [`Listening`] options.
pub async fn serve_with<S>(
    listener: TcpListener,
    listening: Listening,
    service: S,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper refuses buffers under 8 KiB.
    builder.http1().max_buf_size(listening.max_header_bytes.max(8192)).timer(hyper_util::rt::TokioTimer::new());
    builder.http2().max_header_list_size(u32::try_from(listening.max_header_bytes).unwrap_or(u32::MAX));
    builder.http1().header_read_timeout(Duration::from_secs(30));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let over_tls = listening.tls.is_some();
        let service = service.clone().map_request(move |request: Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ClientAddr(remote));
            if over_tls {
                request.extensions_mut().insert(ClientTls);
            }
            request
        });
        let service = TowerToHyperService::new(service);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = listening.tls.clone();
        tokio::spawn(async move {
            let served = match tls {
                None => watcher.watch(builder.serve_connection_with_upgrades(io(stream), service).into_owned()).await,
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => return tracing::debug!("TLS handshake timed out"),
                    };
                    watcher.watch(builder.serve_connection_with_upgrades(io(stream), service).into_owned()).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("in-flight requests did not finish in time"),
    }
    Ok(())
}
