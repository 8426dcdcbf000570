//! The `serialmint` command line: `serve` and the store-admin-style admin verbs.
//!
//! Parsing lives here; each verb family gets a file of its own as it lands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, SETTINGS};

/// serialmint: an on-prem serial vault for snapd devices, keys in a PKCS#11 HSM.
#[derive(Debug, Parser)]
#[command(name = "serialmint", version, about)]
pub struct Cli {
    /// Configuration file (TOML); settings from SERIALMINT_* variables and flags override it.
    #[arg(long, global = true, env = "SERIALMINT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Override one setting, e.g. `--set hsm.sessions=2` (repeatable; wins over file and env).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true, value_parser = parse_set)]
    pub set: Vec<(String, String)>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the device and admin listeners until SIGINT or SIGTERM.
    Serve {
        /// Device listener address (overrides device.listen).
        #[arg(long)]
        device_listen: Option<String>,
        /// Admin listener address (overrides admin.listen).
        #[arg(long)]
        admin_listen: Option<String>,
    },
    /// Print the effective configuration (secrets redacted), or every setting with `--list`.
    Config {
        /// List every setting: file key, environment variable, default, meaning.
        #[arg(long)]
        list: bool,
    },
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got `{s}`"))?;
    Ok((k.trim().to_owned(), v.to_owned()))
}

/// Runs the parsed command line; errors are printed as one line.
pub fn run(cli: Cli) -> ExitCode {
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("serialmint: {message}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> Result<(), String> {
    let mut overrides = cli.set.clone();
    match cli.command {
        Command::Serve {
            device_listen,
            admin_listen,
        } => {
            overrides.extend(device_listen.map(|v| ("device.listen".to_string(), v)));
            overrides.extend(admin_listen.map(|v| ("admin.listen".to_string(), v)));
            let config =
                Config::load(cli.config.as_deref(), &overrides).map_err(|e| e.to_string())?;
            config.validate_for_serve().map_err(|e| e.to_string())?;
            crate::logging::init(&config);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))?;
            runtime
                .block_on(crate::server::serve(config))
                .map_err(|e| e.to_string())
        }
        Command::Config { list } => {
            if list {
                for s in SETTINGS {
                    println!("{:<34} {:<38} {:<28} {}", s.key, s.env, s.default, s.help);
                }
            } else {
                let config =
                    Config::load(cli.config.as_deref(), &overrides).map_err(|e| e.to_string())?;
                println!("{config:#?}");
            }
            Ok(())
        }
    }
}
