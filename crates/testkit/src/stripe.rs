//! localstripe, a stateful fake of the Stripe API (PyPI `localstripe` 1.15.10), on loopback with its state in
//! memory, through `tests/stripe/localstripe_server.py` (which also emulates `Idempotency-Key` and accepts
//! `automatic_payment_methods`; `tests/stripe/README.md` says what it does not cover).
//!
//! localstripe accepts any secret key that starts with `sk_` and is longer than 5 characters; anything else gets
//! 401. It has no Shared Payment Tokens: tests pass a card PaymentMethod id (`pm_...`) in `payment_method`.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A secret key localstripe accepts.
pub const SECRET_KEY: &str = "sk_test_paygate_localstripe";

/// Card numbers with a known outcome in localstripe.
pub mod cards {
    /// Authorized and captured.
    pub const SUCCEEDS: &str = "4242424242424242";
    /// Declined when charged: HTTP 402 `card_declined`.
    pub const DECLINED: &str = "4000000000000341";
    /// Needs 3-D Secure: the PaymentIntent stops in `requires_action`.
    pub const REQUIRES_ACTION: &str = "4000002500003155";
}

/// How long localstripe may take to answer its first request.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A running localstripe, stopped (killed) when dropped.
#[derive(Debug)]
pub struct LocalStripe {
    /// `http://127.0.0.1:<port>`, the API base.
    pub url: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

impl LocalStripe {
    /// Starts localstripe on a port the kernel picks and waits until it answers. Panics with the install
    /// command when the venv of `scripts/install-test-deps` is missing.
    pub async fn start() -> LocalStripe {
        LocalStripe::start_on(0).await
    }

    /// Starts localstripe on `port` (as an example config expects it; 0 for any) and waits until it answers.
    pub async fn start_on(port: u16) -> LocalStripe {
        let root = crate::workspace_root();
        let python = root.join(".cache/venv/bin/python");
        if !python.exists() {
            crate::missing("localstripe (.cache/venv)");
        }
        let mut child = Command::new(&python)
            .arg(root.join("tests/stripe/localstripe_server.py"))
            .arg(port.to_string())
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the venv's python runs");
        // Drained all along, so a chatty server never blocks on a full pipe; the tail goes into panic messages.
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                if log.len() == 200 {
                    log.remove(0);
                }
                log.push(line);
            }
        });
        // The first line of stdout is the port it bound; drained after that.
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let bound = tokio::time::timeout(READY_DEADLINE, stdout.next_line()).await;
        let port = match bound {
            Ok(Ok(Some(line))) => line.trim().parse().unwrap_or(port),
            _ => port, // it exited or hung: wait_ready says why
        };
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("HTTP client");
        let stripe = LocalStripe { url: format!("http://127.0.0.1:{port}"), child, log, http };
        stripe.wait_ready().await
    }

    async fn wait_ready(mut self) -> LocalStripe {
        let deadline = tokio::time::Instant::now() + READY_DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader catch the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let log = self.log();
                if log.contains("No module named") {
                    crate::missing("localstripe (.cache/venv)");
                }
                panic!("localstripe exited ({status}) before answering:\n{log}");
            }
            if self.http.get(format!("{}/v1/balance", self.url)).bearer_auth(SECRET_KEY).send().await.is_ok() {
                return self;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("localstripe did not answer within {READY_DEADLINE:?}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What localstripe printed (its last 200 lines of stderr), for assertion messages.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// `POST /v1/payment_methods` `type=card` with `number` (expiry 12/2030, CVC 123): the `pm_...` id.
    /// Config TOML for one `[[accept]]` option `card` charging through this localstripe: cent prices allowed, and
    /// a card PaymentMethod id in place of the Shared Payment Token localstripe does not have.
    pub fn card_toml(&self) -> String {
        format!(
            r#"
[[accept]]
name = "card"
rail = "stripe"
[accept.stripe]
secret_key = "{SECRET_KEY}"
api_base = "{}"
min_amount_cents = 1
token_param = "payment_method"
"#,
            self.url
        )
    }

    pub async fn card_payment_method(&self, number: &str) -> String {
        let body = format!(
            "type=card&card%5Bnumber%5D={number}&card%5Bexp_month%5D=12&card%5Bexp_year%5D=2030&card%5Bcvc%5D=123"
        );
        let answer = self
            .http
            .post(format!("{}/v1/payment_methods", self.url))
            .bearer_auth(SECRET_KEY)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("localstripe answers");
        let json: Value = answer.json().await.expect("a JSON PaymentMethod");
        json["id"].as_str().unwrap_or_else(|| panic!("no PaymentMethod for card {number}: {json}")).to_owned()
    }

    /// `GET /v1/payment_intents/{id}`.
    pub async fn payment_intent(&self, id: &str) -> Value {
        self.get(&format!("/v1/payment_intents/{id}")).await
    }

    /// Every PaymentIntent localstripe holds.
    pub async fn payment_intents(&self) -> Vec<Value> {
        self.list("/v1/payment_intents?limit=100").await
    }

    /// Every charge localstripe holds (a captured one is money taken: `captured` and `status: succeeded`).
    pub async fn charges(&self) -> Vec<Value> {
        self.list("/v1/charges?limit=100").await
    }

    async fn list(&self, path: &str) -> Vec<Value> {
        let list = self.get(path).await;
        list["data"].as_array().unwrap_or_else(|| panic!("{path} is not a list: {list}")).clone()
    }

    async fn get(&self, path: &str) -> Value {
        let answer = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(SECRET_KEY)
            .send()
            .await
            .expect("localstripe answers");
        let status = answer.status();
        let json: Value = answer.json().await.expect("a JSON answer");
        assert!(status.is_success(), "GET {path}: HTTP {status}: {json}");
        json
    }
}
