//! `paygate wallet`: the buyer's key. `new` makes one (printed once, or written to an encrypted keystore
//! file); `address` shows the address of the configured key; `balance` reads its stablecoin balances from the
//! chain. The configured key is the keystore in PAYGATE_WALLET_KEYSTORE (password in PAYGATE_WALLET_PASSWORD)
//! or else the hex key in PAYGATE_WALLET_KEY.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use alloy::primitives::Address;
use anyhow::Context;
use paygate_chain::RpcChain;
use paygate_chain::devtoken::balance_of;
use paygate_client::Wallet;
use paygate_core::money::{AtomicAmount, format_atomic};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make a fresh key. Without --keystore: the address goes to stderr, the private key to stdout (store it
    /// as PAYGATE_WALLET_KEY; anyone who reads it can spend the wallet's funds). With --keystore FILE: the key
    /// is written to FILE encrypted with the password in PAYGATE_WALLET_PASSWORD, and the address printed.
    New {
        /// Write an encrypted keystore file (Web3 Secret Storage v3) instead of printing the key.
        #[arg(long, value_name = "FILE")]
        keystore: Option<PathBuf>,
    },
    /// Print the address of the configured key (PAYGATE_WALLET_KEYSTORE or PAYGATE_WALLET_KEY).
    Address,
    /// Print the wallet's balance of each EIP-3009 token of a network (or of one token).
    Balance {
        /// A built-in network (`base`, `base-sepolia`, ...).
        #[arg(long, required_unless_present = "token")]
        network: Option<String>,
        /// The chain's JSON-RPC URL (default: the network's public endpoint).
        #[arg(long, required_unless_present = "network")]
        rpc_url: Option<String>,
        /// One token contract instead of the network's known ones.
        #[arg(long, requires = "rpc_url")]
        token: Option<Address>,
        /// The token's decimals, with --token.
        #[arg(long, default_value_t = 6)]
        decimals: u8,
    },
}

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::New { keystore: Some(path) } => {
            let password = std::env::var(paygate_client::WALLET_PASSWORD_ENV).with_context(|| {
                format!("set {} to the password that encrypts the keystore", paygate_client::WALLET_PASSWORD_ENV)
            })?;
            anyhow::ensure!(!password.is_empty(), "{} is empty", paygate_client::WALLET_PASSWORD_ENV);
            let wallet = Wallet::random();
            wallet.save_keystore(&path, &password)?;
            eprintln!(
                "wrote {}; use it with {}={} and the password in {}",
                path.display(),
                paygate_client::WALLET_KEYSTORE_ENV,
                path.display(),
                paygate_client::WALLET_PASSWORD_ENV
            );
            println!("{}", wallet.address());
        }
        Command::New { keystore: None } => {
            let wallet = Wallet::random();
            eprintln!("address: {}", wallet.address());
            eprintln!("warning: the line on stdout is the private key; keep it secret (PAYGATE_WALLET_KEY)");
            println!("{}", wallet.key_hex());
        }
        Command::Address => println!("{}", Wallet::from_env()?.address()),
        Command::Balance { network, rpc_url, token, decimals } => {
            let address = Wallet::from_env()?.address();
            let known = match &network {
                Some(name) => {
                    Some(paygate_core::registry::network(name).with_context(|| format!("unknown network {name}"))?)
                }
                None => None,
            };
            let url = rpc_url
                .or_else(|| known.and_then(|n| n.public_rpc).map(str::to_owned))
                .context("--rpc-url is needed: the network has no public endpoint")?;
            let chain = RpcChain::connect(&url, Duration::from_secs(10)).await?;
            let tokens: Vec<(String, Address, u8)> = match (token, known) {
                (Some(token), _) => vec![(token.to_string(), token, decimals)],
                (None, Some(network)) => network
                    .assets
                    .iter()
                    .filter_map(|a| Some((a.symbol.to_owned(), a.address.parse().ok()?, a.decimals)))
                    .collect(),
                (None, None) => anyhow::bail!("give --network or --token"),
            };
            for (name, token, decimals) in tokens {
                let balance = balance_of(&chain, token, address).await?;
                let atomic = AtomicAmount(balance.try_into().context("balance out of range")?);
                println!("{} {name}", format_atomic(atomic, decimals));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
