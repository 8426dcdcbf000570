//! The `serialmint` command line: `serve` and the store-admin-style admin verbs.
//!
//! Parsing lives here; each verb family has a file of its own. The admin verbs talk HTTP to
//! the admin listener (`SERIALMINT_ADMIN_URL`, `SERIALMINT_ADMIN_TOKEN`) through the typed
//! bodies of [`crate::admin_api::wire`], the same ones the server reads and writes; `migrate`
//! and `init` work on the database directly, from the configuration. Failures are
//! [`Error`]s, printed as one line by [`run`]; stdout closing early (`| head`) is not one.

mod assets;
mod bootstrap;
mod brands;
pub mod client;
mod error;
mod keys;
mod lifecycle;
mod models;
mod output;
mod policies;
mod signing_log;
mod tokens;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use error::Error;
use output::outln;

use crate::admin_api::wire::{ExportFormat, LogQuery};
use crate::config::{Config, SETTINGS};
use crate::domain::{DuplicatePolicy, Role, SerialGeneration, UnknownChoice};

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
    /// The brand an admin verb acts for (default: the vault's only brand; when there are
    /// several, the server names them).
    #[arg(long, global = true, env = "SERIALMINT_BRAND")]
    pub brand: Option<String>,
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
        /// Print a configuration file with every setting commented out (the packaged one).
        #[arg(long, hide = true, conflicts_with = "list")]
        example: bool,
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
    /// Push files of account / account-key assertions from the store (`-` for stdin), all or
    /// nothing.
    PushAccountKeys {
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the server's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export data.
    #[command(subcommand)]
    Export(Export),
    /// Disable a key or a model.
    #[command(subcommand)]
    Disable(Toggle),
    /// Enable a key or a model again.
    #[command(subcommand)]
    Enable(Toggle),
    /// Delete a model.
    #[command(subcommand)]
    Delete(Delete),
    /// Set a model's API key.
    #[command(subcommand)]
    Set(Set),
    /// Revoke an admin token.
    #[command(subcommand)]
    Revoke(Revoke),
    /// Import a private key onto the HSM.
    #[command(subcommand)]
    Import(Import),
    /// Write shell completions and man pages into DIR (for packaging).
    #[command(hide = true)]
    GenerateAssets {
        /// Where: DIR/completions and DIR/man are made.
        dir: PathBuf,
    },
}

/// `serialmint import ...`
#[derive(Debug, Subcommand)]
pub enum Import {
    /// Import an RSA private key (4096 bits or more) onto the HSM as a signing key: an
    /// ASCII-armored OpenPGP secret key without passphrase (`gpg --export-secret-keys
    /// --armor`), or PEM (`RSA PRIVATE KEY`, `PRIVATE KEY`).
    Key {
        /// The key name (lowercase letters, digits, dashes).
        name: String,
        /// The key file (`-` for stdin).
        file: PathBuf,
        /// Print {"name", "sha3-384", "origin"}.
        #[arg(long)]
        json: bool,
    },
}

/// `serialmint create ...`
#[derive(Debug, Subcommand)]
pub enum Create {
    /// Add a brand account (an ODM building devices for several brands).
    Brand {
        /// The brand's snapd account-id.
        brand_id: String,
        /// Print {"brand-id"}.
        #[arg(long)]
        json: bool,
    },
    /// Create an admin API token (printed once).
    Token {
        /// A name for it (shown in the audit log).
        name: String,
        /// admin or read-only.
        #[arg(long, default_value = "read-only", value_parser = choice(Role::names(), str::parse::<Role>))]
        role: Role,
        /// When it stops working (RFC 3339), e.g. 2027-01-01T00:00:00Z.
        #[arg(long, value_parser = parse_time)]
        expires_at: Option<OffsetDateTime>,
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
    #[arg(long, value_parser = choice(DuplicatePolicy::names(), str::parse::<DuplicatePolicy>))]
    pub duplicate_policy: Option<DuplicatePolicy>,
    /// When the device proposes no serial: uuid, prefix-counter or require-proposed.
    #[arg(long, value_parser = choice(SerialGeneration::names(), str::parse::<SerialGeneration>))]
    pub serial_generation: Option<SerialGeneration>,
    /// The prefix of prefix-counter serials.
    #[arg(long)]
    pub serial_prefix: Option<String>,
}

/// `serialmint list ...`
#[derive(Debug, Subcommand)]
pub enum List {
    /// Brand accounts.
    Brands {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
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
        /// Show the active key's SHA3-384 id instead of its name.
        #[arg(long)]
        long: bool,
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
    /// The audit log: who changed what, when (newest first).
    AuditLog {
        /// Only entries at or after this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        since: Option<OffsetDateTime>,
        /// At most this many entries (default 100, at most 1000).
        #[arg(long)]
        limit: Option<i64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `serialmint disable ...` / `serialmint enable ...`
#[derive(Debug, Subcommand)]
pub enum Toggle {
    /// A signing key (by name or SHA3-384 id): disabled, it signs nothing and its models
    /// answer 409 until it is enabled again or a new serial-policy revision names another key.
    Key {
        /// The key's name or SHA3-384 id; ids may start with `-`.
        #[arg(allow_hyphen_values = true)]
        key: String,
        /// Print {"name", "enabled"}.
        #[arg(long)]
        json: bool,
    },
    /// A model: disabled, its devices are refused (403).
    Model {
        /// The model name.
        name: String,
        /// Print {"name", "enabled"}.
        #[arg(long)]
        json: bool,
    },
}

/// `serialmint delete ...`
#[derive(Debug, Subcommand)]
pub enum Delete {
    /// A model, only while no serial was issued for it.
    Model {
        /// The model name.
        name: String,
        /// Print {"deleted"}.
        #[arg(long)]
        json: bool,
    },
}

/// `serialmint set ...`
#[derive(Debug, Subcommand)]
pub enum Set {
    /// A model's API key (what its devices send).
    ApiKey {
        /// The model name.
        #[arg(long)]
        model: String,
        /// The new API key (at least 16 characters).
        #[arg(long, required_unless_present = "generate")]
        api_key: Option<String>,
        /// Generate a strong one instead.
        #[arg(long, conflicts_with = "api_key")]
        generate: bool,
        /// Print {"name", "api-key"}.
        #[arg(long)]
        json: bool,
    },
}

/// `serialmint revoke ...`
#[derive(Debug, Subcommand)]
pub enum Revoke {
    /// An admin token, by id (`list tokens` shows them): it stops working at once.
    Token {
        /// The token's id.
        id: i64,
        /// Print {"revoked"}.
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
        #[arg(long, default_value = "csv", value_parser = choice(ExportFormat::names(), str::parse::<ExportFormat>))]
        format: ExportFormat,
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

/// A clap value parser for one of a named choice's `names`, parsed by `parse` (the choice's
/// `FromStr`): `--help` lists the names, and the value arrives typed.
fn choice<T: Clone + Send + Sync + 'static>(
    names: Vec<&'static str>,
    parse: fn(&str) -> Result<T, UnknownChoice>,
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(names).try_map(move |s| parse(&s))
}

/// `--expires-at`: an RFC 3339 time.
fn parse_time(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(s, &Rfc3339)
}

/// A `--set` argument without `=`.
#[derive(Debug, thiserror::Error)]
#[error("expected KEY=VALUE, got `{0}`")]
struct NotKeyValue(String);

fn parse_set(s: &str) -> Result<(String, String), NotKeyValue> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| NotKeyValue(s.to_string()))?;
    Ok((k.trim().to_owned(), v.to_owned()))
}

/// Runs the parsed command line; errors are printed as one line. Stdout closing early (a
/// pipe into `head`) ends the command quietly, with success.
pub fn run(cli: Cli) -> ExitCode {
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_closed_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serialmint: {e}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> Result<(), Error> {
    let mut overrides = cli.set.clone();
    let brand = cli.brand.clone();
    let load = |overrides: &[(String, String)]| Config::load(cli.config.as_deref(), overrides);
    match cli.command {
        Command::Serve {
            device_listen,
            admin_listen,
        } => {
            overrides.extend(device_listen.map(|v| ("device.listen".to_string(), v)));
            overrides.extend(admin_listen.map(|v| ("admin.listen".to_string(), v)));
            let config = load(&overrides)?;
            config.validate_for_serve()?;
            crate::logging::init(&config);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(Error::Runtime)?;
            let result = runtime.block_on(crate::server::serve(config));
            // After the graceful drain: do not wait for blocking threads without end (a
            // database or other blocking task that hangs must not keep the process alive;
            // PKCS#11 calls run on detached threads that nothing waits for anyway).
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
            Ok(result?)
        }
        Command::Config { example: true, .. } => {
            outln!("{}", crate::config::example_toml().trim_end())
        }
        Command::GenerateAssets { dir } => assets::generate(&dir),
        Command::Config { list: true, .. } => {
            for s in SETTINGS {
                outln!("{:<34} {:<38} {:<28} {}", s.key, s.env, s.default, s.help)?;
            }
            Ok(())
        }
        Command::Config { list: false, .. } => outln!("{:#?}", load(&overrides)?),
        Command::Migrate { json } => block_on(bootstrap::migrate(&load(&overrides)?, json)),
        Command::Init {
            brand_id,
            new_token,
            json,
        } => {
            let config = load(&overrides)?;
            block_on(bootstrap::init(&config, &brand_id, new_token, json))
        }
        Command::Create(c) => admin(
            brand.clone(),
            |client| async move { create(&client, c).await },
        ),
        Command::List(l) => admin(
            brand.clone(),
            |client| async move { list(&client, l).await },
        ),
        Command::RegisterKey { key, json } => admin(brand.clone(), |client| async move {
            keys::register(&client, &key, json).await
        }),
        Command::PushAccountKeys { files, json } => admin(brand.clone(), |client| async move {
            keys::push(&client, &files, json).await
        }),
        Command::Import(Import::Key { name, file, json }) => {
            admin(brand.clone(), |client| async move {
                keys::import(&client, &name, &file, json).await
            })
        }
        Command::Export(Export::SigningLog {
            format,
            model,
            serial,
            json,
        }) => {
            let format = if json { ExportFormat::Json } else { format };
            let filter = log_filter(model, serial);
            admin(brand.clone(), |client| async move {
                signing_log::export(&client, format, filter).await
            })
        }
        Command::Disable(t) => admin(brand.clone(), |client| async move {
            toggle(&client, t, false).await
        }),
        Command::Enable(t) => admin(brand.clone(), |client| async move {
            toggle(&client, t, true).await
        }),
        Command::Delete(Delete::Model { name, json }) => {
            admin(brand.clone(), |client| async move {
                lifecycle::delete_model(&client, &name, json).await
            })
        }
        Command::Set(Set::ApiKey {
            model,
            api_key,
            generate: _,
            json,
        }) => admin(brand.clone(), |client| async move {
            lifecycle::set_api_key(&client, &model, api_key, json).await
        }),
        Command::Revoke(Revoke::Token { id, json }) => admin(brand.clone(), |client| async move {
            lifecycle::revoke_token(&client, id, json).await
        }),
    }
}

async fn toggle(client: &client::Client, t: Toggle, enabled: bool) -> Result<(), Error> {
    use lifecycle::Target;
    match t {
        Toggle::Key { key, json } => {
            lifecycle::set_enabled(client, Target::Key, &key, enabled, json).await
        }
        Toggle::Model { name, json } => {
            lifecycle::set_enabled(client, Target::Model, &name, enabled, json).await
        }
    }
}

/// Runs an admin verb with a client from the environment.
fn admin<F, Fut>(brand: Option<String>, verb: F) -> Result<(), Error>
where
    F: FnOnce(client::Client) -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    let client = client::Client::from_env()?.for_brand(brand);
    block_on(verb(client))
}

async fn create(client: &client::Client, c: Create) -> Result<(), Error> {
    match c {
        Create::Brand { brand_id, json } => brands::create(client, &brand_id, json).await,
        Create::Token {
            name,
            role,
            expires_at,
            json,
        } => tokens::create(client, &name, role, expires_at, json).await,
        Create::Key { name, json } => keys::create(client, &name, json).await,
        Create::Model {
            name,
            api_key,
            generate_api_key,
            settings,
            json,
        } => models::create(client, name, api_key, generate_api_key, &settings, json).await,
        Create::SerialPolicy { model, key, json } => {
            policies::create(client, model, key, json).await
        }
    }
}

async fn list(client: &client::Client, l: List) -> Result<(), Error> {
    match l {
        List::Brands { json } => brands::list(client, json).await,
        List::Tokens { json } => tokens::list(client, json).await,
        List::Keys { json } => keys::list(client, json).await,
        List::Models { long, json } => models::list(client, long, json).await,
        List::SerialPolicies { model, json } => policies::list(client, model, json).await,
        List::Serials {
            model,
            serial,
            limit,
            json,
        } => signing_log::list(client, log_filter(model, serial), limit, json).await,
        List::AuditLog { since, limit, json } => {
            lifecycle::audit_log(client, since, limit, json).await
        }
    }
}

/// The signing-log filter of `--model` and `--serial`.
fn log_filter(model: Option<String>, serial: Option<String>) -> LogQuery {
    LogQuery {
        model,
        serial,
        ..LogQuery::default()
    }
}

fn block_on<F: std::future::Future<Output = Result<(), Error>>>(f: F) -> Result<(), Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?
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
