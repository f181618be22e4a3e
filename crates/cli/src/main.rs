//! The `paygate` binary: argument parsing and wiring. The work happens in the library crates.

mod commands;
mod sample_api;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sell any HTTP API to AI agents: paygate answers unpaid requests with 402 offers in x402 and MPP,
/// verifies and settles payments, and proxies paid requests to your API.
#[derive(Debug, Parser)]
#[command(name = "paygate", version, propagate_version = true)]
struct Cli {
    /// Log filter (RUST_LOG syntax), for example `info` or `paygate=debug`.
    #[arg(long, global = true, env = "PAYGATE_LOG", default_value = "info")]
    log: String,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: commands::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// See paygate earn money: an embedded devnet, a sample API, the gateway, and a client paying it.
    Demo(commands::demo::Args),
    /// Write a commented starter config for the devnet, Base Sepolia or Base.
    Init(commands::init::Args),
    /// Run the gateway: a reverse proxy that charges for the configured routes.
    Serve(commands::serve::Args),
    /// Run a self-hosted x402 facilitator (`/verify`, `/settle`, `/supported`) for many gateways.
    Facilitator(commands::facilitator::Args),
    /// API keys of known customers, metered into the ledger.
    #[command(subcommand)]
    Keys(commands::keys::Command),
    /// List the payments in the ledger.
    Ledger(commands::ledger::Args),
    /// Send an HTTP request and pay its 402 from the local wallet, within limits.
    Pay(Box<commands::pay::Args>),
    /// The buyer's spend log, with totals per day and host.
    Spend(commands::spend::Args),
    /// An MCP server (stdio) with tools that fetch URLs paying their 402s from the local wallet, within its limits.
    Mcp(Box<commands::mcp::Args>),
    /// The buyer's payment channels (MPP sessions): list, close.
    #[command(subcommand)]
    Channels(commands::channels::Command),
    /// The buyer's wallet key.
    #[command(subcommand)]
    Wallet(commands::wallet::Command),
    /// Developer tools for local chains.
    #[command(subcommand)]
    Dev(commands::dev::Command),
}

/// mimalloc: a paid call makes many small allocations, and about a tenth of its CPU went to glibc's malloc and
/// free (see the workspace `Cargo.toml`). The benchmark runs the gateway under the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    commands::init_logging(&cli.log, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => commands::demo::run(args).await,
            Command::Init(args) => commands::init::run(args),
            Command::Serve(args) => commands::serve::run(args).await,
            Command::Facilitator(args) => commands::facilitator::run(args).await,
            Command::Keys(command) => commands::keys::run(command).await,
            Command::Ledger(args) => commands::ledger::run(args).await,
            Command::Pay(args) => commands::pay::run(*args).await,
            Command::Spend(args) => commands::spend::run(args).await,
            Command::Mcp(args) => commands::mcp::run(*args).await,
            Command::Channels(command) => commands::channels::run(command).await,
            Command::Wallet(command) => commands::wallet::run(command).await,
            Command::Dev(command) => commands::dev::run(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
