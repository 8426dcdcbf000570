//! Re-verifying the serial assertions of a signing-log export against an account-key chain:
//! each row's assertion must decode as one `serial`, say what the row says (brand, model,
//! serial, device key, signing key) and pass snapd's `Database.Check` at the row's issuance
//! time under the trusted roots and the admitted account-keys.
//!
//! The hash chain proves the log was not edited after a checkpoint; this proves each row is
//! a serial the brand's keys really signed, which covers the rows after the newest
//! checkpoint too: a row added there by someone who recomputed the chain but has no signing
//! key is named here.

use time::OffsetDateTime;

use crate::assertion::{AssertionType, decode};
use crate::trust::TrustDb;

/// One signing-log row as the check reads it.
pub struct SerialRow<'a> {
    /// The row's `brand-id`.
    pub brand_id: &'a str,
    /// The row's model name.
    pub model: &'a str,
    /// The row's serial.
    pub serial: &'a str,
    /// The device key's SHA3-384, as the row has it.
    pub device_key: &'a str,
    /// The signing key's SHA3-384, as the row has it.
    pub signing_key: &'a str,
    /// When the row says it was signed: the signing key must have been valid then.
    pub issued_at: OffsetDateTime,
    /// The serial assertion's text.
    pub assertion: &'a str,
}

/// Why a row's serial assertion is not what the row claims, or does not verify.
pub fn check_serial(row: &SerialRow<'_>, trust: &TrustDb) -> Result<(), String> {
    let a = decode(row.assertion.as_bytes()).map_err(|e| format!("does not decode: {e}"))?;
    if a.kind() != AssertionType::Serial {
        return Err(format!(
            "is an assertion of type {}, not a serial",
            a.kind().name()
        ));
    }
    for (header, row_value) in [
        ("brand-id", row.brand_id),
        ("model", row.model),
        ("serial", row.serial),
        ("device-key-sha3-384", row.device_key),
    ] {
        let value = a.header_str(header).unwrap_or_default();
        if value != row_value {
            return Err(format!(
                "says {header} {value:?} where the row says {row_value:?}"
            ));
        }
    }
    if a.sign_key_id() != row.signing_key {
        return Err(format!(
            "is signed by key {:?} where the row says {:?}",
            a.sign_key_id(),
            row.signing_key
        ));
    }
    trust
        .check(&a, row.issued_at)
        .map_err(|e| format!("does not verify against the account-key chain: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(assertion: &str) -> SerialRow<'_> {
        SerialRow {
            brand_id: "b",
            model: "m",
            serial: "s",
            device_key: "d",
            signing_key: "k",
            issued_at: OffsetDateTime::UNIX_EPOCH,
            assertion,
        }
    }

    #[test]
    fn text_that_is_no_assertion_is_named() {
        let e = check_serial(&row("not an assertion"), &TrustDb::builtin()).unwrap_err();
        assert!(e.starts_with("does not decode: "), "{e}");
    }

    #[test]
    fn another_assertion_type_is_named() {
        let e =
            check_serial(&row(crate::trust::CANONICAL_ACCOUNT), &TrustDb::builtin()).unwrap_err();
        assert_eq!(e, "is an assertion of type account, not a serial");
    }
}
