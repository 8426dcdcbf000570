//! The decoded assertion: headers, signed content and signature block, with what the type's
//! decode-time checks computed, and the generic accessors every typed view derefs to. Also the
//! `typed_view!` macro that writes those views.

use super::checks::Parsed;
use super::error::VerifyError;
use super::headers::{HeaderValue, Headers};
use super::openpgp::{RsaPublicKey, verify_signature};
use super::types::AssertionType;

/// A decoded assertion that passed snapd's generic and type-specific decode checks. Its
/// signature is **not** verified yet.
#[derive(Debug, Clone)]
pub struct Assertion {
    pub(super) kind: AssertionType,
    pub(super) headers: Headers,
    pub(super) content: Vec<u8>,
    /// Offset of the body in `content`; `None` when the body is empty.
    pub(super) body_start: Option<usize>,
    pub(super) signature: Vec<u8>,
    pub(super) format: u32,
    pub(super) revision: u32,
    pub(super) sign_key: [u8; 48],
    /// What the type's checks computed at decode time.
    pub(super) parsed: Parsed,
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
        verify_signature(&self.content, &self.signature, key)
    }
}

fn assemble_bytes(content: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + signature.len() + 2);
    out.extend_from_slice(content);
    out.extend_from_slice(b"\n\n");
    out.extend_from_slice(signature);
    out
}

/// Writes a typed view over [`Assertion`]: the newtype, `TryFrom<Assertion>` (accepting an
/// assertion of type `$kind` whose decode-time values are `$variant`), `Deref` to the
/// assertion, `into_inner`, a private `data()` returning those values, and one `&str` accessor
/// per listed header (`""` when absent; decode checks make the listed ones mandatory).
macro_rules! typed_view {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($kind:expr, $variant:path => $data:ty);
        $( $(#[$hmeta:meta])* fn $field:ident = $header:literal; )*
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name($crate::assertion::decoded::Assertion);

        impl TryFrom<$crate::assertion::decoded::Assertion> for $name {
            type Error = $crate::assertion::decoded::WrongType;
            fn try_from(
                a: $crate::assertion::decoded::Assertion,
            ) -> Result<Self, $crate::assertion::decoded::WrongType> {
                if matches!(a.parsed, $variant(_)) && a.kind() == $kind {
                    Ok(Self(a))
                } else {
                    Err($crate::assertion::decoded::WrongType {
                        expected: $kind,
                        found: a.kind(),
                    })
                }
            }
        }

        impl std::ops::Deref for $name {
            type Target = $crate::assertion::decoded::Assertion;
            fn deref(&self) -> &$crate::assertion::decoded::Assertion {
                &self.0
            }
        }

        impl $name {
            fn data(&self) -> &$data {
                match &self.0.parsed {
                    $variant(d) => d,
                    _ => unreachable!(concat!(
                        stringify!($name),
                        " is only built from an assertion with its decode-time values"
                    )),
                }
            }

            /// The whole assertion.
            pub fn into_inner(self) -> $crate::assertion::decoded::Assertion {
                self.0
            }

            $(
                $(#[$hmeta])*
                pub fn $field(&self) -> &str {
                    self.header_str($header).unwrap_or_default()
                }
            )*
        }
    };
}
pub(super) use typed_view;
