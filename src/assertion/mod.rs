//! snapd's assertion format, byte for byte: pure code, no I/O.
//!
//! The wire format is specified in `../shared/PROTOCOL.md` and matched against snapd's
//! `asserts/` package. Nothing here talks to an HSM, a database or a socket: callers hand in
//! bytes and get typed values (or a precise error) back.
//!
//! Files: `headers` (grammar and scalar checks), `codec` (decode, stream, content building),
//! `openpgp` (packets, key ids, digest, verification), `time` (RFC 3339), `types` (type
//! table and decode-time checks), and one file per typed view: `serial` (serial-request,
//! serial, builder), `model`, `account`, `account_key` (account-key, account-key-request,
//! builder). `error` holds the error types.

pub mod account;
pub mod account_key;
pub mod codec;
pub mod error;
pub mod headers;
pub mod model;
pub mod openpgp;
pub mod serial;
pub mod time;
pub mod types;

pub use account::Account;
pub use account_key::{AccountKey, AccountKeyRequest, AccountKeyRequestBuilder};
pub use codec::{
    BuildError, Decoder, MAX_BODY_SIZE, MAX_HEADERS_SIZE, MAX_SIGNATURE_SIZE, assemble_encoded,
    build_content, decode, decode_stream, encode_stream,
};
pub use error::{CheckError, DecodeError, HeaderError, PacketError, VerifyError};
pub use headers::{HeaderValue, Headers};
pub use model::Model;
pub use openpgp::{
    RsaPublicKey, SignaturePacket, SigningInput, check_encoded_signature, signing_input,
    verify_digest_info,
};
pub use serial::{Serial, SerialBuilder, SerialRequest};
pub use types::AssertionType;

use types::Parsed;

/// A decoded assertion that passed snapd's generic and type-specific decode checks. Its
/// signature is **not** verified yet.
#[derive(Debug, Clone)]
pub struct Assertion {
    kind: AssertionType,
    headers: Headers,
    content: Vec<u8>,
    body_start: Option<usize>,
    signature: Vec<u8>,
    format: u32,
    revision: u32,
    sign_key: [u8; 48],
    parsed: Parsed,
}

/// A typed view was asked of an assertion of another type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {} assertion, got {}", expected.name(), found.name())]
pub struct WrongType {
    /// The type wanted.
    pub expected: AssertionType,
    /// The type found.
    pub found: AssertionType,
}

impl Assertion {
    /// The assertion type.
    pub fn kind(&self) -> AssertionType {
        self.kind
    }

    /// All headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// A string header.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(HeaderValue::as_str)
    }

    /// `authority-id` (absent for self-signed types).
    pub fn authority_id(&self) -> Option<&str> {
        self.header_str("authority-id")
    }

    /// `sign-key-sha3-384` as written.
    pub fn sign_key_id(&self) -> &str {
        self.header_str("sign-key-sha3-384").unwrap_or_default()
    }

    /// `sign-key-sha3-384` decoded.
    pub fn sign_key_id_bytes(&self) -> &[u8; 48] {
        &self.sign_key
    }

    /// `format` (0 when absent).
    pub fn format(&self) -> u32 {
        self.format
    }

    /// `revision` (0 when absent).
    pub fn revision(&self) -> u32 {
        self.revision
    }

    /// The body (empty when there is none). Always valid UTF-8.
    pub fn body(&self) -> &[u8] {
        self.body_start.map_or(&[][..], |s| &self.content[s..])
    }

    /// The signed bytes.
    pub fn content(&self) -> &[u8] {
        &self.content
    }

    /// The signature block as received (may end in `"\n"`).
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// `Encode`: `content "\n\n" signature`.
    pub fn encode(&self) -> Vec<u8> {
        assemble_bytes(&self.content, &self.signature)
    }

    /// Whether `format` is within what serialmint supports for this type.
    pub fn supported_format(&self) -> bool {
        self.format <= self.kind.max_supported_format()
    }

    /// Verifies the signature over the content with `key` (no key-id or authority checks).
    pub fn verify_with(&self, key: &RsaPublicKey) -> Result<(), VerifyError> {
        openpgp::verify_signature(&self.content, &self.signature, key)
    }
}

fn assemble_bytes(content: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + signature.len() + 2);
    out.extend_from_slice(content);
    out.extend_from_slice(b"\n\n");
    out.extend_from_slice(signature);
    out
}
