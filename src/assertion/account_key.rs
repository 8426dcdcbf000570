//! `account-key` and `account-key-request` (snapd `asserts/account_key.go`): the public key in
//! the body, `since`/`until` validity, and (snapd 2.61+, format 1) signing `constraints`; plus
//! the builder for the `account-key-request` that registers an HSM key with the store.

use std::collections::BTreeMap;
use std::ops::Deref;

use time::OffsetDateTime;

use super::codec::{BuildError, build_content};
use super::error::CheckError;
use super::headers::{self, HeaderValue, Headers};
use super::openpgp::RsaPublicKey;
use super::time::format_utc;
use super::types::{AssertionType, Parsed};
use super::{Assertion, WrongType};

/// `^(?:[a-z0-9]+-?)*[a-z](?:-?[a-z0-9])*$` (`validAccountKeyName`).
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

/// One signing constraint: header values an assertion must carry (literal match).
pub type Constraint = BTreeMap<String, HeaderValue>;

/// Values checked and computed when an account-key or account-key-request decodes.
#[derive(Debug, Clone)]
pub struct KeyData {
    key: RsaPublicKey,
    since: OffsetDateTime,
    until: Option<OffsetDateTime>,
    constraints: Option<Vec<Constraint>>,
}

fn invalid(m: impl Into<String>) -> CheckError {
    CheckError::Invalid(m.into())
}

pub(crate) fn check(a: &Assertion) -> Result<KeyData, CheckError> {
    let h = a.headers();
    headers::not_empty_string(h, "account-id")?;
    if a.kind() == AssertionType::AccountKeyRequest || h.contains_key("name") {
        headers::string_matches(h, "name", valid_account_key_name)?;
    }
    let since = headers::rfc3339(h, "since")?;
    let until = headers::optional_rfc3339(h, "until")?;
    if until.is_some_and(|u| u < since) {
        return Err(invalid("'until' time cannot be before 'since' time"));
    }
    let key = RsaPublicKey::decode(a.body()).map_err(|e| invalid(e.to_string()))?;
    if headers::not_empty_string(h, "public-key-sha3-384")? != key.key_id() {
        return Err(invalid("public key does not match provided key id"));
    }
    let constraints = if a.kind() == AssertionType::AccountKey {
        parse_constraints(h, a.format())?
    } else {
        None
    };
    Ok(KeyData {
        key,
        since,
        until,
        constraints,
    })
}

/// `constraints` (snapd 2.61+): a list of maps, each with a `headers` map holding a literal
/// `type`; its presence needs `format: 1`.
fn parse_constraints(h: &Headers, format: u32) -> Result<Option<Vec<Constraint>>, CheckError> {
    let Some(v) = h.get("constraints") else {
        return Ok(None);
    };
    if format < 1 {
        return Err(invalid("\"constraints\" header requires format 1"));
    }
    const WRONG: &str = "assertions constraints must be a list of maps";
    let HeaderValue::List(list) = v else {
        return Err(invalid(WRONG));
    };
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        let HeaderValue::Map(m) = entry else {
            return Err(invalid(WRONG));
        };
        let Some(HeaderValue::Map(hc)) = m.get("headers") else {
            return Err(invalid(
                "\"headers\" constraint mandatory in asserions constraints",
            ));
        };
        match hc.get("type").and_then(HeaderValue::as_str) {
            Some(t) if AssertionType::from_name(t).is_some() => {}
            Some(t) => return Err(invalid(format!("{t:?} is not a valid assertion type"))),
            None => {
                return Err(invalid(
                    "\"type\" header constraint mandatory in asserions constraints",
                ));
            }
        }
        out.push(hc.clone());
    }
    Ok(Some(out))
}

macro_rules! key_view {
    ($name:ident, $kind:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone)]
        pub struct $name(Assertion);

        impl TryFrom<Assertion> for $name {
            type Error = WrongType;
            fn try_from(a: Assertion) -> Result<Self, WrongType> {
                match (&a.parsed, a.kind()) {
                    (Parsed::AccountKey(_), k) if k == $kind => Ok(Self(a)),
                    _ => Err(WrongType {
                        expected: $kind,
                        found: a.kind(),
                    }),
                }
            }
        }

        impl Deref for $name {
            type Target = Assertion;
            fn deref(&self) -> &Assertion {
                &self.0
            }
        }

        impl $name {
            fn data(&self) -> &KeyData {
                match &self.0.parsed {
                    Parsed::AccountKey(d) => d,
                    _ => unreachable!("built only from a parsed key assertion"),
                }
            }

            /// The whole assertion.
            pub fn into_inner(self) -> Assertion {
                self.0
            }

            /// `account-id`: the account the key belongs to.
            pub fn account_id(&self) -> &str {
                self.header_str("account-id").unwrap_or_default()
            }

            /// `name`, if any.
            pub fn name(&self) -> Option<&str> {
                self.header_str("name")
            }

            /// The public key from the body.
            pub fn public_key(&self) -> &RsaPublicKey {
                &self.data().key
            }

            /// `public-key-sha3-384`.
            pub fn public_key_id(&self) -> &str {
                self.header_str("public-key-sha3-384").unwrap_or_default()
            }

            /// `since`.
            pub fn since(&self) -> OffsetDateTime {
                self.data().since
            }

            /// `until`, if set.
            pub fn until(&self) -> Option<OffsetDateTime> {
                self.data().until
            }

            /// `isValidAt`: `since <= t` and, when set, `t < until`.
            pub fn is_valid_at(&self, t: OffsetDateTime) -> bool {
                let d = self.data();
                d.since <= t && d.until.is_none_or(|u| t < u)
            }
        }
    };
}

key_view!(
    AccountKey,
    AssertionType::AccountKey,
    "A decoded, checked `account-key` assertion."
);
key_view!(
    AccountKeyRequest,
    AssertionType::AccountKeyRequest,
    "A decoded, checked `account-key-request` (self-signed by the key it registers)."
);

impl AccountKey {
    /// The signing constraints (format 1), if any.
    pub fn constraints(&self) -> Option<&[Constraint]> {
        self.data().constraints.as_deref()
    }

    /// Whether `a` may be signed by this key: true without constraints; otherwise some
    /// constraint's headers must all equal `a`'s (literal comparison only).
    pub fn allows(&self, a: &Assertion) -> bool {
        match self.constraints() {
            None => true,
            Some(cs) => cs
                .iter()
                .any(|c| c.iter().all(|(k, v)| a.headers().get(k) == Some(v))),
        }
    }
}

impl AccountKeyRequest {
    /// Verifies the self-signature with the key in the body.
    pub fn verify_self_signature(&self) -> Result<(), super::error::VerifyError> {
        self.0.verify_with(self.public_key())
    }
}

/// Builds the content of an `account-key-request` for `public_key`, to be signed by that
/// same key (PROTOCOL.md 3.6).
#[derive(Debug, Clone)]
pub struct AccountKeyRequestBuilder {
    /// `account-id` (the brand account).
    pub account_id: String,
    /// `name` of the key.
    pub name: String,
    /// `since`.
    pub since: OffsetDateTime,
    /// `until`, optional.
    pub until: Option<OffsetDateTime>,
    /// The key to register.
    pub public_key: RsaPublicKey,
}

impl AccountKeyRequestBuilder {
    /// The canonical content; sign it with the key itself.
    pub fn content(&self) -> Result<Vec<u8>, BuildError> {
        let kind = AssertionType::AccountKeyRequest;
        let err = |err| BuildError::Check {
            kind: kind.name(),
            err,
        };
        if self.account_id.is_empty() {
            return Err(err(CheckError::Empty("account-id".into())));
        }
        if !valid_account_key_name(&self.name) {
            return Err(err(CheckError::InvalidChars(
                "name".into(),
                self.name.clone(),
            )));
        }
        if self.until.is_some_and(|u| u < self.since) {
            return Err(err(invalid("'until' time cannot be before 'since' time")));
        }
        let id = self.public_key.key_id();
        let mut h = Headers::new();
        h.insert("account-id".into(), self.account_id.as_str().into());
        h.insert("name".into(), self.name.as_str().into());
        h.insert("public-key-sha3-384".into(), id.as_str().into());
        h.insert("since".into(), format_utc(self.since).into());
        if let Some(u) = self.until {
            h.insert("until".into(), format_utc(u).into());
        }
        build_content(kind, &h, &self.public_key.encode(), &id)
    }
}
