//! Typed configuration: TOML file < `SERIALMINT_*` environment < command-line flags.
//!
//! Every setting is declared once in [`SETTINGS`], with its file key, its environment name,
//! its default and its parser, so the three layers cannot drift apart and an unknown key in
//! the file is an error (the file equivalent of serde's `deny_unknown_fields`). Secrets (the
//! token PIN, the database URL with its password) are [`SecretString`]s (the `secrecy` crate):
//! zeroed on drop, and never printed (the configuration's `Debug` shows `"[redacted]"`, or
//! `""` when unset).
//!
//! Secrets may come from files instead (`hsm.pin_file`, `database.url_file`,
//! `hsm.more_pins_file`, e.g. systemd credentials): read once, at load, and refused when
//! group or others may read them.
//!
//! Files: this one ([`Config`], loading and checking it), `settings.rs` (the [`SETTINGS`]
//! table and the value parsers), `secret_file.rs` (reading the secret files), `error.rs`
//! ([`ConfigError`], [`ValueError`], [`SecretFileError`]), `tests.rs`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

mod error;
mod example;
mod secret_file;
mod settings;

pub use error::{ConfigError, Origin, SecretFileError, ValueError};
pub use example::example_toml;
pub use settings::{SETTINGS, Setting, find};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole configuration of a serialmint process.
#[derive(Clone)]
pub struct Config {
    /// Device listener address (`device.listen`).
    pub device_listen: SocketAddr,
    /// Largest accepted device request body in bytes (`device.max_body_bytes`).
    pub max_body_bytes: usize,
    /// How long a request-id stays valid (`device.request_id_lifetime_secs`).
    pub request_id_lifetime: Duration,
    /// Most simultaneous connections per listener (`device.max_connections`).
    pub max_connections: usize,
    /// Longest a client may take to send a request's head, on both listeners; also bounds an
    /// idle keep-alive connection (`device.header_read_timeout_ms`).
    pub header_read_timeout: Duration,
    /// Longest a client may take to send a request body, on both listeners
    /// (`device.body_read_timeout_ms`).
    pub body_read_timeout: Duration,
    /// Longest SIGTERM/SIGINT waits for in-flight requests before closing their connections
    /// (`device.drain_timeout_secs`).
    pub drain_timeout: Duration,
    /// Admin listener address (`admin.listen`).
    pub admin_listen: SocketAddr,
    /// Bad admin tokens one client address may present before it is delayed
    /// (`admin.auth_failures_allowed`).
    pub admin_auth_failures_allowed: u32,
    /// First delay of a client past its allowed bad tokens; it doubles with each further one
    /// (`admin.auth_delay_ms`).
    pub admin_auth_delay: Duration,
    /// Most client addresses the bad-token table remembers (`admin.auth_table_max`).
    pub admin_auth_table_max: usize,
    /// Postgres URL, with its password (`database.url`).
    pub database_url: SecretString,
    /// Postgres pool size (`database.max_connections`).
    pub database_max_connections: u32,
    /// Path of the PKCS#11 module (`hsm.module`).
    pub pkcs11_module: PathBuf,
    /// Label of the token holding the signing keys (`hsm.token_label`).
    pub token_label: String,
    /// User PIN of that token (`hsm.pin`).
    pub token_pin: SecretString,
    /// More tokens holding the same signing keys (`hsm.more_tokens`): each signs too, and a
    /// failed one leaves rotation while the others go on.
    pub more_tokens: Vec<MoreToken>,
    /// Their user PINs, in the same order (`hsm.more_pins`); empty: each uses `hsm.pin`; one:
    /// all use it.
    pub more_token_pins: Vec<SecretString>,
    /// Number of pooled, logged-in sessions per token (`hsm.sessions`).
    pub hsm_sessions: usize,
    /// Threads of the async runtime: HTTP, request checks, the signing log
    /// (`runtime.worker_threads`). Signing and every PKCS#11 call run on threads of their own.
    pub worker_threads: usize,
    /// Longest a key generation on the token may take (`hsm.keygen_timeout_secs`).
    pub keygen_timeout: Duration,
    /// Longest one blocking PKCS#11 call may take before it is abandoned and the token
    /// recovered on fresh module instances (`hsm.call_timeout_secs`). Not used for key
    /// generation.
    pub hsm_call_timeout: Duration,
    /// Most digests a signing worker takes at once (`signing.batch_max`).
    pub sign_batch_max: usize,
    /// Deadline of one signing request, queueing included (`signing.deadline_ms`).
    pub sign_deadline: Duration,
    /// Admission's target wait (`signing.max_wait_ms`).
    pub sign_max_wait: MaxWait,
    /// Most digests waiting for a signing worker (`signing.queue_max`).
    pub sign_queue_max: usize,
    /// File of account/account-key assertions replacing the built-in roots (`trust.assertions`).
    pub trusted_assertions: Option<PathBuf>,
    /// Log format (`log.format`).
    pub log_format: LogFormat,
    /// Log filter in `tracing` env-filter syntax (`log.filter`).
    pub log_filter: String,
    /// A checkpoint of the tamper-evident log is taken once this many rows follow the newest
    /// (`log.checkpoint_rows`).
    pub checkpoint_rows: u64,
    /// ... or once the newest is this old and rows follow it (`log.checkpoint_secs`).
    pub checkpoint_every: Duration,
    /// File the token PIN was read from at load (`hsm.pin_file`); `token_pin` holds it.
    pub token_pin_file: Option<PathBuf>,
    /// File the database URL was read from at load (`database.url_file`); `database_url`
    /// holds it.
    pub database_url_file: Option<PathBuf>,
    /// File the PINs of `more_tokens` were read from at load, one per line
    /// (`hsm.more_pins_file`); `more_token_pins` holds them.
    pub more_pins_file: Option<PathBuf>,
    /// PEM certificate chain of the device listener (`device.tls_cert`): https when set.
    pub device_tls_cert: Option<PathBuf>,
    /// Its private key (`device.tls_key`).
    pub device_tls_key: Option<PathBuf>,
    /// PEM certificate chain of the admin listener (`admin.tls_cert`): https when set.
    pub admin_tls_cert: Option<PathBuf>,
    /// Its private key (`admin.tls_key`).
    pub admin_tls_key: Option<PathBuf>,
    /// CA certificates admin clients' certificates must chain to (`admin.tls_client_ca`):
    /// mutual TLS when set.
    pub admin_tls_client_ca: Option<PathBuf>,
}

/// Shows a secret as `"[redacted]"`, or `""` when it is unset, so `serialmint config` tells
/// whether a secret is set without showing it.
struct Redacted<'a>(&'a SecretString);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.expose_secret().is_empty() {
            "\"\""
        } else {
            "\"[redacted]\""
        })
    }
}

/// Every field, secrets through `Redacted`. The destructuring fails to compile when a field
/// is added and not listed here.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Config {
            device_listen,
            max_body_bytes,
            request_id_lifetime,
            max_connections,
            header_read_timeout,
            body_read_timeout,
            drain_timeout,
            admin_listen,
            admin_auth_failures_allowed,
            admin_auth_delay,
            admin_auth_table_max,
            database_url,
            database_max_connections,
            pkcs11_module,
            token_label,
            token_pin,
            more_tokens,
            more_token_pins,
            hsm_sessions,
            worker_threads,
            keygen_timeout,
            hsm_call_timeout,
            sign_batch_max,
            sign_deadline,
            sign_max_wait,
            sign_queue_max,
            trusted_assertions,
            log_format,
            log_filter,
            checkpoint_rows,
            checkpoint_every,
            token_pin_file,
            database_url_file,
            more_pins_file,
            device_tls_cert,
            device_tls_key,
            admin_tls_cert,
            admin_tls_key,
            admin_tls_client_ca,
        } = self;
        f.debug_struct("Config")
            .field("device_listen", device_listen)
            .field("max_body_bytes", max_body_bytes)
            .field("request_id_lifetime", request_id_lifetime)
            .field("max_connections", max_connections)
            .field("header_read_timeout", header_read_timeout)
            .field("body_read_timeout", body_read_timeout)
            .field("drain_timeout", drain_timeout)
            .field("admin_listen", admin_listen)
            .field("admin_auth_failures_allowed", admin_auth_failures_allowed)
            .field("admin_auth_delay", admin_auth_delay)
            .field("admin_auth_table_max", admin_auth_table_max)
            .field("database_url", &Redacted(database_url))
            .field("database_max_connections", database_max_connections)
            .field("pkcs11_module", pkcs11_module)
            .field("token_label", token_label)
            .field("token_pin", &Redacted(token_pin))
            .field("more_tokens", more_tokens)
            .field(
                "more_token_pins",
                &more_token_pins.iter().map(Redacted).collect::<Vec<_>>(),
            )
            .field("hsm_sessions", hsm_sessions)
            .field("worker_threads", worker_threads)
            .field("keygen_timeout", keygen_timeout)
            .field("hsm_call_timeout", hsm_call_timeout)
            .field("sign_batch_max", sign_batch_max)
            .field("sign_deadline", sign_deadline)
            .field("sign_max_wait", sign_max_wait)
            .field("sign_queue_max", sign_queue_max)
            .field("trusted_assertions", trusted_assertions)
            .field("log_format", log_format)
            .field("log_filter", log_filter)
            .field("checkpoint_rows", checkpoint_rows)
            .field("checkpoint_every", checkpoint_every)
            .field("token_pin_file", token_pin_file)
            .field("database_url_file", database_url_file)
            .field("more_pins_file", more_pins_file)
            .field("device_tls_cert", device_tls_cert)
            .field("device_tls_key", device_tls_key)
            .field("admin_tls_cert", admin_tls_cert)
            .field("admin_tls_key", admin_tls_key)
            .field("admin_tls_client_ca", admin_tls_client_ca)
            .finish()
    }
}

/// How long the signing queue ahead of a request may be, in time, for it to be admitted
/// (`signing.max_wait_ms`); the deadline bounds it in every case.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MaxWait {
    /// Half a batch per worker at the measured per-signature time (`auto`, the default):
    /// enough queued to keep every worker signing, a few signatures of wait.
    #[default]
    Auto,
    /// The deadline alone (`0`).
    Off,
    /// This long (a number of milliseconds).
    Fixed(Duration),
}

/// A token beyond the first (`hsm.more_tokens`): its label, and its module when it is not
/// `hsm.module`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoreToken {
    /// The token label.
    pub label: String,
    /// The module holding it, when not `hsm.module`.
    pub module: Option<PathBuf>,
}

impl Config {
    /// The user PIN of `more_tokens[i]`.
    pub fn more_token_pin(&self, i: usize) -> SecretString {
        match self.more_token_pins.as_slice() {
            [] => self.token_pin.clone(),
            [one] => one.clone(),
            pins => pins.get(i).cloned().unwrap_or_default(),
        }
    }

    /// How many tokens sign: the first and `hsm.more_tokens`.
    pub fn token_count(&self) -> usize {
        1 + self.more_tokens.len()
    }
}

/// The PKCS#11 module used when none is configured: Debian's SoftHSMv2.
pub const DEFAULT_PKCS11_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The default of `runtime.worker_threads`: half the cores, at least one. The async side
/// (HTTP, decoding, the device's signature check, the signing log) is a small share of a
/// serial's work next to signing, which runs on threads of its own; a second worker on two
/// cores cost each serial about 2.5 more context switches (tokio waking the other worker for
/// work it then did not take) and a quarter more of the server's CPU besides the signature
/// (SoftHSM closed loop: 0.57-0.64 against 0.44-0.46 ms; BENCHMARKING.md).
fn default_worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

impl Default for Config {
    fn default() -> Self {
        Self {
            device_listen: "127.0.0.1:8080".parse().expect("valid address"),
            max_body_bytes: 256 * 1024,
            request_id_lifetime: Duration::from_secs(600),
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            admin_listen: "127.0.0.1:8081".parse().expect("valid address"),
            admin_auth_failures_allowed: 5,
            admin_auth_delay: Duration::from_secs(1),
            admin_auth_table_max: 10_000,
            database_url: SecretString::default(),
            database_max_connections: 16,
            pkcs11_module: PathBuf::from(DEFAULT_PKCS11_MODULE),
            token_label: "serialmint".into(),
            token_pin: SecretString::default(),
            more_tokens: Vec::new(),
            more_token_pins: Vec::new(),
            hsm_sessions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            worker_threads: default_worker_threads(),
            keygen_timeout: Duration::from_secs(300),
            hsm_call_timeout: Duration::from_secs(10),
            sign_batch_max: 8,
            sign_deadline: Duration::from_millis(5000),
            sign_max_wait: MaxWait::Auto,
            sign_queue_max: 1024,
            trusted_assertions: None,
            log_format: LogFormat::Text,
            log_filter: "info".into(),
            checkpoint_rows: 1000,
            checkpoint_every: Duration::from_secs(60),
            token_pin_file: None,
            database_url_file: None,
            more_pins_file: None,
            device_tls_cert: None,
            device_tls_key: None,
            admin_tls_cert: None,
            admin_tls_key: None,
            admin_tls_client_ca: None,
        }
    }
}

impl Config {
    /// Loads the configuration: defaults, then the file (if given), then the environment,
    /// then `overrides` (`section.key=value` pairs from command-line flags).
    pub fn load(file: Option<&Path>, overrides: &[(String, String)]) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env, overrides)
    }

    /// [`Config::load`] with an explicit environment, for tests.
    pub fn load_from(
        file: Option<&Path>,
        env: &[(String, String)],
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let mut config = Config::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            config.apply_toml(&text, path)?;
        }
        for setting in SETTINGS {
            if let Some((_, value)) = env.iter().find(|(k, _)| k == setting.env) {
                setting.apply(&mut config, value, Origin::Env(setting.env))?;
            }
        }
        for (key, value) in overrides {
            let setting = find(key).ok_or_else(|| ConfigError::UnknownSetting {
                file: None,
                key: key.clone(),
            })?;
            setting.apply(&mut config, value, Origin::Flag(key.clone()))?;
        }
        config.read_secret_files()?;
        Ok(config)
    }

    fn apply_toml(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let table: toml::Table = text.parse().map_err(|e| ConfigError::Toml {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        for (section, value) in &table {
            let toml::Value::Table(entries) = value else {
                return Err(ConfigError::NotASection {
                    path: path.to_owned(),
                    section: section.clone(),
                });
            };
            for (name, value) in entries {
                let key = format!("{section}.{name}");
                let Some(setting) = find(&key) else {
                    return Err(ConfigError::UnknownSetting {
                        file: Some(path.to_owned()),
                        key,
                    });
                };
                let text = match value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    _ => {
                        return Err(ConfigError::NotAScalar {
                            path: path.to_owned(),
                            key,
                        });
                    }
                };
                let origin = Origin::File {
                    path: path.to_owned(),
                    key,
                };
                setting.apply(self, &text, origin)?;
            }
        }
        Ok(())
    }

    /// Checks what `serve` needs before anything starts; one clear line on failure.
    pub fn validate_for_serve(&self) -> Result<(), ConfigError> {
        if self.database_url.expose_secret().is_empty() {
            return Err(ConfigError::Required {
                key: "database.url",
                env: "SERIALMINT_DATABASE_URL",
                file_key: "database.url_file",
            });
        }
        if self.token_pin.expose_secret().is_empty() {
            return Err(ConfigError::Required {
                key: "hsm.pin",
                env: "SERIALMINT_TOKEN_PIN",
                file_key: "hsm.pin_file",
            });
        }
        if !self.pkcs11_module.is_file() {
            return Err(ConfigError::ModuleNotFound(self.pkcs11_module.clone()));
        }
        let pins = self.more_token_pins.len();
        if pins > 1 && pins != self.more_tokens.len() {
            return Err(ConfigError::PinCount {
                pins,
                tokens: self.more_tokens.len(),
            });
        }
        for t in &self.more_tokens {
            if let Some(m) = &t.module
                && !m.is_file()
            {
                return Err(ConfigError::TokenModuleNotFound {
                    label: t.label.clone(),
                    module: m.clone(),
                });
            }
        }
        if let Some(path) = &self.trusted_assertions
            && !path.is_file()
        {
            return Err(ConfigError::TrustedAssertionsNotFound(path.clone()));
        }
        if self.device_listen == self.admin_listen {
            return Err(ConfigError::SameListenAddress(self.device_listen));
        }
        for (cert, key, [cert_key, key_key]) in [
            (
                &self.device_tls_cert,
                &self.device_tls_key,
                ["device.tls_cert", "device.tls_key"],
            ),
            (
                &self.admin_tls_cert,
                &self.admin_tls_key,
                ["admin.tls_cert", "admin.tls_key"],
            ),
        ] {
            match (cert, key) {
                (Some(_), None) => {
                    return Err(ConfigError::TlsHalf {
                        set: cert_key,
                        missing: key_key,
                    });
                }
                (None, Some(_)) => {
                    return Err(ConfigError::TlsHalf {
                        set: key_key,
                        missing: cert_key,
                    });
                }
                _ => {}
            }
        }
        if self.admin_tls_client_ca.is_some() && self.admin_tls_cert.is_none() {
            return Err(ConfigError::TlsHalf {
                set: "admin.tls_client_ca",
                missing: "admin.tls_cert",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
