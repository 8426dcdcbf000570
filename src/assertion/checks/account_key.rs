//! The `account-key` and `account-key-request` checks (snapd `asserts/account_key.go`): the
//! public key in the body, `since`/`until` validity, and (snapd 2.61+, format 1) signing
//! `constraints`.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::assertion::error::CheckError;
use crate::assertion::headers::{self, HeaderValue, Headers, valid_account_key_name};
use crate::assertion::openpgp::RsaPublicKey;
use crate::assertion::types::AssertionType;

/// One signing constraint: header values an assertion must carry (literal match).
pub type Constraint = BTreeMap<String, HeaderValue>;

/// Values checked and computed when an account-key or account-key-request decodes.
#[derive(Debug, Clone)]
pub(crate) struct KeyData {
    pub(crate) key: RsaPublicKey,
    pub(crate) since: OffsetDateTime,
    pub(crate) until: Option<OffsetDateTime>,
    pub(crate) constraints: Option<Vec<Constraint>>,
}

/// `assembleAccountKey` and `assembleAccountKeyRequest`: `kind` is one of the two.
pub(crate) fn check(
    kind: AssertionType,
    h: &Headers,
    format: u32,
    body: &[u8],
) -> Result<KeyData, CheckError> {
    headers::not_empty_string(h, "account-id")?;
    if kind == AssertionType::AccountKeyRequest || h.contains_key("name") {
        headers::string_matches(h, "name", valid_account_key_name)?;
    }
    let since = headers::rfc3339(h, "since")?;
    let until = headers::optional_rfc3339(h, "until")?;
    if until.is_some_and(|u| u < since) {
        return Err(CheckError::invalid(
            "'until' time cannot be before 'since' time",
        ));
    }
    let key = RsaPublicKey::decode(body)?;
    if headers::not_empty_string(h, "public-key-sha3-384")? != key.key_id() {
        return Err(CheckError::invalid(
            "public key does not match provided key id",
        ));
    }
    let constraints = if kind == AssertionType::AccountKey {
        parse_constraints(h, format)?
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
        return Err(CheckError::invalid(
            "\"constraints\" header requires format 1",
        ));
    }
    const WRONG: &str = "assertions constraints must be a list of maps";
    let HeaderValue::List(list) = v else {
        return Err(CheckError::invalid(WRONG));
    };
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        let HeaderValue::Map(m) = entry else {
            return Err(CheckError::invalid(WRONG));
        };
        let Some(HeaderValue::Map(hc)) = m.get("headers") else {
            return Err(CheckError::invalid(
                "\"headers\" constraint mandatory in asserions constraints",
            ));
        };
        match hc.get("type").and_then(HeaderValue::as_str) {
            Some(t) if AssertionType::from_name(t).is_some() => {}
            Some(t) => {
                return Err(CheckError::invalid(format!(
                    "{t:?} is not a valid assertion type"
                )));
            }
            None => {
                return Err(CheckError::invalid(
                    "\"type\" header constraint mandatory in asserions constraints",
                ));
            }
        }
        out.push(hc.clone());
    }
    Ok(Some(out))
}
