//! serialmint: an on-prem serial vault for snapd devices.
//!
//! Devices on a factory line ask for a request-id, send a self-signed `serial-request` with
//! their `model`, and receive a `serial` assertion signed by their brand's RSA-4096 key, which
//! never leaves a PKCS#11 token. See `ARCHITECTURE.md` in the shared docs for the design; each
//! module's own docs say what it owns.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin_api;
pub mod assertion;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod device_api;
pub mod domain;
pub mod hsm;
pub mod http;
pub mod logging;
pub mod registration;
pub mod server;
pub mod signer;
pub mod store;
pub mod trust;
pub mod wiring;
