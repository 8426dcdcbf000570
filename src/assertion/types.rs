//! The assertion type table (snapd `asserts/asserts.go`: names, primary keys, authority flag,
//! max formats) and the per-type checks run at decode time for the types serialmint uses:
//! serial-request and serial (`asserts/serial_asserts.go`), model (`asserts/model.go`),
//! account (`asserts/account.go`), account-key and account-key-request
//! (`asserts/account_key.go`). Other known types get only the generic checks.

use time::OffsetDateTime;

use super::Assertion;
use super::error::CheckError;
use super::headers::{self, HeaderValue};
use super::openpgp::RsaPublicKey;

/// Every assertion type snapd 2.57 knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum AssertionType {
    Account,
    AccountKey,
    Repair,
    Model,
    Serial,
    BaseDeclaration,
    SnapDeclaration,
    SnapBuild,
    SnapRevision,
    SnapDeveloper,
    SystemUser,
    Validation,
    ValidationSet,
    Store,
    AuthorityDelegation,
    Preseed,
    DeviceSessionRequest,
    SerialRequest,
    AccountKeyRequest,
}

type PrimaryKey = &'static [(&'static str, Option<&'static str>)];

impl AssertionType {
    const ALL: [AssertionType; 19] = [
        Self::Account,
        Self::AccountKey,
        Self::Repair,
        Self::Model,
        Self::Serial,
        Self::BaseDeclaration,
        Self::SnapDeclaration,
        Self::SnapBuild,
        Self::SnapRevision,
        Self::SnapDeveloper,
        Self::SystemUser,
        Self::Validation,
        Self::ValidationSet,
        Self::Store,
        Self::AuthorityDelegation,
        Self::Preseed,
        Self::DeviceSessionRequest,
        Self::SerialRequest,
        Self::AccountKeyRequest,
    ];

    /// The `type` header value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::AccountKey => "account-key",
            Self::Repair => "repair",
            Self::Model => "model",
            Self::Serial => "serial",
            Self::BaseDeclaration => "base-declaration",
            Self::SnapDeclaration => "snap-declaration",
            Self::SnapBuild => "snap-build",
            Self::SnapRevision => "snap-revision",
            Self::SnapDeveloper => "snap-developer",
            Self::SystemUser => "system-user",
            Self::Validation => "validation",
            Self::ValidationSet => "validation-set",
            Self::Store => "store",
            Self::AuthorityDelegation => "authority-delegation",
            Self::Preseed => "preseed",
            Self::DeviceSessionRequest => "device-session-request",
            Self::SerialRequest => "serial-request",
            Self::AccountKeyRequest => "account-key-request",
        }
    }

    /// Looks a type up by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Primary-key headers in order, with the default of optional ones.
    pub fn primary_key(self) -> PrimaryKey {
        match self {
            Self::Account => &[("account-id", None)],
            Self::AccountKey | Self::AccountKeyRequest => &[("public-key-sha3-384", None)],
            Self::Repair => &[("brand-id", None), ("repair-id", None)],
            Self::Model => &[("series", None), ("brand-id", None), ("model", None)],
            Self::Serial | Self::DeviceSessionRequest => {
                &[("brand-id", None), ("model", None), ("serial", None)]
            }
            Self::BaseDeclaration => &[("series", None)],
            Self::SnapDeclaration => &[("series", None), ("snap-id", None)],
            Self::SnapBuild => &[("snap-sha3-384", None)],
            Self::SnapRevision => &[
                ("snap-sha3-384", None),
                ("provenance", Some("global-upload")),
            ],
            Self::SnapDeveloper => &[("snap-id", None), ("publisher-id", None)],
            Self::SystemUser => &[("brand-id", None), ("email", None)],
            Self::Validation => &[
                ("series", None),
                ("snap-id", None),
                ("approved-snap-id", None),
                ("approved-snap-revision", None),
            ],
            Self::ValidationSet => &[
                ("series", None),
                ("account-id", None),
                ("name", None),
                ("sequence", None),
            ],
            Self::Store => &[("store", None)],
            Self::AuthorityDelegation => &[("account-id", None), ("delegate-id", None)],
            Self::Preseed => &[
                ("series", None),
                ("brand-id", None),
                ("model", None),
                ("system-label", None),
            ],
            Self::SerialRequest => &[],
        }
    }

    /// Whether the type carries an `authority-id` (all but the self-signed request types).
    pub fn has_authority(self) -> bool {
        !matches!(
            self,
            Self::DeviceSessionRequest | Self::SerialRequest | Self::AccountKeyRequest
        )
    }

    /// The highest `format` snapd 2.57 supports (`maxSupportedFormat`), except account-key
    /// which is 1 here: serialmint parses `constraints` (snapd 2.61+).
    pub fn max_supported_format(self) -> u32 {
        match self {
            Self::SnapDeclaration => 5,
            Self::SystemUser | Self::AccountKey => 1,
            _ => 0,
        }
    }
}

/// Type-specific values computed once at decode time.
#[derive(Debug, Clone)]
pub(crate) enum Parsed {
    None,
    SerialRequest {
        device_key: RsaPublicKey,
    },
    Serial {
        device_key: RsaPublicKey,
        timestamp: OffsetDateTime,
    },
    Model(Box<super::model::ModelData>),
    Account {
        timestamp: OffsetDateTime,
        validation: String,
    },
    AccountKey(Box<super::account_key::KeyData>),
}

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

/// `checkModel`: the model regex and all lowercase.
pub fn check_model(h: &headers::Headers) -> Result<&str, CheckError> {
    let s = headers::string_matches(h, "model", valid_model_chars)?;
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(CheckError::Invalid(
            "\"model\" header cannot contain uppercase letters".into(),
        ));
    }
    Ok(s)
}

/// Decodes a header that carries an encoded public key (device-key).
pub(crate) fn header_key(h: &headers::Headers, name: &str) -> Result<RsaPublicKey, CheckError> {
    let text = headers::not_empty_string(h, name)?;
    RsaPublicKey::decode(text.as_bytes()).map_err(|e| CheckError::Invalid(e.to_string()))
}

/// Runs the type's assembler checks.
pub(crate) fn assemble_type(a: &Assertion) -> Result<Parsed, CheckError> {
    let h = a.headers();
    Ok(match a.kind() {
        AssertionType::SerialRequest => {
            headers::not_empty_string(h, "brand-id")?;
            check_model(h)?;
            headers::not_empty_string(h, "request-id")?;
            headers::optional_string(h, "serial")?;
            let device_key = header_key(h, "device-key")?;
            if device_key.key_id_bytes() != *a.sign_key_id_bytes() {
                return Err(CheckError::Invalid(
                    "device key does not match included signing key id".into(),
                ));
            }
            Parsed::SerialRequest { device_key }
        }
        AssertionType::Serial => {
            headers::string_matches(h, "brand-id", valid_account_id)?;
            check_model(h)?;
            let device_key = header_key(h, "device-key")?;
            let id = headers::not_empty_string(h, "device-key-sha3-384")?;
            if id != device_key.key_id() {
                return Err(CheckError::Invalid(
                    "device key does not match provided key id".into(),
                ));
            }
            let timestamp = headers::rfc3339(h, "timestamp")?;
            Parsed::Serial {
                device_key,
                timestamp,
            }
        }
        AssertionType::Model => Parsed::Model(Box::new(super::model::check(a)?)),
        AssertionType::Account => {
            headers::not_empty_string(h, "display-name")?;
            let mut validation = headers::not_empty_string(h, "validation")?.to_owned();
            if validation == "certified" {
                validation = "verified".into();
            }
            let timestamp = headers::rfc3339(h, "timestamp")?;
            headers::optional_string(h, "username")?;
            Parsed::Account {
                timestamp,
                validation,
            }
        }
        AssertionType::AccountKey | AssertionType::AccountKeyRequest => {
            Parsed::AccountKey(Box::new(super::account_key::check(a)?))
        }
        _ => Parsed::None,
    })
}

/// Reads a list of strings where every element must satisfy `pred`.
pub(crate) fn string_list_matching(
    h: &headers::Headers,
    name: &str,
    pred: fn(&str) -> bool,
) -> Result<Vec<String>, CheckError> {
    let l = headers::string_list(h, name)?;
    if let Some(bad) = l.iter().find(|s| !pred(s)) {
        return Err(CheckError::InvalidChars(name.to_owned(), bad.clone()));
    }
    Ok(l)
}

pub(crate) fn is_string(v: Option<&HeaderValue>) -> bool {
    matches!(v, Some(HeaderValue::String(_)))
}
