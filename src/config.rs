//! Typed configuration: TOML file < `SERIALMINT_*` environment < command-line flags.
//!
//! Every setting is declared once in [`SETTINGS`], with its file key, its environment name,
//! its default and its parser, so the three layers cannot drift apart and an unknown key in
//! the file is an error (the file equivalent of serde's `deny_unknown_fields`). Secrets (the
//! token PIN, the database URL with its password) are [`SecretString`]s (the `secrecy` crate):
//! zeroed on drop, and never printed (the configuration's `Debug` shows `"[redacted]"`, or
//! `""` when unset).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

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
    /// Most digests waiting for a signing worker (`signing.queue_max`).
    pub sign_queue_max: usize,
    /// File of account/account-key assertions replacing the built-in roots (`trust.assertions`).
    pub trusted_assertions: Option<PathBuf>,
    /// Log format (`log.format`).
    pub log_format: LogFormat,
    /// Log filter in `tracing` env-filter syntax (`log.filter`).
    pub log_filter: String,
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

/// Every field, secrets through [`Redacted`]. The destructuring fails to compile when a field
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
            keygen_timeout,
            hsm_call_timeout,
            sign_batch_max,
            sign_deadline,
            sign_queue_max,
            trusted_assertions,
            log_format,
            log_filter,
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
            .field("keygen_timeout", keygen_timeout)
            .field("hsm_call_timeout", hsm_call_timeout)
            .field("sign_batch_max", sign_batch_max)
            .field("sign_deadline", sign_deadline)
            .field("sign_queue_max", sign_queue_max)
            .field("trusted_assertions", trusted_assertions)
            .field("log_format", log_format)
            .field("log_filter", log_filter)
            .finish()
    }
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

fn parse_more_tokens(c: &mut Config, v: &str) -> Result<(), String> {
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (label, module) = match item.split_once('@') {
            Some((l, m)) => (l.trim(), Some(PathBuf::from(m.trim()))),
            None => (item, None),
        };
        if label.is_empty() || module.as_ref().is_some_and(|m| m.as_os_str().is_empty()) {
            return Err(format!("{item:?} is not LABEL or LABEL@MODULE"));
        }
        out.push(MoreToken {
            label: label.to_owned(),
            module,
        });
    }
    c.more_tokens = out;
    Ok(())
}

/// The PKCS#11 module used when none is configured: Debian's SoftHSMv2.
pub const DEFAULT_PKCS11_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A configuration error: one clear line, never containing a secret value.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

type Apply = fn(&mut Config, &str) -> Result<(), String>;

/// One setting: where it lives in the file, its environment name, its default, its parser.
pub struct Setting {
    /// `section.key` in the TOML file.
    pub key: &'static str,
    /// The environment variable.
    pub env: &'static str,
    /// The default, as text (for documentation).
    pub default: &'static str,
    /// Whether the value is secret (never echoed back in errors).
    pub secret: bool,
    /// What it means.
    pub help: &'static str,
    apply: Apply,
}

macro_rules! setting {
    ($key:literal, $env:literal, $default:literal, $secret:literal, $help:literal, $apply:expr) => {
        Setting {
            key: $key,
            env: $env,
            default: $default,
            secret: $secret,
            help: $help,
            apply: $apply,
        }
    };
}

/// Every setting serialmint reads, in documentation order.
pub const SETTINGS: &[Setting] = &[
    setting!(
        "device.listen",
        "SERIALMINT_DEVICE_LISTEN",
        "127.0.0.1:8080",
        false,
        "device listener address",
        |c, v| parse_into(&mut c.device_listen, v)
    ),
    setting!(
        "device.max_body_bytes",
        "SERIALMINT_MAX_BODY_BYTES",
        "262144",
        false,
        "largest device request body; larger ones get 413 before they are read",
        |c, v| positive(&mut c.max_body_bytes, v)
    ),
    setting!(
        "device.request_id_lifetime_secs",
        "SERIALMINT_REQUEST_ID_LIFETIME_SECS",
        "600",
        false,
        "how long a request-id stays valid",
        |c, v| secs(&mut c.request_id_lifetime, v)
    ),
    setting!(
        "device.max_connections",
        "SERIALMINT_MAX_CONNECTIONS",
        "4096",
        false,
        "most open connections per listener",
        |c, v| positive(&mut c.max_connections, v)
    ),
    setting!(
        "device.header_read_timeout_ms",
        "SERIALMINT_HEADER_READ_TIMEOUT_MS",
        "10000",
        false,
        "longest a client may take to send a request head (both listeners); slower connections are closed",
        |c, v| millis(&mut c.header_read_timeout, v)
    ),
    setting!(
        "device.body_read_timeout_ms",
        "SERIALMINT_BODY_READ_TIMEOUT_MS",
        "30000",
        false,
        "longest a client may take to send a request body (both listeners); slower ones get 408",
        |c, v| millis(&mut c.body_read_timeout, v)
    ),
    setting!(
        "device.drain_timeout_secs",
        "SERIALMINT_DRAIN_TIMEOUT_SECS",
        "30",
        false,
        "on SIGTERM/SIGINT, longest in-flight requests may take before their connections are closed",
        |c, v| secs(&mut c.drain_timeout, v)
    ),
    setting!(
        "admin.listen",
        "SERIALMINT_ADMIN_LISTEN",
        "127.0.0.1:8081",
        false,
        "admin listener address",
        |c, v| parse_into(&mut c.admin_listen, v)
    ),
    setting!(
        "admin.auth_failures_allowed",
        "SERIALMINT_ADMIN_AUTH_FAILURES_ALLOWED",
        "5",
        false,
        "bad admin tokens one client address may send before it gets 429 for a while",
        |c, v| positive(&mut c.admin_auth_failures_allowed, v)
    ),
    setting!(
        "admin.auth_delay_ms",
        "SERIALMINT_ADMIN_AUTH_DELAY_MS",
        "1000",
        false,
        "first 429 period after too many bad admin tokens; doubles with each further one (at most 15 min)",
        |c, v| millis(&mut c.admin_auth_delay, v)
    ),
    setting!(
        "admin.auth_table_max",
        "SERIALMINT_ADMIN_AUTH_TABLE_MAX",
        "10000",
        false,
        "most client addresses remembered for bad admin tokens (oldest forgotten first)",
        |c, v| positive(&mut c.admin_auth_table_max, v)
    ),
    setting!(
        "database.url",
        "SERIALMINT_DATABASE_URL",
        "(none; required)",
        true,
        "Postgres URL, e.g. postgres://user:password@127.0.0.1/serialmint",
        |c, v| {
            c.database_url = SecretString::from(v);
            Ok(())
        }
    ),
    setting!(
        "database.max_connections",
        "SERIALMINT_DATABASE_MAX_CONNECTIONS",
        "16",
        false,
        "Postgres connection pool size",
        |c, v| positive(&mut c.database_max_connections, v)
    ),
    setting!(
        "hsm.module",
        "SERIALMINT_PKCS11_MODULE",
        "/usr/lib/softhsm/libsofthsm2.so",
        false,
        "PKCS#11 module (SoftHSMv2, p11-kit-client.so, a vendor module)",
        |c, v| {
            c.pkcs11_module = PathBuf::from(v);
            Ok(())
        }
    ),
    setting!(
        "hsm.token_label",
        "SERIALMINT_TOKEN_LABEL",
        "serialmint",
        false,
        "label of the token holding the signing keys",
        |c, v| {
            c.token_label = v.to_owned();
            Ok(())
        }
    ),
    setting!(
        "hsm.pin",
        "SERIALMINT_TOKEN_PIN",
        "(none; required)",
        true,
        "user PIN of the token",
        |c, v| {
            c.token_pin = SecretString::from(v);
            Ok(())
        }
    ),
    setting!(
        "hsm.more_tokens",
        "SERIALMINT_HSM_MORE_TOKENS",
        "(none)",
        false,
        "more tokens holding the same signing keys, comma-separated LABEL or LABEL@MODULE: \
         each signs too (a USB HSM signs about once a second; add tokens to scale), and a \
         failed one leaves rotation while the others go on",
        parse_more_tokens
    ),
    setting!(
        "hsm.more_pins",
        "SERIALMINT_HSM_MORE_PINS",
        "(hsm.pin)",
        true,
        "user PINs of hsm.more_tokens, comma-separated in the same order (one PIN: all use it)",
        |c, v| {
            c.more_token_pins = v.split(',').map(|p| SecretString::from(p.trim())).collect();
            Ok(())
        }
    ),
    setting!(
        "hsm.sessions",
        "SERIALMINT_HSM_SESSIONS",
        "number of cores",
        false,
        "pooled logged-in sessions per token (bounded by the token's maximum)",
        |c, v| positive(&mut c.hsm_sessions, v)
    ),
    setting!(
        "hsm.keygen_timeout_secs",
        "SERIALMINT_KEYGEN_TIMEOUT_SECS",
        "300",
        false,
        "longest an RSA-4096 key generation on the token may take",
        |c, v| secs(&mut c.keygen_timeout, v)
    ),
    setting!(
        "hsm.call_timeout_secs",
        "SERIALMINT_HSM_CALL_TIMEOUT_SECS",
        "10",
        false,
        "longest one PKCS#11 call (open, login, look-up, a batch of signatures) may take; \
         past it the call is abandoned and the token re-opened (key generation excluded)",
        |c, v| secs(&mut c.hsm_call_timeout, v)
    ),
    setting!(
        "signing.batch_max",
        "SERIALMINT_SIGN_BATCH_MAX",
        "8",
        false,
        "most digests a signing worker signs back to back with one session",
        |c, v| positive(&mut c.sign_batch_max, v)
    ),
    setting!(
        "signing.deadline_ms",
        "SERIALMINT_SIGN_DEADLINE_MS",
        "5000",
        false,
        "deadline of one signing request; past it the request is refused with 503",
        |c, v| millis(&mut c.sign_deadline, v)
    ),
    setting!(
        "signing.queue_max",
        "SERIALMINT_SIGN_QUEUE_MAX",
        "1024",
        false,
        "most digests waiting for a signing worker; past it requests get 503 at once",
        |c, v| positive(&mut c.sign_queue_max, v)
    ),
    setting!(
        "trust.assertions",
        "SERIALMINT_TRUSTED_ASSERTIONS",
        "(built-in Canonical roots)",
        false,
        "file of account/account-key assertions that replace the built-in trusted roots",
        |c, v| {
            c.trusted_assertions = (!v.is_empty()).then(|| PathBuf::from(v));
            Ok(())
        }
    ),
    setting!(
        "log.format",
        "SERIALMINT_LOG_FORMAT",
        "text",
        false,
        "text or json",
        |c, v| {
            c.log_format = match v {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err("must be text or json".into()),
            };
            Ok(())
        }
    ),
    setting!(
        "log.filter",
        "SERIALMINT_LOG",
        "info",
        false,
        "log filter (tracing env-filter syntax, e.g. info,serialmint=debug)",
        |c, v| {
            c.log_filter = v.to_owned();
            Ok(())
        }
    ),
];

fn parse_into<T: std::str::FromStr>(field: &mut T, v: &str) -> Result<(), String>
where
    T::Err: fmt::Display,
{
    *field = v.trim().parse().map_err(|e: T::Err| e.to_string())?;
    Ok(())
}

fn positive<T: std::str::FromStr + PartialEq + Default>(
    field: &mut T,
    v: &str,
) -> Result<(), String>
where
    T::Err: fmt::Display,
{
    let n: T = v.trim().parse().map_err(|e: T::Err| e.to_string())?;
    if n == T::default() {
        return Err("must be at least 1".into());
    }
    *field = n;
    Ok(())
}

fn secs(field: &mut Duration, v: &str) -> Result<(), String> {
    let mut n = 0u64;
    positive(&mut n, v)?;
    *field = Duration::from_secs(n);
    Ok(())
}

fn millis(field: &mut Duration, v: &str) -> Result<(), String> {
    let mut n = 0u64;
    positive(&mut n, v)?;
    *field = Duration::from_millis(n);
    Ok(())
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
            keygen_timeout: Duration::from_secs(300),
            hsm_call_timeout: Duration::from_secs(10),
            sign_batch_max: 8,
            sign_deadline: Duration::from_millis(5000),
            sign_queue_max: 1024,
            trusted_assertions: None,
            log_format: LogFormat::Text,
            log_filter: "info".into(),
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
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
            config.apply_toml(&text, path)?;
        }
        for setting in SETTINGS {
            if let Some((_, value)) = env.iter().find(|(k, _)| k == setting.env) {
                config.apply(setting, value, setting.env)?;
            }
        }
        for (key, value) in overrides {
            let setting =
                find(key).ok_or_else(|| ConfigError(format!("unknown setting `{key}`")))?;
            config.apply(setting, value, &format!("--set {key}"))?;
        }
        Ok(config)
    }

    fn apply_toml(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigError(format!("{}: {}", path.display(), e.message()))
        })?;
        for (section, value) in &table {
            let toml::Value::Table(entries) = value else {
                return Err(ConfigError(format!(
                    "{}: `{section}` must be a section ([{section}])",
                    path.display()
                )));
            };
            for (name, value) in entries {
                let key = format!("{section}.{name}");
                let setting = find(&key).ok_or_else(|| {
                    ConfigError(format!("{}: unknown setting `{key}`", path.display()))
                })?;
                let text = match value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    _ => {
                        return Err(ConfigError(format!(
                            "{}: `{key}` must be a string or a number",
                            path.display()
                        )));
                    }
                };
                self.apply(setting, &text, &format!("{} `{key}`", path.display()))?;
            }
        }
        Ok(())
    }

    fn apply(&mut self, setting: &Setting, value: &str, origin: &str) -> Result<(), ConfigError> {
        (setting.apply)(self, value).map_err(|why| {
            if setting.secret {
                ConfigError(format!("{origin}: invalid value ({why})"))
            } else {
                ConfigError(format!("{origin}: invalid value {value:?} ({why})"))
            }
        })
    }

    /// Checks what `serve` needs before anything starts; one clear line on failure.
    pub fn validate_for_serve(&self) -> Result<(), ConfigError> {
        if self.database_url.expose_secret().is_empty() {
            return Err(ConfigError(
                "database.url (SERIALMINT_DATABASE_URL) is required; scripts/setup writes one"
                    .into(),
            ));
        }
        if self.token_pin.expose_secret().is_empty() {
            return Err(ConfigError(
                "hsm.pin (SERIALMINT_TOKEN_PIN) is required; scripts/setup writes one".into(),
            ));
        }
        if !self.pkcs11_module.is_file() {
            return Err(ConfigError(format!(
                "hsm.module: PKCS#11 module {} not found",
                self.pkcs11_module.display()
            )));
        }
        let pins = self.more_token_pins.len();
        if pins > 1 && pins != self.more_tokens.len() {
            return Err(ConfigError(format!(
                "hsm.more_pins: {pins} PINs for {} tokens in hsm.more_tokens (give one per \
                 token, one for all, or none to use hsm.pin)",
                self.more_tokens.len()
            )));
        }
        for t in &self.more_tokens {
            if let Some(m) = &t.module
                && !m.is_file()
            {
                return Err(ConfigError(format!(
                    "hsm.more_tokens: PKCS#11 module {} of token {:?} not found",
                    m.display(),
                    t.label
                )));
            }
        }
        if let Some(path) = &self.trusted_assertions
            && !path.is_file()
        {
            return Err(ConfigError(format!(
                "trust.assertions: {} not found",
                path.display()
            )));
        }
        if self.device_listen == self.admin_listen {
            return Err(ConfigError(format!(
                "device.listen and admin.listen are both {}; they must differ",
                self.device_listen
            )));
        }
        Ok(())
    }
}

/// The setting with this `section.key`, if any.
pub fn find(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults_apply_without_file_or_env() {
        let c = Config::load_from(None, &[], &[]).unwrap();
        assert_eq!(c.device_listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.admin_listen.to_string(), "127.0.0.1:8081");
        assert_eq!(c.token_label, "serialmint");
        assert_eq!(c.pkcs11_module, PathBuf::from(DEFAULT_PKCS11_MODULE));
    }

    #[test]
    fn file_then_env_then_flags() {
        let f = file(
            "[device]\nlisten = \"127.0.0.1:9000\"\n[hsm]\ntoken_label = \"from-file\"\nsessions = 3\n",
        );
        let e = env(&[
            ("SERIALMINT_TOKEN_LABEL", "from-env"),
            ("SERIALMINT_HSM_SESSIONS", "4"),
        ]);
        let flags = vec![("hsm.sessions".to_string(), "5".to_string())];
        let c = Config::load_from(Some(f.path()), &e, &flags).unwrap();
        assert_eq!(c.device_listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.token_label, "from-env");
        assert_eq!(c.hsm_sessions, 5);
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let f = file("[hsm]\ntoken_lable = \"x\"\n");
        let err = Config::load_from(Some(f.path()), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown setting `hsm.token_lable`"), "{err}");
        let f = file("[nope]\nx = 1\n");
        assert!(Config::load_from(Some(f.path()), &[], &[]).is_err());
    }

    #[test]
    fn bad_values_name_the_setting_and_never_the_secret() {
        let e = env(&[("SERIALMINT_DEVICE_LISTEN", "nowhere")]);
        let err = Config::load_from(None, &e, &[]).unwrap_err().to_string();
        assert!(
            err.contains("SERIALMINT_DEVICE_LISTEN") && err.contains("nowhere"),
            "{err}"
        );
        let e = env(&[("SERIALMINT_HSM_SESSIONS", "0")]);
        assert!(Config::load_from(None, &e, &[]).is_err());
    }

    #[test]
    fn more_tokens_each_sign_with_their_own_pin_and_module() {
        let c = Config::load_from(None, &[], &[]).unwrap();
        assert!(c.more_tokens.is_empty());
        assert_eq!(c.token_count(), 1);

        let f = file(
            "[hsm]\npin = \"main-pin\"\nsessions = 2\n\
             more_tokens = \"usb-2, remote@/opt/p11-kit-client.so\"\n",
        );
        let c = Config::load_from(Some(f.path()), &[], &[]).unwrap();
        assert_eq!(
            c.more_tokens,
            [
                MoreToken {
                    label: "usb-2".into(),
                    module: None
                },
                MoreToken {
                    label: "remote".into(),
                    module: Some(PathBuf::from("/opt/p11-kit-client.so"))
                },
            ]
        );
        // No hsm.more_pins: every token uses hsm.pin.
        assert_eq!(c.more_token_pin(1).expose_secret(), "main-pin");
        let e = env(&[("SERIALMINT_HSM_MORE_PINS", "pin-2, pin-3")]);
        let c = Config::load_from(Some(f.path()), &e, &[]).unwrap();
        let hsm = crate::hsm::HsmConfig::from(&c);
        let got: Vec<_> = hsm
            .tokens
            .iter()
            .map(|t| (t.label.as_str(), t.pin.expose_secret(), t.module.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("serialmint", "main-pin", None),
                ("usb-2", "pin-2", None),
                (
                    "remote",
                    "pin-3",
                    Some(PathBuf::from("/opt/p11-kit-client.so"))
                ),
            ]
        );
        // One signing worker per session on every token.
        assert_eq!(crate::signer::SignerConfig::from_config(&c).workers, 6);
        assert!(!format!("{c:?}").contains("pin-2"), "PINs stay redacted");

        // Two PINs for two tokens, or one for all; anything else is refused at start-up,
        // without the PINs in the message.
        let e = env(&[("SERIALMINT_HSM_MORE_PINS", "only-one")]);
        let c = Config::load_from(Some(f.path()), &e, &[]).unwrap();
        assert_eq!(c.more_token_pin(0).expose_secret(), "only-one");
        assert_eq!(c.more_token_pin(1).expose_secret(), "only-one");
        let e = env(&[
            ("SERIALMINT_HSM_MORE_PINS", "a-pin,b-pin,c-pin"),
            ("SERIALMINT_DATABASE_URL", "postgres://x"),
            ("SERIALMINT_PKCS11_MODULE", "/bin/sh"),
        ]);
        let c = Config::load_from(Some(f.path()), &e, &[]).unwrap();
        let err = c.validate_for_serve().unwrap_err().to_string();
        assert!(err.contains("3 PINs for 2 tokens"), "{err}");
        assert!(!err.contains("a-pin"), "{err}");
        let e = env(&[("SERIALMINT_HSM_MORE_TOKENS", "ok, @/lib/x.so")]);
        assert!(Config::load_from(None, &e, &[]).is_err());
    }

    #[test]
    fn call_timeout_is_its_own_setting_next_to_the_keygen_timeout() {
        let c = Config::load_from(None, &[], &[]).unwrap();
        assert_eq!(c.hsm_call_timeout, Duration::from_secs(10));
        assert_eq!(c.keygen_timeout, Duration::from_secs(300));
        let f = file("[hsm]\ncall_timeout_secs = 3\nkeygen_timeout_secs = 900\n");
        let e = env(&[("SERIALMINT_HSM_CALL_TIMEOUT_SECS", "4")]);
        let c = Config::load_from(Some(f.path()), &e, &[]).unwrap();
        assert_eq!(c.hsm_call_timeout, Duration::from_secs(4));
        assert_eq!(c.keygen_timeout, Duration::from_secs(900));
        let e = env(&[("SERIALMINT_HSM_CALL_TIMEOUT_SECS", "0")]);
        assert!(Config::load_from(None, &e, &[]).is_err());
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let e = env(&[
            ("SERIALMINT_TOKEN_PIN", "s3cr3t-pin"),
            (
                "SERIALMINT_DATABASE_URL",
                "postgres://u:hunter2@127.0.0.1/db",
            ),
        ]);
        let c = Config::load_from(None, &e, &[]).unwrap();
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cr3t-pin") && !debug.contains("hunter2"),
            "{debug}"
        );
        assert_eq!(c.token_pin.expose_secret(), "s3cr3t-pin");
    }

    #[test]
    fn serve_needs_database_and_pin() {
        let c = Config::load_from(None, &[], &[]).unwrap();
        let err = c.validate_for_serve().unwrap_err().to_string();
        assert!(err.contains("SERIALMINT_DATABASE_URL"), "{err}");
    }
}
