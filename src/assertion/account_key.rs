//! The typed views of `account-key` and `account-key-request` (snapd `asserts/account_key.go`;
//! their decode checks are in `checks::account_key`), plus the builder for the
//! `account-key-request` that registers an HSM key with the store.

use time::OffsetDateTime;

use super::checks::{KeyData, Parsed};
use super::codec::{BuildError, build_content};
use super::decoded::{Assertion, typed_view};
use super::error::{CheckError, VerifyError};
use super::headers::Headers;
use super::openpgp::RsaPublicKey;
use super::time::format_utc;
use super::types::AssertionType;

pub use super::constraints::{ConstraintError, Constraints};
pub use super::headers::valid_account_key_name;

/// The two key views share everything but their type, constraints and self-signature.
macro_rules! key_view {
    ($(#[$meta:meta])* $name:ident, $kind:expr) => {
        typed_view! {
            $(#[$meta])*
            pub struct $name($kind, Parsed::AccountKey => KeyData);
            /// `account-id`: the account the key belongs to.
            fn account_id = "account-id";
            /// `public-key-sha3-384`.
            fn public_key_id = "public-key-sha3-384";
        }

        impl $name {
            /// `name`, if any.
            pub fn name(&self) -> Option<&str> {
                self.header_str("name")
            }

            /// The public key from the body.
            pub fn public_key(&self) -> &RsaPublicKey {
                &self.data().key
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
    /// A decoded, checked `account-key` assertion.
    AccountKey,
    AssertionType::AccountKey
);
key_view!(
    /// A decoded, checked `account-key-request` (self-signed by the key it registers).
    AccountKeyRequest,
    AssertionType::AccountKeyRequest
);

impl AccountKey {
    /// The signing constraints (format 1), if any, compiled when the key decoded (shared:
    /// cloning the `Arc` is all a holder pays).
    pub fn constraints(&self) -> Option<&std::sync::Arc<Constraints>> {
        self.data().constraints.as_ref()
    }

    /// snapd's `canSign`: whether `a` may be signed by this key (always, without
    /// constraints).
    pub fn may_sign(&self, a: &Assertion) -> bool {
        self.constraints().is_none_or(|c| c.may_sign(a))
    }
}

impl AccountKeyRequest {
    /// Verifies the self-signature with the key in the body.
    pub fn verify_self_signature(&self) -> Result<(), VerifyError> {
        self.verify_with(self.public_key())
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
        let err = BuildError::check(kind);
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
            return Err(err(CheckError::invalid(
                "'until' time cannot be before 'since' time",
            )));
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
