//! The typed view of an `account` assertion (snapd `asserts/account.go`); its decode checks
//! are in `checks`.

use time::OffsetDateTime;

use super::checks::{AccountData, Parsed};
use super::decoded::typed_view;
use super::types::AssertionType;

typed_view! {
    /// A decoded, checked `account` assertion.
    pub struct Account(AssertionType::Account, Parsed::Account => AccountData);
    /// `account-id`.
    fn account_id = "account-id";
    /// `display-name`.
    fn display_name = "display-name";
}

impl Account {
    /// `validation`, with the legacy `certified` mapped to `verified`.
    pub fn validation(&self) -> &str {
        &self.data().validation
    }

    /// `timestamp`.
    pub fn timestamp(&self) -> OffsetDateTime {
        self.data().timestamp
    }
}
