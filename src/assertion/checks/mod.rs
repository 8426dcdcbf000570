//! The per-type checks run when an assertion decodes, after the generic ones, for the types
//! serialmint uses: serial-request and serial (`asserts/serial_asserts.go`), account
//! (`asserts/account.go`), model (`model`) and account-key / account-key-request
//! (`account_key`). Other known types get only the generic checks.
//!
//! Each check returns the values it had to compute anyway (decoded keys, parsed times), kept
//! in the assertion as [`Parsed`] so the typed views never parse twice.

mod account_key;
mod model;

use time::OffsetDateTime;

pub use account_key::Constraint;
pub(crate) use account_key::KeyData;
pub(crate) use model::ModelData;

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
        _ => Parsed::None,
    })
}

/// Decodes a header that carries an encoded public key (device-key).
fn key_header(h: &Headers, name: &str) -> Result<RsaPublicKey, CheckError> {
    let text = headers::not_empty_string(h, name)?;
    Ok(RsaPublicKey::decode(text.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use crate::assertion::openpgp::RsaPublicKey;
    use crate::assertion::{Account, AccountKey, Model, decode};

    const SIGN_KEY: &str =
        "sign-key-sha3-384: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    /// Decodes `headers` (and `body`) with a placeholder signature: the checks do not verify it.
    fn decode_text(headers: &str, body: &str) -> Result<crate::assertion::Assertion, String> {
        let text = if body.is_empty() {
            format!("{headers}\n{SIGN_KEY}\n\nSIG")
        } else {
            format!(
                "{headers}\nbody-length: {}\n{SIGN_KEY}\n\n{body}\n\nSIG",
                body.len()
            )
        };
        decode(text.as_bytes()).map_err(|e| e.to_string())
    }

    const MODEL: &str = "type: model\nauthority-id: brand\nseries: 16\nbrand-id: brand\nmodel: pc\narchitecture: amd64\ngadget: pc\nkernel: pc-kernel\ntimestamp: 2024-01-01T00:00:00Z";

    #[test]
    fn model_values_and_messages() {
        let m = Model::try_from(decode_text(MODEL, "").unwrap()).unwrap();
        assert_eq!((m.brand_id(), m.model(), m.series()), ("brand", "pc", "16"));
        assert_eq!(m.serial_authority(), ["brand"]);
        assert_eq!(m.system_user_authority(), Some(&["brand".to_owned()][..]));
        assert!(!m.is_extended() && !m.classic() && m.grade().is_none());
        assert_eq!(m.timestamp().unix_timestamp(), 1_704_067_200);

        let other = MODEL.replace("authority-id: brand", "authority-id: other");
        assert_eq!(
            decode_text(&other, "").unwrap_err(),
            "assertion model: authority-id and brand-id must match, model assertions are \
             expected to be signed by the brand: \"other\" != \"brand\""
        );
        let upper = MODEL.replace("model: pc", "model: PC");
        assert_eq!(
            decode_text(&upper, "").unwrap_err(),
            "assertion model: \"model\" header cannot contain uppercase letters"
        );
        let bad_time = MODEL.replace("2024-01-01T00:00:00Z", "2024-01-01");
        assert_eq!(
            decode_text(&bad_time, "").unwrap_err(),
            "assertion model: \"timestamp\" header is not a RFC3339 date: parsing time \
             \"2024-01-01\" as \"2006-01-02T15:04:05Z07:00\""
        );
    }

    #[test]
    fn account_maps_certified_to_verified() {
        let text = "type: account\nauthority-id: canonical\naccount-id: brand\ndisplay-name: Brand\nvalidation: certified\ntimestamp: 2024-01-01T00:00:00Z";
        let a = Account::try_from(decode_text(text, "").unwrap()).unwrap();
        assert_eq!((a.account_id(), a.display_name()), ("brand", "Brand"));
        assert_eq!(a.validation(), "verified");
        assert!(Model::try_from(a.into_inner()).is_err());
    }

    #[test]
    fn account_key_values_and_messages() {
        let key = RsaPublicKey::new(&[0xC5; 256], &[1, 0, 1]);
        let text = format!(
            "type: account-key\nauthority-id: canonical\naccount-id: brand\nname: main\npublic-key-sha3-384: {}\nsince: 2024-01-01T00:00:00Z\nuntil: 2025-01-01T00:00:00Z",
            key.key_id()
        );
        let k = AccountKey::try_from(decode_text(&text, &key.encode()).unwrap()).unwrap();
        assert_eq!(k.public_key(), &key);
        assert_eq!(k.name(), Some("main"));
        assert!(k.constraints().is_none());

        let reversed = text.replace("until: 2025", "until: 2023");
        assert_eq!(
            decode_text(&reversed, &key.encode()).unwrap_err(),
            "assertion account-key: 'until' time cannot be before 'since' time"
        );
        assert_eq!(
            decode_text(&text, "AQ==").unwrap_err(),
            "assertion account-key: cannot decode public key: openpgp: EOF"
        );
    }
}
