//! Pay-first clients as their own documentation writes them: the MNNR x402 documentation's Python example
//! (`tests/payfirst/mnnr_client.py`, web3.py and requests in `.cache/venv`), pointed at a local chain.

use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

/// Runs the MNNR example client against `url`, paying from `payer` (an unlocked account of the node at `rpc_url`),
/// and returns its report: the retry's `status` and `body`, and the `proof` header it sent.
pub async fn mnnr_client(url: &str, rpc_url: &str, payer: &str) -> Value {
    let root = crate::workspace_root();
    let python = root.join(".cache/venv/bin/python");
    if !python.exists() {
        crate::missing("web3.py (.cache/venv)");
    }
    let script = root.join("tests/payfirst/mnnr_client.py");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(&python).arg(&script).args([url, rpc_url, payer]).kill_on_drop(true).output(),
    )
    .await
    .expect("the MNNR client finishes within 60 s")
    .expect("the venv's python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|_| {
        panic!("the MNNR client printed no JSON: {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr))
    })
}
