//! snapd's assertion format, byte for byte: pure code, no I/O.
//!
//! The wire format is specified in `../shared/PROTOCOL.md` and matched against snapd's
//! `asserts/` package. Nothing here talks to an HSM, a database or a socket: callers hand in
//! bytes and get typed values (or a precise error) back.
//!
//! Files, from the bottom up (each imports only files named before it, so no cycle):
//! `error` (the error types), `types` (the type table), `time` (RFC 3339), `headers` (grammar,
//! scalar checks, header values shared by several types), `constraints` (account-key signing
//! constraints: parsing and snapd's matching), `openpgp` (packets, key ids,
//! digest, verification), `checks` (the per-type decode checks and the values they compute),
//! `decoded` (the [`Assertion`] value), `codec` (decode, stream, content building), and one
//! file of typed views per type: `serial` (serial-request, serial, builder), `model`,
//! `account`, `account_key` (account-key, account-key-request, builder); `statement` (statements
//! to sign, as `snap sign` takes them, and model signing); `system_user` (its view and the
//! content of one to sign). This file only
//! declares and re-exports; `tests` holds the tests that go through several files.

pub mod account;
pub mod account_key;
mod checks;
pub mod codec;
pub mod constraints;
mod decoded;
pub mod error;
pub mod headers;
pub mod model;
pub mod openpgp;
pub mod serial;
pub mod statement;
pub mod system_user;
pub mod time;
pub mod types;

#[cfg(test)]
mod tests;

pub use account::Account;
pub use account_key::{AccountKey, AccountKeyRequest, AccountKeyRequestBuilder};
pub use codec::{
    BuildError, Decoder, MAX_BODY_SIZE, MAX_HEADERS_SIZE, MAX_SIGNATURE_SIZE, assemble_encoded,
    build_content, decode, decode_as, decode_stream, encode_stream,
};
pub use constraints::{ConstraintError, Constraints};
pub use decoded::{Assertion, WrongType};
pub use error::{CheckError, DecodeError, HeaderError, PacketError, TimeError, VerifyError};
pub use headers::{HeaderValue, Headers};
pub use model::Model;
pub use openpgp::{
    RsaPublicKey, SignaturePacket, SigningInput, check_encoded_signature, signing_input,
    verify_digest_info,
};
pub use serial::{Serial, SerialBuilder, SerialRequest, constraints_admit_serials};
pub use statement::{Statement, StatementError, check_unsigned, parse_statement, prepare_model};
pub use system_user::{SystemUser, SystemUserStatement, system_user_content};
pub use types::AssertionType;
