//! What the example tests share: the examples' fixed ports, anvil on 8545, `paygate` commands whose environment
//! cannot change the examples' `${VAR:-default}` values, `paygate serve` with its log, and raw HTTP to it.
//!
//! Each example test uses the examples' fixed ports, so each is the only test of its binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use paygate_chain::devtoken::{balance_of, test_usdc_address};
use paygate_chain::{Chain, RpcChain};
use paygate_testkit::workspace_root;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_paygate");
pub const RPC_PORT: u16 = 8545;
pub const UPSTREAM_PORT: u16 = 9000;
pub const GATEWAY_PORT: u16 = 8402;
pub const RPC_URL: &str = "http://127.0.0.1:8545";
/// One whole test USDC, atomic.
pub const USDC: u64 = 1_000_000;
pub const QUOTE_BODY: &str = r#"{"symbol":"PAY","price":"4.02"}"#;

/// Fails, naming the port, when something already listens where the example expects its own process. A process
/// the previous example test killed on its way out is given a few seconds to let go of the port.
pub fn assert_port_free(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut bound = std::net::TcpListener::bind(("127.0.0.1", port));
    while bound.is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        bound = std::net::TcpListener::bind(("127.0.0.1", port));
    }
    if let Err(e) = bound {
        panic!(
            "port {port} is already in use ({e}); this test runs {what} there, as examples/anvil.toml expects: \
             stop whatever listens on 127.0.0.1:{port} and run it again"
        );
    }
}

/// A `paygate` command whose environment cannot change the example's `${VAR:-default}` values.
pub fn paygate(args: &[&str], cwd: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("PAYGATE_SECRET")
        .env_remove("PAYGATE_SETTLER_KEY")
        .env_remove("PAYGATE_CONFIG")
        .env_remove("PAYGATE_LOG")
        .kill_on_drop(true);
    command
}

/// Runs a short `paygate` command to its end; returns stdout, after checking it succeeded.
pub async fn run_ok(args: &[&str], cwd: &Path) -> String {
    let output: Output = tokio::time::timeout(Duration::from_secs(60), paygate(args, cwd).output())
        .await
        .unwrap_or_else(|_| panic!("paygate {args:?} did not finish within 60 s"))
        .expect("paygate runs");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 stdout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "paygate {args:?} failed: {}\nstdout: {stdout}\nstderr: {stderr}", output.status);
    stdout
}

/// `anvil --port 8545 --chain-id 31337`, killed when dropped, once `eth_chainId` answers.
pub async fn start_anvil() -> (Child, RpcChain) {
    let bin =
        std::env::var_os("ANVIL_BIN").map(PathBuf::from).unwrap_or_else(|| workspace_root().join(".cache/bin/anvil"));
    if !bin.exists() {
        paygate_testkit::missing("anvil");
    }
    let mut anvil = Command::new(&bin)
        .args(["--port", &RPC_PORT.to_string(), "--chain-id", "31337", "--silent"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("anvil starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(chain) = RpcChain::connect(RPC_URL, Duration::from_secs(2)).await {
            assert_eq!(chain.chain_id(), 31337, "anvil serves the wrong chain");
            return (anvil, chain);
        }
        if let Some(status) = anvil.try_wait().expect("anvil's status") {
            panic!("anvil exited before answering on {RPC_URL}: {status}");
        }
        assert!(Instant::now() < deadline, "anvil did not answer eth_chainId on {RPC_URL} within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `paygate serve` with its stderr collected for failure messages.
pub struct Gateway {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Gateway {
    pub fn start(config: &Path, cwd: &Path, env: &[(&str, &str)]) -> Gateway {
        let mut child = paygate(&["serve", "--config", &config.display().to_string()], cwd)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("paygate serve starts");
        let log = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Gateway { child, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until 127.0.0.1:8402 answers HTTP.
    pub async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http("GET", "/", None).await.is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("the gateway's status") {
                panic!("paygate serve exited ({status}) before answering on port {GATEWAY_PORT}:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "paygate serve did not answer within 30 s:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One HTTP/1.1 request to the gateway: `(status, lowercase head, body)`.
pub async fn http(method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, String, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", GATEWAY_PORT)).await?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{GATEWAY_PORT}\r\nConnection: close\r\n");
    if let Some(body) = body {
        request += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    }
    request += "\r\n";
    request += body.unwrap_or_default();
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut response)).await??;
    let (head, body) = response.split_once("\r\n\r\n").ok_or(std::io::ErrorKind::InvalidData)?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(std::io::ErrorKind::InvalidData)?;
    Ok((status, head.to_ascii_lowercase(), body.to_owned()))
}

pub async fn usdc_balance(chain: &RpcChain, account: Address) -> U256 {
    balance_of(chain, test_usdc_address(), account).await.expect("balanceOf")
}
