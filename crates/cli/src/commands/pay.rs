//! `paygate pay`: curl that pays. Sends a request; on a 402 pays the cheapest acceptable offer from the local
//! wallet within the owner's limits, and prints the answer's body.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use alloy::primitives::Address;
use anyhow::Context;
use paygate_chain::{Chain, RpcChain};
use paygate_client::{AssetBook, KnownAsset, Offer, PayError, PayingClient, Policy, Progress, SpendLog, Wallet};
use paygate_core::money::{Decimal, format_atomic};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// Exit code: refused by the policy (`--max`, budgets, host lists); nothing was signed.
pub const EXIT_POLICY: u8 = 3;
/// Exit code: the server refused the payment.
pub const EXIT_REJECTED: u8 = 4;
/// Exit code: transport error.
pub const EXIT_TRANSPORT: u8 = 5;
/// Exit code: the 402 offers nothing this wallet can pay.
pub const EXIT_NO_OFFER: u8 = 6;

const EXIT_CODES: &str = "The response body goes to stdout, a one-line payment summary to stderr. \
The wallet is the encrypted keystore file in PAYGATE_WALLET_KEYSTORE (its password in PAYGATE_WALLET_PASSWORD),
or else the hex key in PAYGATE_WALLET_KEY.

Exit codes:
  0  success (a 2xx answer, paid or free)
  1  other errors (a non-2xx answer that asked no payment, a broken spend log, ...)
  2  usage error
  3  refused by policy (--max, budgets, host, network and asset lists): nothing was signed
  4  the server rejected the payment
  5  transport error
  6  no payable offer in the 402";

/// Send an HTTP request and pay its 402, if any, from the local wallet.
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct Args {
    /// The URL to request.
    url: String,
    /// HTTP method.
    #[arg(short = 'X', long = "request", default_value = "GET")]
    method: String,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// The request body.
    #[arg(short = 'd', long = "data", conflicts_with = "data_file")]
    data: Option<String>,
    /// The request body, from a file.
    #[arg(long, value_name = "FILE")]
    data_file: Option<PathBuf>,
    #[command(flatten)]
    payer: PayerArgs,
    /// Show the offers and the one that would be paid; pay nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print a JSON summary on stdout instead of the body.
    #[arg(long)]
    json: bool,
    /// A Stripe Shared Payment Token (`spt_...`) to pay an MPP `stripe` card offer with, for this request.
    /// Without it card offers are not paid.
    #[arg(long, env = "PAYGATE_STRIPE_TOKEN", hide_env_values = true)]
    stripe_token: Option<String>,
}

/// Who pays and within which limits: the options `paygate pay` and `paygate mcp` share.
#[derive(Debug, Clone, clap::Args)]
pub struct PayerArgs {
    /// The JSON-RPC URL of a chain, `CHAIN_ID=URL` (repeatable): pay-first offers are paid by a transfer sent
    /// there, and payments an earlier run left pending (and channel refunds a seller spoke of) are reconciled
    /// there. Built-in networks default to their public endpoint.
    #[arg(long, value_name = "CHAIN_ID=URL")]
    rpc: Vec<String>,
    /// Pay at most this many US dollars for one request (`0.01`: one cent), whatever the asset.
    #[arg(long, value_name = "USD", env = "PAYGATE_MAX_PER_PAYMENT")]
    max: Option<String>,
    /// At most this many US dollars over the last 24 hours, all hosts together (per the spend log).
    #[arg(long, value_name = "USD", env = "PAYGATE_DAILY_BUDGET")]
    daily_budget: Option<String>,
    /// At most this many US dollars over the last 24 hours to the URL's host.
    #[arg(long, value_name = "USD", env = "PAYGATE_HOST_DAILY_BUDGET")]
    host_daily_budget: Option<String>,
    /// Pay only these hosts (`api.example.com`, `*.example.com`; repeatable).
    #[arg(long, value_name = "HOST")]
    allow_host: Vec<String>,
    /// Never pay these hosts (repeatable).
    #[arg(long, value_name = "HOST")]
    deny_host: Vec<String>,
    /// Pay only on these networks (`base`, `eip155:8453`; repeatable).
    #[arg(long, value_name = "NETWORK")]
    allow_network: Vec<String>,
    /// Never pay on these networks (repeatable).
    #[arg(long, value_name = "NETWORK")]
    deny_network: Vec<String>,
    /// Pay only in these assets (symbol or token address; repeatable).
    #[arg(long, value_name = "ASSET")]
    allow_asset: Vec<String>,
    /// Never pay in these assets (repeatable).
    #[arg(long, value_name = "ASSET")]
    deny_asset: Vec<String>,
    /// The spend log (default: $PAYGATE_HOME/spend.db, else ~/.paygate/spend.db).
    #[arg(long, env = "PAYGATE_SPEND_LOG")]
    spend_log: Option<PathBuf>,
    /// A token to value as a USD stablecoin besides the built-in ones:
    /// `CHAIN_ID:ADDRESS:DECIMALS:EIP712_NAME:EIP712_VERSION`, or `CHAIN_ID:ADDRESS:DECIMALS` for a token paid by
    /// transfers only (pay-first, TIP-20 on Tempo) (repeatable).
    #[arg(long, value_name = "TOKEN")]
    usd_token: Vec<String>,
    /// Pay MPP `evm` session and x402 `batch-settlement` offers from a channel, depositing this many US dollars when one is opened (or
    /// topped up); the deposit counts against the budgets when it is made, and `paygate channels close` refunds
    /// what was not used. Without it, session offers are not paid. A request sent with
    /// `-H 'Accept: text/event-stream'` to a route priced by its response is paid as its stream is delivered:
    /// the stream is printed as it arrives, and each voucher the seller asks for is sent within the deposit.
    #[arg(long, value_name = "USD", env = "PAYGATE_SESSION_DEPOSIT")]
    session_deposit: Option<String>,
}

impl PayerArgs {
    /// The owner's limits.
    pub fn policy(&self) -> anyhow::Result<Policy> {
        let dollars = |text: &Option<String>| text.as_deref().map(usd_micros).transpose();
        Ok(Policy {
            max_per_payment: dollars(&self.max)?,
            daily_budget: dollars(&self.daily_budget)?,
            per_host_daily_budget: dollars(&self.host_daily_budget)?,
            allow_hosts: self.allow_host.clone(),
            deny_hosts: self.deny_host.clone(),
            allow_networks: self.allow_network.clone(),
            deny_networks: self.deny_network.clone(),
            allow_assets: self.allow_asset.clone(),
            deny_assets: self.deny_asset.clone(),
        })
    }

    /// The paying client of `wallet` within these limits, with its spend log (payments an earlier run left
    /// pending, and channel refunds a seller spoke of, are reconciled first), the tokens it values, its chains and
    /// its session deposit.
    pub async fn client(&self, wallet: Wallet) -> anyhow::Result<PayingClient> {
        let mut assets = AssetBook::builtin();
        for token in &self.usd_token {
            assets = assets.with(usd_token(token)?);
        }
        let log = open_spend_log(self.spend_log.clone()).await?;
        reconcile_leftovers(&log, &self.rpc).await;
        let client = PayingClient::new(reqwest::Client::new(), wallet, self.policy()?, log)
            .with_assets(assets)
            .with_chains(chains(&self.rpc)?);
        Ok(match self.session_deposit.as_deref().map(usd_micros).transpose()? {
            Some(deposit) => client.with_session_deposit(deposit),
            None => client,
        })
    }
}

/// `$PAYGATE_HOME/spend.db`, else `~/.paygate/spend.db`.
pub fn default_spend_log() -> anyhow::Result<PathBuf> {
    if let Some(home) = std::env::var_os("PAYGATE_HOME") {
        return Ok(PathBuf::from(home).join("spend.db"));
    }
    let home = std::env::var_os("HOME").context("neither PAYGATE_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".paygate").join("spend.db"))
}

pub async fn open_spend_log(path: Option<PathBuf>) -> anyhow::Result<SpendLog> {
    let path = match path {
        Some(path) => path,
        None => default_spend_log()?,
    };
    SpendLog::open(&path).await.with_context(|| format!("spend log {}", path.display()))
}

/// Dollars (`0.01`) as micro-dollars, exactly.
pub fn usd_micros(text: &str) -> anyhow::Result<u128> {
    let decimal = Decimal::parse(text.trim().trim_start_matches('$')).with_context(|| format!("{text} US dollars"))?;
    Ok(decimal.to_atomic(6).with_context(|| format!("{text} US dollars: at most 6 decimals"))?.0)
}

fn usd_token(text: &str) -> anyhow::Result<KnownAsset> {
    let parts: Vec<&str> = text.splitn(5, ':').collect();
    let (chain_id, address, decimals, eip712) = match parts[..] {
        [chain_id, address, decimals] => (chain_id, address, decimals, None),
        [chain_id, address, decimals, name, version] => {
            (chain_id, address, decimals, Some((name.to_owned(), version.to_owned())))
        }
        _ => anyhow::bail!(
            "--usd-token {text}: expected CHAIN_ID:ADDRESS:DECIMALS[:EIP712_NAME:EIP712_VERSION] (without the \
             EIP-712 domain, the token is paid by transfers only)"
        ),
    };
    Ok(KnownAsset {
        chain_id: chain_id.parse().context("--usd-token chain id")?,
        address: address.parse::<Address>().context("--usd-token address")?,
        symbol: "USD".into(),
        decimals: decimals.parse().context("--usd-token decimals")?,
        usd: true,
        eip712,
    })
}

pub fn headers(lines: &[String]) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').with_context(|| format!("-H {line}: expected `Name: value`"))?;
        map.append(
            HeaderName::from_bytes(name.trim().as_bytes()).with_context(|| format!("-H {line}: header name"))?,
            HeaderValue::from_str(value.trim()).with_context(|| format!("-H {line}: header value"))?,
        );
    }
    Ok(map)
}

pub fn describe(offer: &Offer) -> String {
    let amount = match offer.decimals {
        Some(d) => format_atomic(offer.amount, d),
        None => format!("{} atomic", offer.amount),
    };
    let asset = offer.symbol.clone().unwrap_or_else(|| offer.asset.clone());
    format!("{amount} {asset} on {} via {} ({})", offer.network, offer.protocol, offer.scheme)
}

fn code(code: u8) -> ExitCode {
    ExitCode::from(code)
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let headers = headers(&args.headers)?;
    let body = match (&args.data, &args.data_file) {
        (Some(data), _) => Some(data.clone().into_bytes()),
        (None, Some(file)) => Some(std::fs::read(file).with_context(|| format!("--data-file {}", file.display()))?),
        (None, None) => None,
    };
    // A dry run signs nothing: any key will do when none is configured.
    let wallet = match Wallet::from_env() {
        Ok(wallet) => wallet,
        Err(_) if args.dry_run => Wallet::random(),
        Err(e) => return Err(e.into()),
    };
    let stage = Arc::new(std::sync::Mutex::new(String::from("waiting for the server")));
    let shown = stage.clone();
    let client = args
        .payer
        .client(wallet)
        .await?
        .with_progress(move |progress| *shown.lock().unwrap_or_else(|p| p.into_inner()) = stage_label(progress));
    let client = match args.stripe_token.clone() {
        Some(token) => client.with_card_token(move |_| Some(token.clone())),
        None => client,
    };
    // A stream paid as it is delivered is printed as it arrives, not once it ended.
    let streamed = Arc::new(AtomicBool::new(false));
    let client = if args.json {
        client
    } else {
        let streamed = streamed.clone();
        client.with_stream_sink(move |event| {
            use std::io::Write;
            streamed.store(true, Ordering::Relaxed);
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(event).and_then(|()| out.flush());
        })
    };

    if args.dry_run {
        let dry = match client.dry_run(&args.method, &args.url, headers, body).await {
            Ok(dry) => dry,
            Err(e) => return Ok(failure(e, args.json)),
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&dry)?);
        } else {
            println!("status {}", dry.status);
            for (i, offer) in dry.offers.iter().enumerate() {
                let mark = if dry.chosen == Some(i) { "*" } else { " " };
                let why = offer.unpayable.as_deref().map(|w| format!(" [not payable: {w}]")).unwrap_or_default();
                println!("{mark} {}{why}", describe(offer));
            }
            match (dry.chosen, &dry.refused) {
                (_, Some(refused)) => println!("would refuse: {refused}"),
                (Some(i), None) => println!("would pay: {}", describe(&dry.offers[i])),
                (None, _) if dry.status == 402 => println!("no payable offer"),
                (None, _) => println!("nothing to pay"),
            }
        }
        return Ok(match (dry.status, dry.chosen, &dry.refused) {
            (_, _, Some(_)) => code(EXIT_POLICY),
            (402, None, _) => code(EXIT_NO_OFFER),
            _ => ExitCode::SUCCESS,
        });
    }

    let progress = progress(stage);
    let result = client.send(&args.method, &args.url, headers, body).await;
    if let Some(progress) = progress {
        progress.abort();
        let _ = progress.await;
        eprint!("\r\x1b[K");
    }
    let paid = match result {
        Ok(paid) => paid,
        Err(e) => return Ok(failure(e, args.json)),
    };
    if let Some(payment) = &paid.payment {
        eprintln!("paid {} ref {}", describe(&payment.offer), payment.reference.as_deref().unwrap_or("(none)"));
    }
    if args.json {
        let summary = serde_json::json!({
            "status": paid.status.as_u16(),
            "payment": paid.payment,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !streamed.load(Ordering::Relaxed) {
        use std::io::Write;
        std::io::stdout().write_all(&paid.body)?;
    }
    Ok(if paid.status.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What a payment waits for, as the progress line says it.
fn stage_label(progress: &Progress) -> String {
    match progress {
        Progress::TransferSent { tx_hash } => format!("transfer {tx_hash} sent, waiting for it to be mined"),
        Progress::TransferMined { block, .. } => format!("transfer mined in block {block}, proving it"),
        Progress::AwaitingConfirmations => "waiting for the seller's confirmations".to_owned(),
        Progress::AwaitingAnswer => "paid, waiting for the server to serve and settle".to_owned(),
    }
}

/// On a terminal, a line on stderr saying what a long wait waits for (a transfer being mined, a settlement
/// being confirmed) and for how long; nothing when stderr is piped.
fn progress(stage: Arc<std::sync::Mutex<String>>) -> Option<tokio::task::JoinHandle<()>> {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    Some(tokio::spawn(async move {
        let start = std::time::Instant::now();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let stage = stage.lock().unwrap_or_else(|p| p.into_inner()).clone();
            eprint!("\r\x1b[K{stage} ({} s)", start.elapsed().as_secs());
        }
    }))
}

/// Prints why nothing was paid, and picks the exit code.
fn failure(err: PayError, json: bool) -> ExitCode {
    let exit = match &err {
        PayError::Policy(_) => EXIT_POLICY,
        PayError::Rejected { .. } => EXIT_REJECTED,
        PayError::Transport(_) | PayError::PaidTransport { .. } | PayError::TransferUnconfirmed { .. } => {
            EXIT_TRANSPORT
        }
        PayError::NoPayableOffer { .. } | PayError::Offers(_) => EXIT_NO_OFFER,
        _ => 1,
    };
    if json {
        let detail = match &err {
            PayError::Policy(violation) => serde_json::to_value(violation).unwrap_or_default(),
            _ => serde_json::Value::Null,
        };
        println!("{}", serde_json::json!({"error": err.to_string(), "exit": exit, "policy": detail}));
    }
    eprintln!("error: {err}");
    if let PayError::NoPayableOffer { offers } = &err {
        for offer in offers {
            eprintln!("  {} [{}]", describe(offer), offer.unpayable.as_deref().unwrap_or("not chosen"));
        }
    }
    code(exit)
}

/// The chains to reconcile against: the built-in networks' public endpoints, overridden by `--rpc`.
pub(super) fn chains(rpc: &[String]) -> anyhow::Result<HashMap<u64, Arc<dyn Chain>>> {
    let timeout = Duration::from_secs(10);
    let mut chains: HashMap<u64, Arc<dyn Chain>> = HashMap::new();
    for network in paygate_core::registry::NETWORKS {
        if let Some(url) = network.public_rpc {
            chains.insert(network.chain_id, Arc::new(RpcChain::new(url, network.chain_id, timeout)?));
        }
    }
    for entry in rpc {
        let (id, url) = entry.split_once('=').with_context(|| format!("--rpc {entry}: expected CHAIN_ID=URL"))?;
        let id: u64 = id.trim().parse().with_context(|| format!("--rpc {entry}: chain id"))?;
        chains.insert(id, Arc::new(RpcChain::new(url.trim(), id, timeout)?));
    }
    Ok(chains)
}

/// Decides the payments an earlier run left `pending` (killed between paying and the answer) before paying
/// anything new: settled ones become `paid`, expired ones `failed`; and where a seller said it refunded a
/// channel, records what the escrow refunded. A chain that cannot be asked now leaves them for the next run; it
/// never stops this one.
async fn reconcile_leftovers(log: &SpendLog, rpc: &[String]) {
    let leftovers = async {
        Ok::<_, paygate_client::SpendError>(!log.pending().await?.is_empty() || log.refunds_suspected().await?)
    };
    match leftovers.await {
        Ok(false) => return,
        Ok(true) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the spend log");
            return;
        }
    }
    let outcome = match chains(rpc) {
        Ok(chains) => {
            paygate_client::reconcile(log, &chains, paygate_client::now_ms()).await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    match outcome {
        Ok(done) if done.settled + done.expired + done.unsigned + done.refunds > 0 => eprintln!(
            "reconciled earlier payments: {} settled, {} expired, {} never signed, {} undecided; {} channel refunds \
             found on chain",
            done.settled, done.expired, done.unsigned, done.undecided, done.refunds
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "earlier pending payments and channel refunds stay undecided"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_are_micro_dollars_exactly() {
        assert_eq!(usd_micros("0.01").unwrap(), 10_000);
        assert_eq!(usd_micros("$1").unwrap(), 1_000_000);
        assert!(usd_micros("0.0000001").is_err());
        assert!(usd_micros("abc").is_err());
    }

    #[test]
    fn a_usd_token_with_or_without_its_eip712_domain() {
        let address = "0x20c0000000000000000000000000000000000001";
        let signed = usd_token(&format!("31337:{address}:6:USD Coin:2")).unwrap();
        assert_eq!((signed.chain_id, signed.decimals), (31337, 6));
        assert_eq!(signed.eip712, Some(("USD Coin".to_owned(), "2".to_owned())));
        let transferred = usd_token(&format!("42431:{address}:6")).unwrap();
        assert_eq!((transferred.chain_id, transferred.eip712), (42431, None));
        assert!(usd_token(&format!("1:{address}:6:USD Coin")).is_err());
        assert!(usd_token("1:not-an-address:6").is_err());
    }
}
