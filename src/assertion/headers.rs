//! The assertion header grammar: parsing and emitting single-line, multi-line, list and map
//! entries exactly as snapd's `asserts/headers.go` (`parseHeaders`, `parseEntry`, `appendEntry`)
//! does, plus the scalar checks of `asserts/header_checks.go` (integers, digests, dates).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;

use super::error::{CheckError, HeaderError};
use super::time::parse_rfc3339;

/// A header value: snapd's only scalars are strings; lists and maps nest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// A (possibly multi-line) string.
    String(String),
    /// A list of values.
    List(Vec<HeaderValue>),
    /// A map with keys matching the header-name grammar; emitted sorted.
    Map(BTreeMap<String, HeaderValue>),
}

impl HeaderValue {
    /// The string, if this is a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            HeaderValue::String(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for HeaderValue {
    fn from(s: &str) -> Self {
        HeaderValue::String(s.to_owned())
    }
}

impl From<String> for HeaderValue {
    fn from(s: String) -> Self {
        HeaderValue::String(s)
    }
}

/// Decoded headers by name. Order is not kept: the signed bytes are kept separately.
pub type Headers = BTreeMap<String, HeaderValue>;

const COMMON_PREFIX: &str = "  ";
const MULTILINE_PREFIX: &str = "    ";
const LIST_PREFIX: &str = "  -";

/// `^[a-z](?:-?[a-z0-9])*$` (`headerNameValidity`).
pub fn valid_header_name(name: &str) -> bool {
    let b = name.as_bytes();
    let Some((&first, rest)) = b.split_first() else {
        return false;
    };
    if !first.is_ascii_lowercase() {
        return false;
    }
    let mut prev_dash = false;
    for &c in rest {
        match c {
            b'-' if !prev_dash => prev_dash = true,
            b'a'..=b'z' | b'0'..=b'9' => prev_dash = false,
            _ => return false,
        }
    }
    !prev_dash
}

fn nesting_prefix(base_indent: usize, prefix: &str) -> String {
    let mut s = " ".repeat(base_indent);
    s.push_str(prefix);
    s
}

/// Parses the header block (without the trailing `"\n\n"`), as `parseHeaders` does.
pub fn parse_headers(head: &[u8]) -> Result<Headers, HeaderError> {
    let head = std::str::from_utf8(head).map_err(|_| HeaderError::NotUtf8)?;
    let lines: Vec<&str> = head.split('\n').collect();
    let mut headers = Headers::new();
    let mut i = 0;
    while i < lines.len() {
        let entry = lines[i];
        let Some(split) = entry.find(':') else {
            return Err(HeaderError::MissingSeparator(entry.to_owned()));
        };
        let name = &entry[..split];
        if !valid_header_name(name) {
            return Err(HeaderError::InvalidName(name.to_owned()));
        }
        let (value, next) = parse_entry(split + 1, i, &lines, 0)?;
        if headers.contains_key(name) {
            return Err(HeaderError::Repeated(name.to_owned()));
        }
        headers.insert(name.to_owned(), value);
        i = next;
    }
    Ok(headers)
}

fn parse_entry(
    consumed: usize,
    first: usize,
    lines: &[&str],
    base_indent: usize,
) -> Result<(HeaderValue, usize), HeaderError> {
    let entry = lines[first];
    let i = first + 1;
    if consumed == entry.len() {
        let base_prefix = nesting_prefix(base_indent, COMMON_PREFIX);
        if let Some(rest) = lines
            .get(i)
            .and_then(|l| l.strip_prefix(base_prefix.as_str()))
        {
            if rest.starts_with('-') {
                return parse_list(i, lines, base_indent);
            }
            if !rest.is_empty() && !rest.starts_with(' ') {
                return parse_map(i, lines, base_indent);
            }
        }
        return parse_multiline(i, lines, base_indent);
    }
    // `consumed` is right after an ASCII ':' so it is a char boundary.
    match entry[consumed..].strip_prefix(' ') {
        Some(v) => Ok((HeaderValue::String(v.to_owned()), i)),
        None => Err(HeaderError::NoSpaceBeforeValue(entry.to_owned())),
    }
}

fn parse_multiline(
    first: usize,
    lines: &[&str],
    base_indent: usize,
) -> Result<(HeaderValue, usize), HeaderError> {
    let prefix = nesting_prefix(base_indent, MULTILINE_PREFIX);
    let mut j = first;
    let mut out = String::new();
    while let Some(rest) = lines.get(j).and_then(|l| l.strip_prefix(prefix.as_str())) {
        if j > first {
            out.push('\n');
        }
        out.push_str(rest);
        j += 1;
    }
    if j == first {
        return Err(HeaderError::MultilinePrefix {
            width: prefix.len(),
            intro: lines[first - 1].to_owned(),
            found: lines.get(first).map(|l| format!("{l:?}")),
        });
    }
    Ok((HeaderValue::String(out), j))
}

fn parse_list(
    first: usize,
    lines: &[&str],
    base_indent: usize,
) -> Result<(HeaderValue, usize), HeaderError> {
    let prefix = nesting_prefix(base_indent, LIST_PREFIX);
    let mut list = Vec::new();
    let mut j = first;
    while j < lines.len() && lines[j].starts_with(prefix.as_str()) {
        let (v, next) = parse_entry(prefix.len(), j, lines, base_indent + LIST_PREFIX.len() - 1)?;
        list.push(v);
        j = next;
    }
    Ok((HeaderValue::List(list), j))
}

fn parse_map(
    first: usize,
    lines: &[&str],
    base_indent: usize,
) -> Result<(HeaderValue, usize), HeaderError> {
    let prefix = nesting_prefix(base_indent, COMMON_PREFIX);
    let mut map = BTreeMap::new();
    let mut j = first;
    while let Some(entry) = lines.get(j).and_then(|l| l.strip_prefix(prefix.as_str())) {
        let Some(split) = entry.find(':') else {
            return Err(HeaderError::MapMissingSeparator(entry.to_owned()));
        };
        let key = &entry[..split];
        if !valid_header_name(key) {
            return Err(HeaderError::InvalidMapKey(key.to_owned()));
        }
        let (value, next) = parse_entry(prefix.len() + split + 1, j, lines, prefix.len())?;
        if map.contains_key(key) {
            return Err(HeaderError::RepeatedMapEntry(key.to_owned()));
        }
        map.insert(key.to_owned(), value);
        j = next;
    }
    Ok((HeaderValue::Map(map), j))
}

/// Appends `"\n" intro value` the way `appendEntry` does (empty lists and maps are omitted).
///
/// `intro` is e.g. `"name:"`. The caller writes `type: X` first without a leading newline.
pub fn append_entry(out: &mut String, intro: &str, value: &HeaderValue, base_indent: usize) {
    match value {
        HeaderValue::String(s) => {
            out.push('\n');
            out.push_str(intro);
            if s.contains('\n') {
                let pfx = nesting_prefix(base_indent, MULTILINE_PREFIX);
                out.push('\n');
                out.push_str(&pfx);
                out.push_str(&s.replace('\n', &format!("\n{pfx}")));
            } else {
                out.push(' ');
                out.push_str(s);
            }
        }
        HeaderValue::List(list) => {
            if list.is_empty() {
                return;
            }
            out.push('\n');
            out.push_str(intro);
            let pfx = nesting_prefix(base_indent, LIST_PREFIX);
            for elem in list {
                append_entry(out, &pfx, elem, base_indent + LIST_PREFIX.len() - 1);
            }
        }
        HeaderValue::Map(map) => {
            if map.is_empty() {
                return;
            }
            out.push('\n');
            out.push_str(intro);
            let pfx = nesting_prefix(base_indent, COMMON_PREFIX);
            for (k, v) in map {
                append_entry(out, &format!("{pfx}{k}:"), v, pfx.len());
            }
        }
    }
}

/// Appends one top-level header (`writeHeader`).
pub fn write_header(out: &mut String, name: &str, value: &HeaderValue) {
    append_entry(out, &format!("{name}:"), value, 0);
}

// ---- scalar checks (asserts/header_checks.go) ----

/// `checkExistsString`: present and a string.
pub fn exists_string<'a>(h: &'a Headers, name: &str) -> Result<&'a str, CheckError> {
    match h.get(name) {
        None => Err(CheckError::Mandatory(name.to_owned())),
        Some(HeaderValue::String(s)) => Ok(s),
        Some(_) => Err(CheckError::NotString(name.to_owned())),
    }
}

/// `checkNotEmptyString`: present, a string, non-empty.
pub fn not_empty_string<'a>(h: &'a Headers, name: &str) -> Result<&'a str, CheckError> {
    let s = exists_string(h, name)?;
    if s.is_empty() {
        return Err(CheckError::Empty(name.to_owned()));
    }
    Ok(s)
}

/// An optional string header: absent gives `None`; present must be a string (maybe empty).
fn optional<'a>(h: &'a Headers, name: &str) -> Result<Option<&'a str>, CheckError> {
    if h.contains_key(name) {
        exists_string(h, name).map(Some)
    } else {
        Ok(None)
    }
}

/// `checkOptionalString`: absent gives `""`; present must be a string.
pub fn optional_string<'a>(h: &'a Headers, name: &str) -> Result<&'a str, CheckError> {
    optional(h, name).map(Option::unwrap_or_default)
}

/// `checkStringMatches`: non-empty and matching `pred`.
pub fn string_matches<'a>(
    h: &'a Headers,
    name: &str,
    pred: fn(&str) -> bool,
) -> Result<&'a str, CheckError> {
    let s = not_empty_string(h, name)?;
    if !pred(s) {
        return Err(CheckError::InvalidChars(name.to_owned(), s.to_owned()));
    }
    Ok(s)
}

/// `checkPrimaryKey`: non-empty and without `/`.
pub fn primary_key<'a>(h: &'a Headers, name: &str) -> Result<&'a str, CheckError> {
    let s = not_empty_string(h, name)?;
    if s.contains('/') {
        return Err(CheckError::PrimaryKeySlash(name.to_owned()));
    }
    Ok(s)
}

/// Go's `strconv.Atoi` (64-bit) followed by snapd's prefix-zero check (`atoi`).
pub fn go_atoi(name: &str, s: &str) -> Result<i64, CheckError> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CheckError::NotInteger(name.to_owned(), s.to_owned()));
    }
    let v: i64 = s
        .parse()
        .map_err(|_| CheckError::OutOfRange(name.to_owned(), s.to_owned()))?;
    if s.starts_with('0') && s != "0" {
        return Err(CheckError::PrefixZeros(name.to_owned(), s.to_owned()));
    }
    Ok(v)
}

/// `checkIntWithDefault`: absent gives `default`.
pub fn int_with_default(h: &Headers, name: &str, default: i64) -> Result<i64, CheckError> {
    match h.get(name) {
        None => Ok(default),
        Some(HeaderValue::String(s)) => go_atoi(name, s),
        Some(_) => Err(CheckError::NotIntegerValue(name.to_owned())),
    }
}

/// `checkIteration` (format, revision): an int >= 0, default 0.
pub fn iteration(h: &Headers, name: &str) -> Result<u32, CheckError> {
    let v = int_with_default(h, name, 0)?;
    if v < 0 {
        return Err(CheckError::Negative(name.to_owned(), v));
    }
    u32::try_from(v).map_err(|_| CheckError::OutOfRange(name.to_owned(), v.to_string()))
}

/// `checkDigest` with SHA3-384: unpadded base64url decoding to 48 bytes.
pub fn digest384(h: &Headers, name: &str) -> Result<[u8; 48], CheckError> {
    let s = not_empty_string(h, name)?;
    let b = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| CheckError::DigestDecode(name.to_owned(), e.to_string()))?;
    <[u8; 48]>::try_from(b.as_slice())
        .map_err(|_| CheckError::DigestLength(name.to_owned(), b.len() * 8))
}

/// The value of header `name` parsed as Go's `time.Parse(time.RFC3339, ...)` does.
fn parse_time(name: &str, s: &str) -> Result<OffsetDateTime, CheckError> {
    parse_rfc3339(s).map_err(|why| CheckError::NotRfc3339(name.to_owned(), why))
}

/// `checkRFC3339Date`: mandatory, non-empty, Go `time.Parse(time.RFC3339, ...)`.
pub fn rfc3339(h: &Headers, name: &str) -> Result<OffsetDateTime, CheckError> {
    parse_time(name, not_empty_string(h, name)?)
}

/// `checkRFC3339DateWithDefault`: absent gives `None`.
pub fn optional_rfc3339(h: &Headers, name: &str) -> Result<Option<OffsetDateTime>, CheckError> {
    optional(h, name)?.map(|s| parse_time(name, s)).transpose()
}

/// `checkOptionalBool`: absent is false; otherwise exactly `true` or `false`.
pub fn optional_bool(h: &Headers, name: &str) -> Result<bool, CheckError> {
    match h.get(name) {
        None => Ok(false),
        Some(HeaderValue::String(s)) if s == "true" => Ok(true),
        Some(HeaderValue::String(s)) if s == "false" => Ok(false),
        Some(_) => Err(CheckError::NotBool(name.to_owned())),
    }
}

/// `checkStringList`: absent is empty; otherwise a list of strings.
pub fn string_list(h: &Headers, name: &str) -> Result<Vec<String>, CheckError> {
    match h.get(name) {
        None => Ok(Vec::new()),
        Some(HeaderValue::List(l)) => l
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| CheckError::NotStringList(name.to_owned()))
            })
            .collect(),
        Some(_) => Err(CheckError::NotStringList(name.to_owned())),
    }
}

// ---- header values shared by several assertion types ----

/// `^(?:[a-z0-9A-Z]{32}|[-a-z0-9]{2,28})$` (`validAccountID`, `asserts/account.go`).
pub fn valid_account_id(s: &str) -> bool {
    (s.len() == 32 && s.bytes().all(|b| b.is_ascii_alphanumeric()))
        || ((2..=28).contains(&s.len())
            && s.bytes()
                .all(|b| b == b'-' || b.is_ascii_lowercase() || b.is_ascii_digit()))
}

/// `^[a-zA-Z0-9](?:-?[a-zA-Z0-9])*$` (`validModel`, `asserts/model.go`).
pub fn valid_model_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && !b.ends_with(b"-")
        && !s.contains("--")
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// `^(?:[a-z0-9]+-?)*[a-z](?:-?[a-z0-9])*$` (`validAccountKeyName`, `asserts/account_key.go`).
pub fn valid_account_key_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && !b.starts_with(b"-")
        && !b.ends_with(b"-")
        && !s.contains("--")
        && b.iter().any(u8::is_ascii_lowercase)
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// `checkModel`: the `model` header matches the model regex and is all lowercase.
pub fn model_header(h: &Headers) -> Result<&str, CheckError> {
    let s = string_matches(h, "model", valid_model_chars)?;
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(CheckError::invalid(
            "\"model\" header cannot contain uppercase letters",
        ));
    }
    Ok(s)
}

/// A list of strings (as [`string_list`]) where every element must satisfy `pred`.
pub fn string_list_matching(
    h: &Headers,
    name: &str,
    pred: fn(&str) -> bool,
) -> Result<Vec<String>, CheckError> {
    let l = string_list(h, name)?;
    if let Some(bad) = l.iter().find(|s| !pred(s)) {
        return Err(CheckError::InvalidChars(name.to_owned(), bad.clone()));
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> HeaderValue {
        HeaderValue::String(v.to_owned())
    }

    #[test]
    fn header_names() {
        for ok in ["a", "type", "sign-key-sha3-384", "a1-b2"] {
            assert!(valid_header_name(ok), "{ok}");
        }
        for bad in ["", "A", "1a", "a-", "a--b", "a_b", "-a"] {
            assert!(!valid_header_name(bad), "{bad}");
        }
    }

    #[test]
    fn parses_nested_values() {
        let text = "a: 1\nb:\n    x\n    \n    y\nc:\n  - one\n  -\n    k: v\n    l:\n      - z\nd:\n  e: f";
        let h = parse_headers(text.as_bytes()).unwrap();
        assert_eq!(h["a"], s("1"));
        assert_eq!(h["b"], s("x\n\ny"));
        let mut inner = BTreeMap::new();
        inner.insert("k".to_owned(), s("v"));
        inner.insert("l".to_owned(), HeaderValue::List(vec![s("z")]));
        assert_eq!(
            h["c"],
            HeaderValue::List(vec![s("one"), HeaderValue::Map(inner)])
        );
        let mut d = BTreeMap::new();
        d.insert("e".to_owned(), s("f"));
        assert_eq!(h["d"], HeaderValue::Map(d));
        // and back
        let mut out = String::new();
        for (k, v) in &h {
            write_header(&mut out, k, v);
        }
        assert_eq!(&out[1..], text);
    }

    #[test]
    fn parse_errors_match_snapd() {
        let e = |t: &str| parse_headers(t.as_bytes()).unwrap_err().to_string();
        assert_eq!(e(""), r#"header entry missing ':' separator: """#);
        assert_eq!(
            e("serial:1"),
            r#"header entry should have a space or newline (for multiline) before value: "serial:1""#
        );
        assert_eq!(e("a: 1\na: 2"), r#"repeated header: "a""#);
        assert_eq!(e("A: 1"), r#"invalid header name: "A""#);
        assert!(e("a:\nb: 1").starts_with("expected 4 chars nesting prefix"));
        assert!(e("a:").ends_with(": EOF"));
    }

    #[test]
    fn atoi_like_go() {
        assert_eq!(go_atoi("x", "0").unwrap(), 0);
        assert_eq!(go_atoi("x", "+5").unwrap(), 5);
        assert_eq!(go_atoi("x", "-5").unwrap(), -5);
        assert!(
            go_atoi("x", "01")
                .unwrap_err()
                .to_string()
                .contains("invalid prefix zeros")
        );
        assert!(go_atoi("x", "").is_err());
        assert!(go_atoi("x", "1a").is_err());
        assert!(
            go_atoi("x", "99999999999999999999")
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
    }
}
