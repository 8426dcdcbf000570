//! Whole assertions on the wire: single `decode`, the stream `Decoder` with snapd's framing and
//! size limits, stream encoding, canonical content building and final assembly
//! (snapd `asserts/asserts.go`: `Decode`, `Decoder`, `Encoder`, `assemble`, `assembleAndSign`).

use super::checks::check_type;
use super::decoded::Assertion;
use super::error::{CheckError, DecodeError};
use super::headers::{self, HeaderValue, Headers, parse_headers, write_header};
use super::types::AssertionType;

/// `MaxHeadersSize`: 128 KiB.
pub const MAX_HEADERS_SIZE: usize = 128 * 1024;
/// `MaxSignatureSize`: 128 KiB.
pub const MAX_SIGNATURE_SIZE: usize = 128 * 1024;
/// `MaxBodySize`: 2 MiB.
pub const MAX_BODY_SIZE: usize = 2 * 1024 * 1024;

const NLNL: &[u8] = b"\n\n";

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// Decodes one encoded assertion (`asserts.Decode`): content ends at the **last** `"\n\n"`,
/// headers end at the first. No size limits apply (as in snapd).
pub fn decode(encoded: &[u8]) -> Result<Assertion, DecodeError> {
    let split = rfind(encoded, NLNL).ok_or(DecodeError::NoContentSignatureSeparator)?;
    let content = &encoded[..split];
    let signature = &encoded[split + 2..];
    let (head, body_start) = match find(content, NLNL) {
        None => (content, None),
        Some(i) => (&content[..i], Some(i + 2)),
    };
    let headers = parse_headers(head)?;
    assemble(headers, content.to_vec(), body_start, signature.to_vec())
}

/// [`decode`] into a typed view (`Model`, `AccountKey`, ...), the error as text whether the
/// bytes do not decode or hold another type of assertion.
pub fn decode_as<T>(encoded: &[u8]) -> Result<T, String>
where
    T: TryFrom<Assertion>,
    T::Error: std::fmt::Display,
{
    let a = decode(encoded).map_err(|e| e.to_string())?;
    T::try_from(a).map_err(|e| e.to_string())
}

/// `assemble`: the checks every decoded assertion passes, then the type's own checks.
///
/// `body_start` is the offset of the body in `content` (`None` or an empty body mean no body).
pub(crate) fn assemble(
    headers: Headers,
    content: Vec<u8>,
    body_start: Option<usize>,
    signature: Vec<u8>,
) -> Result<Assertion, DecodeError> {
    let chk = DecodeError::Check;
    let length = headers::int_with_default(&headers, "body-length", 0).map_err(chk)?;
    let body = body_start.map_or(&[][..], |s| &content[s..]);
    if i64::try_from(body.len()).ok() != Some(length) {
        return Err(DecodeError::BodyLengthMismatch {
            actual: body.len(),
            declared: length,
        });
    }
    if std::str::from_utf8(body).is_err() {
        return Err(DecodeError::BodyNotUtf8);
    }
    let sign_key = headers::digest384(&headers, "sign-key-sha3-384").map_err(chk)?;
    let type_name = headers::not_empty_string(&headers, "type").map_err(chk)?;
    let kind = AssertionType::from_name(type_name)
        .ok_or_else(|| DecodeError::UnknownType(type_name.to_owned()))?;
    if kind.has_authority() {
        headers::not_empty_string(&headers, "authority-id").map_err(chk)?;
        if headers.contains_key("signatory-id") {
            headers::not_empty_string(&headers, "signatory-id").map_err(chk)?;
        }
    } else if headers.contains_key("authority-id") {
        return Err(DecodeError::AuthorityNotAllowed(kind.name()));
    } else if headers.contains_key("signatory-id") {
        return Err(DecodeError::SignatoryNotAllowed(kind.name()));
    }
    let format = headers::iteration(&headers, "format").map_err(chk)?;
    let mut headers = headers;
    for (key, default) in kind.primary_key() {
        if let Some(d) = default {
            headers
                .entry((*key).to_owned())
                .or_insert_with(|| HeaderValue::String((*d).to_owned()));
        }
        headers::primary_key(&headers, key).map_err(|err| DecodeError::Type {
            kind: kind.name(),
            err,
        })?;
    }
    let revision = headers::iteration(&headers, "revision").map_err(chk)?;
    if signature.is_empty() {
        return Err(DecodeError::EmptySignature);
    }
    let parsed =
        check_type(kind, &headers, format, body, &sign_key).map_err(|err| DecodeError::Type {
            kind: kind.name(),
            err,
        })?;
    let body_start = if body.is_empty() { None } else { body_start };
    Ok(Assertion {
        kind,
        headers,
        content,
        body_start,
        signature,
        format,
        revision,
        sign_key,
        parsed,
    })
}

/// A stream decoder over an in-memory buffer with exactly snapd's framing (`Decoder`):
/// headers up to `"\n\n"`, `body-length` bytes, `"\n\n"`, then the signature up to `"\n\n"` or
/// the end. After the first error the iterator stops.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

enum Until<'a> {
    /// Found; the slice includes the delimiter.
    Found(&'a [u8]),
    /// End of input without the delimiter; the rest.
    Eof(&'a [u8]),
    /// No delimiter within `max` bytes.
    TooLarge,
}

impl<'a> Decoder<'a> {
    /// A decoder over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            failed: false,
        }
    }

    /// `readUntil` as it behaves on a fully available buffer: the delimiter must end within the
    /// first `max` bytes; if not, `Eof` when fewer than `max` bytes remain, else too large.
    fn read_until(&mut self, max: usize) -> Until<'a> {
        let rest = &self.data[self.pos..];
        let window = &rest[..rest.len().min(max)];
        if let Some(i) = find(window, NLNL) {
            self.pos += i + 2;
            return Until::Found(&rest[..i + 2]);
        }
        if rest.len() >= max {
            return Until::TooLarge;
        }
        self.pos = self.data.len();
        Until::Eof(rest)
    }

    fn next_assertion(&mut self) -> Option<Result<Assertion, DecodeError>> {
        let head_and_sep = match self.read_until(MAX_HEADERS_SIZE) {
            Until::Found(b) => b,
            Until::Eof([]) => return None,
            Until::Eof(_) => return Some(Err(DecodeError::UnexpectedEof)),
            Until::TooLarge => return Some(Err(DecodeError::HeadersTooLarge)),
        };
        Some(self.decode_after_headers(head_and_sep))
    }

    fn decode_after_headers(&mut self, head_and_sep: &'a [u8]) -> Result<Assertion, DecodeError> {
        let head_len = head_and_sep.len() - 2;
        let headers = parse_headers(&head_and_sep[..head_len])?;
        let length =
            headers::int_with_default(&headers, "body-length", 0).map_err(DecodeError::Check)?;
        if length > MAX_BODY_SIZE as i64 {
            return Err(DecodeError::BodyTooLarge(length));
        }
        let mut content = head_and_sep.to_vec();
        if length > 0 {
            let n = length as usize;
            let rest = &self.data[self.pos..];
            if rest.len() < n {
                self.pos = self.data.len();
                return Err(DecodeError::UnexpectedEof);
            }
            content.extend_from_slice(&rest[..n]);
            self.pos += n;
        }
        let end_of_body = match self.read_until(MAX_SIGNATURE_SIZE) {
            Until::Found(b) | Until::Eof(b) => b,
            Until::TooLarge => return Err(DecodeError::TrailerTooLarge),
        };
        let mut sig = if end_of_body == NLNL {
            match self.read_until(MAX_SIGNATURE_SIZE) {
                Until::Found(b) | Until::Eof(b) => b,
                Until::TooLarge => return Err(DecodeError::SignatureTooLarge),
            }
        } else {
            if length > 0 {
                return Err(DecodeError::MissingContentSignatureSeparator);
            }
            content.truncate(head_len);
            end_of_body
        };
        if sig.ends_with(NLNL) {
            sig = &sig[..sig.len() - 1];
        }
        let body_start = (length > 0).then_some(head_len + 2);
        assemble(headers, content, body_start, sig.to_vec())
    }
}

impl Iterator for Decoder<'_> {
    type Item = Result<Assertion, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.next_assertion();
        if matches!(r, Some(Err(_))) {
            self.failed = true;
        }
        r
    }
}

/// Decodes a whole stream, failing on the first error (as snapd's callers do).
pub fn decode_stream(data: &[u8]) -> Result<Vec<Assertion>, DecodeError> {
    Decoder::new(data).collect()
}

/// Encodes a stream of already encoded assertions (`Encoder.WriteEncoded`): each is followed
/// by `"\n"` unless it already ends in one, and a `"\n"` separates consecutive assertions.
pub fn encode_stream<I, B>(encoded: I) -> Vec<u8>
where
    I: IntoIterator<Item = B>,
    B: AsRef<[u8]>,
{
    let mut out = Vec::new();
    let mut first = true;
    for e in encoded {
        let e = e.as_ref();
        if e.is_empty() {
            continue;
        }
        if !first {
            out.push(b'\n');
        }
        first = false;
        out.extend_from_slice(e);
        if e.last() != Some(&b'\n') {
            out.push(b'\n');
        }
    }
    out
}

/// Why content could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A header failed a check.
    #[error("cannot build {kind} assertion: {err}")]
    Check {
        /// The assertion type.
        kind: &'static str,
        /// What failed.
        #[source]
        err: CheckError,
    },
    /// A header that the builder sets itself was given.
    #[error("cannot build assertion: header {0:?} is set by the builder")]
    Reserved(String),
}

impl BuildError {
    /// Wraps a failed check of a `kind` assertion being built (for `map_err`).
    pub fn check(kind: AssertionType) -> impl Fn(CheckError) -> Self + Copy {
        move |err| Self::Check {
            kind: kind.name(),
            err,
        }
    }
}

/// Builds the signed CONTENT in snapd's canonical order (`assembleAndSign`, PROTOCOL.md 1.3):
/// `type`, `format` (> 0), `authority-id`, `revision` (> 0), primary keys in order, the rest
/// sorted byte-wise, `body-length` (non-empty body), `sign-key-sha3-384`, then `"\n\n" body`.
///
/// `headers` must not contain `type`, `body-length` or `sign-key-sha3-384`.
pub fn build_content(
    kind: AssertionType,
    headers: &Headers,
    body: &str,
    sign_key_id: &str,
) -> Result<Vec<u8>, BuildError> {
    let err = BuildError::check(kind);
    for reserved in ["type", "body-length", "sign-key-sha3-384", "signatory-id"] {
        if headers.contains_key(reserved) {
            return Err(BuildError::Reserved(reserved.to_owned()));
        }
    }
    let mut out = String::with_capacity(1024 + body.len());
    out.push_str("type: ");
    out.push_str(kind.name());
    let mut written: Vec<&str> = vec!["format", "authority-id", "revision"];
    let format = headers::iteration(headers, "format").map_err(err)?;
    if format > 0 {
        write_header(&mut out, "format", &headers["format"]);
    }
    if kind.has_authority() {
        let v = headers::not_empty_string(headers, "authority-id").map_err(err)?;
        write_header(&mut out, "authority-id", &HeaderValue::from(v));
    } else if headers.contains_key("authority-id") {
        return Err(err(CheckError::invalid(format!(
            "{:?} assertion cannot have authority-id set",
            kind.name()
        ))));
    }
    if headers::iteration(headers, "revision").map_err(err)? > 0 {
        write_header(&mut out, "revision", &headers["revision"]);
    }
    for (key, default) in kind.primary_key() {
        written.push(key);
        match (headers.get(*key), default) {
            (None, Some(_)) => continue,
            _ => {
                let v = headers::primary_key(headers, key).map_err(err)?;
                if Some(v) != *default {
                    write_header(&mut out, key, &HeaderValue::from(v));
                }
            }
        }
    }
    for (k, v) in headers {
        if !written.contains(&k.as_str()) {
            write_header(&mut out, k, v);
        }
    }
    if !body.is_empty() {
        write_header(
            &mut out,
            "body-length",
            &HeaderValue::String(body.len().to_string()),
        );
    }
    write_header(
        &mut out,
        "sign-key-sha3-384",
        &HeaderValue::from(sign_key_id),
    );
    if !body.is_empty() {
        out.push_str("\n\n");
        out.push_str(body);
    }
    Ok(out.into_bytes())
}

/// The full encoded assertion: `CONTENT "\n\n" signature "\n"` (snapd's signer output plus
/// `Encode`). `signature_block` is the v1 text, e.g. from `SigningInput::encode_signature`.
pub fn assemble_encoded(content: &[u8], signature_block: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + signature_block.len() + 3);
    out.extend_from_slice(content);
    out.extend_from_slice(NLNL);
    out.extend_from_slice(signature_block.as_bytes());
    out.push(b'\n');
    out
}
