//! A small upstream API for tests: counts its hits and can be told to fail or to go away.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;

/// How the upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum UpstreamMode {
    Ok = 0,
    /// Every request gets 500.
    Fail = 1,
    /// Every request is answered after three seconds, for tests that need a request in flight.
    Slow = 2,
}

#[derive(Debug, Default)]
struct Shared {
    hits: AtomicUsize,
    mode: AtomicU8,
    /// Token chunks `/v1/stream` produced, over all its streams.
    streamed: AtomicUsize,
}

/// A running upstream on a fixed loopback port, which can be stopped and started again.
#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// The server, and what tells it to stop.
    server: Option<(JoinHandle<()>, tokio::sync::oneshot::Sender<()>)>,
    /// While stopped: the address, bound but not listening, so connections are refused and no concurrent test
    /// can take the port before [`Upstream::resume`].
    parked: Option<TcpSocket>,
}

impl Upstream {
    /// Starts on a port the kernel picks (bound once and kept, so no concurrent test can race for it).
    pub async fn start() -> Upstream {
        Self::serving(bind(SocketAddr::from(([127, 0, 0, 1], 0)))).await
    }

    /// Starts on `addr` (a port an example config names).
    pub async fn start_on(addr: SocketAddr) -> Upstream {
        Self::serving(bind(addr)).await
    }

    async fn serving(socket: TcpSocket) -> Upstream {
        let addr = socket.local_addr().expect("a bound address");
        let mut upstream = Upstream { addr, shared: Arc::default(), server: None, parked: Some(socket) };
        upstream.resume().await;
        upstream
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests that reached it.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Token chunks `POST /v1/stream` produced so far (a stream whose reader went away stops producing).
    pub fn streamed(&self) -> usize {
        self.shared.streamed.load(Ordering::SeqCst)
    }

    pub fn set_mode(&self, mode: UpstreamMode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Stops listening: connections are refused until [`Upstream::resume`]. The address is parked before the
    /// listener closes, so that no other socket (a client's outgoing connection from the ephemeral range, say)
    /// can take the port in between. Connections kept alive are closed too (aborting the listening task alone
    /// left them serving: a client reusing one still got answers from a "stopped" upstream); one still answering
    /// gets a second to finish.
    pub async fn stop(&mut self) {
        if let Some((mut server, stop)) = self.server.take() {
            self.parked = Some(bind(self.addr));
            let _ = stop.send(());
            if tokio::time::timeout(std::time::Duration::from_secs(1), &mut server).await.is_err() {
                server.abort();
                let _ = server.await;
            }
        }
    }

    /// Listens again on the same address.
    pub async fn resume(&mut self) {
        let Some(socket) = self.parked.take() else { return };
        let app = Router::new()
            .route("/v1/quote", get(quote))
            .route("/v1/other", get(quote))
            .route("/v1/echo", post(echo))
            // Per-unit routes: speech priced per character, transcription per minute.
            .route("/v1/tts", post(echo))
            .route("/v1/transcribe", get(quote))
            // Routes a test prices its own way (free calls, tiers, a pricing hook).
            .route("/v1/metered/{*rest}", get(quote).post(echo))
            // An OpenAI-style streamed completion, paced and breakable (`stream`).
            .route("/v1/stream", post(stream))
            .route("/free", get(|| async { "free" }))
            // A body larger than paygate keeps for a payment identifier's resend (1.5 MiB).
            .route("/v1/large", get(large))
            // A body larger than paygate reads to count what a metered call used (33 MiB, streamed).
            .route("/v1/huge", get(huge))
            // What the upstream received of a request: its headers, free (`/headers`) or priced (`/v1/headers`).
            .route("/headers", any(received_headers))
            .route("/v1/headers", any(received_headers))
            .fallback(any(|| async { (StatusCode::NOT_FOUND, "upstream: no such path") }))
            .with_state(self.shared.clone());
        let listener = socket.listen(1024).expect("the upstream listens");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(async move {
            let stopped = async { stopped.await.unwrap_or(()) };
            axum::serve(listener, app).with_graceful_shutdown(stopped).await.expect("upstream serves");
        });
        self.server = Some((server, stop));
    }
}

/// A loopback socket bound to `addr` but not yet listening.
fn bind(addr: SocketAddr) -> TcpSocket {
    let socket = TcpSocket::new_v4().expect("a TCP socket");
    // The address may still have connections in TIME_WAIT from before a stop.
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    // A stop parks the address while its listener still holds it (both sockets are this upstream's).
    socket.set_reuseport(true).expect("SO_REUSEPORT");
    socket.bind(addr).unwrap_or_else(|e| panic!("bind the upstream to {addr}: {e}"));
    socket
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some((server, _)) = self.server.take() {
            server.abort();
        }
    }
}

async fn count(shared: &Shared) -> Result<(), (StatusCode, &'static str)> {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    let mode = shared.mode.load(Ordering::SeqCst);
    if mode == UpstreamMode::Fail as u8 {
        return Err((StatusCode::INTERNAL_SERVER_ERROR, "upstream failure"));
    }
    if mode == UpstreamMode::Slow as u8 {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    }
    Ok(())
}

async fn quote(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    count(&shared).await.map(|()| ([("content-type", "application/json")], r#"{"symbol":"PAY","price":"4.02"}"#))
}

/// The request's headers as a JSON object (repeated headers joined with `, `).
async fn received_headers(State(shared): State<Arc<Shared>>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    let mut seen = serde_json::Map::new();
    for name in headers.keys() {
        let values: Vec<&str> = headers.get_all(name).iter().map(|v| v.to_str().unwrap_or("(not text)")).collect();
        seen.insert(name.as_str().to_owned(), values.join(", ").into());
    }
    count(&shared).await.map(|()| axum::Json(serde_json::Value::Object(seen)))
}

async fn large(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    count(&shared).await.map(|()| "x".repeat(1536 * 1024))
}

async fn huge(State(shared): State<Arc<Shared>>) -> axum::response::Response {
    if let Err(refused) = count(&shared).await {
        return refused.into_response();
    }
    let chunk = axum::body::Bytes::from(vec![b'x'; 1024 * 1024]);
    let chunks = futures_util::stream::iter((0..33).map(move |_| Ok::<_, std::convert::Infallible>(chunk.clone())));
    axum::body::Body::from_stream(chunks).into_response()
}

async fn echo(State(shared): State<Arc<Shared>>, body: String) -> impl IntoResponse {
    count(&shared).await.map(|()| ([("content-type", "application/json")], body))
}

/// `POST /v1/stream` with `{"tokens": N, "prompt_tokens": P, "delay_ms": D, "fail_after": K}`: N chat completion
/// chunks of one token each, D ms apart, then one with the `usage` and `data: [DONE]`; with `fail_after`, the
/// connection breaks off after K chunks.
async fn stream(State(shared): State<Arc<Shared>>, body: String) -> axum::response::Response {
    if let Err(refused) = count(&shared).await {
        return refused.into_response();
    }
    let asked: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let number = |name: &str| asked[name].as_u64().unwrap_or(0);
    let (tokens, prompt, delay) = (number("tokens"), number("prompt_tokens"), number("delay_ms"));
    let fail_after = asked["fail_after"].as_u64();
    let chunks = futures_util::stream::unfold(0u64, move |sent| {
        let shared = shared.clone();
        async move {
            if sent > tokens + 1 {
                return None;
            }
            if fail_after == Some(sent) {
                // After a pause, so that the chunks before are on the wire when the connection breaks.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                return Some((Err(std::io::Error::other("the model crashed")), u64::MAX));
            }
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            let event = if sent < tokens {
                shared.streamed.fetch_add(1, Ordering::SeqCst);
                let chunk = serde_json::json!({"choices": [{"index": 0, "delta": {"content": format!(" t{sent}")}}]});
                format!("data: {chunk}\n\n")
            } else if sent == tokens {
                let usage = serde_json::json!({"prompt_tokens": prompt, "completion_tokens": tokens});
                format!("data: {}\n\n", serde_json::json!({"choices": [], "usage": usage}))
            } else {
                "data: [DONE]\n\n".to_owned()
            };
            Some((Ok(event), sent + 1))
        }
    });
    ([("content-type", "text/event-stream")], axum::body::Body::from_stream(chunks)).into_response()
}
