//! One module per subcommand.

pub mod channels;
pub mod demo;
pub mod dev;
pub mod facilitator;
pub mod init;
pub mod keys;
pub mod ledger;
pub mod mcp;
pub mod pay;
pub mod serve;
pub mod spend;
pub mod wallet;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr, so that stdout stays for command output.
pub fn init_logging(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: escape codes would garble log files and journals.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
