//! Every setting serialmint reads, declared once in [`SETTINGS`]: its file key, its
//! environment name, its default, whether it is secret, and the parser that applies a value
//! to a [`Config`]. The table is declarative and long on purpose; the parsers follow it.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

use super::{Config, ConfigError, LogFormat, MaxWait, MoreToken, Origin, ValueError};

/// Applies a value to the configuration, or says why it is refused.
type Apply = fn(&mut Config, &str) -> Result<(), ValueError>;

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

impl Setting {
    /// Applies `value` (from `origin`) to `config`. A refused value is named in the error,
    /// unless the setting is secret.
    pub(super) fn apply(
        &self,
        config: &mut Config,
        value: &str,
        origin: Origin,
    ) -> Result<(), ConfigError> {
        (self.apply)(config, value).map_err(|why| ConfigError::Invalid {
            origin,
            value: (!self.secret).then(|| value.to_owned()),
            why,
        })
    }
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
        "Postgres connection pool size (three more connections are kept outside it: the \
         signing log's writer and watchdog, and the change listener)",
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
        "runtime.worker_threads",
        "SERIALMINT_WORKER_THREADS",
        "half the cores (at least 1)",
        false,
        "threads of the async runtime (HTTP, request checks, the signing log); signing and PKCS#11 calls run on threads of their own",
        |c, v| positive(&mut c.worker_threads, v)
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
        "signing.max_wait_ms",
        "SERIALMINT_SIGN_MAX_WAIT_MS",
        "auto",
        false,
        "admit a signing request only when the queue ahead of it is estimated to be signed \
         within this many ms, else 503 with Retry-After at once; auto: half a batch per worker \
         at the measured signing time (signing.batch_max / 2 x per-signature time); 0: only the \
         deadline bounds it (snapd retries a 503 after 60 s: raise it for lines that power \
         many devices at once)",
        |c, v| {
            c.sign_max_wait = if v.trim() == "auto" {
                MaxWait::Auto
            } else {
                match parse::<u64>(v)? {
                    0 => MaxWait::Off,
                    n => MaxWait::Fixed(Duration::from_millis(n)),
                }
            };
            Ok(())
        }
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
                _ => return Err(ValueError::LogFormat),
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
    setting!(
        "log.checkpoint_rows",
        "SERIALMINT_LOG_CHECKPOINT_ROWS",
        "1000",
        false,
        "a checkpoint of the tamper-evident signing and audit logs (signed with the audit \
         key) is taken once this many rows follow the newest",
        |c, v| positive(&mut c.checkpoint_rows, v)
    ),
    setting!(
        "log.checkpoint_secs",
        "SERIALMINT_LOG_CHECKPOINT_SECS",
        "60",
        false,
        "... or once the newest checkpoint is this old and rows follow it",
        |c, v| secs(&mut c.checkpoint_every, v)
    ),
    setting!(
        "hsm.pin_file",
        "SERIALMINT_TOKEN_PIN_FILE",
        "(none)",
        false,
        "file holding the token's user PIN instead of hsm.pin (mode 0600 or stricter; read once \
         at start, a trailing newline ignored), e.g. a systemd credential: %d/pin",
        |c, v| {
            c.token_pin_file = path_or_none(v);
            Ok(())
        }
    ),
    setting!(
        "database.url_file",
        "SERIALMINT_DATABASE_URL_FILE",
        "(none)",
        false,
        "file holding the Postgres URL instead of database.url (mode 0600 or stricter; read \
         once at start, a trailing newline ignored)",
        |c, v| {
            c.database_url_file = path_or_none(v);
            Ok(())
        }
    ),
    setting!(
        "hsm.more_pins_file",
        "SERIALMINT_HSM_MORE_PINS_FILE",
        "(none)",
        false,
        "file holding the PINs of hsm.more_tokens instead of hsm.more_pins, one per line in the \
         same order (mode 0600 or stricter; read once at start)",
        |c, v| {
            c.more_pins_file = path_or_none(v);
            Ok(())
        }
    ),
    setting!(
        "device.tls_cert",
        "SERIALMINT_DEVICE_TLS_CERT",
        "(none)",
        false,
        "PEM certificate chain of the device listener (leaf first); with device.tls_key the listener speaks https only; reloaded on SIGHUP",
        |c, v| {
            c.device_tls_cert = path_or_none(v);
            Ok(())
        }
    ),
    setting!(
        "device.tls_key",
        "SERIALMINT_DEVICE_TLS_KEY",
        "(none)",
        false,
        "PEM private key of device.tls_cert; reloaded on SIGHUP",
        |c, v| {
            c.device_tls_key = path_or_none(v);
            Ok(())
        }
    ),
    setting!(
        "admin.tls_cert",
        "SERIALMINT_ADMIN_TLS_CERT",
        "(none)",
        false,
        "PEM certificate chain of the admin listener (leaf first); with admin.tls_key the listener speaks https only; reloaded on SIGHUP",
        |c, v| {
            c.admin_tls_cert = path_or_none(v);
            Ok(())
        }
    ),
    setting!(
        "admin.tls_key",
        "SERIALMINT_ADMIN_TLS_KEY",
        "(none)",
        false,
        "PEM private key of admin.tls_cert; reloaded on SIGHUP",
        |c, v| {
            c.admin_tls_key = path_or_none(v);
            Ok(())
        }
    ),
    setting!(
        "admin.tls_client_ca",
        "SERIALMINT_ADMIN_TLS_CLIENT_CA",
        "(none)",
        false,
        "PEM CA certificates; when set, admin clients must present a certificate issued by one (mutual TLS; needs admin.tls_cert)",
        |c, v| {
            c.admin_tls_client_ca = path_or_none(v);
            Ok(())
        }
    ),
];

/// An empty value unsets an optional path.
fn path_or_none(v: &str) -> Option<PathBuf> {
    (!v.is_empty()).then(|| PathBuf::from(v))
}

/// Parses `v` (trimmed) as a `T`.
fn parse<T: FromStr>(v: &str) -> Result<T, ValueError>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    v.trim()
        .parse()
        .map_err(|e: T::Err| ValueError::Parse(Box::new(e)))
}

fn parse_into<T: FromStr>(field: &mut T, v: &str) -> Result<(), ValueError>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    *field = parse(v)?;
    Ok(())
}

fn positive<T: FromStr + PartialEq + Default>(field: &mut T, v: &str) -> Result<(), ValueError>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let n: T = parse(v)?;
    if n == T::default() {
        return Err(ValueError::Zero);
    }
    *field = n;
    Ok(())
}

fn secs(field: &mut Duration, v: &str) -> Result<(), ValueError> {
    let mut n = 0u64;
    positive(&mut n, v)?;
    *field = Duration::from_secs(n);
    Ok(())
}

fn millis(field: &mut Duration, v: &str) -> Result<(), ValueError> {
    let mut n = 0u64;
    positive(&mut n, v)?;
    *field = Duration::from_millis(n);
    Ok(())
}

fn parse_more_tokens(c: &mut Config, v: &str) -> Result<(), ValueError> {
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (label, module) = match item.split_once('@') {
            Some((l, m)) => (l.trim(), Some(PathBuf::from(m.trim()))),
            None => (item, None),
        };
        if label.is_empty() || module.as_ref().is_some_and(|m| m.as_os_str().is_empty()) {
            return Err(ValueError::TokenItem(item.to_owned()));
        }
        out.push(MoreToken {
            label: label.to_owned(),
            module,
        });
    }
    c.more_tokens = out;
    Ok(())
}

/// The setting with this `section.key`, if any.
pub fn find(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}
