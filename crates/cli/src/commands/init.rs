//! `paygate init`: a commented starter config for a target network, so that the first real config is one
//! edit away from working. Every field it writes carries a comment saying what it does.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use alloy::primitives::{Address, B256};
use anyhow::Context as _;

/// Where the config will sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The embedded devnet: test money, nothing to install.
    Devnet,
    /// Base Sepolia testnet: test USDC from a faucet, settled by the x402.org facilitator by default.
    BaseSepolia,
    /// Base mainnet: real USDC.
    Base,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The network to sell on.
    #[arg(long, value_enum, default_value = "devnet")]
    network: Target,
    /// Your API, which paygate proxies paid requests to.
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    upstream: String,
    /// The address that receives the payments (required on base-sepolia and base).
    #[arg(long)]
    pay_to: Option<Address>,
    /// Settle through this x402 facilitator (default on base-sepolia: x402.org/facilitator).
    #[arg(long, conflicts_with = "settler_key_env")]
    facilitator: Option<String>,
    /// Your JSON-RPC endpoint for the network (default: its public one, which is rate-limited).
    #[arg(long)]
    rpc_url: Option<String>,
    /// Settle with paygate's built-in settler, its key read from this environment variable.
    #[arg(long, value_name = "ENV_VAR")]
    settler_key_env: Option<String>,
    /// Where to write the config.
    #[arg(long, short, default_value = "paygate.toml")]
    out: PathBuf,
    /// Overwrite the file if it exists.
    #[arg(long)]
    force: bool,
}

const X402_ORG_FACILITATOR: &str = "https://x402.org/facilitator";

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = render(&args)?;
    if args.out.exists() && !args.force {
        anyhow::bail!("{} exists; give --force to overwrite it", args.out.display());
    }
    std::fs::write(&args.out, text).with_context(|| format!("write {}", args.out.display()))?;
    eprintln!(
        "wrote {}; check it with: paygate serve --check-config --config {}",
        args.out.display(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn render(args: &Args) -> anyhow::Result<String> {
    let mut t = String::new();
    let network = match args.network {
        Target::Devnet => "devnet",
        Target::BaseSepolia => "base-sepolia",
        Target::Base => "base",
    };
    writeln!(t, "# paygate configuration for {network}, written by `paygate init`.")?;
    writeln!(t, "# Every field is explained; docs/configuration.md lists them all with their defaults.")?;
    writeln!(t, "\n[server]")?;
    writeln!(t, "# Where paygate listens; point your clients (or load balancer) here.")?;
    writeln!(t, "listen = \"127.0.0.1:8402\"")?;
    writeln!(t, "# HMAC key of the challenge ids (at least 32 bytes). Share it between instances; keep it secret.")?;
    writeln!(t, "# Better still, write secret = \"${{PAYGATE_SECRET}}\" and set that variable.")?;
    writeln!(t, "secret = \"{}\"", B256::random())?;
    writeln!(t, "# How long the offers of a 402 stay payable, in seconds.")?;
    writeln!(t, "challenge_ttl_secs = 30")?;
    writeln!(t, "\n[upstream]")?;
    writeln!(t, "# Your API. Only paid (or free-route) requests reach it.")?;
    writeln!(t, "url = \"{}\"", args.upstream)?;
    writeln!(t, "\n[store]")?;
    writeln!(t, "# The ledger of payments (relative paths are relative to this file).")?;
    writeln!(t, "url = \"sqlite://paygate-ledger.db\"")?;

    if args.network == Target::Devnet && args.rpc_url.is_some() {
        anyhow::bail!("--rpc-url is for base-sepolia and base: the devnet runs inside paygate");
    }
    if args.network != Target::Devnet {
        writeln!(t, "\n[networks.{network}]")?;
        writeln!(
            t,
            "# The chain's JSON-RPC endpoint: paygate simulates each payment there before accepting it, and the"
        )?;
        writeln!(t, "# built-in settler submits there. Without it, the network's public endpoint (rate-limited).")?;
        match &args.rpc_url {
            Some(url) => writeln!(t, "rpc_url = \"{url}\"")?,
            None => {
                let public = paygate_core::registry::network(network).and_then(|n| n.public_rpc).unwrap_or_default();
                writeln!(t, "# rpc_url = \"{public}\"")?
            }
        }
    }
    writeln!(t, "\n[[accept]]")?;
    writeln!(t, "# The network paid on.")?;
    writeln!(t, "network = \"{network}\"")?;
    writeln!(t, "# The token paid in: USDC, an EIP-3009 stablecoin (one unit = one US dollar).")?;
    writeln!(t, "asset = \"USDC\"")?;
    let pay_to = match (args.network, args.pay_to) {
        (_, Some(address)) => address,
        (Target::Devnet, None) => paygate_chain::devtoken::dev_account(9).address(),
        (_, None) => anyhow::bail!("--pay-to ADDRESS is required on {network}: it receives the money"),
    };
    writeln!(t, "# The address that receives the payments.")?;
    writeln!(t, "pay_to = \"{pay_to}\"")?;
    match (args.network, &args.settler_key_env, &args.facilitator) {
        (_, Some(env), _) => {
            writeln!(t, "# paygate submits the transfer itself, paying gas from this key.")?;
            writeln!(t, "settlement = \"builtin\"")?;
            writeln!(t, "# The settler's private key, read from the environment (never write it here).")?;
            writeln!(t, "settler_key = \"${{{env}}}\"")?;
        }
        (Target::Devnet, None, None) => {
            writeln!(t, "# paygate submits the transfer itself on the devnet.")?;
            writeln!(t, "settlement = \"builtin\"")?;
            writeln!(t, "# Devnet dev account 0, funded at genesis (test money only; never use it elsewhere).")?;
            writeln!(t, "settler_key = \"{}\"", paygate_chain::devtoken::dev_account(0).to_bytes())?;
        }
        (target, None, facilitator) => {
            let url = match (target, facilitator) {
                (_, Some(url)) => url.clone(),
                (Target::BaseSepolia, None) => X402_ORG_FACILITATOR.to_owned(),
                _ => anyhow::bail!("on {network} give --facilitator URL or --settler-key-env ENV_VAR"),
            };
            writeln!(t, "# An x402 facilitator verifies and submits the transfer.")?;
            writeln!(t, "settlement = \"facilitator\"")?;
            writeln!(t, "# The facilitator's base URL.")?;
            writeln!(t, "facilitator_url = \"{url}\"")?;
        }
    }

    writeln!(t, "\n[[routes]]")?;
    writeln!(t, "# The HTTP method this route matches (leave it out for any).")?;
    writeln!(t, "method = \"GET\"")?;
    writeln!(
        t,
        "# The path of your API to charge for: `/exact`, `/items/{{id}}` (one segment), `/files/*` (the rest)."
    )?;
    writeln!(t, "path = \"/v1/quote\"")?;
    writeln!(t, "# The price of one call: US dollars (`\"$0.01\"`) or an amount of the token (`\"0.5 USDC\"`).")?;
    writeln!(t, "price = \"$0.01\"")?;
    writeln!(t, "\n[[routes]]")?;
    writeln!(t, "# A free route: no price, proxied as is.")?;
    writeln!(t, "path = \"/health\"")?;
    Ok(t)
}
