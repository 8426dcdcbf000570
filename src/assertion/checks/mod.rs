//! The per-type checks run when an assertion decodes, after the generic ones, for the types
//! serialmint uses: serial-request and serial (`asserts/serial_asserts.go`), account
//! (`asserts/account.go`), model (`model`), account-key / account-key-request
//! (`account_key`) and system-user (`system_user`). Other known types get only the generic checks.
//!
//! Each check returns the values it had to compute anyway (decoded keys, parsed times), kept
//! in the assertion as [`Parsed`] so the typed views never parse twice.

mod account_key;
mod model;
mod system_user;

use time::OffsetDateTime;

pub(crate) use account_key::KeyData;
pub(crate) use model::ModelData;
pub(crate) use system_user::SystemUserData;

use super::error::CheckError;
use super::headers::{self, Headers, valid_account_id};
use super::openpgp::RsaPublicKey;
use super::types::AssertionType;

/// Type-specific values computed once at decode time.
#[derive(Debug, Clone)]
pub(crate) enum Parsed {
    /// A type with only the generic checks.
    None,
    SerialRequest(SerialRequestData),
    Serial(SerialData),
    Model(Box<ModelData>),
    Account(AccountData),
    AccountKey(Box<KeyData>),
    SystemUser(Box<SystemUserData>),
}

/// What a serial-request's checks computed.
#[derive(Debug, Clone)]
pub(crate) struct SerialRequestData {
    pub(crate) device_key: RsaPublicKey,
}

/// What a serial's checks computed.
#[derive(Debug, Clone)]
pub(crate) struct SerialData {
    pub(crate) device_key: RsaPublicKey,
    pub(crate) timestamp: OffsetDateTime,
}

/// What an account's checks computed.
#[derive(Debug, Clone)]
pub(crate) struct AccountData {
    pub(crate) timestamp: OffsetDateTime,
    /// With the legacy `certified` mapped to `verified`.
    pub(crate) validation: String,
}

/// Runs the checks of `kind` on an assertion that passed the generic ones (`assemble`'s call
/// of the type's assembler). `sign_key` is the decoded `sign-key-sha3-384`.
pub(crate) fn check_type(
    kind: AssertionType,
    h: &Headers,
    format: u32,
    body: &[u8],
    sign_key: &[u8; 48],
) -> Result<Parsed, CheckError> {
    Ok(match kind {
        AssertionType::SerialRequest => {
            headers::not_empty_string(h, "brand-id")?;
            headers::model_header(h)?;
            headers::not_empty_string(h, "request-id")?;
            headers::optional_string(h, "serial")?;
            let device_key = key_header(h, "device-key")?;
            if device_key.key_id_bytes() != *sign_key {
                return Err(CheckError::invalid(
                    "device key does not match included signing key id",
                ));
            }
            Parsed::SerialRequest(SerialRequestData { device_key })
        }
        AssertionType::Serial => {
            headers::string_matches(h, "brand-id", valid_account_id)?;
            headers::model_header(h)?;
            let device_key = key_header(h, "device-key")?;
            let id = headers::not_empty_string(h, "device-key-sha3-384")?;
            if id != device_key.key_id() {
                return Err(CheckError::invalid(
                    "device key does not match provided key id",
                ));
            }
            let timestamp = headers::rfc3339(h, "timestamp")?;
            Parsed::Serial(SerialData {
                device_key,
                timestamp,
            })
        }
        AssertionType::Model => Parsed::Model(Box::new(model::check(h)?)),
        AssertionType::Account => {
            headers::not_empty_string(h, "display-name")?;
            let mut validation = headers::not_empty_string(h, "validation")?.to_owned();
            if validation == "certified" {
                validation = "verified".into();
            }
            let timestamp = headers::rfc3339(h, "timestamp")?;
            headers::optional_string(h, "username")?;
            Parsed::Account(AccountData {
                timestamp,
                validation,
            })
        }
        AssertionType::AccountKey | AssertionType::AccountKeyRequest => {
            Parsed::AccountKey(Box::new(account_key::check(kind, h, format, body)?))
        }
        AssertionType::SystemUser => Parsed::SystemUser(Box::new(system_user::check(h, format)?)),
        _ => Parsed::None,
    })
}

/// Decodes a header that carries an encoded public key (device-key).
fn key_header(h: &Headers, name: &str) -> Result<RsaPublicKey, CheckError> {
    let text = headers::not_empty_string(h, name)?;
    Ok(RsaPublicKey::decode(text.as_bytes())?)
}
