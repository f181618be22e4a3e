//! `paygate spend`: what the wallet paid, from the local spend log, with totals per day and host.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use paygate_core::money::{AtomicAmount, format_atomic};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (`records` and `totals`).
    #[arg(long)]
    json: bool,
    /// The spend log (default: $PAYGATE_HOME/spend.db, else ~/.paygate/spend.db).
    #[arg(long, env = "PAYGATE_SPEND_LOG")]
    spend_log: Option<PathBuf>,
    /// First decide the payments a crash left `pending`, from the chain: settled ones become `paid`,
    /// expired unsettled ones `failed`; and give the budgets back what channels' escrows refunded without
    /// being asked (a seller's idle close).
    #[arg(long)]
    reconcile: bool,
    /// The JSON-RPC URL of a chain, `CHAIN_ID=URL` (repeatable); built-in networks default to their public
    /// endpoint.
    #[arg(long, value_name = "CHAIN_ID=URL", requires = "reconcile")]
    rpc: Vec<String>,
}

fn usd(micros: u128) -> String {
    format!("${}", format_atomic(AtomicAmount(micros), 6))
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let log = super::pay::open_spend_log(args.spend_log).await?;
    if args.reconcile {
        let done = paygate_client::reconcile(&log, &super::pay::chains(&args.rpc)?, paygate_client::now_ms()).await?;
        eprintln!(
            "reconciled: {} settled, {} expired, {} never signed, {} undecided; {} channel refunds found on chain",
            done.settled, done.expired, done.unsigned, done.undecided, done.refunds
        );
    }
    let records = log.records().await?;
    // The totals count what the budgets count: every row but `failed` ones, which can no longer move money.
    let mut totals: BTreeMap<(String, String), (u128, usize)> = BTreeMap::new();
    for r in records.iter().filter(|r| r.state != paygate_client::SpendState::Failed) {
        let day = paygate_core::clock::rfc3339(u64::try_from(r.at_ms / 1000).unwrap_or(0))[..10].to_owned();
        let entry = totals.entry((day, r.host.clone())).or_default();
        match r.kind.as_str() {
            // What a channel's close gave back lowers the day's total; its calls were counted by its deposit.
            "refund" => entry.0 = entry.0.saturating_sub(r.usd_micros),
            "voucher" => {}
            _ => entry.0 += r.usd_micros,
        }
        entry.1 += 1;
    }
    if args.json {
        let totals: Vec<_> = totals
            .iter()
            .map(|((day, host), (micros, count))| {
                serde_json::json!({"day": day, "host": host, "usd_micros": micros, "payments": count})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"records": records, "totals": totals}))?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<5} {:<20} {:<9} {:>12} {:<6} {:<14} {:<66} url",
        "id", "time", "state", "usd", "proto", "network", "reference"
    );
    for r in &records {
        let time = paygate_core::clock::rfc3339(u64::try_from(r.at_ms / 1000).unwrap_or(0));
        let state = r.state.as_str();
        // A refund gives back; a voucher was paid by its channel's deposit.
        let usd = match r.kind.as_str() {
            "refund" => format!("-{}", usd(r.usd_micros)),
            "voucher" => "(channel)".to_owned(),
            _ => usd(r.usd_micros),
        };
        println!(
            "{:<5} {:<20} {:<9} {:>12} {:<6} {:<14} {:<66} {}",
            r.id,
            time,
            state,
            usd,
            r.protocol,
            r.network,
            r.reference.as_deref().unwrap_or("-"),
            r.url
        );
    }
    println!();
    println!("{:<10} {:<30} {:>12} {:>8}", "day", "host", "usd", "payments");
    for ((day, host), (micros, count)) in &totals {
        println!("{day:<10} {host:<30} {:>12} {count:>8}", usd(*micros));
    }
    Ok(ExitCode::SUCCESS)
}
