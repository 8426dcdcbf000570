//! serialmint: an on-prem serial vault for snapd devices.
//!
//! Devices on a factory line ask for a request-id, send a self-signed `serial-request` with
//! their `model`, and receive a `serial` assertion signed by their brand's RSA-4096 key, which
//! never leaves a PKCS#11 token.
//!
//! `docs/ARCHITECTURE.md` is the map: the modules and the floors they stand on (dependencies
//! point down only, no cycles), one serial step by step, the admin plane, and where the next
//! features go. Each module's own `//!` docs say what it owns.
//!
//! # Error policy
//!
//! Library code returns typed errors (`thiserror`), one enum per module that can fail, with
//! `#[source]` on variants that wrap another error; `Result<_, String>` is not used. Context
//! is added at the edges: the HTTP layers turn errors into a status, a stable code and a
//! message (`application/json`, `Retry-After` on 503), the CLI into one line. Behaviour is
//! decided by kinds (SQLSTATE and constraint names, cryptoki return values), never by message
//! text. Secrets never appear in an error or a log line. Bad input is an error, never a panic.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin_api;
pub mod assertion;
pub mod catalog;
pub mod checkpointer;
pub mod cli;
pub mod config;
pub mod device_api;
pub mod domain;
pub mod evidence;
pub mod hsm;
pub mod http;
pub mod keyfile;
pub mod logging;
pub mod registration;
pub mod server;
pub mod signer;
pub mod store;
pub mod tls;
pub mod trust;
pub mod wiring;
