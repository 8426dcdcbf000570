//! snapd's assertion format, byte for byte: pure code, no I/O.
//!
//! The wire format is specified in `../shared/PROTOCOL.md` and matched against snapd's
//! `asserts/` package. Nothing here talks to an HSM, a database or a socket: callers hand in
//! bytes and get typed values (or a precise error) back.

pub mod openpgp;
