//! `paygate pay`, `paygate spend` and `paygate wallet` against our real gateway on a real anvil: a dry run
//! shows the offer and pays nothing, `--max` below the price exits 3 with nothing signed, and a paid request
//! prints the body, a summary, and lands in the spend log.

use std::time::Duration;

use alloy::primitives::Address;
use paygate_chain::devtoken::{dev_account, test_usdc_address};
use paygate_testkit::UpstreamMode;

const BIN: &str = env!("CARGO_BIN_EXE_paygate");

fn pay_to() -> Address {
    dev_account(9).address()
}

/// The standard seller, plus `/v1/other` at one cent settled before the upstream is asked: with a slow upstream,
/// the money has moved while the client still waits for its answer.
struct Seller(paygate_testkit::Seller);

const SETTLED_FIRST: &str =
    "[[routes]]\nmethod = \"GET\"\npath = \"/v1/other\"\nprice = \"$0.01\"\nsettle = \"before\"\n";

impl std::ops::Deref for Seller {
    type Target = paygate_testkit::Seller;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Seller {
    async fn start() -> Seller {
        Seller::start_with("").await
    }

    /// With `extra` (more `[[accept]]` options and routes) appended to the config.
    async fn start_with(extra: &str) -> Seller {
        Seller(paygate_testkit::Seller::start_with(&format!("{SETTLED_FIRST}\n{extra}")).await)
    }

    async fn paygate(&self, args: &[&str]) -> (i32, String, String) {
        let output = self.command(args).output().await.expect("the paygate binary runs");
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).expect("UTF-8");
        (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
    }

    /// `paygate ARGS` with the payer's key and this test's spend log, not started.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let token = format!("31337:{}:6:USD Coin:2", test_usdc_address());
        let spend_log = self.dir.path().join("spend.db");
        let mut command = tokio::process::Command::new(BIN);
        command
            .args(args)
            .env("PAYGATE_WALLET_KEY", dev_account(1).to_bytes().to_string())
            .env("PAYGATE_SPEND_LOG", &spend_log)
            .env("PAYGATE_LOG", "warn")
            .env_remove("PAYGATE_HOME")
            .env_remove("PAYGATE_MAX_PER_PAYMENT")
            .env_remove("PAYGATE_DAILY_BUDGET")
            .env_remove("PAYGATE_HOST_DAILY_BUDGET");
        if args.first() == Some(&"pay") {
            command.args(["--usd-token", &token]);
        }
        command.kill_on_drop(true);
        command
    }

    async fn spend_records(&self) -> Vec<serde_json::Value> {
        let (code, spend, stderr) = self.paygate(&["spend", "--json"]).await;
        assert_eq!(code, 0, "{stderr}");
        let spend: serde_json::Value = serde_json::from_str(&spend).expect("JSON");
        spend["records"].as_array().expect("records").clone()
    }
}

#[tokio::test]
async fn a_dry_run_shows_the_offer_and_pays_nothing() {
    let seller = Seller::start().await;
    let url = format!("{}/v1/quote", seller.base);

    let (code, stdout, stderr) = seller.paygate(&["pay", "--dry-run", &url]).await;

    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("status 402"), "{stdout}");
    assert!(stdout.contains("would pay: 0.01 USD on eip155:31337"), "{stdout}");
    let (code, json, stderr) = seller.paygate(&["pay", "--dry-run", "--json", "--max", "0.005", &url]).await;
    assert_eq!(code, 3, "stdout: {json}\nstderr: {stderr}");
    let dry: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let chosen = &dry["offers"][dry["chosen"].as_u64().expect("an offer is chosen") as usize];
    assert_eq!((chosen["amount"].as_str(), chosen["usd_micros"].as_u64()), (Some("10000"), Some(10_000)));
    assert_eq!(dry["refused"], serde_json::json!({"limit": "over_max_per_payment", "asked": 10_000, "max": 5_000}));
    assert_eq!(seller.upstream.hits(), 0);
    assert_eq!(seller.chain.transfers(dev_account(1).address(), pay_to()).await, 0);
    let (_, spend, _) = seller.paygate(&["spend", "--json"]).await;
    let spend: serde_json::Value = serde_json::from_str(&spend).expect("JSON");
    assert_eq!(spend["records"], serde_json::json!([]));
}

#[tokio::test]
async fn max_below_the_price_exits_3_and_signs_nothing() {
    let seller = Seller::start().await;
    let url = format!("{}/v1/quote", seller.base);

    let (code, stdout, stderr) = seller.paygate(&["pay", "--max", "0.005", &url]).await;

    assert_eq!(code, 3, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("maximum per payment"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(seller.upstream.hits(), 0);
    assert_eq!(seller.chain.transfers(dev_account(1).address(), pay_to()).await, 0);
}

#[tokio::test]
async fn pay_prints_the_body_and_a_summary_and_logs_the_payment() {
    let seller = Seller::start().await;
    let url = format!("{}/v1/quote", seller.base);
    let before = seller.chain.balance(pay_to()).await;

    let (code, stdout, stderr) = seller.paygate(&["pay", "--max", "0.01", &url]).await;

    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(!stdout.is_empty());
    assert!(stderr.contains("paid 0.01 USD on eip155:31337 via"), "{stderr}");
    assert_eq!(seller.chain.balance(pay_to()).await, before + 10_000);
    let (code, spend, _) = seller.paygate(&["spend", "--json"]).await;
    assert_eq!(code, 0);
    let spend: serde_json::Value = serde_json::from_str(&spend).expect("JSON");
    assert_eq!(spend["records"][0]["state"], "paid");
    let reference = spend["records"][0]["reference"].as_str().expect("a reference");
    assert!(stderr.contains(reference), "{stderr}");
    assert_eq!(spend["totals"][0]["usd_micros"], 10_000);
    let rpc = format!("31337={}", seller.chain.rpc_url);
    let (code, _, stderr) = seller.paygate(&["spend", "--reconcile", "--rpc", &rpc]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("reconciled: 0 settled, 0 expired, 0 never signed, 0 undecided"), "{stderr}");
    let token = test_usdc_address().to_string();
    let (code, balance, stderr) =
        seller.paygate(&["wallet", "balance", "--rpc-url", &seller.chain.rpc_url, "--token", &token]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(balance.starts_with("999.99 "), "{balance}");
}

#[tokio::test]
async fn wallet_new_prints_a_key_whose_address_wallet_address_shows() {
    let output = tokio::process::Command::new(BIN).args(["wallet", "new"]).output().await.expect("runs");
    assert!(output.status.success());
    let key = String::from_utf8(output.stdout).expect("UTF-8").trim().to_owned();
    let stderr = String::from_utf8(output.stderr).expect("UTF-8");
    assert!(stderr.contains("warning"), "{stderr}");
    let address = tokio::process::Command::new(BIN)
        .args(["wallet", "address"])
        .env("PAYGATE_WALLET_KEY", &key)
        .output()
        .await
        .expect("runs");
    let address = String::from_utf8(address.stdout).expect("UTF-8").trim().to_owned();
    assert!(stderr.contains(&address) && address.starts_with("0x"), "{stderr} / {address}");
}

#[tokio::test]
async fn a_keystore_wallet_pays_and_a_wrong_password_signs_nothing() {
    let seller = Seller::start().await;
    let url = format!("{}/v1/quote", seller.base);
    let keystore = seller.dir.path().join("buyer.json");
    // `wallet new --keystore` writes a file that `wallet address` opens with the same password.
    let made = seller.dir.path().join("made.json");
    let made_str = made.to_str().expect("UTF-8 path");
    let mut new = seller.command(&["wallet", "new", "--keystore", made_str]);
    let output = new.env("PAYGATE_WALLET_PASSWORD", "pw").output().await.expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let made_address = String::from_utf8(output.stdout).expect("UTF-8").trim().to_owned();
    let mut address = seller.command(&["wallet", "address"]);
    address.env("PAYGATE_WALLET_KEYSTORE", &made).env("PAYGATE_WALLET_PASSWORD", "pw");
    let shown = address.output().await.expect("runs");
    assert_eq!(String::from_utf8(shown.stdout).expect("UTF-8").trim(), made_address);

    // The payer's funded key (dev account 1) in a keystore; the keystore wins over PAYGATE_WALLET_KEY.
    paygate_client::Wallet::from_signer(dev_account(1)).save_keystore(&keystore, "s3cret").expect("write keystore");
    let pay = |password: &'static str| {
        let mut command = seller.command(&["pay", "--max", "0.01", &url]);
        command
            .env("PAYGATE_WALLET_KEYSTORE", &keystore)
            .env("PAYGATE_WALLET_PASSWORD", password)
            .env("PAYGATE_WALLET_KEY", dev_account(2).to_bytes().to_string());
        command
    };
    let wrong = pay("guess").output().await.expect("runs");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("wrong password") && !stderr.contains("guess"), "{stderr}");
    assert!(seller.spend_records().await.is_empty(), "nothing was signed or logged");

    let paid = pay("s3cret").output().await.expect("runs");
    assert!(paid.status.success(), "{}", String::from_utf8_lossy(&paid.stderr));
    assert_eq!(seller.chain.transfers(dev_account(1).address(), pay_to()).await, 1, "paid from the keystore's key");
    assert_eq!(seller.chain.transfers(dev_account(2).address(), pay_to()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_after_paying_leaves_pending_and_the_next_run_reconciles_it() {
    let seller = Seller::start().await;
    seller.upstream.set_mode(UpstreamMode::Slow);
    let url = format!("{}/v1/other", seller.base);
    let payer = dev_account(1).address();

    // The client pays; the gateway settles, then waits three seconds for the upstream: kill the client then.
    let mut child = seller.command(&["pay", "--max", "0.01", &url]).spawn().expect("paygate pay starts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seller.chain.transfers(payer, pay_to()).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the payment was never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await.expect("kill the client");
    let records = seller.spend_records().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["state"], "pending", "the killed run could not record the answer");

    // The next run first decides the leftover from the chain, then pays for its own request.
    seller.upstream.set_mode(UpstreamMode::Ok);
    let rpc = format!("31337={}", seller.chain.rpc_url);
    let (code, stdout, stderr) = seller.paygate(&["pay", "--max", "0.01", "--rpc", &rpc, &url]).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("reconciled earlier payments: 1 settled"), "{stderr}");
    let records = seller.spend_records().await;
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r["state"] == "paid"), "{records:?}");
    let references: Vec<&str> = records.iter().map(|r| r["reference"].as_str().expect("a tx hash")).collect();
    assert_ne!(references[0], references[1], "two payments, two transfers");
    assert_eq!(seller.chain.transfers(payer, pay_to()).await, 2, "the leftover was not paid again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_wait_shows_progress_on_a_terminal_and_nothing_when_piped() {
    let seller = Seller::start().await;
    seller.upstream.set_mode(UpstreamMode::Slow);
    let url = format!("{}/v1/quote", seller.base);

    // Piped: the body on stdout, one summary line on stderr, no progress.
    let (code, _, stderr) = seller.paygate(&["pay", "--max", "0.01", &url]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains('\r') && !stderr.contains("waiting"), "{stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");

    // On a terminal (util-linux `script` gives the command a pseudo-terminal): a line that says what it waits
    // for and counts the seconds of the three-second upstream.
    let token = format!("31337:{}:6:USD Coin:2", test_usdc_address());
    let line = format!("{BIN} pay --max 0.01 --usd-token '{token}' {url}");
    let mut command = seller.command(&[]);
    let std_command = command.as_std_mut();
    let env: Vec<_> = std_command.get_envs().map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned))).collect();
    let mut terminal = tokio::process::Command::new("script");
    terminal.args(["-q", "-e", "-c", &line, "/dev/null"]);
    for (key, value) in env {
        match value {
            Some(value) => terminal.env(key, value),
            None => terminal.env_remove(key),
        };
    }
    let output = terminal.output().await.expect("script runs");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{shown}");
    assert!(shown.contains("paid, waiting for the server to serve and settle (1 s)"), "{shown:?}");
    assert!(shown.contains("paid 0.01 USD"), "{shown:?}");
}

/// `--stripe-token` (or `PAYGATE_STRIPE_TOKEN`) pays an MPP `stripe` card offer; without it the card offer is
/// unpayable (exit 6). Against localstripe, where a card PaymentMethod id stands in for the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_offer_is_paid_with_the_stripe_token_given() {
    use paygate_testkit::stripe::{LocalStripe, cards};
    let stripe = LocalStripe::start().await;
    let card_route = "[[routes]]\nmethod = \"GET\"\npath = \"/free\"\nprice = \"$0.01\"\naccept = [\"card\"]\n";
    let seller = Seller::start_with(&format!("{}\n{card_route}", stripe.card_toml())).await;
    let url = format!("{}/free", seller.base);
    let without = seller.command(&["pay", "--max", "0.01", &url]).env_remove("PAYGATE_STRIPE_TOKEN").output().await;
    let without = without.expect("paygate runs");
    assert_eq!(without.status.code(), Some(6), "{}", String::from_utf8_lossy(&without.stderr));

    let card = stripe.card_payment_method(cards::SUCCEEDS).await;
    let paid = seller.command(&["pay", "--max", "0.01", "--stripe-token", &card, &url]).output().await;
    let paid = paid.expect("paygate runs");
    let stderr = String::from_utf8_lossy(&paid.stderr);
    assert!(paid.status.success(), "{stderr}");
    assert!(stderr.contains("via mpp (stripe/charge)") && stderr.contains(" ref pi_"), "{stderr}");
    let intents = stripe.payment_intents().await;
    assert_eq!(intents.len(), 1);
    assert_eq!((intents[0]["status"].as_str(), intents[0]["amount"].as_u64()), (Some("succeeded"), Some(1)));
}

/// `paygate pay --session-deposit` pays a seller's MPP `evm` session: the first run opens a channel, the next
/// ones pay by voucher from it; `paygate channels list` shows it and `paygate channels close` refunds the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_with_a_session_deposit_opens_a_channel_that_channels_close_refunds() {
    pays_from_a_channel("evm-session", "via mpp (evm/session)").await;
}

/// The same with a seller that offers x402 `batch-settlement` channels: the deposit through the ERC-3009 deposit
/// collector, vouchers, and a close that is a refund of what was not spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_with_a_session_deposit_pays_x402_channels_that_channels_close_refunds() {
    pays_from_a_channel("batch-settlement", "via x402 (batch-settlement)").await;
}

/// A channel option of `rail` (an `[[accept]]` table) with `settings` appended.
fn channel_accept(rail: &str, settings: &str) -> String {
    format!(
        "[[accept]]\nrail = \"{rail}\"\nnetwork = \"local\"\nasset = \"USDC\"\npay_to = \"{}\"\nsettler_key = \"{}\"\n{settings}\n",
        dev_account(0).address(),
        paygate_testkit::SETTLER_KEY
    )
}

/// A seller refunds an idle x402 channel on its own: the budgets counted the whole deposit, and
/// `paygate spend --reconcile` finds the refund in the escrow and gives back exactly what came back, once; after
/// a refund the payer learned of from the seller (its corrective 402), the next `paygate pay` does the same first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_reconcile_gives_the_budgets_back_a_refund_the_seller_made_on_its_own() {
    let seller =
        Seller::start_with(&channel_accept("batch-settlement", "claim_every_secs = 0\nclose_idle_secs = 0")).await;
    let url = format!("{}/v1/quote", seller.base);
    let payer = dev_account(1).address();
    let before = seller.chain.balance(payer).await;
    let (code, _, stderr) = seller.paygate(&["pay", "--max", "0.01", "--session-deposit", "0.05", &url]).await;
    assert_eq!(code, 0, "{stderr}");
    seller.gateway().reconciler(Duration::from_secs(60)).run_once().await.unwrap();
    assert_eq!(seller.chain.balance(payer).await, before - 10_000, "the seller claimed one call, refunded the rest");

    let total = |spend: &str| {
        let spend: serde_json::Value = serde_json::from_str(spend).unwrap();
        spend["totals"][0]["usd_micros"].as_u64()
    };
    let (code, spend, _) = seller.paygate(&["spend", "--json"]).await;
    assert_eq!((code, total(&spend)), (0, Some(50_000)), "the deposit counted whole");
    let rpc = format!("31337={}", seller.chain.rpc_url);
    let (code, spend, stderr) = seller.paygate(&["spend", "--json", "--reconcile", "--rpc", &rpc]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("1 channel refunds found on chain"), "{stderr}");
    assert_eq!(total(&spend), Some(10_000), "what left the wallet: {spend}");
    let (code, spend, stderr) = seller.paygate(&["spend", "--json", "--reconcile", "--rpc", &rpc]).await;
    assert!(code == 0 && stderr.contains("0 channel refunds found on chain"), "{stderr}");
    assert_eq!(total(&spend), Some(10_000), "once");

    // The next call tops the channel up (the log knows it holds one cent); the seller refunds the rest again.
    let args = ["pay", "--rpc", &rpc, "--max", "0.01", "--session-deposit", "0.05", url.as_str()];
    let pay = || seller.paygate(&args);
    let (code, _, stderr) = pay().await;
    assert_eq!(code, 0, "{stderr}");
    seller.gateway().reconciler(Duration::from_secs(60)).run_once().await.unwrap();
    assert_eq!(seller.chain.balance(payer).await, before - 20_000);
    // This call learns it from the seller's corrective 402 and tops up again: the budgets count that deposit too.
    let (code, _, stderr) = pay().await;
    assert!(code == 0 && !stderr.contains("channel refunds"), "{stderr}");
    let (_, spend, _) = seller.paygate(&["spend", "--json"]).await;
    assert_eq!(total(&spend), Some(110_000), "three deposits, one refund recorded");
    // The next run asks the escrow first: the second refund comes back, and the budgets count what left the wallet.
    let (code, _, stderr) = pay().await;
    assert!(code == 0 && stderr.contains("1 channel refunds found on chain"), "{stderr}");
    let (_, spend, _) = seller.paygate(&["spend", "--json"]).await;
    assert_eq!(total(&spend), Some(70_000), "{spend}");
    assert_eq!(seller.chain.balance(payer).await, before - 70_000, "paid from the channel: no new deposit");
}

async fn pays_from_a_channel(rail: &str, via: &str) {
    let seller = Seller::start_with(&channel_accept(rail, "")).await;
    let url = format!("{}/v1/quote", seller.base);
    let payer = dev_account(1).address();
    let before = seller.chain.balance(payer).await;
    for _ in 0..3 {
        let (code, body, stderr) = seller.paygate(&["pay", "--max", "0.01", "--session-deposit", "0.05", &url]).await;
        assert_eq!(code, 0, "{stderr}");
        assert!(body.contains("price"), "the quote: {body}");
        assert!(stderr.contains(via), "{stderr}");
    }
    assert_eq!(seller.chain.balance(payer).await, before - 50_000, "one deposit for three calls");

    let (code, listed, stderr) = seller.paygate(&["channels", "list", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("JSON");
    let channel = &listed[0];
    assert_eq!(
        (&channel["state"], &channel["deposit"], &channel["cumulative"]),
        (&"open".into(), &"50000".into(), &"30000".into())
    );
    let (code, table, _) = seller.paygate(&["channels", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains(channel["channel_id"].as_str().unwrap()) && l.contains(" open ")),
        "{table}"
    );

    let id = channel["channel_id"].as_str().unwrap();
    let (code, closed, stderr) = seller.paygate(&["channels", "close", id]).await;
    assert_eq!(code, 0, "{stderr}");
    let closed: serde_json::Value = serde_json::from_str(&closed).expect("JSON");
    assert_eq!((&closed["settled"], &closed["refunded"]), (&"30000".into(), &"20000".into()));
    assert_eq!(seller.chain.balance(payer).await, before - 30_000, "the unused deposit came back");
    let (code, _, stderr) = seller.paygate(&["channels", "close", id]).await;
    assert_eq!(code, 4, "a closed channel is not closed again: {stderr}");
    assert!(stderr.contains("no open channel"), "{stderr}");

    // The spend log counts the deposit, not the vouchers, and gives the refund back.
    let records = seller.spend_records().await;
    let kinds: Vec<&str> = records.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["deposit", "voucher", "voucher", "voucher", "refund"]);
    let (code, spend, _) = seller.paygate(&["spend", "--json"]).await;
    assert_eq!(code, 0);
    let spend: serde_json::Value = serde_json::from_str(&spend).unwrap();
    assert_eq!(spend["totals"][0]["usd_micros"], 30_000, "{spend}");
}
