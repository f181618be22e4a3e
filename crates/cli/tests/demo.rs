//! `paygate demo` and a config that names no chain: both run on the embedded devnet with nothing installed.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_paygate");

#[test]
fn the_demo_pays_three_calls_settles_them_and_moves_exactly_the_prices() {
    let output = Command::new(BIN)
        .args(["demo", "--requests", "3", "--exit", "--listen", "127.0.0.1:0"])
        .env("PAYGATE_LOG", "warn")
        .output()
        .expect("paygate runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("3 of 3 calls paid, 4 of 4 through a channel, 2 of 2 priced per token; 9 settled"),
        "{stdout}"
    );
    // The dev accounts' mnemonic is printed, so their keys can be imported anywhere.
    assert!(stdout.contains(paygate_chain::devtoken::DEV_MNEMONIC), "{stdout}");
    // Both protocols are offered and both pay.
    assert!(stdout.contains("x402 v2 exact 0.01 USDC on eip155:402402"), "{stdout}");
    assert!(stdout.contains("mpp evm/charge 0.002 USDC on eip155:402402"), "{stdout}");
    assert!(stdout.contains("with payment-response") && stdout.contains("with payment-receipt"), "{stdout}");
    // $0.01 + $0.002 + $0.005 moved from the buyer to the seller, exactly.
    assert!(stdout.contains("buyer 999999.983 USDC (-0.005 USDC), seller 1000000.017 USDC (+0.005 USDC)"), "{stdout}");
    // The channel: one deposit of $0.05 in escrow, four one-cent vouchers, one settlement of exactly $0.04, and
    // the close refunds the unused cent.
    assert!(
        stdout.contains("buyer -0.05 USDC (the deposit, in escrow), seller +0 USDC (nothing settled yet)"),
        "{stdout}"
    );
    assert!(stdout.contains("settled   -> 1 channel(s) in one transaction: seller +0.04 USDC"), "{stdout}");
    assert!(
        stdout.contains("0.01 USDC refunded to the buyer; in all, buyer -0.04 USDC, seller +0.04 USDC"),
        "{stdout}"
    );
    // Per token: 4 prompt tokens at $0.000001 and 12 completion tokens at $0.000002, by upto and by a stream.
    assert!(
        stdout.contains("4 prompt and 12 completion tokens; authorized 0.001 USDC, settled 0.000028 USDC"),
        "{stdout}"
    );
    // The stream is paid per token as it is delivered: one token on the first voucher, then one voucher asked
    // for each further token and for the prompt's tokens at the end.
    assert!(
        stdout.contains(
            "with 12 tokens paid per token from a channel as they came (12 vouchers asked mid-stream); charged \
             0.000028 USDC in all"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("the channel paid 0.000028 USDC and refunded 0.049972 USDC"), "{stdout}");
    let ledger = stdout.split("the seller's ledger").nth(1).expect("the ledger is shown");
    assert_eq!(ledger.matches(" settled ").count(), 9, "{ledger}");
    // Piped: plain lines, no terminal control codes.
    assert!(!stdout.contains('\x1b') && !stdout.contains('\r'), "{stdout:?}");
}

#[test]
fn on_a_terminal_the_demo_shows_what_it_waits_for() {
    // util-linux `script` gives the demo a pseudo-terminal.
    let line = format!("{BIN} demo --requests 2 --exit --listen 127.0.0.1:0");
    let output = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("PAYGATE_LOG", "warn")
        .output()
        .expect("script runs");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{shown}");
    // A status line per wait, rewritten in place and cleared before each result; bold headings.
    assert!(shown.contains("asking    -> GET /v1/quote without paying ..."), "{shown:?}");
    assert!(shown.contains("paygate verifies, calls the API and settles on chain ..."), "{shown:?}");
    assert!(shown.contains("\r\x1b[2Kunpaid    -> 402 Payment Required"), "{shown:?}");
    assert!(shown.contains("\x1b[1mcall 2 of 2: GET /v1/weather"), "{shown:?}");
    assert!(
        shown.contains("2 of 2 calls paid, 4 of 4 through a channel, 2 of 2 priced per token; 8 settled"),
        "{shown:?}"
    );
}

#[test]
fn a_config_without_networks_or_options_sells_on_the_embedded_devnet() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("minimal.toml");
    std::fs::write(
        &path,
        "[upstream]\nurl = \"http://127.0.0.1:9000\"\n\n[[routes]]\npath = \"/v1/quote\"\nprice = \"$0.01\"\n",
    )
    .expect("write config");
    let output = Command::new(BIN)
        .args(["serve", "--check-config", "--config"])
        .arg(&path)
        .env("PAYGATE_LOG", "warn")
        .output()
        .expect("paygate runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("* /v1/quote 0.01 USDC (usdc-devnet)"), "{stdout}");

    // Environment variables named after a field override it; the effective config is printed, secrets masked.
    let output = Command::new(BIN)
        .args(["serve", "--check-config", "--config"])
        .arg(&path)
        .env("PAYGATE_LOG", "warn")
        .env("PAYGATE_SERVER_LISTEN", "0.0.0.0:9402")
        .env("PAYGATE_STORE_URL", "sqlite::memory:")
        .output()
        .expect("paygate runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let effective = stdout.split("effective configuration").nth(1).expect("the effective configuration");
    assert!(effective.contains("listen = \"0.0.0.0:9402\""), "{effective}");
    assert!(effective.contains("url = \"sqlite::memory:\""), "{effective}");
    assert!(effective.contains("settler_key = \"<secret>\""), "{effective}");
    let dev_key = paygate_chain::devtoken::dev_account(0).to_bytes().to_string();
    assert!(!stdout.contains(dev_key.trim_start_matches("0x")), "a secret was printed: {stdout}");
}

fn paygate(args: &[&str], dir: &std::path::Path) -> (bool, String) {
    let output =
        Command::new(BIN).args(args).current_dir(dir).env("PAYGATE_LOG", "warn").output().expect("paygate runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn init_writes_a_commented_config_that_serve_accepts_for_every_target() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pay_to = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
    let cases: [(&str, &[&str], &str); 5] = [
        ("devnet.toml", &["--network", "devnet"], "0.01 USDC (usdc-devnet)"),
        ("sepolia.toml", &["--network", "base-sepolia", "--pay-to", pay_to], "0.01 USDC (usdc-base-sepolia)"),
        ("base.toml", &["--network", "base", "--pay-to", pay_to, "--facilitator", "https://f.example"], "(usdc-base)"),
        ("own.toml", &["--network", "base", "--pay-to", pay_to, "--settler-key-env", "MY_KEY"], "(usdc-base)"),
        ("rpc.toml", &["--network", "base-sepolia", "--pay-to", pay_to, "--rpc-url", "http://127.0.0.1:1"], "(usdc-"),
    ];
    for (file, flags, shown) in cases {
        let mut args = vec!["init", "--out", file];
        args.extend_from_slice(flags);
        let (ok, out) = paygate(&args, dir.path());
        assert!(ok, "{file}: {out}");
        let text = std::fs::read_to_string(dir.path().join(file)).expect("written");
        // Every field has its comment right above it (or above the field it follows).
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate().filter(|(_, l)| l.contains(" = ")) {
            let above = lines[..i].iter().rev().take_while(|l| !l.is_empty() && !l.starts_with('[')).count();
            assert!(lines[i - above..i].iter().any(|l| l.starts_with('#')), "{file}: no comment for {line}\n{text}");
        }
        let mut check = Command::new(BIN);
        check.args(["serve", "--check-config", "--config", file]).current_dir(dir.path()).env("PAYGATE_LOG", "error");
        let output = check.env("MY_KEY", format!("0x{}", "11".repeat(32))).output().expect("runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{file}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains(shown), "{file}: {stdout}");
    }
    let written = std::fs::read_to_string(dir.path().join("rpc.toml")).expect("written");
    assert!(written.contains("[networks.base-sepolia]\n") && written.contains("\nrpc_url = \"http://127.0.0.1:1\"\n"));
    let sepolia = std::fs::read_to_string(dir.path().join("sepolia.toml")).expect("written");
    assert!(sepolia.contains("\n# rpc_url = \"https://sepolia.base.org\"\n"), "the public default is shown: {sepolia}");
    let (ok, out) = paygate(&["init", "--out", "x.toml", "--rpc-url", "http://127.0.0.1:1"], dir.path());
    assert!(!ok && out.contains("devnet runs inside paygate"), "{out}");
    let (ok, out) = paygate(&["init", "--out", "devnet.toml"], dir.path());
    assert!(!ok && out.contains("--force"), "an existing config is not overwritten: {out}");
    let (ok, out) = paygate(&["init", "--out", "x.toml", "--network", "base"], dir.path());
    assert!(!ok && out.contains("--pay-to"), "{out}");
}

/// A long-running `paygate` command, stopped (SIGTERM, then waited for) when dropped, even by a failing test.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// Starts a long-running `paygate` command with `--log info` and returns it with the address it logged.
fn spawn_listening(args: &[&str], cwd: &std::path::Path) -> (Running, String) {
    use std::io::BufRead as _;
    let mut child = Running(
        Command::new(BIN)
            .args(args)
            .current_dir(cwd)
            .env("PAYGATE_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("paygate starts"),
    );
    let mut log = std::io::BufReader::new(child.0.stderr.take().expect("stderr"));
    let mut line = String::new();
    loop {
        line.clear();
        assert!(log.read_line(&mut line).unwrap_or(0) > 0, "paygate {args:?} exited before listening");
        if let Some(rest) = line.split("address=").nth(1) {
            let address = rest.split_whitespace().next().expect("an address").to_owned();
            // Keep draining the log so that the process never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
            return (child, address);
        }
    }
}

/// `[networks.devnet] state_file`, relative to the config file: `paygate serve` keeps the embedded chain there,
/// and a devnet opened on what it left holds the payment it settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_the_devnet_in_the_configured_state_file() {
    use paygate_chain::Chain as _;
    use paygate_chain::devtoken::{balance_of, dev_account, test_usdc_address};
    let config_dir = tempfile::tempdir().expect("temp dir");
    let cwd = tempfile::tempdir().expect("temp dir");
    let (upstream, upstream_address) = spawn_listening(&["dev", "upstream", "--listen", "127.0.0.1:0"], cwd.path());
    let config = config_dir.path().join("paygate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[upstream]\nurl = \"http://{upstream_address}\"\n\n[store]\n\
             url = \"sqlite::memory:\"\n\n[networks.devnet]\nstate_file = \"devnet.json\"\n\n[[routes]]\n\
             path = \"/v1/quote\"\nprice = \"$0.01\"\n"
        ),
    )
    .expect("write config");
    let config_arg = config.display().to_string();
    let (serve, address) = spawn_listening(&["serve", "--config", &config_arg], cwd.path());
    let state = config_dir.path().join("devnet.json");
    assert!(state.exists(), "no state file next to the config");
    assert!(!cwd.path().join("devnet.json").exists(), "the state file followed the working directory");

    let output = Command::new(BIN)
        .args(["pay", "--max", "0.01", &format!("http://{address}/v1/quote")])
        .current_dir(cwd.path())
        .env("PAYGATE_LOG", "warn")
        .env("PAYGATE_SPEND_LOG", cwd.path().join("spend.db"))
        .env_remove("PAYGATE_WALLET_KEYSTORE")
        .env("PAYGATE_WALLET_KEY", dev_account(1).to_bytes().to_string())
        .output()
        .expect("paygate pay runs");
    drop((serve, upstream));
    let summary = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{summary}");
    let tx = summary.split(" ref ").nth(1).map(str::trim).expect("the settlement's reference");

    // The chain paygate left: the settlement is mined, and the seller holds the price on top of genesis.
    let devnet = paygate_devnet::Devnet::new(paygate_devnet::DevnetConfig {
        chain_id: paygate_core::registry::DEVNET_CHAIN_ID,
        state_file: Some(state),
        ..Default::default()
    })
    .expect("the state file opens");
    let receipt = devnet.receipt(tx.parse().expect("a transaction hash")).await.expect("receipt");
    assert!(receipt.is_some_and(|r| r.status()), "{tx} is not a successful transaction of the saved chain");
    let seller = balance_of(&devnet, test_usdc_address(), dev_account(9).address()).await.expect("balanceOf");
    assert_eq!(seller, alloy::primitives::U256::from(1_000_000_010_000u64), "the seller's balance in the saved chain");
}
