//! Process-wide logging with `tracing`: text or JSON lines on stderr, filtered by config.
//! Colours only on a terminal: under systemd, in a file or in a pipe the lines are plain.
//!
//! Secrets never reach this layer: secret configuration values are
//! [`secrecy::SecretString`]s, which never print their contents.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Installs the global subscriber. Safe to call more than once (later calls are no-ops).
pub fn init(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
