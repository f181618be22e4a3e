//! `paygate serve`: the gateway in front of the configured upstream.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use paygate_core::registry::DEVNET_CHAIN_ID;
use paygate_devnet::{Devnet, DevnetConfig};
use paygate_gateway::Admin;
use paygate_gateway::config::DEVNET;
use paygate_gateway::{BuildOptions, Config, CorsLayer, PaygateLayer, UpstreamProxy, build, server};
use tower::ServiceBuilder;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file.
    #[arg(long, short, env = "PAYGATE_CONFIG")]
    config: PathBuf,
    /// Validate the configuration, print what it sets up and the effective configuration (with the
    /// `PAYGATE_<TABLE>_<FIELD>` environment overrides; secrets masked), and exit.
    #[arg(long)]
    check_config: bool,
}

/// The build options of `config`: with the embedded devnet as network `devnet` when an option is paid there.
pub fn build_options(config: &Config) -> anyhow::Result<(BuildOptions, Option<Arc<Devnet>>)> {
    let mut options = BuildOptions::default();
    if !config.uses_embedded_devnet() {
        return Ok((options, None));
    }
    let state_file = config.networks.get(DEVNET).and_then(|n| n.state_file.clone());
    let devnet = Arc::new(Devnet::new(DevnetConfig { chain_id: DEVNET_CHAIN_ID, state_file, ..Default::default() })?);
    tracing::info!(
        chain_id = DEVNET_CHAIN_ID,
        state_file = ?devnet.state_file(),
        mnemonic = paygate_chain::devtoken::DEV_MNEMONIC,
        "embedded devnet started; its dev accounts 0-9 of this public mnemonic hold test USDC"
    );
    options.chains.insert(DEVNET.to_owned(), devnet.clone());
    Ok((options, Some(devnet)))
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let file = args.config.display().to_string();
    let config = Config::load(&args.config)?;
    let admin_token = config.admin.checked_token(&file)?.map(str::to_owned);
    let tls = match (&config.server.tls_cert_file, &config.server.tls_key_file) {
        (Some(cert), Some(key)) => Some(
            paygate_gateway::tls::acceptor(cert, key)
                .map_err(|e| anyhow::anyhow!("{file}: server.tls_cert_file: {e}"))?,
        ),
        (None, None) => None,
        _ => anyhow::bail!("{file}: server.tls_cert_file: give both tls_cert_file and tls_key_file, or neither"),
    };
    let (options, _devnet) = build_options(&config)?;
    let built = build(&config, &file, options).await?;
    let proxy = UpstreamProxy::new(
        &config.upstream.url,
        Duration::from_secs(config.upstream.timeout_secs),
        Duration::from_secs(config.upstream.connect_timeout_secs),
    )
    .map_err(|e| anyhow::anyhow!("{file}: upstream.url: {e}"))?;
    if args.check_config {
        println!("{file}: configuration is valid");
        // One built route per configured route, in order: print them as the operator wrote them.
        for (route, configured) in built.gateway.routes().iter().zip(&config.routes) {
            let offers: Vec<String> = route
                .listed_offers()
                .iter()
                .map(|o| {
                    let asset = &o.method.option().asset;
                    format!(
                        "{} {} ({})",
                        paygate_core::money::format_atomic(o.amount, asset.decimals),
                        asset.symbol,
                        o.method.option().name
                    )
                })
                .collect();
            let price = match (route.is_free(), offers.is_empty()) {
                (true, _) => "free".to_owned(),
                (false, true) => "priced by the hook".to_owned(),
                (false, false) => offers.join(" | "),
            };
            println!("  {} {} {price}", configured.method.as_deref().unwrap_or("*"), configured.path);
        }
        // What will run: the file with its environment overrides and defaults, secrets masked.
        let effective = toml::to_string(&config).context("print the effective configuration")?;
        println!("\neffective configuration (environment overrides applied, secrets masked):\n{effective}");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(token) = admin_token {
        let listen = config.admin.listen.as_deref().unwrap_or_default();
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("{file}: admin.listen: cannot listen on {listen}"))?;
        tracing::info!(address = %listener.local_addr()?, "admin listener (/metrics, /health, /api)");
        let admin = Admin { gateway: built.gateway.clone(), chains: built.chains.clone(), token };
        let router = paygate_gateway::admin_router(Arc::new(admin));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown_signal()).await {
                tracing::error!(error = %e, "the admin listener stopped");
            }
        });
    }
    if config.reconciler.interval_secs > 0 {
        let reconciler = built.gateway.reconciler(Duration::from_secs(config.reconciler.stale_after_secs));
        let interval = Duration::from_secs(config.reconciler.interval_secs);
        tokio::spawn(async move { reconciler.run(interval, std::future::pending()).await });
    }
    let service = ServiceBuilder::new()
        .option_layer(CorsLayer::new(&config.server.cors_origins))
        .layer(PaygateLayer::new(built.gateway))
        .service(proxy);
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .with_context(|| format!("{file}: server.listen: cannot listen on {}", config.server.listen))?;
    let scheme = if config.server.tls_cert_file.is_some() { "https" } else { "http" };
    tracing::info!(address = %listener.local_addr()?, scheme, upstream = %config.upstream.url, "paygate is listening");
    let listening = server::Listening { tls, max_header_bytes: config.server.max_header_bytes };
    server::serve_with(listener, listening, service, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down; finishing in-flight requests");
}
