//! The `account-key` and `account-key-request` checks (snapd `asserts/account_key.go`): the
//! public key in the body, `since`/`until` validity, and (snapd 2.61+, format 1) signing
//! `constraints`.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::assertion::constraints::Constraints;
use crate::assertion::error::CheckError;
use crate::assertion::headers::{self, Headers, valid_account_key_name};
use crate::assertion::openpgp::RsaPublicKey;
use crate::assertion::types::AssertionType;

/// Values checked and computed when an account-key or account-key-request decodes.
#[derive(Debug, Clone)]
pub(crate) struct KeyData {
    pub(crate) key: RsaPublicKey,
    pub(crate) since: OffsetDateTime,
    pub(crate) until: Option<OffsetDateTime>,
    pub(crate) constraints: Option<Arc<Constraints>>,
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

/// `constraints` (snapd 2.61+, `checkAKConstraints`), compiled once. snapd's decoder accepts
/// it at any `format` and only its signer insists on format 1; here, as the store's signer
/// would, an account-key carrying it must say `format: 1` (checked after the constraints
/// themselves, so a malformed list gets snapd's message first).
fn parse_constraints(h: &Headers, format: u32) -> Result<Option<Arc<Constraints>>, CheckError> {
    let Some(v) = h.get("constraints") else {
        return Ok(None);
    };
    let c = Constraints::parse(v)?;
    if format < 1 {
        return Err(CheckError::invalid(format!(
            "account-key assertion with format set to {format} lower than min format 1 covering included features"
        )));
    }
    Ok(Some(Arc::new(c)))
}
