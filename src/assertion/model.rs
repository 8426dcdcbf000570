//! The typed view of a `model` assertion (snapd `asserts/model.go`); its decode checks are in
//! `checks::model`.

use time::OffsetDateTime;

use super::checks::{ModelData, Parsed};
use super::decoded::typed_view;
use super::types::AssertionType;

typed_view! {
    /// A decoded, checked `model` assertion.
    pub struct Model(AssertionType::Model, Parsed::Model => ModelData);
    /// `brand-id`.
    fn brand_id = "brand-id";
    /// `model`.
    fn model = "model";
    /// `series` (always `16` today).
    fn series = "series";
}

impl Model {
    /// `timestamp`.
    pub fn timestamp(&self) -> OffsetDateTime {
        self.data().timestamp
    }

    /// Whether `classic: true`.
    pub fn classic(&self) -> bool {
        self.data().classic
    }

    /// The UC20+ grade (`signed` by default); `None` for pre-UC20 models.
    pub fn grade(&self) -> Option<&str> {
        self.data().grade.as_deref()
    }

    /// Whether this is the UC20+ form (has `snaps`).
    pub fn is_extended(&self) -> bool {
        self.data().grade.is_some()
    }

    /// Accounts allowed to sign serials for this model; the brand is always included.
    pub fn serial_authority(&self) -> &[String] {
        &self.data().serial_authority
    }

    /// Accounts allowed to sign system-users; `None` means `*`.
    pub fn system_user_authority(&self) -> Option<&[String]> {
        self.data().system_user_authority.as_deref()
    }
}
