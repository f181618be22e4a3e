//! `paygate demo`: the whole flow in one process, with nothing installed. The embedded devnet, the built-in
//! sample API and the gateway in front of it (priced routes, both protocols offered) start on loopback; a
//! paying client then buys a few calls while the demo shows each 402 and its offers, the payment, the 200 and
//! its receipt, both balances and the ledger. Then it stays up for trying by hand, or with `--exit` it exits 0
//! only if every call was paid and settled.

use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use anyhow::Context as _;
use paygate_chain::Chain;
use paygate_chain::devtoken::{DEV_MNEMONIC, balance_of, dev_account, test_usdc_address};
use paygate_client::{CheapestOffer, PayingClient, Policy, Progress, Protocol, SpendLog, Wallet};
use paygate_core::money::{AtomicAmount, format_atomic};
use paygate_gateway::{Config, PaygateLayer, UpstreamProxy, build, server};
use paygate_store::{PaymentQuery, PaymentState};
use reqwest::header::HeaderMap;
use tower::ServiceBuilder;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the gateway listens.
    #[arg(long, default_value = "127.0.0.1:8402")]
    listen: String,
    /// Paid calls the demo client makes.
    #[arg(long, default_value_t = 3)]
    requests: usize,
    /// Exit after the paid calls: 0 only if every one was paid and settled.
    #[arg(long)]
    exit: bool,
}

/// The line that says what the demo is waiting for, on a terminal only: rewritten in place and cleared before
/// the result is printed. Piped, the output is the plain result lines alone.
#[derive(Debug, Clone, Copy)]
struct Status {
    terminal: bool,
}

impl Status {
    fn show(self, text: &str) {
        if self.terminal {
            print!("\r\x1b[2K\x1b[2m{text}\x1b[0m");
            let _ = std::io::stdout().flush();
        }
    }

    fn clear(self) {
        if self.terminal {
            print!("\r\x1b[2K");
        }
    }
}

/// The sample API's routes and their prices.
const ROUTES: [(&str, &str, &str); 3] =
    [("GET", "/v1/quote", "$0.01"), ("GET", "/v1/weather", "$0.002"), ("POST", "/v1/echo", "$0.005")];

/// Dev account 1 buys; dev account 9 sells (the devnet's default option pays it).
fn buyer() -> Wallet {
    Wallet::from_signer(dev_account(1))
}

fn seller() -> Address {
    dev_account(9).address()
}

fn usdc(atomic: u128) -> String {
    format!("{} USDC", format_atomic(AtomicAmount(atomic), 6))
}

async fn balance(chain: &dyn Chain, who: Address) -> anyhow::Result<u128> {
    balance_of(chain, test_usdc_address(), who).await?.try_into().context("balance out of range")
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let terminal = std::io::stdout().is_terminal();
    let heading = |text: &str| {
        if terminal { println!("\n\x1b[1m{text}\x1b[0m") } else { println!("\n== {text}") }
    };
    let status = Status { terminal };

    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api_url = format!("http://{}", api.local_addr()?);
    tokio::spawn(crate::sample_api::serve(api));
    let mut toml = format!(
        "[server]\nsecret = \"{}\"\n\n[upstream]\nurl = \"{api_url}\"\n\n[store]\nurl = \"sqlite::memory:\"\n",
        alloy::primitives::B256::random()
    );
    for (method, path, price) in ROUTES {
        toml.push_str(&format!("\n[[routes]]\nmethod = \"{method}\"\npath = \"{path}\"\nprice = \"{price}\"\n"));
    }
    let config = Config::parse(&toml, "demo")?;
    let (options, devnet) = super::serve::build_options(&config)?;
    let chain: Arc<dyn Chain> = devnet.context("the demo config pays on the embedded devnet")?;
    let built = build(&config, "demo", options).await?;
    let store = built.gateway.store().clone();
    let proxy = UpstreamProxy::new(&api_url, Duration::from_secs(10), Duration::from_secs(2))?;
    let service = ServiceBuilder::new().layer(PaygateLayer::new(built.gateway)).service(proxy);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (give --listen ADDR)", args.listen))?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway = tokio::spawn(server::serve(listener, service, async {
        let _ = stopped.await;
    }));

    heading("paygate demo: an embedded devnet, a sample API, and paygate in front of it");
    println!("chain     eip155:{} (in this process), test USDC at {}", chain.chain_id(), test_usdc_address());
    println!("sample API {api_url}");
    println!("gateway   {base}  (prices: {})", ROUTES.map(|(m, p, price)| format!("{m} {p} {price}")).join(", "));
    println!("buyer     {} (dev account 1)   seller {} (dev account 9)", buyer().address(), seller());
    println!("accounts  dev accounts 0-9 of the mnemonic \"{DEV_MNEMONIC}\" (public: test money only)");

    let log = SpendLog::in_memory().await?;
    let policy = Policy { max_per_payment: Some(50_000), ..Policy::default() };
    let mut paid_calls = 0;
    let mut first_paid = None;
    for i in 0..args.requests {
        let (method, path, _) = ROUTES[i % ROUTES.len()];
        let body = (method == "POST").then(|| br#"{"hello":"paygate"}"#.to_vec());
        let url = format!("{base}{path}");
        // Alternate the protocols, so both are seen paying.
        let protocol = if i % 2 == 0 { Protocol::X402 } else { Protocol::Mpp };
        let client = PayingClient::new(reqwest::Client::new(), buyer(), policy.clone(), log.clone())
            .with_chooser(CheapestOffer::only(protocol))
            .with_progress(move |progress| {
                if matches!(progress, Progress::AwaitingAnswer) {
                    status.show("paying    -> signed; paygate verifies, calls the API and settles on chain ...");
                }
            });
        heading(&format!("call {} of {}: {method} {path}", i + 1, args.requests));
        status.show(&format!("asking    -> {method} {path} without paying ..."));
        let dry = client.dry_run(method, &url, HeaderMap::new(), body.clone()).await?;
        status.clear();
        println!("unpaid    -> {} Payment Required, {} offers:", dry.status, dry.offers.len());
        for offer in &dry.offers {
            let amount = offer.decimals.map(|d| format_atomic(offer.amount, d)).unwrap_or_default();
            let version = offer.x402_version.map(|v| format!(" v{v}")).unwrap_or_default();
            println!("            {}{version} {} {amount} USDC on {}", offer.protocol, offer.scheme, offer.network);
        }
        let (before_buyer, before_seller) =
            (balance(chain.as_ref(), buyer().address()).await?, balance(chain.as_ref(), seller()).await?);
        status.show("paying    -> choosing an offer and signing ...");
        let sent = client.send(method, &url, HeaderMap::new(), body).await;
        status.clear();
        let paid = match sent {
            Ok(paid) => paid,
            Err(e) => {
                println!("not paid  -> {e}");
                continue;
            }
        };
        let Some(payment) = &paid.payment else {
            println!("answered {} without asking payment", paid.status);
            continue;
        };
        first_paid.get_or_insert(started.elapsed());
        let reference = payment.reference.as_deref().unwrap_or("(none)");
        println!(
            "paid      -> {} via {} ({}), settled in {reference}",
            usdc(payment.offer.amount.0),
            payment.offer.protocol,
            payment.offer.scheme
        );
        let receipt = ["payment-response", "payment-receipt"].into_iter().find(|h| paid.headers.contains_key(*h));
        println!(
            "answer    -> {} with {} : {}",
            paid.status,
            receipt.unwrap_or("no receipt header"),
            String::from_utf8_lossy(&paid.body).trim()
        );
        let (after_buyer, after_seller) =
            (balance(chain.as_ref(), buyer().address()).await?, balance(chain.as_ref(), seller()).await?);
        println!(
            "balances  -> buyer {} (-{}), seller {} (+{})",
            usdc(after_buyer),
            usdc(before_buyer - after_buyer),
            usdc(after_seller),
            usdc(after_seller - before_seller)
        );
        if paid.status.is_success() {
            paid_calls += 1;
        }
    }

    let ledger = store.payments(&PaymentQuery::default()).await?;
    heading("the seller's ledger");
    print!("{}", super::ledger::table(&ledger));
    let settled = ledger.iter().filter(|p| p.state == PaymentState::Settled).count();
    let all_good = paid_calls == args.requests && settled == args.requests;
    if let Some(elapsed) = first_paid {
        println!(
            "\nfirst paid response {} ms after start; {paid_calls} of {} calls paid, {settled} settled",
            elapsed.as_millis(),
            args.requests
        );
    }

    if args.exit {
        let _ = stop.send(());
        let _ = gateway.await;
        return Ok(if all_good { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    heading("try it by hand (Ctrl-C to stop)");
    println!("curl -i {base}/v1/quote");
    println!(
        "PAYGATE_WALLET_KEY={} PAYGATE_SPEND_LOG=/tmp/paygate-demo-spend.db paygate pay --max 0.05 {base}/v1/quote",
        dev_account(2).to_bytes()
    );
    println!(
        "(dev account 2 holds 1,000,000 test USDC on this devnet; `cargo run --release -p paygate --` for `paygate`)"
    );
    super::serve::shutdown_signal().await;
    let _ = stop.send(());
    let _ = gateway.await;
    Ok(ExitCode::SUCCESS)
}
