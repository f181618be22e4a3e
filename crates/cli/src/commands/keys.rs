//! `paygate keys`: API keys of known customers (`create`, `list`, `revoke`), kept hashed in the ledger's store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use paygate_gateway::api_keys;
use paygate_gateway::config::StoreConfig;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make a key for a customer and print it, once: only its hash is kept.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// The customer's name, shown in the ledger as `key:<name>`.
        #[arg(long)]
        name: String,
    },
    /// List the keys: name, first characters, created, revoked.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a customer's key: its calls get 401 from then on.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// The customer's name.
        name: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// The configuration file (its `store.url` names the store).
    #[arg(long, short, env = "PAYGATE_CONFIG")]
    config: PathBuf,
}

async fn open(args: &StoreArgs) -> anyhow::Result<std::sync::Arc<dyn paygate_store::Store>> {
    let store = StoreConfig::load(&args.config)?;
    Ok(paygate_store::open(&store.url).await?)
}

fn time(ms: i64) -> String {
    paygate_core::clock::rfc3339(u64::try_from(ms / 1000).unwrap_or(0))
}

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Create { store, name } => {
            anyhow::ensure!(!name.trim().is_empty(), "--name: give the customer a name");
            let key = api_keys::generate();
            let created =
                open(&store).await?.create_api_key(&name, &api_keys::hash(&key), api_keys::shown(&key)).await?;
            created.with_context(|| format!("a key named {name:?} exists already"))?;
            println!("{key}");
            eprintln!("API key for {name:?}: shown once, keep it; paygate stores only its hash");
        }
        Command::List { store, json } => {
            let keys = open(&store).await?.api_keys().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                println!("{:<24} {:<14} {:<22} revoked", "name", "key", "created");
                for key in keys {
                    let revoked = key.revoked_at_ms.map_or_else(|| "-".to_owned(), time);
                    println!(
                        "{:<24} {:<14} {:<22} {revoked}",
                        key.name,
                        format!("{}…", key.prefix),
                        time(key.created_at_ms)
                    );
                }
            }
        }
        Command::Revoke { store, name } => {
            if !open(&store).await?.revoke_api_key(&name).await? {
                anyhow::bail!("no live key is named {name:?}");
            }
            println!("revoked the key of {name:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
