//! Statements to sign, as `snap sign` takes them (snapd `asserts/signtool/sign.go`): a mapping
//! of headers in JSON (or YAML) with a `type` and an optional `body` pseudo-header; values are
//! strings or nested lists and maps of strings (`asserts/headers.go` `checkHeader`). Plus the
//! model statement's preparation for signing (`timestamp` filled when absent, authority and
//! brand checked against the signing key's account) and the decode-time checks run on the
//! exact content before anything is signed ([`check_unsigned`]).
//!
//! YAML values must be strings too: an unquoted `16` or `true` is refused with a hint to quote
//! it, rather than turned into text that might not be what the file says (`0x10`, `1_000`).

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::codec::{BuildError, build_content, decode};
use super::decoded::Assertion;
use super::error::DecodeError;
use super::headers::{HeaderValue, Headers};
use super::model::Model;
use super::time::format_utc;
use super::types::AssertionType;

/// Why a statement cannot be signed. Messages follow `snap sign`'s where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// Neither a JSON object nor a YAML mapping.
    #[error("cannot parse the assertion input as {format}: {reason}")]
    Parse {
        /// `JSON` or `YAML`.
        format: &'static str,
        /// The parser's reason.
        reason: String,
    },
    /// The input is not a mapping of headers.
    #[error("the assertion input must be a mapping of headers")]
    NotAMapping,
    /// A value that is not a string, list or map (snapd: `checkHeader`).
    #[error(
        "header {name:?}: header values must be strings or nested lists or maps with strings as the only scalars: {value}{hint}"
    )]
    NotAString {
        /// The top-level header.
        name: String,
        /// The offending value, as written.
        value: String,
        /// A hint for YAML.
        hint: &'static str,
    },
    /// A map key that is not text (YAML).
    #[error("header {0:?}: map keys must be strings")]
    KeyNotAString(String),
    /// No `type`.
    #[error("missing assertion type header")]
    MissingType,
    /// `type` is not a string.
    #[error("assertion type must be a string")]
    TypeNotString,
    /// `type` is not the one this verb signs.
    #[error("the statement is a {found:?} assertion, not a {expected:?} one")]
    WrongType {
        /// What the verb signs.
        expected: &'static str,
        /// What the statement says.
        found: String,
    },
    /// `body` is not a string.
    #[error("body if specified must be a string")]
    BodyNotString,
    /// `format` above what snapd 2.57 supports for the type.
    #[error(
        "cannot sign {kind:?} assertion with format {format} higher than max supported format {max}"
    )]
    Format {
        /// The type.
        kind: &'static str,
        /// The format asked for.
        format: String,
        /// The highest supported.
        max: u32,
    },
    /// `signatory-id` (delegated signing) is not offered.
    #[error(
        "\"signatory-id\" is not supported: the assertion is signed by its authority's own key"
    )]
    SignatoryId,
    /// `authority-id` or `brand-id` names another account than the signing key's.
    #[error("{header} is {found:?} but the signing key belongs to {brand:?}")]
    WrongAccount {
        /// The header.
        header: &'static str,
        /// Its value.
        found: String,
        /// The key's account.
        brand: String,
    },
    /// The content cannot be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The content fails snapd's decode-time checks.
    #[error("{0}")]
    Check(#[source] DecodeError),
}

/// A parsed statement: its type, its headers (without `type` and `body`) and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The `type` header.
    pub kind: String,
    /// The other headers.
    pub headers: Headers,
    /// The `body` pseudo-header (empty when absent).
    pub body: String,
}

/// Parses a statement: JSON when the first non-blank character is `{`, YAML otherwise.
pub fn parse_statement(input: &[u8]) -> Result<Statement, StatementError> {
    let json = input
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let mut headers = if json {
        let v: serde_json::Value =
            serde_json::from_slice(input).map_err(|e| StatementError::Parse {
                format: "JSON",
                reason: e.to_string(),
            })?;
        let serde_json::Value::Object(map) = v else {
            return Err(StatementError::NotAMapping);
        };
        map.into_iter()
            .map(|(k, v)| Ok((k.clone(), from_json(&k, v)?)))
            .collect::<Result<BTreeMap<_, _>, StatementError>>()?
    } else {
        let v: serde_norway::Value =
            serde_norway::from_slice(input).map_err(|e| StatementError::Parse {
                format: "YAML",
                reason: e.to_string(),
            })?;
        let serde_norway::Value::Mapping(map) = v else {
            return Err(StatementError::NotAMapping);
        };
        yaml_map("", map)?
    };
    let kind = match headers.remove("type") {
        None => return Err(StatementError::MissingType),
        Some(HeaderValue::String(s)) => s,
        Some(_) => return Err(StatementError::TypeNotString),
    };
    let body = match headers.remove("body") {
        None => String::new(),
        Some(HeaderValue::String(s)) => s,
        Some(_) => return Err(StatementError::BodyNotString),
    };
    Ok(Statement {
        kind,
        headers,
        body,
    })
}

fn not_a_string(name: &str, value: String, hint: &'static str) -> StatementError {
    StatementError::NotAString {
        name: name.to_owned(),
        value,
        hint,
    }
}

fn from_json(name: &str, v: serde_json::Value) -> Result<HeaderValue, StatementError> {
    use serde_json::Value as J;
    Ok(match v {
        J::String(s) => HeaderValue::String(s),
        J::Array(l) => HeaderValue::List(
            l.into_iter()
                .map(|e| from_json(name, e))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(m) => HeaderValue::Map(
            m.into_iter()
                .map(|(k, e)| Ok((k, from_json(name, e)?)))
                .collect::<Result<_, StatementError>>()?,
        ),
        other => return Err(not_a_string(name, other.to_string(), "")),
    })
}

const YAML_HINT: &str = " (quote it in YAML)";

fn yaml_map(
    top: &str,
    m: serde_norway::Mapping,
) -> Result<BTreeMap<String, HeaderValue>, StatementError> {
    m.into_iter()
        .map(|(k, v)| {
            let serde_norway::Value::String(k) = k else {
                return Err(StatementError::KeyNotAString(top.to_owned()));
            };
            let name = if top.is_empty() {
                k.clone()
            } else {
                top.to_owned()
            };
            Ok((k, from_yaml(&name, v)?))
        })
        .collect()
}

fn from_yaml(name: &str, v: serde_norway::Value) -> Result<HeaderValue, StatementError> {
    use serde_norway::Value as Y;
    Ok(match v {
        Y::String(s) => HeaderValue::String(s),
        Y::Sequence(l) => HeaderValue::List(
            l.into_iter()
                .map(|e| from_yaml(name, e))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(m) => HeaderValue::Map(yaml_map(name, m)?),
        Y::Tagged(t) => from_yaml(name, t.value)?,
        Y::Null => return Err(not_a_string(name, "null".into(), YAML_HINT)),
        Y::Bool(b) => return Err(not_a_string(name, b.to_string(), YAML_HINT)),
        Y::Number(n) => return Err(not_a_string(name, n.to_string(), YAML_HINT)),
    })
}

/// Runs snapd's decode-time checks (the generic ones and the type's) on `content` as it would
/// be signed, and returns the decoded assertion (its signature is a placeholder: never
/// verify or send it).
pub fn check_unsigned(content: &[u8]) -> Result<Assertion, DecodeError> {
    let mut encoded = Vec::with_capacity(content.len() + 12);
    encoded.extend_from_slice(content);
    encoded.extend_from_slice(b"\n\nunsigned");
    decode(&encoded)
}

/// A model statement made ready to sign by a key of account `brand`: `timestamp` filled with
/// `now` when absent, `authority-id` and `brand-id` filled with `brand` when absent (and
/// refused when they name another account), `body-length` and `sign-key-sha3-384` dropped
/// (snapd's signer sets them), and the content checked as snapd decodes models (required
/// headers, the UC20+ `snaps` and `grade` rules). Returns the content to sign and the model
/// as it will decode.
pub fn prepare_model(
    statement: Statement,
    brand: &str,
    sign_key_id: &str,
    now: OffsetDateTime,
) -> Result<(Vec<u8>, Model), StatementError> {
    let kind = AssertionType::Model;
    if statement.kind != kind.name() {
        return Err(StatementError::WrongType {
            expected: kind.name(),
            found: statement.kind,
        });
    }
    let mut h = statement.headers;
    h.remove("body-length");
    h.remove("sign-key-sha3-384");
    if h.contains_key("signatory-id") {
        return Err(StatementError::SignatoryId);
    }
    if let Some(f) = h.get("format").and_then(HeaderValue::as_str)
        && f != "0"
    {
        return Err(StatementError::Format {
            kind: kind.name(),
            format: f.to_owned(),
            max: kind.max_supported_format(),
        });
    }
    for header in ["authority-id", "brand-id"] {
        match h.get(header) {
            None => {
                h.insert(header.to_owned(), brand.into());
            }
            Some(HeaderValue::String(s)) if s == brand => {}
            Some(other) => {
                return Err(StatementError::WrongAccount {
                    header,
                    found: other.as_str().unwrap_or("(not a string)").to_owned(),
                    brand: brand.to_owned(),
                });
            }
        }
    }
    h.entry("timestamp".to_owned())
        .or_insert_with(|| format_utc(now).into());
    build_checked(kind, &h, &statement.body, sign_key_id)
}

/// The content of an assertion of `kind` with headers `h` and `body` signed by `sign_key_id`
/// ([`build_content`]), checked as snapd decodes it ([`check_unsigned`]), and the typed view
/// of what will decode.
pub(crate) fn build_checked<T>(
    kind: AssertionType,
    h: &Headers,
    body: &str,
    sign_key_id: &str,
) -> Result<(Vec<u8>, T), StatementError>
where
    T: TryFrom<Assertion>,
    T::Error: std::fmt::Display,
{
    let content = build_content(kind, h, body, sign_key_id)?;
    let decoded = check_unsigned(&content).map_err(StatementError::Check)?;
    let view = T::try_from(decoded).map_err(|e| {
        StatementError::Check(DecodeError::Check(super::error::CheckError::invalid(
            e.to_string(),
        )))
    })?;
    Ok((content, view))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "Jv8_JiHiIzJVcO9M55pPdqSDWUvuhfDIBJUS-3VW7F_idjix7Ffn5qMxB21ZQuij";

    fn now() -> OffsetDateTime {
        super::super::time::parse_rfc3339("2026-12-03T10:00:00Z").unwrap()
    }

    #[test]
    fn json_and_yaml_give_the_same_statement() {
        let json = br#"{"type": "model", "series": "16", "model": "pc",
            "architecture": "amd64", "gadget": "pc", "kernel": "pc-kernel",
            "required-snaps": ["a", "b"], "body": "hello"}"#;
        let yaml = b"type: model\nseries: '16'\nmodel: pc\narchitecture: amd64\ngadget: pc\n\
            kernel: pc-kernel\nrequired-snaps: [a, b]\nbody: hello\n";
        let j = parse_statement(json).unwrap();
        assert_eq!(j, parse_statement(yaml).unwrap());
        assert_eq!(j.kind, "model");
        assert_eq!(j.body, "hello");
        let (content, model) = prepare_model(j, "acme", KEY, now()).unwrap();
        assert_eq!(model.brand_id(), "acme");
        let text = String::from_utf8(content).unwrap();
        assert_eq!(
            text,
            format!(
                "type: model\nauthority-id: acme\nseries: 16\nbrand-id: acme\nmodel: pc\n\
                 architecture: amd64\ngadget: pc\nkernel: pc-kernel\nrequired-snaps:\n  - a\n  - b\n\
                 timestamp: 2026-12-03T10:00:00Z\nbody-length: 5\nsign-key-sha3-384: {KEY}\n\nhello"
            )
        );
    }

    #[test]
    fn non_string_values_are_refused_as_snapd_does() {
        let e = parse_statement(br#"{"type": "model", "series": 16}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "header \"series\": header values must be strings or nested lists or maps with strings as the only scalars: 16"
        );
        let e = parse_statement(b"type: model\nseries: 16\n").unwrap_err();
        assert!(e.to_string().ends_with("16 (quote it in YAML)"), "{e}");
        let e = parse_statement(b"type: model\nsnaps:\n  - name: x\n    x: true\n").unwrap_err();
        assert!(e.to_string().starts_with("header \"snaps\""), "{e}");
        assert_eq!(
            parse_statement(br#"{"series": "16"}"#).unwrap_err(),
            StatementError::MissingType
        );
        assert!(matches!(
            parse_statement(b"[1]").unwrap_err(),
            StatementError::NotAMapping
        ));
    }

    #[test]
    fn models_are_checked_before_signing() {
        let check = |json: &str| {
            prepare_model(
                parse_statement(json.as_bytes()).unwrap(),
                "acme",
                KEY,
                now(),
            )
            .map(|_| ())
            .unwrap_err()
            .to_string()
        };
        assert_eq!(
            check(
                r#"{"type": "model", "series": "16", "model": "pc", "gadget": "pc", "kernel": "k"}"#
            ),
            "assertion model: \"architecture\" header is mandatory"
        );
        let uc20 = r#"{"type": "model", "series": "16", "model": "pc", "architecture": "amd64",
            "base": "core20", "grade": "bogus", "snaps": [
            {"name": "pc", "type": "gadget", "default-channel": "20/stable"},
            {"name": "pc-kernel", "type": "kernel", "default-channel": "20/stable"}]}"#;
        assert!(
            check(uc20).contains("grade for model must be"),
            "{}",
            check(uc20)
        );
        let no_kernel = r#"{"type": "model", "series": "16", "model": "pc", "architecture": "amd64",
            "base": "core20", "snaps": [{"name": "pc", "type": "gadget",
            "id": "UqFziVZDHLSyO3TqSWgNBoAdHbLI4dAH"}]}"#;
        assert!(check(no_kernel).contains("must specify the model kernel"));
        let no_id = r#"{"type": "model", "series": "16", "model": "pc", "architecture": "amd64",
            "base": "core20", "snaps": [{"name": "pc", "type": "gadget"}]}"#;
        assert_eq!(
            check(no_id),
            "assertion model: \"id\" of snap \"pc\" is mandatory for signed grade model"
        );
        let dangerous = no_id.replace(r#""base""#, r#""grade": "dangerous", "base""#);
        assert!(check(&dangerous).contains("must specify the model kernel"));
        let bad_id = no_kernel.replace("UqFziVZDHLSyO3TqSWgNBoAdHbLI4dAH", "not-an-id");
        assert!(check(&bad_id).ends_with("contains invalid characters: \"not-an-id\""));
        assert_eq!(
            check(r#"{"type": "model", "authority-id": "other", "series": "16"}"#),
            "authority-id is \"other\" but the signing key belongs to \"acme\""
        );
        assert_eq!(
            check(r#"{"type": "serial"}"#),
            "the statement is a \"serial\" assertion, not a \"model\" one"
        );
        assert!(check(r#"{"type": "model", "format": "1"}"#).contains("max supported format 0"));
    }
}
