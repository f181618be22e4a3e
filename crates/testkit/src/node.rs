//! The official x402 and MPP packages, through the scripts in `tests/node/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn scripts() -> PathBuf {
    let dir = crate::workspace_root().join("tests/node");
    if !dir.join("node_modules/@x402/core").exists() || !dir.join("node_modules/mppx").exists() {
        crate::missing("the npm reference packages (tests/node/node_modules)");
    }
    dir
}

/// Runs `node tests/node/client.mjs ARGS...` and returns its JSON line. Panics on a non-JSON answer; an
/// `{"error"}` answer is returned for the test to inspect.
pub async fn client(args: &[&str]) -> Value {
    script("client.mjs", args).await
}

/// Runs `node tests/node/channel.mjs URL --rpc RPC ARGS...`: N calls paid through an x402 `batch-settlement`
/// channel by the official client; `{"statuses", "receipts", "bodies"}` or `{"error"}`.
pub async fn channel(url: &str, rpc_url: &str, args: &[&str]) -> Value {
    let mut all = vec![url, "--rpc", rpc_url];
    all.extend_from_slice(args);
    script("channel.mjs", &all).await
}

/// Runs `node tests/node/parse402.mjs URL`: what the official parsers (mppx, @x402/core) understand of the 402 at
/// `url`, or `{"error"}` when one of them refuses it.
pub async fn parse402(url: &str) -> Value {
    script("parse402.mjs", &[url]).await
}

/// Runs `node tests/node/discovery.mjs BASE METHOD PATH [BODY]`: what the official parsers (`@x402/extensions`'
/// bazaar, `mppx/discovery`, `@x402/core`) understand of the route's 402 and of the gateway's discovery documents.
pub async fn discovery(args: &[&str]) -> Value {
    script("discovery.mjs", args).await
}

/// Runs `node tests/node/mcp.mjs BIN URL NAME=VALUE... -- ARGS...`: the official MCP SDK's client driving
/// `BIN mcp ARGS...` over stdio with `env` added to its environment (tools listed, `quote`, `fetch` refused then
/// paid, `spending`).
pub async fn mcp(bin: &str, url: &str, env: &[(&str, &str)], args: &[&str]) -> Value {
    let pairs: Vec<String> = env.iter().map(|(name, value)| format!("{name}={value}")).collect();
    let mut all = vec![bin, url];
    all.extend(pairs.iter().map(String::as_str));
    all.push("--");
    all.extend_from_slice(args);
    script("mcp.mjs", &all).await
}

/// Runs `node tests/node/mcp-tools.mjs URL MODE`: the official MCP SDK client paying the tools of the MCP server
/// at `url` (`mppx`: with mppx's McpClient; `x402`: x402 over MCP with @x402/core; `unpaid`: the raw refusal).
pub async fn mcp_tools(url: &str, mode: &str) -> Value {
    script("mcp-tools.mjs", &[url, mode]).await
}

/// An MCP server built with the official SDK (`tests/node/mcp-server.mjs`), its tools at `/mcp`, running until
/// dropped.
#[derive(Debug)]
pub struct McpServer {
    _child: Child,
    pub url: String,
}

impl McpServer {
    /// Starts it on a free port; `json` makes it answer JSON instead of server-sent events.
    pub async fn start(json: bool) -> McpServer {
        let args: &[&str] = if json { &["--json"] } else { &[] };
        let (child, port) = start_listening("mcp-server.mjs", args, "port").await;
        McpServer { _child: child, url: format!("http://127.0.0.1:{port}") }
    }

    /// How many times each tool ran.
    pub async fn runs(&self) -> Value {
        let answer = reqwest::get(format!("{}/runs", self.url)).await.expect("the MCP server answers");
        answer.json().await.expect("JSON")
    }
}

/// Runs `node tests/node/paywall.mjs CHROMIUM URL KEY`: headless Chromium opens `url` with a test wallet of `key`
/// injected as its EIP-1193 provider and clicks the paywall's button; what the page showed.
pub async fn paywall(url: &str, key: &str) -> Value {
    // Debian's `chromium` is a shell wrapper; playwright drives the browser itself.
    let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| {
        let debian = "/usr/lib/chromium/chromium";
        if std::path::Path::new(debian).exists() { debian.to_owned() } else { "chromium".to_owned() }
    });
    script("paywall.mjs", &[&chromium, url, key]).await
}

/// Runs `node tests/node/cdp.mjs KEY_ID KEY_SECRET TOKEN METHOD HOST PATH`: whether a CDP API token verifies
/// with the key, and it and `@coinbase/cdp-sdk`'s own token for the same request, decoded.
pub async fn cdp_token_check(args: &[&str]) -> Value {
    script("cdp.mjs", args).await
}

async fn script(name: &str, args: &[&str]) -> Value {
    let dir = scripts();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new("node").arg(dir.join(name)).args(args).current_dir(&dir).kill_on_drop(true).output(),
    )
    .await
    .unwrap_or_else(|_| panic!("node {name} finished within 60 s"))
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!("node {name} {args:?} printed no JSON: {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr))
    })
}

/// Has the official client create a credential for `url` and returns `(header name, value)`.
pub async fn sign(protocol: &str, url: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec![protocol, "sign", url];
    args.extend_from_slice(extra);
    let answer = client(&args).await;
    match (answer["name"].as_str(), answer["value"].as_str()) {
        (Some(name), Some(value)) => (name.to_owned(), value.to_owned()),
        _ => panic!("{protocol} could not sign for {url}: {answer}"),
    }
}

/// The reference x402 facilitator, running until dropped.
#[derive(Debug)]
pub struct Facilitator {
    _child: Child,
    pub url: String,
}

impl Facilitator {
    /// Starts `tests/node/facilitator.mjs` on a free port, settling on `rpc_url` with `key`.
    pub async fn start(rpc_url: &str, chain_id: u64, key: &str) -> Facilitator {
        let (child, port) =
            start_listening("facilitator.mjs", &["0", rpc_url, &chain_id.to_string(), key], "listening").await;
        Facilitator { _child: child, url: format!("http://127.0.0.1:{port}") }
    }
}

/// An official seller (`tests/node/server.mjs`): the `@x402/core` resource server with the `@x402/evm` exact
/// scheme, or mppx's server with its `evm` charge, serving `GET /paid` for 10000 atomic units of `token`,
/// settling through the reference facilitator at `facilitator_url`. Runs until dropped.
#[derive(Debug)]
pub struct Server {
    _child: Child,
    pub url: String,
}

impl Server {
    /// Starts `node tests/node/server.mjs KIND` (`x402` or `mppx`) on a free port.
    pub async fn start(kind: &str, rpc_url: &str, token: &str, pay_to: &str, facilitator_url: &str) -> Server {
        let args = [
            kind,
            "--port",
            "0",
            "--rpc",
            rpc_url,
            "--token",
            token,
            "--pay-to",
            pay_to,
            "--facilitator",
            facilitator_url,
        ];
        let (child, port) = start_listening("server.mjs", &args, "port").await;
        Server { _child: child, url: format!("http://127.0.0.1:{port}") }
    }
}

/// Starts `node tests/node/SCRIPT ARGS...` (which listens on a port the kernel picks), killed when dropped, and
/// waits (30 s at most) for its first line of output: a JSON object whose `port_key` is the port it listens on.
/// Letting the script bind port 0 itself leaves no window in which a concurrent test could take the port.
async fn start_listening(script: &str, args: &[&str], port_key: &str) -> (Child, u16) {
    let dir = scripts();
    let mut child = Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
    let port = match &first {
        Ok(Ok(Some(line))) => serde_json::from_str::<Value>(line).ok().and_then(|json| json[port_key].as_u64()),
        _ => None,
    };
    match port.and_then(|port| u16::try_from(port).ok()) {
        Some(port) => (child, port),
        None => panic!("node {script} did not start: {first:?}"),
    }
}
