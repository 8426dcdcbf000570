//! The `account` assertion (snapd `asserts/account.go` `assembleAccount`).

use std::ops::Deref;

use time::OffsetDateTime;

use super::types::{AssertionType, Parsed};
use super::{Assertion, WrongType};

/// A decoded, checked `account` assertion.
#[derive(Debug, Clone)]
pub struct Account(Assertion);

impl TryFrom<Assertion> for Account {
    type Error = WrongType;
    fn try_from(a: Assertion) -> Result<Self, WrongType> {
        match a.parsed {
            Parsed::Account { .. } => Ok(Self(a)),
            _ => Err(WrongType {
                expected: AssertionType::Account,
                found: a.kind(),
            }),
        }
    }
}

impl Deref for Account {
    type Target = Assertion;
    fn deref(&self) -> &Assertion {
        &self.0
    }
}

impl Account {
    /// The whole assertion.
    pub fn into_inner(self) -> Assertion {
        self.0
    }

    /// `account-id`.
    pub fn account_id(&self) -> &str {
        self.header_str("account-id").unwrap_or_default()
    }

    /// `display-name`.
    pub fn display_name(&self) -> &str {
        self.header_str("display-name").unwrap_or_default()
    }

    /// `validation`, with the legacy `certified` mapped to `verified`.
    pub fn validation(&self) -> &str {
        match &self.0.parsed {
            Parsed::Account { validation, .. } => validation,
            _ => "",
        }
    }

    /// `timestamp`.
    pub fn timestamp(&self) -> OffsetDateTime {
        match &self.0.parsed {
            Parsed::Account { timestamp, .. } => *timestamp,
            _ => OffsetDateTime::UNIX_EPOCH,
        }
    }
}
