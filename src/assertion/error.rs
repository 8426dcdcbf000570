//! Typed errors of the assertion codec. Messages follow snapd's (`asserts/*.go`) wording so
//! logs and device-facing errors read the same as snapd's own.

use thiserror::Error;

/// A syntax error in the header block (`asserts/headers.go`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeaderError {
    /// The header block is not UTF-8.
    #[error("header is not utf8")]
    NotUtf8,
    /// A line without `:`.
    #[error("header entry missing ':' separator: {0:?}")]
    MissingSeparator(String),
    /// A name not matching `^[a-z](?:-?[a-z0-9])*$`.
    #[error("invalid header name: {0:?}")]
    InvalidName(String),
    /// `name:value` without the space.
    #[error("header entry should have a space or newline (for multiline) before value: {0:?}")]
    NoSpaceBeforeValue(String),
    /// A multi-line introduction not followed by indented lines.
    #[error("expected {width} chars nesting prefix after multiline introduction {intro:?}: {}", found.as_deref().unwrap_or("EOF"))]
    MultilinePrefix {
        /// Expected indentation width.
        width: usize,
        /// The introducing line.
        intro: String,
        /// The offending line, quoted, or `None` at the end.
        found: Option<String>,
    },
    /// A map line without `:`.
    #[error("map entry missing ':' separator: {0:?}")]
    MapMissingSeparator(String),
    /// A map key not matching the name grammar.
    #[error("invalid map entry key: {0:?}")]
    InvalidMapKey(String),
    /// A repeated map key.
    #[error("repeated map entry: {0:?}")]
    RepeatedMapEntry(String),
    /// A repeated header name.
    #[error("repeated header: {0:?}")]
    Repeated(String),
}

/// A header value failing a check (`asserts/header_checks.go` and the type assemblers).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckError {
    /// Missing mandatory header.
    #[error("{0:?} header is mandatory")]
    Mandatory(String),
    /// A list or map where a string was expected.
    #[error("{0:?} header must be a string")]
    NotString(String),
    /// Empty where non-empty is required.
    #[error("{0:?} header should not be empty")]
    Empty(String),
    /// Not matching the header's pattern.
    #[error("{0:?} header contains invalid characters: {1:?}")]
    InvalidChars(String, String),
    /// A primary key containing `/`.
    #[error("{0:?} primary key header cannot contain '/'")]
    PrimaryKeySlash(String),
    /// Not a decimal integer.
    #[error("{0:?} header is not an integer: {1}")]
    NotInteger(String, String),
    /// A list or map where an integer was expected.
    #[error("{0:?} header is not an integer")]
    NotIntegerValue(String),
    /// Integer out of the 64-bit range.
    #[error("{0:?} header is out of range: {1}")]
    OutOfRange(String, String),
    /// Leading zeros, e.g. `01`.
    #[error("{0:?} header has invalid prefix zeros: {1}")]
    PrefixZeros(String, String),
    /// A negative format or revision.
    #[error("{0} should be positive: {1}")]
    Negative(String, i64),
    /// A digest header that is not unpadded base64url.
    #[error("{0:?} header cannot be decoded: {1}")]
    DigestDecode(String, String),
    /// A digest header of the wrong length (in bits).
    #[error("{0:?} header does not have the expected bit length: {1}")]
    DigestLength(String, usize),
    /// A date not in RFC 3339 form.
    #[error("{0:?} header is not a RFC3339 date: {1}")]
    NotRfc3339(String, #[source] TimeError),
    /// Not `true`/`false`.
    #[error("{0:?} header must be 'true' or 'false'")]
    NotBool(String),
    /// Not a list of strings.
    #[error("{0:?} header must be a list of strings")]
    NotStringList(String),
    /// A header or body that should carry an encoded public key does not.
    #[error(transparent)]
    Key(#[from] PacketError),
    /// A type-specific rule, with snapd's message.
    #[error("{0}")]
    Invalid(String),
    /// A malformed account-key `constraints` header, with snapd's message.
    #[error(transparent)]
    Constraints(#[from] super::constraints::ConstraintError),
}

impl CheckError {
    /// A type-specific rule broken, with snapd's message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}

/// A timestamp that Go's `time.Parse(time.RFC3339, s)` would refuse, with Go's message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimeError {
    /// The text does not follow the layout.
    #[error("parsing time {0:?} as \"2006-01-02T15:04:05Z07:00\"")]
    Layout(String),
    /// A month outside 1..=12.
    #[error("parsing time {0:?}: month out of range")]
    Month(String),
    /// A day the month does not have.
    #[error("parsing time {0:?}: day out of range")]
    Day(String),
    /// An hour, minute or second out of range.
    #[error("parsing time {0:?}: hour, minute or second out of range")]
    Clock(String),
}

/// Why an assertion could not be decoded (`asserts.Decode`, `Decoder.Decode`, `assemble`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Single decode: no `"\n\n"` at all.
    #[error("assertion content/signature separator not found")]
    NoContentSignatureSeparator,
    /// The header block does not parse.
    #[error("parsing assertion headers: {0}")]
    Headers(#[from] HeaderError),
    /// The stream ended inside an assertion.
    #[error("unexpected EOF")]
    UnexpectedEof,
    /// No `"\n\n"` within the first 128 KiB of headers.
    #[error(
        "error reading assertion headers: maximum size exceeded while looking for delimiter \"\\n\\n\""
    )]
    HeadersTooLarge,
    /// No `"\n\n"` within 128 KiB after the body.
    #[error(
        "error reading assertion trailer: maximum size exceeded while looking for delimiter \"\\n\\n\""
    )]
    TrailerTooLarge,
    /// The signature exceeds 128 KiB.
    #[error(
        "error reading assertion signature: maximum size exceeded while looking for delimiter \"\\n\\n\""
    )]
    SignatureTooLarge,
    /// `body-length` above 2 MiB.
    #[error("assertion body length {0} exceeds maximum body size")]
    BodyTooLarge(i64),
    /// A body not followed by `"\n\n"`.
    #[error("missing content/signature separator")]
    MissingContentSignatureSeparator,
    /// `body-length` differs from the body.
    #[error("assertion body length and declared body-length don't match: {actual} != {declared}")]
    BodyLengthMismatch {
        /// Bytes actually present.
        actual: usize,
        /// The `body-length` header.
        declared: i64,
    },
    /// The body is not UTF-8.
    #[error("assertion body is not utf8")]
    BodyNotUtf8,
    /// A generic header check failed.
    #[error("assertion: {0}")]
    Check(#[source] CheckError),
    /// The type is not one snapd 2.57 knows.
    #[error("unknown assertion type: {0:?}")]
    UnknownType(String),
    /// `authority-id` on a self-signed type.
    #[error("{0:?} assertion cannot have authority-id set")]
    AuthorityNotAllowed(&'static str),
    /// `signatory-id` on a self-signed type.
    #[error("{0:?} assertion cannot have signatory-id set")]
    SignatoryNotAllowed(&'static str),
    /// No signature text.
    #[error("empty assertion signature")]
    EmptySignature,
    /// A primary-key or type-specific check failed.
    #[error("assertion {kind}: {err}")]
    Type {
        /// The assertion type name.
        kind: &'static str,
        /// What failed.
        #[source]
        err: CheckError,
    },
}

/// An OpenPGP key or signature that cannot be decoded (`decodeV1`, x/crypto `packet`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PacketError {
    /// Empty input.
    #[error("cannot decode {0}: no data")]
    NoData(&'static str),
    /// Bad base64.
    #[error("cannot decode {0}: illegal base64 data")]
    Base64(&'static str),
    /// Base64 that decodes to nothing.
    #[error("cannot decode {0}: base64 without data")]
    Empty(&'static str),
    /// First byte is not `0x01`.
    #[error("unsupported {0} format version: {1}")]
    Version(&'static str, u8),
    /// Structural problem inside the packet.
    #[error("cannot decode {0}: openpgp: {1}")]
    Packet(&'static str, String),
    /// Bytes after the packet.
    #[error("{0} has spurious trailing data")]
    TrailingData(&'static str),
    /// A packet of another kind.
    #[error("expected {0}, got packet tag {1}")]
    WrongPacket(&'static str, u8),
}

/// Why a signature does not verify (`openpgpPubKey.verify`, `PublicKey.VerifySignature`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// The signature block does not decode.
    #[error(transparent)]
    Decode(#[from] PacketError),
    /// The hash tag differs from the digest.
    #[error(
        "failed signature verification: openpgp: signature made by unknown entity: hash tag doesn't match"
    )]
    HashTag,
    /// Signature algorithm is not RSA (1).
    #[error(
        "failed signature verification: openpgp: invalid argument: public key and signature use different algorithms"
    )]
    Algorithm,
    /// A hash algorithm we cannot verify.
    #[error("failed signature verification: unsupported hash function {0}")]
    UnsupportedHash(u8),
    /// The RSA check failed.
    #[error("failed signature verification: openpgp: invalid signature: RSA verification failure")]
    Rsa,
    /// A DigestInfo that is not SHA-512.
    #[error("digest info is not a SHA-512 DigestInfo")]
    DigestInfo,
    /// An assembled signature block differs from what was signed (an encoding mistake).
    #[error("the signature block does not carry what was signed: {0}")]
    Mismatch(&'static str),
}
