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
    assert!(stdout.contains("3 of 3 calls paid, 3 settled"), "{stdout}");
    // Both protocols are offered and both pay.
    assert!(stdout.contains("x402 v2 exact 0.01 USDC on eip155:402402"), "{stdout}");
    assert!(stdout.contains("mpp evm/charge 0.002 USDC on eip155:402402"), "{stdout}");
    assert!(stdout.contains("with payment-response") && stdout.contains("with payment-receipt"), "{stdout}");
    // $0.01 + $0.002 + $0.005 moved from the buyer to the seller, exactly.
    assert!(stdout.contains("buyer 999999.983 USDC (-0.005 USDC), seller 1000000.017 USDC (+0.005 USDC)"), "{stdout}");
    let ledger = stdout.split("the seller's ledger").nth(1).expect("the ledger is shown");
    assert_eq!(ledger.matches(" settled ").count(), 3, "{ledger}");
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
    let cases: [(&str, &[&str], &str); 4] = [
        ("devnet.toml", &["--network", "devnet"], "0.01 USDC (usdc-devnet)"),
        ("sepolia.toml", &["--network", "base-sepolia", "--pay-to", pay_to], "0.01 USDC (usdc-base-sepolia)"),
        ("base.toml", &["--network", "base", "--pay-to", pay_to, "--facilitator", "https://f.example"], "(usdc-base)"),
        ("own.toml", &["--network", "base", "--pay-to", pay_to, "--settler-key-env", "MY_KEY"], "(usdc-base)"),
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
    let (ok, out) = paygate(&["init", "--out", "devnet.toml"], dir.path());
    assert!(!ok && out.contains("--force"), "an existing config is not overwritten: {out}");
    let (ok, out) = paygate(&["init", "--out", "x.toml", "--network", "base"], dir.path());
    assert!(!ok && out.contains("--pay-to"), "{out}");
}
