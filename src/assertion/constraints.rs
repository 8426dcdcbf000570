//! Signing constraints of an `account-key` (snapd 2.61+, `asserts/account_key.go`
//! `checkAKConstraints`, and the attribute matchers of `asserts/constraint.go`): the
//! `constraints` header parsed into [`Constraints`], refused with snapd's messages when
//! malformed, and matched against an assertion's headers exactly as snapd's
//! `AccountKey.canSign` does.
//!
//! A key may sign an assertion when at least one entry of its `constraints` list matches all
//! of that entry's `headers`: a string is a regular expression matched against the whole
//! value (compiled as `^(` + value + `)$`), a list is a set of alternatives, a map constrains
//! a map value entry by entry, and `$MISSING` requires the header to be absent. Every other
//! constrained header must be present; a list value matches only if each element does.
//!
//! Regular expressions: snapd uses Go's `regexp` (RE2 syntax); this uses the `regex` crate,
//! whose syntax is RE2's for everything a header constraint needs (classes, alternation,
//! repetition, groups, flags; no backreferences or look-around in either). The differences:
//! Perl classes (`\d`, `\w`, `\s`, `\b`) are Unicode-aware here and ASCII-only in Go, so a
//! non-ASCII digit matches `\d` here and not in snapd (write `[0-9]` to be exact); Go's `\Q..\E`
//! and `\C` are refused here; and a pattern that does not compile gets the `regex` crate's
//! reason, not Go's. Patterns are compiled once, when the account-key decodes.

use std::collections::BTreeMap;
use std::fmt;

use regex::{Regex, RegexBuilder};

use super::headers::{HeaderValue, Headers};

/// Largest compiled size of one constraint's regular expression (bytes of program): plenty
/// for a header pattern, and a bound on what a pushed assertion can make us allocate.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Why a `constraints` header is refused, with snapd's message (typos included).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// `constraints` is not a list, or an entry is not a map.
    #[error("assertions constraints must be a list of maps")]
    NotListOfMaps,
    /// An empty list (the header grammar cannot produce one; refused to be robust).
    #[error("assertions constraints cannot be empty")]
    Empty,
    /// `headers` is not a map.
    #[error("\"headers\" constraint must be a map")]
    HeadersNotMap,
    /// An entry without `headers`.
    #[error("\"headers\" constraint mandatory in asserions constraints")]
    HeadersMissing,
    /// `headers` without `type`.
    #[error("type header constraint mandatory in asserions constraints")]
    TypeMissing,
    /// `type` is a list or a map.
    #[error("type header constraint must be a string")]
    TypeNotString,
    /// `type` holds regular-expression syntax.
    #[error("type header constraint must be a precise string and not a regexp")]
    TypeNotPrecise,
    /// A header constraint that does not compile (snapd: `compileAttrMatcher`).
    #[error("cannot compile headers constraint: {0}")]
    Compile(String),
}

/// One compiled matcher (snapd's `attrMatcher` kinds usable in account-key constraints).
#[derive(Debug, Clone)]
enum Matcher {
    /// A map: every listed entry must match.
    Map(Vec<(String, Matcher)>),
    /// Alternatives: any one may match (each element, for a list value).
    Alt(Vec<Matcher>),
    /// `^(` + pattern + `)$`.
    Regex(Regex),
    /// `$MISSING`: the entry must be absent.
    Missing,
}

impl Matcher {
    /// `compileAttrMatcher` for a value inside the `headers` map (`path` is snapd's dotted
    /// path, `was_alt` whether the parent was a list of alternatives).
    fn compile(path: &str, was_alt: bool, v: &HeaderValue) -> Result<Matcher, ConstraintError> {
        match v {
            HeaderValue::Map(m) => Self::compile_map(path, m),
            HeaderValue::List(l) => {
                if was_alt {
                    return Err(ConstraintError::Compile(format!(
                        "cannot nest alternative constraints directly at {path:?}"
                    )));
                }
                l.iter()
                    .enumerate()
                    .map(|(i, c)| Self::compile(&format!("{path}/alt#{}/", i + 1), true, c))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Matcher::Alt)
            }
            HeaderValue::String(s) if s == "$MISSING" => Ok(Matcher::Missing),
            HeaderValue::String(s) if s.starts_with('$') => Err(ConstraintError::Compile(format!(
                "cannot compile {path:?} constraint {s:?}: no $OP() or $REF constraints supported"
            ))),
            HeaderValue::String(s) => RegexBuilder::new(&format!("^({s})$"))
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map(Matcher::Regex)
                .map_err(|e| {
                    ConstraintError::Compile(format!(
                        "cannot compile {path:?} constraint {s:?}: error parsing regexp: {}",
                        regex_reason(&e)
                    ))
                }),
        }
    }

    fn compile_map(
        path: &str,
        m: &BTreeMap<String, HeaderValue>,
    ) -> Result<Matcher, ConstraintError> {
        m.iter()
            .map(|(k, v)| {
                let key_path = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                Ok((k.clone(), Self::compile(&key_path, false, v)?))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Matcher::Map)
    }

    /// `matchEntry`: a missing value matches only `$MISSING`.
    fn entry(&self, v: Option<&HeaderValue>) -> bool {
        match (self, v) {
            (Matcher::Missing, v) => v.is_none(),
            (_, None) => false,
            (m, Some(v)) => m.matches(v),
        }
    }

    /// `match` on a set value.
    fn matches(&self, v: &HeaderValue) -> bool {
        match (self, v) {
            (Matcher::Missing, _) => false,
            // Map and regexp matchers apply to each element; so do alternatives.
            (_, HeaderValue::List(l)) => l.iter().all(|e| self.matches(e)),
            (Matcher::Map(entries), HeaderValue::Map(m)) => {
                entries.iter().all(|(k, c)| c.entry(m.get(k)))
            }
            (Matcher::Map(_), _) => false,
            (Matcher::Regex(r), HeaderValue::String(s)) => r.is_match(s),
            (Matcher::Regex(_), _) => false,
            (Matcher::Alt(alts), v) => alts.iter().any(|a| a.matches(v)),
        }
    }
}

/// The reason line of a `regex` error (its first lines repeat the pattern with a caret).
fn regex_reason(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or(text)
            .to_owned(),
        regex::Error::CompiledTooBig(limit) => {
            format!("compiled pattern larger than {limit} bytes")
        }
        other => other.to_string(),
    }
}

/// One entry of `constraints`: its `headers`, compiled.
#[derive(Debug, Clone)]
struct Entry {
    /// The exact assertion type it admits.
    kind: String,
    /// The `headers` map as written (for display and comparison).
    source: BTreeMap<String, HeaderValue>,
    /// The entries of `headers` (with `type`), compiled.
    matchers: Vec<(String, Matcher)>,
}

impl Entry {
    /// Whether `headers` match every constrained header; an absent header named in
    /// `unknown` is not known yet and may match.
    fn matches(&self, headers: &Headers, unknown: &[&str]) -> bool {
        self.matchers.iter().all(|(k, m)| match headers.get(k) {
            None if unknown.contains(&k.as_str()) => true,
            v => m.entry(v),
        })
    }
}

/// The parsed `constraints` of an account-key: what its key may sign. Never empty.
#[derive(Debug, Clone)]
pub struct Constraints {
    entries: Vec<Entry>,
}

impl PartialEq for Constraints {
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|(a, b)| a.source == b.source)
    }
}

impl Eq for Constraints {}

impl Constraints {
    /// `checkAKConstraints`: parses and compiles the `constraints` header value.
    pub fn parse(v: &HeaderValue) -> Result<Self, ConstraintError> {
        let HeaderValue::List(list) = v else {
            return Err(ConstraintError::NotListOfMaps);
        };
        if list.is_empty() {
            return Err(ConstraintError::Empty);
        }
        let mut entries = Vec::with_capacity(list.len());
        for item in list {
            let HeaderValue::Map(m) = item else {
                return Err(ConstraintError::NotListOfMaps);
            };
            let hm = match m.get("headers") {
                None => return Err(ConstraintError::HeadersMissing),
                Some(HeaderValue::Map(hm)) => hm,
                Some(_) => return Err(ConstraintError::HeadersNotMap),
            };
            let kind = match hm.get("type") {
                None => return Err(ConstraintError::TypeMissing),
                Some(HeaderValue::String(t)) => t,
                Some(_) => return Err(ConstraintError::TypeNotString),
            };
            if kind.chars().any(is_regexp_meta) {
                return Err(ConstraintError::TypeNotPrecise);
            }
            let Matcher::Map(matchers) = Matcher::compile_map("", hm)? else {
                unreachable!("compile_map answers a map matcher")
            };
            entries.push(Entry {
                kind: kind.clone(),
                source: hm.clone(),
                matchers,
            });
        }
        Ok(Constraints { entries })
    }

    /// `canSign`: whether a key with these constraints may sign an assertion with these
    /// headers (all of them, `type` included, as the decoded assertion has them).
    pub fn may_sign_headers(&self, headers: &Headers) -> bool {
        self.entries.iter().any(|e| e.matches(headers, &[]))
    }

    /// [`Self::may_sign_headers`] on a decoded assertion.
    pub fn may_sign(&self, a: &super::Assertion) -> bool {
        self.may_sign_headers(a.headers())
    }

    /// Whether some assertion with these headers might be signed, when the headers named in
    /// `unknown` are not known yet: absent from `headers`, each may later take any value (or
    /// stay unset), so it never refuses. For checks made before the assertion exists (a
    /// serial policy knows the brand and model, not the serial number or the device key);
    /// the whole assertion is matched again with [`Self::may_sign_headers`] once built.
    pub fn may_sign_partial(&self, headers: &Headers, unknown: &[&str]) -> bool {
        self.entries.iter().any(|e| e.matches(headers, unknown))
    }

    /// The assertion types some entry admits, in order.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.kind.as_str())
    }
}

/// What Go's `regexp.QuoteMeta` escapes.
fn is_regexp_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$'
    )
}

/// Compact: one entry per role, `; ` between them: the type, then `header=value` for each
/// other constrained header (`serial model=foo-.*; system-user`); alternatives as
/// `[a, b]`, maps as `{k=v, ...}`.
impl fmt::Display for Constraints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            f.write_str(&e.kind)?;
            for (k, v) in e.source.iter().filter(|(k, _)| *k != "type") {
                write!(f, " {k}=")?;
                write_value(f, v)?;
            }
        }
        Ok(())
    }
}

fn write_value(f: &mut fmt::Formatter<'_>, v: &HeaderValue) -> fmt::Result {
    match v {
        HeaderValue::String(s) => f.write_str(s),
        HeaderValue::List(l) => {
            f.write_str("[")?;
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_value(f, x)?;
            }
            f.write_str("]")
        }
        HeaderValue::Map(m) => {
            f.write_str("{")?;
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{k}=")?;
                write_value(f, x)?;
            }
            f.write_str("}")
        }
    }
}

#[cfg(test)]
mod tests;
