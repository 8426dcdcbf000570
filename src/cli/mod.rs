//! The `serialmint` command line: `serve` and the store-admin-style admin verbs.
//!
//! Parsing lives here; each verb family has a file of its own. The admin verbs talk HTTP to
//! the admin listener (`SERIALMINT_ADMIN_URL`, `SERIALMINT_ADMIN_TOKEN`); `migrate` and `init`
//! work on the database directly, from the configuration.

mod bootstrap;
pub mod client;
mod keys;
mod models;
mod output;
mod policies;
mod signing_log;
mod tokens;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, SETTINGS};

/// How long `serve` waits for the runtime's blocking threads after the graceful drain.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

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
    /// Apply the database migrations (`serve` does this too).
    Migrate {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bootstrap the database: create the brand and print the first admin token, once.
    Init {
        /// The brand's account-id.
        #[arg(long)]
        brand_id: String,
        /// Make another admin token even though one exists (when every admin token is lost).
        #[arg(long)]
        new_token: bool,
        /// Print {"brand-id", "admin-token"}.
        #[arg(long)]
        json: bool,
    },
    /// Create a key, a model, a serial policy or an admin token.
    #[command(subcommand)]
    Create(Create),
    /// List keys, models, serial policies, serials or admin tokens.
    #[command(subcommand)]
    List(List),
    /// Print the account-key-request of a key (signed by the key), for the brand store.
    RegisterKey {
        /// The key's SHA3-384 id (or its name); ids may start with `-`.
        #[arg(allow_hyphen_values = true)]
        key: String,
        /// Print {"key", "account-key-request"}.
        #[arg(long)]
        json: bool,
    },
    /// Push a file of account / account-key assertions from the store (`-` for stdin).
    PushAccountKeys {
        /// The file.
        file: PathBuf,
        /// Print the server's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export data.
    #[command(subcommand)]
    Export(Export),
}

/// `serialmint create ...`
#[derive(Debug, Subcommand)]
pub enum Create {
    /// Create an admin API token (printed once).
    Token {
        /// A name for it (shown in the audit log).
        name: String,
        /// admin or read-only.
        #[arg(long, default_value = "read-only", value_parser = ["admin", "read-only"])]
        role: String,
        /// When it stops working (RFC 3339), e.g. 2027-01-01T00:00:00Z.
        #[arg(long)]
        expires_at: Option<String>,
        /// Print {"name", "role", "token"}.
        #[arg(long)]
        json: bool,
    },
    /// Generate an RSA-4096 signing key on the HSM.
    Key {
        /// The key name (lowercase letters, digits, dashes).
        name: String,
        /// Print {"name", "sha3-384"}.
        #[arg(long)]
        json: bool,
    },
    /// Create a model (asks for missing values at a terminal).
    Model {
        /// The model name.
        name: Option<String>,
        /// The API key factory devices send (at least 16 characters).
        #[arg(long)]
        api_key: Option<String>,
        /// Generate a strong API key instead of asking.
        #[arg(long, conflicts_with = "api_key")]
        generate_api_key: bool,
        /// Rate limit, duplicate and serial-generation policy.
        #[command(flatten)]
        settings: ModelSettings,
        /// Print {"name", "api-key"}.
        #[arg(long)]
        json: bool,
    },
    /// Make a key the serial signing key of a model (a new policy revision).
    SerialPolicy {
        /// The model name.
        #[arg(long)]
        model: Option<String>,
        /// The key's SHA3-384 id (or name); ids may start with `-`.
        #[arg(long, allow_hyphen_values = true)]
        key: Option<String>,
        /// Print {"model", "key", "revision"}.
        #[arg(long)]
        json: bool,
    },
}

/// A model's serving settings (defaults: no rate limit, refuse duplicates, UUID serials).
#[derive(Debug, Default, clap::Args)]
pub struct ModelSettings {
    /// Serials per second for this model (503 past it).
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// Burst allowed above the rate.
    #[arg(long, requires = "rate_limit")]
    pub rate_limit_burst: Option<u32>,
    /// A serial already issued, asked for by another device key: refuse (409) or reissue.
    #[arg(long, value_parser = ["refuse", "reissue"])]
    pub duplicate_policy: Option<String>,
    /// When the device proposes no serial: uuid, prefix-counter or require-proposed.
    #[arg(long, value_parser = ["uuid", "prefix-counter", "require-proposed"])]
    pub serial_generation: Option<String>,
    /// The prefix of prefix-counter serials.
    #[arg(long)]
    pub serial_prefix: Option<String>,
}

/// `serialmint list ...`
#[derive(Debug, Subcommand)]
pub enum List {
    /// Admin API tokens (never their secrets).
    Tokens {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Signing keys: Name, SHA3-384.
    Keys {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Models: Name, API key, Active serial signing key.
    Models {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serial-policy revisions, newest first.
    SerialPolicies {
        /// Only this model.
        #[arg(long)]
        model: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Issued serials from the signing log, newest first.
    Serials {
        /// Only this model.
        #[arg(long)]
        model: Option<String>,
        /// Only serials starting with this.
        #[arg(long)]
        serial: Option<String>,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `serialmint export ...`
#[derive(Debug, Subcommand)]
pub enum Export {
    /// The whole signing log, streamed to stdout.
    SigningLog {
        /// csv or json.
        #[arg(long, default_value = "csv", value_parser = ["csv", "json"])]
        format: String,
        /// Only this model.
        #[arg(long)]
        model: Option<String>,
        /// Only serials starting with this.
        #[arg(long)]
        serial: Option<String>,
        /// Same as --format json.
        #[arg(long)]
        json: bool,
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
            let result = runtime.block_on(crate::server::serve(config));
            // After the graceful drain: do not wait for blocking threads without end (a
            // database or other blocking task that hangs must not keep the process alive;
            // PKCS#11 calls run on detached threads that nothing waits for anyway).
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
            result.map_err(|e| e.to_string())
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
        Command::Migrate { json } => {
            let config =
                Config::load(cli.config.as_deref(), &overrides).map_err(|e| e.to_string())?;
            block_on(bootstrap::migrate(&config, json))
        }
        Command::Init {
            brand_id,
            new_token,
            json,
        } => {
            let config =
                Config::load(cli.config.as_deref(), &overrides).map_err(|e| e.to_string())?;
            block_on(bootstrap::init(&config, &brand_id, new_token, json))
        }
        Command::Create(c) => {
            let client = client::Client::from_env()?;
            block_on(async move {
                match c {
                    Create::Token {
                        name,
                        role,
                        expires_at,
                        json,
                    } => tokens::create(&client, &name, &role, expires_at, json).await,
                    Create::Key { name, json } => keys::create(&client, &name, json).await,
                    Create::Model {
                        name,
                        api_key,
                        generate_api_key,
                        settings,
                        json,
                    } => {
                        models::create(&client, name, api_key, generate_api_key, &settings, json)
                            .await
                    }
                    Create::SerialPolicy { model, key, json } => {
                        policies::create(&client, model, key, json).await
                    }
                }
            })
        }
        Command::List(l) => {
            let client = client::Client::from_env()?;
            block_on(async move {
                match l {
                    List::Tokens { json } => tokens::list(&client, json).await,
                    List::Keys { json } => keys::list(&client, json).await,
                    List::Models { json } => models::list(&client, json).await,
                    List::SerialPolicies { model, json } => {
                        policies::list(&client, model, json).await
                    }
                    List::Serials {
                        model,
                        serial,
                        limit,
                        json,
                    } => signing_log::list(&client, model, serial, limit, json).await,
                }
            })
        }
        Command::RegisterKey { key, json } => {
            let client = client::Client::from_env()?;
            block_on(keys::register(&client, &key, json))
        }
        Command::PushAccountKeys { file, json } => {
            let client = client::Client::from_env()?;
            block_on(keys::push(&client, &file, json))
        }
        Command::Export(Export::SigningLog {
            format,
            model,
            serial,
            json,
        }) => {
            let client = client::Client::from_env()?;
            let format = if json { "json".to_string() } else { format };
            block_on(signing_log::export(&client, &format, model, serial))
        }
    }
}

fn block_on<F: std::future::Future<Output = Result<(), String>>>(f: F) -> Result<(), String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_may_start_with_a_dash() {
        let id = "-94mG7tbxYmXM7EGoNocakRqsDUGZvzwaIZER7ncwtMAUkF4FvEaMxnp5siItJp8";
        let cli = Cli::try_parse_from(["serialmint", "register-key", id]).unwrap();
        assert!(matches!(cli.command, Command::RegisterKey { ref key, .. } if key == id));
        let cli = Cli::try_parse_from([
            "serialmint",
            "create",
            "serial-policy",
            "--model",
            "widget",
            "--key",
            id,
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Create(Create::SerialPolicy { key: Some(ref k), .. }) if k == id
        ));
    }
}
