//! `paygate channels`: the buyer's payment channels (MPP `evm` sessions, x402 `batch-settlement`) from the spend log: list them, or close
//! one with its seller, which refunds what was not used.

use std::path::PathBuf;
use std::process::ExitCode;

use paygate_client::{PayingClient, Policy, Wallet};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The channels this wallet opened, with what each deposited and what its last voucher allows.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// The spend log (default: $PAYGATE_HOME/spend.db, else ~/.paygate/spend.db).
        #[arg(long, env = "PAYGATE_SPEND_LOG")]
        spend_log: Option<PathBuf>,
    },
    /// Close a channel with its seller: the seller settles the last voucher (MPP) or claims what it charged (x402),
    /// and the escrow refunds the rest.
    Close {
        /// The channel id (`0x` + 64 hex digits), as `paygate channels list` shows it.
        channel_id: String,
        /// The spend log (default: $PAYGATE_HOME/spend.db, else ~/.paygate/spend.db).
        #[arg(long, env = "PAYGATE_SPEND_LOG")]
        spend_log: Option<PathBuf>,
    },
}

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List { json, spend_log } => {
            let sessions = super::pay::open_spend_log(spend_log).await?.sessions().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&sessions)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<68} {:<7} {:<24} {:>12} {:>12}", "channel", "state", "host", "deposit", "spent");
            for s in sessions {
                println!("{:<68} {:<7} {:<24} {:>12} {:>12}", s.channel_id, s.state, s.host, s.deposit, s.cumulative);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Close { channel_id, spend_log } => {
            let log = super::pay::open_spend_log(spend_log).await?;
            let client = PayingClient::new(reqwest::Client::new(), Wallet::from_env()?, Policy::default(), log);
            match client.close_session(&channel_id).await {
                Ok(closed) => {
                    println!("{}", serde_json::to_string_pretty(&closed)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(super::pay::EXIT_REJECTED))
                }
            }
        }
    }
}
