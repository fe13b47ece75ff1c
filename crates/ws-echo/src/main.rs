//! The ws-echo binary: parse flags, install logging, serve until SIGTERM.

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use ws_echo::{Config, LogFormat};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_tracing(config.log_format);
    // Handlers first: a SIGTERM right after the "listening" line must not meet the default disposition.
    let mut signals = ws_echo::shutdown::Signals::install(config.ignore_sigterm)?;
    let running = ws_echo::spawn(config).await.context("starting ws-echo")?;
    let signal = signals.recv().await;
    tracing::info!(signal, "signal received");
    running.shutdown();
    tokio::select! {
        result = running.wait() => result.context("serving")?,
        signal = signals.recv() => tracing::warn!(signal, "second signal: exiting without waiting"),
    }
    Ok(())
}

/// Logs go to stdout, filtered by `RUST_LOG` (default `info`).
fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
    }
}
