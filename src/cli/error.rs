//! The command line's errors: each is printed by [`super::run`] as one line,
//! `serialmint: <message>`, so every message carries its cause's text inline. Messages name
//! settings and things, never a token's or a PIN's value.

use std::io;

use hyper::StatusCode;

use crate::config::ConfigError;
use crate::server::ServeError;
use crate::store::StoreError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot be loaded or does not allow `serve`.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `serve` stopped with an error.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The tokio runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] io::Error),
    /// The database (for `migrate` and `init`).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The brand could not be created (`init`).
    #[error("cannot create brand {brand:?}: {source}")]
    Brand {
        /// The brand's account-id.
        brand: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// No ready, active audit key to export (`export audit-key`).
    #[error("there is no audit key: make one with `serialmint create key NAME --purpose audit`")]
    NoAuditKey,
    /// A tamper-evidence input (export, audit key, checkpoints) cannot be used.
    #[error("{0}")]
    Evidence(String),
    /// `verify-log` found the log tampered with (the findings are printed first).
    #[error("the log does not verify: {0} finding(s)")]
    Tampered(usize),
    /// `SERIALMINT_ADMIN_URL` is neither an http:// nor an https:// URL.
    #[error("SERIALMINT_ADMIN_URL must be an http:// or https:// URL (got {0:?})")]
    NotHttp(String),
    /// A packaging asset (completion, man page) cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Asset {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The TLS configuration of the admin client (`SERIALMINT_ADMIN_CA`, the client
    /// certificate) cannot be loaded.
    #[error("admin TLS: {0}")]
    Tls(#[source] Box<crate::tls::TlsError>),
    /// One of `SERIALMINT_ADMIN_CLIENT_CERT` and `SERIALMINT_ADMIN_CLIENT_KEY` without the
    /// other.
    #[error(
        "SERIALMINT_ADMIN_CLIENT_CERT and SERIALMINT_ADMIN_CLIENT_KEY go together; {0} is missing"
    )]
    ClientCertHalf(&'static str),
    /// `SERIALMINT_ADMIN_TOKEN` is missing.
    #[error("SERIALMINT_ADMIN_TOKEN is not set (the token `serialmint init` printed)")]
    NoToken,
    /// `SERIALMINT_ADMIN_TOKEN` cannot be sent as a header.
    #[error("SERIALMINT_ADMIN_TOKEN contains invalid characters")]
    TokenNotAHeader,
    /// A request URL that does not parse.
    #[error("bad request URL {uri}: {source}")]
    BadUrl {
        /// The URL.
        uri: String,
        /// Why.
        #[source]
        source: hyper::http::Error,
    },
    /// The admin listener cannot be reached.
    #[error("cannot reach the admin API at {base}: {}", chain(source))]
    Unreachable {
        /// The admin URL.
        base: String,
        /// Why.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The answer broke off while being read.
    #[error("reading the answer failed: {0}")]
    ReadAnswer(#[source] hyper::Error),
    /// A streamed download broke off.
    #[error("the download broke off: {0}")]
    DownloadBroke(#[source] hyper::Error),
    /// The server refused the request: its status and message.
    #[error("{message} (HTTP {})", status.as_u16())]
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// The server's message.
        message: String,
    },
    /// The answer is not the JSON the route answers.
    #[error("the admin API answered invalid JSON: {0}")]
    BadAnswer(#[source] serde_json::Error),
    /// Key generation on the HSM failed.
    #[error("generating key {name} failed: {reason}")]
    KeyGeneration {
        /// The key.
        name: String,
        /// The server's reason.
        reason: String,
    },
    /// An input file or stdin cannot be read.
    #[error("cannot read {what}: {source}")]
    Input {
        /// The file (or `stdin`).
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An input file is not an assertion stream.
    #[error("{what} is not an assertion stream: {source}")]
    NotAssertions {
        /// The file (or `stdin`).
        what: String,
        /// Why it does not decode.
        #[source]
        source: crate::assertion::DecodeError,
    },
    /// Stdout cannot be written ([`super::run`] treats a closed pipe as success).
    #[error("cannot write the output: {0}")]
    Output(#[source] io::Error),
    /// A value is missing and cannot be asked for: stdin is not a terminal.
    #[error("{flag} is required (not asking: stdin is not a terminal)")]
    NotATerminal {
        /// The flag or argument.
        flag: &'static str,
    },
    /// A value is missing (the terminal closed).
    #[error("{flag} is required")]
    Missing {
        /// The flag or argument.
        flag: &'static str,
    },
    /// A value is missing and there is nothing to choose from.
    #[error("{flag} is required, and there is no {what} to choose from")]
    NothingToChoose {
        /// The flag.
        flag: &'static str,
        /// What would be chosen.
        what: &'static str,
    },
    /// The answer to a prompt cannot be read.
    #[error("cannot read the answer: {0}")]
    Prompt(#[source] io::Error),
}

impl Error {
    /// Whether this is stdout closing under us (`serialmint ... | head`): not a failure.
    pub fn is_closed_pipe(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// `e`'s message followed by its sources', `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
