//! `paygate ledger`: the payments, as a table, JSON or CSV; with `--channels`, the payment channels; with
//! `--transactions`, the channel transactions.

use std::path::PathBuf;
use std::process::ExitCode;

use paygate_core::money::{AtomicAmount, format_atomic};
use paygate_gateway::config::StoreConfig;
use paygate_store::{PaymentQuery, PaymentRecord, PaymentState};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file (its `store.url` names the ledger).
    #[arg(long, short, env = "PAYGATE_CONFIG")]
    config: PathBuf,
    /// Print JSON (one array).
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV with a header row.
    #[arg(long)]
    csv: bool,
    /// Only payments in this state (verified, settling, settled, failed, pending, voided, metered).
    #[arg(long)]
    state: Option<String>,
    /// At most this many payments, newest first.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// The payment channels instead: each payer's deposit, and what was charged, claimed on chain and not yet
    /// claimed (the seller's exposure), in atomic units.
    #[arg(long, conflicts_with_all = ["csv", "state"])]
    channels: bool,
    /// The channel transactions instead (claims, sweeps, settlements, refunds, closes), newest first, each with
    /// its state: `sent` until the chain decided it, then `mined` or `failed`.
    #[arg(long, conflicts_with_all = ["csv", "state", "channels"])]
    transactions: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Only `[store]`: reading the ledger needs none of the payment options' secrets.
    let store_config = StoreConfig::load(&args.config)?;
    let store = paygate_store::open(&store_config.url).await?;
    if args.channels {
        let rows = store.channels(args.limit).await?.iter().map(|c| c.summary()).collect();
        let columns = ["id", "option", "payer", "deposit", "charged", "claimed", "unclaimed"];
        return print_rows(rows, args.json, &columns);
    }
    if args.transactions {
        let rows = store.channel_transactions(args.limit).await?.iter().map(|t| t.summary()).collect();
        return print_rows(rows, args.json, &["hash", "option", "kind", "channel", "amount", "state"]);
    }
    let state = args.state.as_deref().map(str::parse::<PaymentState>).transpose()?;
    let payments = store.payments(&PaymentQuery { state, limit: Some(args.limit), ..Default::default() }).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&payments)?);
    } else if args.csv {
        print!("{}", csv(&payments));
    } else {
        print!("{}", table(&payments));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints `rows` as JSON, or as a table of their `columns`.
fn print_rows(rows: Vec<serde_json::Value>, json: bool, columns: &[&str]) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let cell = |v: &serde_json::Value| v.as_str().map(str::to_owned).unwrap_or_default();
    let mut lines = vec![columns.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>()];
    lines.extend(rows.iter().map(|r| columns.iter().map(|c| cell(&r[*c])).collect()));
    let widths: Vec<usize> = (0..columns.len()).map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0)).collect();
    for line in lines {
        let cells: Vec<String> = line.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

fn amount(p: &PaymentRecord) -> String {
    let units =
        p.amount.parse::<AtomicAmount>().map(|a| format_atomic(a, p.decimals)).unwrap_or_else(|_| p.amount.clone());
    format!("{units} {}", p.asset_symbol)
}

fn time(ms: i64) -> String {
    paygate_core::clock::rfc3339(u64::try_from(ms / 1000).unwrap_or(0))
}

const COLUMNS: [&str; 11] =
    ["id", "time", "state", "route", "amount", "atomic", "asset", "network", "payer", "tx_hash", "protocol"];

fn row(p: &PaymentRecord) -> [String; 11] {
    [
        p.id.to_string(),
        time(p.created_at_ms),
        p.state.to_string(),
        p.route.clone(),
        amount(p),
        p.amount.clone(),
        p.asset.clone(),
        p.network.clone(),
        p.payer.clone(),
        p.tx_hash.clone().unwrap_or_default(),
        p.protocol.clone(),
    ]
}

fn csv(payments: &[PaymentRecord]) -> String {
    let quote = |field: &str| {
        if field.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", field.replace('"', "\"\""))
        } else {
            field.to_owned()
        }
    };
    let mut out = COLUMNS.join(",") + "\n";
    for p in payments {
        out += &row(p).iter().map(|f| quote(f)).collect::<Vec<_>>().join(",");
        out.push('\n');
    }
    out
}

pub(crate) fn table(payments: &[PaymentRecord]) -> String {
    if payments.is_empty() {
        return "no payments\n".into();
    }
    // The atomic amount, asset address and protocol stay out of the table; --json and --csv have them.
    let shown = [0, 1, 2, 3, 4, 8, 9];
    let rows: Vec<[String; 11]> = payments.iter().map(row).collect();
    let widths: Vec<usize> = shown
        .iter()
        .map(|&c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0).max(COLUMNS[c].len()))
        .collect();
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(shown.iter().map(|&c| COLUMNS[c]).collect(), &mut out);
    for r in &rows {
        line(shown.iter().map(|&c| r[c].as_str()).collect(), &mut out);
    }
    out
}
