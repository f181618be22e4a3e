//! `paygate dev`: tools for local development chains.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::U256;
use paygate_chain::RpcChain;
use paygate_chain::devtoken::{self, TEST_USDC_DECIMALS};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Deploy the EIP-3009 test token (USDC-like, "USD Coin" version "2", 6 decimals) on a running anvil at its
    /// deterministic address, from dev account 0, unless it is there; then top dev accounts 1 to 9 up to 1,000
    /// USDC. Prints the token address.
    Fund {
        /// JSON-RPC URL of the chain (anvil's default mnemonic must be funded there).
        #[arg(long, default_value = "http://127.0.0.1:8545")]
        rpc_url: String,
        /// Whole tokens each account holds afterwards.
        #[arg(long, default_value_t = 1000)]
        amount: u64,
    },
    /// Serve the built-in sample API (GET /v1/quote, POST /v1/echo, GET /v1/weather, GET /health), to put
    /// paygate in front of when you have no API of your own yet.
    Upstream {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: String,
    },
}

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Fund { rpc_url, amount } => {
            let chain = RpcChain::connect(&rpc_url, Duration::from_secs(10)).await?;
            let atomic = U256::from(amount) * U256::from(10u64).pow(U256::from(TEST_USDC_DECIMALS));
            let report = devtoken::fund(Arc::new(chain), 1..=9, atomic).await?;
            if report.deployed {
                eprintln!("deployed the test token");
            }
            for (account, balance) in &report.balances {
                eprintln!("{account}: {} USDC", balance / U256::from(10u64).pow(U256::from(TEST_USDC_DECIMALS)));
            }
            println!("{}", report.token);
            Ok(ExitCode::SUCCESS)
        }
        Command::Upstream { listen } => {
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            tracing::info!(address = %listener.local_addr()?, "sample API listening");
            tokio::select! {
                served = crate::sample_api::serve(listener) => served?,
                () = super::serve::shutdown_signal() => {}
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
