//! `paygate facilitator`: a self-hosted x402 facilitator (`/verify`, `/settle`, `/supported`) for many gateways.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use paygate_core::clock::SystemClock;
use paygate_gateway::config::FacilitatorFile;
use paygate_gateway::{Facilitator, facilitator_router as router};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The facilitator's configuration file (`[facilitator]` and `[networks.*]`).
    #[arg(long, short)]
    config: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let file = args.config.display().to_string();
    let config = FacilitatorFile::load(&args.config)?;
    let facilitator = Facilitator::build(&config, &file, Arc::new(SystemClock), Default::default()).await?;
    let listen = &config.facilitator.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("{file}: facilitator.listen: cannot listen on {listen}"))?;
    let supported = facilitator.supported();
    let networks: Vec<&str> = supported.kinds.iter().map(|k| k.network.as_str()).collect();
    tracing::info!(address = %listener.local_addr()?, networks = ?networks, "the x402 facilitator is listening");
    axum::serve(listener, router(Arc::new(facilitator)))
        .with_graceful_shutdown(super::serve::shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
