//! The command line's grammar: every verb, flag and argument as clap derives them, with the
//! parsers of typed values (named choices from [`crate::domain`], RFC 3339 times, `--set`).
//! What the verbs do is in the other files of [`crate::cli`].

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::admin_api::wire::ExportFormat;
use crate::domain::{DuplicatePolicy, KeyPurpose, Role, SerialGeneration, UnknownChoice};

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
    /// Create a key, a model, a serial or remodel policy, or an admin token.
    #[command(subcommand)]
    Create(Create),
    /// List keys, models, serial or remodel policies, serials or admin tokens.
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
    /// Delete a model or a remodel policy.
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
    /// Check the tamper-evident signing log offline (no database, no HSM): the hash chain of
    /// an export, every checkpoint's signature with the audit key, and that each checkpoint
    /// matches the chain; names each finding and the rows after the newest checkpoint.
    /// Exits 1 when anything is found.
    VerifyLog {
        /// The signing log as `serialmint export signing-log --json` wrote it, unfiltered
        /// (`-` for stdin).
        #[arg(long, required_unless_present = "live", conflicts_with = "live")]
        export: Option<PathBuf>,
        /// Fetch the signing log, the audit log and the server's checkpoints from the admin
        /// API (`SERIALMINT_ADMIN_URL`, `SERIALMINT_ADMIN_TOKEN`) instead of export files. The
        /// audit key still comes from `--audit-key` (a copy kept off the server), and
        /// checkpoints kept elsewhere (`--checkpoints`) are checked beside the server's.
        #[arg(long)]
        live: bool,
        /// The audit public key (PEM), as `serialmint export audit-key` printed it.
        #[arg(long)]
        audit_key: PathBuf,
        /// Checkpoints: `serialmint export checkpoints` output, or a service log holding
        /// `log checkpoint` lines (repeatable; copies of one checkpoint count once).
        #[arg(long)]
        checkpoints: Vec<PathBuf>,
        /// The admin audit log as `serialmint export audit-log` wrote it: its chain and its
        /// checkpoints are checked too (with `--live`, the server's audit log always is).
        #[arg(long, conflicts_with = "live")]
        audit_export: Option<PathBuf>,
        /// Also re-verify every row's serial assertion: it must say what its row says
        /// (brand, model, serial, device key, signing key) and verify, at the row's issuance
        /// time, under the trusted roots and the account-keys of `--assertions` (with
        /// `--live`, also the server's held ones, admitted only through the roots).
        #[arg(long)]
        check_serials: bool,
        /// The trusted root `account` and `account-key` assertions, as the server's
        /// `trust.assertions` file; Canonical's production roots when not given.
        #[arg(long, requires = "check_serials")]
        trusted: Option<PathBuf>,
        /// `account` and `account-key` assertions to admit under the roots: `serialmint export
        /// account-keys` output or the brand store's files (repeatable).
        #[arg(long, requires = "check_serials")]
        assertions: Vec<PathBuf>,
    },
    /// Sign an assertion with a brand key on the HSM.
    #[command(subcommand)]
    Sign(super::model_sign::Sign),
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
        /// assertions (serials and other assertions), or audit (signs only the tamper-evident
        /// log's checkpoints, never an assertion).
        #[arg(long, default_value = "assertions", value_parser = choice(KeyPurpose::names(), str::parse::<KeyPurpose>))]
        purpose: KeyPurpose,
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
    /// Let devices of one model re-register as another of the brand's (remodel).
    RemodelPolicy(super::remodel::CreateArgs),
    /// Issue a system-user assertion (a local login on devices of a model), signed on the
    /// HSM; prints the stream snapd's auto-import reads (account, account-key, system-user).
    SystemUser(super::system_user::CreateArgs),
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
    /// Remodel policies: which devices may re-register as which model.
    RemodelPolicies(super::remodel::ListArgs),
    /// System users issued: model, username, serials, until, who and when (never the
    /// password).
    SystemUsers(super::system_user::ListArgs),
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
    /// A remodel policy: devices of its original model may no longer re-register.
    RemodelPolicy(super::remodel::DeleteArgs),
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
    /// The whole admin audit log with its chain links, oldest first, as JSON (for
    /// `verify-log --audit-export`).
    AuditLog,
    /// The held account and account-key assertions (pushed from the brand store) as one
    /// assertion stream, accounts first (for `verify-log --check-serials --assertions`).
    AccountKeys,
    /// The tamper-evident log's signed checkpoints, one JSON object per line (keep a copy
    /// off the machine for `verify-log --checkpoints`).
    Checkpoints,
    /// The audit key's public key as PEM (SubjectPublicKeyInfo), for `verify-log
    /// --audit-key`: the newest ready, active audit key, or the one named.
    AuditKey {
        /// The audit key's name or SHA3-384 id.
        #[arg(allow_hyphen_values = true)]
        key: Option<String>,
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
