//! Benchmark support: a closed-loop HTTP load generator and the latency statistics it reports.
//!
//! `cargo bench -p paygate-bench` runs `benches/gateway.rs`, which starts everything on loopback and prints
//! each scenario's throughput and latency, and the ratios between scenarios measured in the same run (this
//! machine is shared and noisy: only ratios from one run compare).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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

/// A tokio runtime whose one worker thread (and blocking threads) run on core `core` only.
///
/// On a machine of two cores, the pinned-core scenarios give the gateway a core of its own, as a deployment gives
/// it a machine or cores of its own, and the load generator and upstream the other core. `None` where the cores
/// cannot be listed or pinned.
pub fn pinned_runtime(core: usize) -> Option<tokio::runtime::Runtime> {
    let id = core_affinity::get_core_ids()?.into_iter().find(|c| c.id == core)?;
    // The pinning is checked once on this thread, so that a refusal is seen here and not in a worker.
    let probe = std::thread::spawn(move || core_affinity::set_for_current(id)).join().ok()?;
    if !probe {
        return None;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(move || {
            core_affinity::set_for_current(id);
        })
        .enable_all()
        .build()
        .ok()
}

/// nginx as a reverse proxy to the same upstream, where it is installed: a well-known proxy hop measured in the
/// same place as paygate's, for reference. Stopped when dropped.
pub struct Nginx {
    dir: PathBuf,
    child: Child,
    pub url: String,
}

impl Nginx {
    /// Starts nginx in front of `upstream` (`http://127.0.0.1:port`), keeping connections to it alive as paygate
    /// does: one worker pinned to core `core`, or one worker per core. `None` when nginx is not installed or does
    /// not start.
    pub fn start(upstream: &str, core: Option<usize>) -> Option<Nginx> {
        let upstream = upstream.strip_prefix("http://")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let dir = std::env::temp_dir().join(format!("paygate-bench-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let d = dir.display();
        let workers = match core {
            Some(core) => format!("worker_processes 1;\nworker_cpu_affinity {:b};", 1u64 << core),
            None => "worker_processes auto;".to_owned(),
        };
        let config = format!(
            "daemon off;\n{workers}\npid {d}/nginx.pid;\nerror_log stderr warn;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             upstream app {{ server {upstream}; keepalive 256; }}\n  \
             server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://app; proxy_http_version 1.1; \
             proxy_set_header Connection \"\"; }} }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), config).ok()?;
        let child =
            Command::new("nginx").args(Self::args(&dir)).stdout(Stdio::null()).stderr(Stdio::null()).spawn().ok()?;
        let nginx = Nginx { dir, child, url: format!("http://127.0.0.1:{port}") };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(nginx);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn args(dir: &std::path::Path) -> Vec<String> {
        let config = dir.join("nginx.conf").display().to_string();
        vec!["-c".into(), config, "-p".into(), dir.display().to_string(), "-e".into(), "stderr".into()]
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // `-s stop` signals the master through its pid file; it then stops its workers.
        let _ = Command::new("nginx").args(Self::args(&self.dir)).args(["-s", "stop"]).stderr(Stdio::null()).status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `12.3 ms` / `456 µs` / `1.23 µs`.
pub fn show(d: Duration) -> String {
    if d >= Duration::from_millis(10) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else if d < Duration::from_micros(10) {
        format!("{:.2} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    }
}
