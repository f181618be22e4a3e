//! The `paygate` binary without a chain: `--version` and `--help`, `serve` refusing bad configuration files
//! with an error that names the file, the field and the problem (and exits non-zero before listening), and
//! `serve --check-config` accepting a valid file, listing its routes, when the chain is unreachable.

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_paygate");

/// The name of an environment variable no test sets.
const UNSET_VAR: &str = "PAYGATE_CLI_TEST_NEVER_SET";

fn paygate(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("PAYGATE_CONFIG")
        .env_remove("PAYGATE_LOG")
        .env_remove(UNSET_VAR)
        .output()
        .expect("the paygate binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

/// Writes `toml` as `gateway.toml` in a fresh directory (which also receives the default `paygate.db`).
fn write_config(toml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, toml).expect("write the config");
    (dir, path)
}

/// A network whose RPC URL nothing listens on, its test USDC, and one option named `usdc-local`.
fn network() -> String {
    let rpc = format!("http://127.0.0.1:{}", paygate_testkit::REFUSED_PORT);
    let pay_to = paygate_chain::devtoken::dev_account(9).address();
    paygate_testkit::local_usdc_toml(
        31337,
        &rpc,
        "rpc_timeout_secs = 2",
        pay_to,
        &paygate_testkit::builtin_settlement(),
    )
}

const UPSTREAM: &str = "[upstream]\nurl = \"http://127.0.0.1:9\"\n";
const SECRET: &str = "[server]\nsecret = \"a-challenge-secret-of-at-least-32-bytes\"\n";

/// Runs `paygate serve --config` on `toml`, which must be refused; checks that stderr's error line starts with
/// the file and the field (`field` may be a prefix: an unknown key is reported in its table or as itself) and
/// says each of `problem`, and returns stderr.
#[track_caller]
fn refused(toml: &str, field: &str, problem: &[&str]) -> String {
    let (_dir, path) = write_config(toml);
    let file = path.display().to_string();
    let output = paygate(&["serve", "--config", &file]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{field}: a bad config was accepted\nstderr: {stderr}");
    assert_eq!(output.status.code(), Some(1), "{field}: {stderr}");
    assert!(output.stdout.is_empty(), "{field}: stdout is for command output: {}", text(&output.stdout));
    let error = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(error.contains(&format!("{file}: {field}")), "the error names neither {file} nor {field}: {error}");
    for words in problem {
        assert!(error.contains(words), "{field}: the error does not say {words:?}: {error}");
    }
    assert!(!stderr.contains('\x1b'), "stderr is not a terminal, yet it has escape codes: {stderr:?}");
    stderr
}

#[test]
fn version_prints_the_crate_version() {
    let output = paygate(&["--version"]);
    assert!(output.status.success());
    assert_eq!(text(&output.stdout).trim(), format!("paygate {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_lists_the_commands() {
    let output = paygate(&["--help"]);
    assert!(output.status.success());
    let stdout = text(&output.stdout);
    for command in ["serve", "ledger", "dev"] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "--help does not list {command}:\n{stdout}"
        );
    }
}

#[test]
fn a_price_that_is_not_a_price_is_refused() {
    let net = network();
    refused(
        &format!("{UPSTREAM}{net}\n[[routes]]\npath = \"/a\"\nprice = \"cheap\"\n"),
        "routes[0].price",
        &["\"cheap\" is not a price", "$0.04"],
    );
    refused(
        &format!(
            "{UPSTREAM}{net}\n[[routes]]\npath = \"/a\"\nprice = \"$1\"\n[[routes]]\npath = \"/b\"\nprice = \"ten cents\"\n"
        ),
        "routes[1].price",
        &["\"ten cents\" is not a price", "$0.04"],
    );
    refused(
        &format!("{UPSTREAM}\n[[routes]]\npath = \"/a\"\nprice = 0.01\n"),
        "routes[0].price",
        &["invalid type", "string"],
    );
}

#[test]
fn an_unknown_field_is_refused() {
    refused(
        &format!("{UPSTREAM}\n[server]\nlisten = \"127.0.0.1:0\"\nlisen = 1\n"),
        "server",
        &["unknown field `lisen`"],
    );
    refused(
        &format!("{UPSTREAM}\n[[route]]\npath = \"/a\"\n"),
        "route",
        &["unknown field `route`", "expected one of", "`routes`"],
    );
}

#[test]
fn a_missing_upstream_is_refused() {
    refused("[server]\nlisten = \"127.0.0.1:0\"\n", "(file)", &["missing field `upstream`"]);
}

#[test]
fn an_unset_environment_reference_is_refused() {
    refused(
        &format!("{UPSTREAM}\n[server]\nsecret = \"${{{UNSET_VAR}}}\"\n"),
        "server.secret",
        &[&format!("environment variable {UNSET_VAR} is not set")],
    );
}

#[test]
fn a_short_challenge_secret_is_refused() {
    refused(
        &format!("{UPSTREAM}\n[server]\nsecret = \"only-31-bytes-long-secret-value\"\n"),
        "server.secret",
        &["at least 32 bytes, it is 31"],
    );
}

#[test]
fn a_route_accepting_an_unknown_option_is_refused() {
    let net = network();
    refused(
        &format!("{SECRET}{UPSTREAM}{net}\n[[routes]]\npath = \"/a\"\nprice = \"$0.01\"\naccept = [\"usdc-base\"]\n"),
        "routes[0].accept",
        &["no payment option is named \"usdc-base\""],
    );
}

#[test]
fn a_price_below_a_tenth_of_a_cent_is_refused() {
    let net = network();
    refused(
        &format!("{SECRET}{UPSTREAM}{net}\n[[routes]]\npath = \"/a\"\nprice = \"$0.0009\"\n"),
        "routes[0].price",
        &["below the minimum price of $0.001"],
    );
}

#[test]
fn a_lightning_invoice_shorter_than_a_challenge_is_refused() {
    let lightning = "[[accept]]\nrail = \"lightning\"\n[accept.lightning]\nlnd_url = \"https://127.0.0.1:8080\"\n\
                     macaroon_file = \"invoice.macaroon\"\ntls_cert_file = \"tls.cert\"\nnetwork = \"regtest\"\n\
                     invoice_expiry_secs = 20\n";
    refused(
        &format!(
            "{SECRET}challenge_ttl_secs = 30\n{UPSTREAM}{lightning}[[routes]]\npath = \"/a\"\nprice = \"25 SAT\"\n"
        ),
        "accept[0].lightning.invoice_expiry_secs",
        &["shorter than server.challenge_ttl_secs (30 s)"],
    );
}

#[test]
fn check_config_accepts_a_valid_file_with_an_unreachable_chain() {
    let net = network();
    let (_dir, path) = write_config(&format!(
        "{SECRET}{UPSTREAM}{net}\n[[routes]]\npath = \"/health\"\n\n[[routes]]\nmethod = \"GET\"\npath = \"/v1/quote\"\nprice = \"$0.01\"\n"
    ));
    let file = path.display().to_string();
    let output = paygate(&["serve", "--config", &file, "--check-config"]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some(format!("{file}: configuration is valid").as_str()), "{stdout}");
    // The routes, as configured, with what they cost.
    assert_eq!(lines.next().map(str::trim), Some("* /health free"), "{stdout}");
    assert_eq!(lines.next().map(str::trim), Some("GET /v1/quote 0.01 USDC (usdc-local)"), "{stdout}");
    // Then the effective configuration, as TOML that parses back to the same routes.
    assert_eq!(lines.next(), Some(""), "{stdout}");
    assert!(lines.next().is_some_and(|l| l.starts_with("effective configuration")), "{stdout}");
    let effective: toml::Value = toml::from_str(&lines.collect::<Vec<_>>().join("\n")).expect("TOML");
    assert_eq!(effective["routes"].as_array().map(Vec::len), Some(2), "{effective}");
    // The chain being down is worth a warning, not a refusal.
    assert!(stderr.contains("WARN") && stderr.contains("not reachable"), "{stderr}");
    assert!(!stderr.lines().any(|l| l.starts_with("error")), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
}

#[test]
fn an_admin_listener_without_a_long_token_is_refused() {
    let admin = "[admin]\nlisten = \"127.0.0.1:0\"\n";
    refused(&format!("{UPSTREAM}\n{admin}"), "admin.token", &["needs a token", "PAYGATE_ADMIN_TOKEN"]);
    refused(&format!("{UPSTREAM}\n{admin}token = \"short\"\n"), "admin.token", &["at least 16 characters"]);
}

#[test]
fn a_facilitator_config_names_its_faults() {
    let run = |toml: &str| {
        let (_dir, path) = write_config(toml);
        let output = paygate(&["facilitator", "--config", &path.display().to_string()]);
        assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
        text(&output.stderr)
    };
    let stderr = run("[facilitator]\nnetworks = [\"base-sepolia\"]\n");
    assert!(stderr.contains("missing field `settler_key`"), "{stderr}");
    let key = paygate_testkit::SETTLER_KEY;
    let stderr = run(&format!("[facilitator]\nsettler_key = \"{key}\"\nnetworks = [\"mars\"]\n"));
    assert!(stderr.contains("networks.mars.chain_id"), "{stderr}");
    let stderr = run("[facilitator]\nsettler_key = \"0x12\"\nnetworks = [\"base-sepolia\"]\n");
    assert!(stderr.contains("facilitator.settler_key: not a hex private key"), "{stderr}");
    assert!(!stderr.contains("0x12"), "the key is not echoed: {stderr}");
}

#[test]
fn a_reconciler_that_would_void_live_requests_is_refused() {
    let toml = format!("{UPSTREAM}timeout_secs = 30\n\n[reconciler]\nstale_after_secs = 30\n");
    refused(&toml, "reconciler.stale_after_secs", &["must be above upstream.timeout_secs (30)"]);
}

#[test]
fn per_unit_routes_that_cannot_count_or_bound_are_refused() {
    let route = |extra: &str| {
        format!("{UPSTREAM}\n[[routes]]\nmethod = \"POST\"\npath = \"/v1/tts\"\nprice = \"$0.000015\"\n{extra}")
    };
    refused(&route("per = \"character\"\n"), "routes[0].per", &["needs a `field`"]);
    refused(&route("per = \"byte\"\nfield = \"$.input\"\n"), "routes[0].per", &["counts the body"]);
    let flat = format!("{UPSTREAM}\n[[routes]]\npath = \"/v1/quote\"\nprice = \"$0.01\"\nfield = \"$.input\"\n");
    refused(&flat, "routes[0].field", &["only a per-unit route"]);
    refused(
        &route("per = \"character\"\nfield = \"$.input\"\nmin_price = \"$0.05\"\nmax_price = \"$0.01\"\n"),
        "routes[0].min_price",
        &["is above max_price"],
    );
    refused(
        &route("per = \"character\"\nfield = \"$.input\"\nmin_price = \"$0.0000001\"\n"),
        "routes[0].min_price",
        &["cannot be paid exactly in an asset with 6 decimals"],
    );
}

#[test]
fn free_calls_tiers_and_hooks_that_cannot_work_are_refused() {
    let route = |extra: &str| format!("{UPSTREAM}\n[[routes]]\npath = \"/v1/lookup\"\n{extra}");
    let tiers = |list: &str| route(&format!("tiers = [{list}]\n"));
    refused(&tiers(r#"{ calls = 10, price = "$0" }"#), "routes[0].tiers", &["the last tier has no `calls`"]);
    refused(&tiers(r#"{ calls = 10, price = "$0" }, { price = "$0" }"#), "routes[0].tiers", &["must be paid"]);
    refused(&tiers(r#"{ price = "$0.01" }, { price = "$0.001" }"#), "routes[0].tiers", &["tier 0 needs `calls`"]);
    refused(&tiers(r#"{ price = "$0.0000001" }"#), "routes[0].tiers[0].price", &["no [[accept]] option can charge"]);
    refused(
        &route("price = \"$0.01\"\ntiers = [{ price = \"$0.01\" }]\n"),
        "routes[0].tiers",
        &["give one of `price`, `tiers`, `price_hook` and `meter`"],
    );
    refused(
        &route("tiers = [{ price = \"$0.01\" }]\nfree_calls = 5\nfree_per = \"payer\"\n"),
        "routes[0].free_per",
        &["first tier"],
    );
    refused(&route("price = \"$0.01\"\nfree_calls = 0\n"), "routes[0].free_calls", &["at least 1"]);
    refused(&route("free_calls = 5\n"), "routes[0].free_calls", &["a free route"]);
    refused(&route("price = \"$0.01\"\nperiod = \"week\"\n"), "routes[0].period", &["`free_calls` or `tiers`"]);
    refused(
        &route("price_hook = { url = \"ftp://pricing\" }\n"),
        "routes[0].price_hook",
        &["not an http or https URL"],
    );
    refused(
        &route("price_hook = { url = \"http://127.0.0.1:7000\", timeout_ms = 0 }\n"),
        "routes[0].price_hook.timeout_ms",
        &["must be at least 1"],
    );
    refused(&route("price = \"$0.01\"\nfree_per = \"ip\"\n"), "routes[0].free_per", &["give `free_calls`"]);
    refused(
        &route("price_hook = { url = \"http://127.0.0.1:7000\", headers = [\"bad header\"] }\n"),
        "routes[0].price_hook",
        &["is not a header name"],
    );
}

#[test]
fn keys_are_created_once_listed_without_the_key_and_revoked() {
    let (dir, path) = write_config(&format!("{UPSTREAM}\n[store]\nurl = \"sqlite://ledger.db\"\n"));
    let config = path.display().to_string();
    let created = paygate(&["keys", "create", "--config", &config, "--name", "acme"]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let key = text(&created.stdout).trim().to_owned();
    assert!(key.starts_with("pgk_") && key.len() == 47, "{key}");
    let again = paygate(&["keys", "create", "--config", &config, "--name", "acme"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("a key named \"acme\" exists already"), "{}", text(&again.stderr));

    let listed = text(&paygate(&["keys", "list", "--config", &config]).stdout);
    assert!(listed.contains("acme") && listed.contains(&format!("{}…", &key[..12])), "{listed}");
    assert!(!listed.contains(&key), "the key is shown once, at creation: {listed}");
    let revoked = paygate(&["keys", "revoke", "--config", &config, "acme"]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&text(&paygate(&["keys", "list", "--config", &config, "--json"]).stdout)).unwrap();
    assert!(json[0]["revoked_at_ms"].is_i64(), "{json}");
    let twice = paygate(&["keys", "revoke", "--config", &config, "acme"]);
    assert_eq!(twice.status.code(), Some(1));
    let database = std::fs::read(dir.path().join("ledger.db")).unwrap();
    assert!(!database.windows(key.len()).any(|w| w == key.as_bytes()));
}

#[test]
fn channel_and_early_answer_settings_that_cannot_work_are_refused() {
    let net = network();
    let key = paygate_testkit::SETTLER_KEY;
    let pay_to = paygate_chain::devtoken::dev_account(9).address();
    let channel = |key: &str, extra: &str| {
        format!(
            "{SECRET}{UPSTREAM}{net}\n[[accept]]\nrail = \"batch-settlement\"\nnetwork = \"local\"\nasset = \"USDC\"\n\
             pay_to = \"{pay_to}\"\nsettler_key = \"{key}\"\n{extra}\n"
        )
    };
    refused(&channel(key, "withdraw_delay_secs = 60"), "accept[1].withdraw_delay_secs", &["between 900"]);
    refused(&channel(key, "claim_above = \"lots\""), "accept[1].claim_above", &[]);
    // A token without an EIP-712 domain has no EIP-3009: its deposits go through Permit2, and asking for EIP-3009
    // deposits of it is refused.
    let no_eip3009 = format!(
        "{SECRET}{UPSTREAM}{net}\n[networks.local.assets.USDT]\naddress = \"0x0000000000000000000000000000000000000777\"\n\
         decimals = 6\nusd = true\n\n[[accept]]\nrail = \"batch-settlement\"\nnetwork = \"local\"\nasset = \"USDT\"\n\
         pay_to = \"{pay_to}\"\nsettler_key = \"{key}\"\nasset_transfer_method = \"eip3009\"\n"
    );
    refused(&no_eip3009, "accept[1].asset_transfer_method", &["use \"permit2\""]);
    let stderr = refused(&channel("0x12", ""), "accept[1].settler_key", &["not a hex private key"]);
    assert!(!stderr.contains("0x12"), "the key is not echoed: {stderr}");
    let exact = |extra: &str| {
        format!(
            "{SECRET}{UPSTREAM}{net}\n[[accept]]\nname = \"fast\"\nnetwork = \"local\"\nasset = \"USDC\"\n\
             pay_to = \"{pay_to}\"\n{extra}\n"
        )
    };
    // Through a facilitator, a submitted transfer is confirmed from the chain: the network needs its rpc_url.
    let facilitator = "settlement = \"facilitator\"\nfacilitator_url = \"https://x402.org/facilitator\"";
    let without_rpc = paygate_testkit::usdc_toml("norpc", 31337, "", pay_to, facilitator);
    refused(
        &format!("{SECRET}{UPSTREAM}{without_rpc}\nwait = \"submitted\"\n"),
        "accept[0].wait",
        &["needs the network's rpc_url"],
    );
    refused(
        &exact(&format!("settler_key = \"{key}\"\nmax_unconfirmed = \"$1\"")),
        "accept[1].max_unconfirmed",
        &["only with wait = \"submitted\""],
    );
}
