//! `paygate demo`: the whole flow in one process, with nothing installed. The embedded devnet, the built-in
//! sample API and the gateway in front of it (priced routes, both protocols offered) start on loopback; a
//! paying client then buys a few calls while the demo shows each 402 and its offers, the payment, the 200 and
//! its receipt, both balances and the ledger. Then a channel (an MPP `evm` session): one deposit, several calls
//! paid by vouchers without touching the chain, the batch settlement, and the close that refunds the rest. Then
//! an LLM-like route priced per token: a completion paid with x402 `upto` (the maximum authorized, what was used
//! settled) and a streamed one paid from a channel, each charged its tokens. Then it stays up for trying by hand,
//! or with `--exit` it exits 0 only if every call was paid and settled.

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
use paygate_proto::sse::{self, Event, Events};
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
    /// Calls the demo client pays through a channel (an MPP `evm` session).
    #[arg(long, default_value_t = 4)]
    channel_calls: usize,
    /// Exit after the paid calls: 0 only if every one was paid and settled.
    #[arg(long)]
    exit: bool,
}

/// The sample API's LLM-like route.
const CHAT: &str = "/v1/chat/completions";

/// What a channel deposits in the demo: five calls to `/v1/quote`.
const CHANNEL_DEPOSIT_USD_MICROS: u128 = 50_000;

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
    // The devnet's default option, and channels (MPP `evm` sessions) of the same test USDC. The session escrow
    // pays out only to a payee that settles itself, so the seller's own key settles its channels.
    let (seller_key, settler_key) = (dev_account(9).to_bytes(), dev_account(0).to_bytes());
    toml.push_str(&format!(
        "\n[[accept]]\nnetwork = \"devnet\"\nasset = \"USDC\"\npay_to = \"{seller}\"\nsettlement = \"builtin\"\n\
         settler_key = \"{settler_key}\"\n\n[[accept]]\nrail = \"evm-session\"\nnetwork = \"devnet\"\nasset = \"USDC\"\n\
         pay_to = \"{seller}\"\nsettler_key = \"{seller_key}\"\nsettle_every_secs = 0\n\n[[accept]]\nrail = \"upto\"\n\
         network = \"devnet\"\nasset = \"USDC\"\npay_to = \"{seller}\"\nsettler_key = \"{settler_key}\"\n",
        seller = seller()
    ));
    // The LLM-like route: priced by the tokens its answer reports, at most its maximum.
    toml.push_str(&format!(
        "\n[[routes]]\nmethod = \"POST\"\npath = \"{CHAT}\"\nmax_price = \"$0.001\"\n\n[routes.meter]\nusage = \"tokens\"\n\
         input_price = \"$0.000001\"\noutput_price = \"$0.000002\"\n"
    ));
    for (method, path, price) in ROUTES {
        toml.push_str(&format!("\n[[routes]]\nmethod = \"{method}\"\npath = \"{path}\"\nprice = \"{price}\"\n"));
    }
    let config = Config::parse(&toml, "demo")?;
    let (options, devnet) = super::serve::build_options(&config)?;
    let chain: Arc<dyn Chain> = devnet.context("the demo config pays on the embedded devnet")?;
    let built = build(&config, "demo", options).await?;
    let store = built.gateway.store().clone();
    let reconciler = built.gateway.reconciler(Duration::from_secs(60));
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

    let channel = Channel { base: &base, chain: chain.as_ref(), log: &log, policy: &policy, status, heading: &heading };
    let channel_paid = channel.run(args.channel_calls, &reconciler).await?;
    let metered_paid = if args.channel_calls > 0 { channel.metered(&chain).await? } else { 0 };

    let ledger = store.payments(&PaymentQuery::default()).await?;
    heading("the seller's ledger");
    print!("{}", super::ledger::table(&ledger));
    let settled = ledger.iter().filter(|p| p.state == PaymentState::Settled).count();
    let metered = if args.channel_calls > 0 { 2 } else { 0 };
    let calls = args.requests + args.channel_calls + metered;
    let all_good = paid_calls + channel_paid + metered_paid == calls && settled == calls;
    if let Some(elapsed) = first_paid {
        println!(
            "\nfirst paid response {} ms after start; {paid_calls} of {} calls paid, {channel_paid} of {} through a \
             channel, {metered_paid} of {metered} priced per token; {settled} settled",
            elapsed.as_millis(),
            args.requests,
            args.channel_calls
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

/// The demo's channel: one deposit, calls paid by vouchers, the batch settlement, the close.
struct Channel<'a, H: Fn(&str)> {
    base: &'a str,
    chain: &'a dyn Chain,
    log: &'a SpendLog,
    policy: &'a Policy,
    status: Status,
    heading: &'a H,
}

impl<H: Fn(&str)> Channel<'_, H> {
    async fn balances(&self) -> anyhow::Result<(u128, u128)> {
        Ok((balance(self.chain, buyer().address()).await?, balance(self.chain, seller()).await?))
    }

    /// Pays `calls` calls to `/v1/quote` through one channel and closes it; how many were paid.
    async fn run(&self, calls: usize, reconciler: &paygate_gateway::Reconciler) -> anyhow::Result<usize> {
        if calls == 0 {
            return Ok(0);
        }
        (self.heading)(&format!(
            "a channel (MPP evm session): one deposit of {}, {calls} calls paid by vouchers",
            usdc(CHANNEL_DEPOSIT_USD_MICROS)
        ));
        let client = PayingClient::new(reqwest::Client::new(), buyer(), self.policy.clone(), self.log.clone())
            .with_session_deposit(CHANNEL_DEPOSIT_USD_MICROS);
        let (buyer_before, seller_before) = self.balances().await?;
        let url = format!("{}/v1/quote", self.base);
        let mut paid_calls = 0;
        for i in 0..calls {
            self.status.show("paying    -> a voucher, checked by paygate without the chain ...");
            let sent = client.send("GET", &url, HeaderMap::new(), None).await;
            self.status.clear();
            match sent {
                Ok(paid) if paid.status.is_success() => {
                    paid_calls += 1;
                    let receipt = paid
                        .headers
                        .get("payment-receipt")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| paygate_proto::mpp::Receipt::from_header(v).ok());
                    let spent = receipt.as_ref().and_then(|r| r.extra.get("spent")).and_then(|v| v.as_str());
                    let spent = spent.and_then(|s| s.parse().ok()).map(usdc).unwrap_or_default();
                    let what = if i == 0 { "the deposit and a voucher" } else { "a voucher" };
                    println!(
                        "call {}    -> {} paid by {what}; spent from the channel so far {spent}",
                        i + 1,
                        paid.status
                    );
                }
                Ok(paid) => println!("call {}    -> {}", i + 1, paid.status),
                Err(e) => println!("call {}    -> not paid: {e}", i + 1),
            }
        }
        let (buyer_now, seller_now) = self.balances().await?;
        println!(
            "balances  -> buyer -{} (the deposit, in escrow), seller +{} (nothing settled yet)",
            usdc(buyer_before - buyer_now),
            usdc(seller_now - seller_before)
        );
        self.status.show("settling  -> the reconciler's pass settles the channel in one transaction ...");
        let done = reconciler.run_once().await?;
        self.status.clear();
        let (_, seller_settled) = self.balances().await?;
        println!(
            "settled   -> {} channel(s) in one transaction: seller +{}",
            done.channels_claimed,
            usdc(seller_settled - seller_before)
        );
        let Some(open) = self.log.sessions().await?.into_iter().find(|s| s.state == "open") else {
            return Ok(paid_calls);
        };
        let closed = client.close_session(&open.channel_id).await?;
        let (buyer_after, seller_after) = self.balances().await?;
        println!(
            "closed    -> {}: {} refunded to the buyer; in all, buyer -{}, seller +{}",
            closed.transaction,
            usdc(closed.refunded.parse().unwrap_or_default()),
            usdc(buyer_before - buyer_after),
            usdc(seller_after - seller_before)
        );
        Ok(paid_calls)
    }
}

/// Picks the x402 `upto` offer.
struct Upto;

impl paygate_client::OfferChooser for Upto {
    fn choose(&self, offers: &[&paygate_client::Offer]) -> Option<usize> {
        offers.iter().position(|o| o.scheme == "upto")
    }
}

impl<H: Fn(&str)> Channel<'_, H> {
    /// Two completions of the LLM-like route, each charged the tokens it used: one paid with x402 `upto`, one
    /// streamed and paid from a channel (closed after). How many were paid.
    async fn metered(&self, chain: &Arc<dyn Chain>) -> anyhow::Result<usize> {
        (self.heading)(
            "an LLM-like route priced per token ($1 per million prompt tokens, $2 per million completion tokens, at most $0.001)",
        );
        // An `upto` payer approves Permit2 on the token once.
        let approve = paygate_chain::abi::Eip3009Token::approveCall {
            spender: paygate_chain::upto::PERMIT2,
            value: alloy::primitives::U256::MAX,
        };
        let sender = paygate_chain::TxSender::new(chain.clone(), dev_account(1));
        let hash = sender.send(test_usdc_address(), alloy::sol_types::SolCall::abi_encode(&approve).into()).await?;
        paygate_chain::wait_for_receipt(chain.as_ref(), hash, Duration::from_secs(10), Duration::from_millis(20))
            .await?;
        println!("approved  -> Permit2 may move the buyer's test USDC (one transaction, once)");
        let url = format!("{}{CHAT}", self.base);
        let mut headers = HeaderMap::new();
        headers.insert("content-type", reqwest::header::HeaderValue::from_static("application/json"));
        let prompt = r#"{"messages":[{"role":"user","content":"Say something about paygate"}],"max_tokens":12}"#;
        let mut paid_calls = 0;

        let upto = PayingClient::new(reqwest::Client::new(), buyer(), self.policy.clone(), self.log.clone())
            .with_chooser(Upto);
        let (seller_before, _) = (balance(self.chain, seller()).await?, ());
        let paid = upto.send("POST", &url, headers.clone(), Some(prompt.as_bytes().to_vec())).await?;
        let moved = balance(self.chain, seller()).await? - seller_before;
        let body: serde_json::Value = serde_json::from_slice(&paid.body).unwrap_or_default();
        println!(
            "upto      -> {} {:?}: {} prompt and {} completion tokens; authorized {}, settled {}",
            paid.status,
            body["choices"][0]["message"]["content"].as_str().unwrap_or_default(),
            body["usage"]["prompt_tokens"],
            body["usage"]["completion_tokens"],
            usdc(1_000),
            usdc(moved)
        );
        paid_calls += usize::from(paid.status.is_success());

        let session = PayingClient::new(reqwest::Client::new(), buyer(), self.policy.clone(), self.log.clone())
            .with_session_deposit(CHANNEL_DEPOSIT_USD_MICROS);
        // Asked for as an event stream, it is paid per token as it is delivered: the first voucher pays one token,
        // and the stream pauses for the next each time the payer's run out.
        let streamed = prompt.replace("\"max_tokens\"", "\"stream\":true,\"max_tokens\"");
        let mut headers = headers;
        headers.insert("accept", reqwest::header::HeaderValue::from_static("text/event-stream"));
        let paid = session.send("POST", &url, headers, Some(streamed.into_bytes())).await?;
        let events: Vec<Event> = Events::new(1 << 20).push(&paid.body).iter().filter_map(|e| Event::read(e)).collect();
        let tokens = events.iter().filter(|e| e.name == "message" && e.data.contains("\"content\"")).count();
        let asked = events.iter().filter(|e| e.name == sse::NEED_VOUCHER).count();
        let receipt = events.iter().find(|e| e.name == sse::RECEIPT);
        let spent = receipt
            .and_then(|e| serde_json::from_str::<serde_json::Value>(&e.data).ok())
            .and_then(|r| r["spent"].as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0u128);
        println!(
            "streamed  -> {} with {tokens} tokens paid per token from a channel as they came ({asked} vouchers asked \
             mid-stream); charged {} in all",
            paid.status,
            usdc(spent)
        );
        paid_calls += usize::from(paid.status.is_success());
        if let Some(open) = self.log.sessions().await?.into_iter().find(|s| s.state == "open") {
            let closed = session.close_session(&open.channel_id).await?;
            println!(
                "closed    -> the channel paid {} and refunded {}",
                usdc(closed.settled.parse().unwrap_or_default()),
                usdc(closed.refunded.parse().unwrap_or_default())
            );
        }
        Ok(paid_calls)
    }
}
