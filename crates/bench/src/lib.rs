//! Benchmark support: a closed-loop HTTP load generator and the latency statistics it reports.
//!
//! `cargo bench -p paygate-bench` runs `benches/gateway.rs`, which starts everything on loopback and prints
//! each scenario's throughput and latency, and the ratios between scenarios measured in the same run (this
//! machine is shared and noisy: only ratios from one run compare).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Throughput and latency of one scenario.
#[derive(Debug, Clone)]
pub struct Stats {
    pub requests: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// Responses whose status was not the expected one.
    pub unexpected: usize,
}

impl Stats {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// Builds request number `i`.
pub type MakeRequest = Arc<dyn Fn(usize) -> Request<Full<Bytes>> + Send + Sync>;

/// Runs `concurrency` closed loops for `duration` (or until `limit` requests were sent), each sending a request,
/// reading the whole response, and recording its latency.
pub async fn run(
    make: MakeRequest,
    expect: StatusCode,
    concurrency: usize,
    duration: Duration,
    limit: Option<usize>,
) -> Stats {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(concurrency).build_http();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, make, next) = (client.clone(), make.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut unexpected = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if Instant::now() >= deadline || limit.is_some_and(|l| i >= l) {
                    break;
                }
                let sent = Instant::now();
                match client.request(make(i)).await {
                    Ok(response) => {
                        let status = response.status();
                        let _ = response.into_body().collect().await;
                        if status != expect {
                            unexpected += 1;
                        }
                    }
                    Err(_) => unexpected += 1,
                }
                latencies.push(sent.elapsed());
            }
            (latencies, unexpected)
        }));
    }
    let mut latencies = Vec::new();
    let mut unexpected = 0;
    for worker in workers {
        let (l, u) = worker.await.expect("load worker");
        latencies.extend(l);
        unexpected += u;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Stats { requests: latencies.len(), elapsed, p50: pick(0.50), p99: pick(0.99), unexpected }
}

/// `12.3 ms` / `456 µs`.
pub fn show(d: Duration) -> String {
    if d >= Duration::from_millis(10) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    }
}
