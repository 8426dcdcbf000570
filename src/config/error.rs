//! The configuration's errors: [`ConfigError`] for the whole load or check, and
//! [`ValueError`] for one refused value. Every message is one line and never contains a secret
//! value: a secret setting's value is not kept in the error at all.
//!
//! The edge prints these with `to_string()` alone, so each message carries its cause's text
//! too; the cause is also the error's `source()`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why one setting's value was refused.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// The text is not a value of the setting's type (an address, a number).
    #[error(transparent)]
    Parse(Box<dyn std::error::Error + Send + Sync>),
    /// Zero where at least 1 is needed.
    #[error("must be at least 1")]
    Zero,
    /// `log.format` is neither `text` nor `json`.
    #[error("must be text or json")]
    LogFormat,
    /// An `hsm.more_tokens` item is not `LABEL` or `LABEL@MODULE`.
    #[error("{0:?} is not LABEL or LABEL@MODULE")]
    TokenItem(String),
}

/// Where a value came from, for messages.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A key of the configuration file.
    File {
        /// The file.
        path: PathBuf,
        /// The `section.key`.
        key: String,
    },
    /// An environment variable.
    Env(&'static str),
    /// A `--set section.key=value` flag.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, key } => write!(f, "{} `{key}`", path.display()),
            Origin::Env(name) => f.write_str(name),
            Origin::Flag(key) => write!(f, "--set {key}"),
        }
    }
}

/// A configuration error: one clear line, never containing a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file cannot be read.
    #[error("configuration: cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not TOML.
    #[error("configuration: {}: {}", path.display(), source.message())]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A top-level key of the file is not a `[section]`.
    #[error("configuration: {}: `{section}` must be a section ([{section}])", path.display())]
    NotASection {
        /// The file.
        path: PathBuf,
        /// The key.
        section: String,
    },
    /// No setting has this `section.key` (in the file when `file` is set, else in a flag).
    #[error("configuration: {}unknown setting `{key}`", in_file(file.as_deref()))]
    UnknownSetting {
        /// The file, when the key is one of its keys.
        file: Option<PathBuf>,
        /// The `section.key`.
        key: String,
    },
    /// A file value is neither a string nor a number (nor a boolean).
    #[error("configuration: {}: `{key}` must be a string or a number", path.display())]
    NotAScalar {
        /// The file.
        path: PathBuf,
        /// The `section.key`.
        key: String,
    },
    /// A value was refused by its setting's parser. `value` is `None` for secret settings.
    #[error("configuration: {origin}: invalid value{} ({why})", shown(value.as_deref()))]
    Invalid {
        /// Where the value came from.
        origin: Origin,
        /// The value, unless the setting is secret.
        value: Option<String>,
        /// Why it was refused.
        #[source]
        why: ValueError,
    },
    /// `serve` needs this setting and it is unset.
    #[error("configuration: {key} ({env}) or {file_key} is required; scripts/setup writes one")]
    Required {
        /// The `section.key`.
        key: &'static str,
        /// Its environment variable.
        env: &'static str,
        /// The setting naming a file that holds it instead.
        file_key: &'static str,
    },
    /// `hsm.module` is not a file.
    #[error("configuration: hsm.module: PKCS#11 module {} not found", .0.display())]
    ModuleNotFound(PathBuf),
    /// `hsm.more_pins` has neither none, one, nor one PIN per token.
    #[error(
        "configuration: hsm.more_pins: {pins} PINs for {tokens} tokens in hsm.more_tokens \
         (give one per token, one for all, or none to use hsm.pin)"
    )]
    PinCount {
        /// PINs given.
        pins: usize,
        /// Tokens in `hsm.more_tokens`.
        tokens: usize,
    },
    /// The module of one of `hsm.more_tokens` is not a file.
    #[error(
        "configuration: hsm.more_tokens: PKCS#11 module {} of token {label:?} not found",
        module.display()
    )]
    TokenModuleNotFound {
        /// The token's label.
        label: String,
        /// Its module.
        module: PathBuf,
    },
    /// `trust.assertions` is not a file.
    #[error("configuration: trust.assertions: {} not found", .0.display())]
    TrustedAssertionsNotFound(PathBuf),
    /// Both listeners have the same address.
    #[error("configuration: device.listen and admin.listen are both {0}; they must differ")]
    SameListenAddress(SocketAddr),
    /// A TLS setting is set without the one it needs.
    #[error("configuration: {set} is set but {missing} is not; TLS needs both")]
    TlsHalf {
        /// The setting given.
        set: &'static str,
        /// The setting it needs.
        missing: &'static str,
    },
    /// A secret and the file that would hold it are both set.
    #[error(
        "configuration: both {key} ({env}) and {file_key} ({file_env}) are set; \
         give only one (the file keeps the secret out of the environment and the TOML)"
    )]
    SecretAndFile {
        /// The direct setting.
        key: &'static str,
        /// Its environment variable.
        env: &'static str,
        /// The file setting.
        file_key: &'static str,
        /// Its environment variable.
        file_env: &'static str,
    },
    /// A secret file cannot be used. The message names the file, never what it holds.
    #[error("configuration: {key}: {}: {why}", path.display())]
    SecretFile {
        /// The file setting (`hsm.pin_file`, ...).
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it is refused.
        #[source]
        why: SecretFileError,
    },
}

/// Why a secret file is refused. No variant holds any of the file's content.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// It cannot be opened or read.
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    /// Group or others have some access to it.
    #[error(
        "group or others may access it (mode {mode:04o}); make it private to the service's \
         user with `chmod 600 {}`", path.display()
    )]
    TooOpen {
        /// The file's permission bits.
        mode: u32,
        /// The file (for the fix).
        path: PathBuf,
    },
    /// It is not a regular file.
    #[error("not a regular file")]
    NotAFile,
    /// It is larger than any secret (64 KiB).
    #[error("it is larger than 64 KiB; is it the right file?")]
    TooLarge,
    /// It holds nothing (a trailing newline aside).
    #[error("it is empty")]
    Empty,
    /// It is not UTF-8 text.
    #[error("it is not UTF-8 text")]
    NotText,
}

fn in_file(file: Option<&Path>) -> String {
    file.map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

fn shown(value: Option<&str>) -> String {
    value.map(|v| format!(" {v:?}")).unwrap_or_default()
}
