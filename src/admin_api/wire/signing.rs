//! The wire of the routes that sign assertions other than serials on the HSM: model
//! assertions (`POST /v1/model-assertions`) and system users (`POST /v1/system-users`).
//!
//! A system user's password travels only in [`CreateSystemUser::password`], a
//! [`zeroize::Zeroizing`] string wiped when the request is dropped and never printed (its
//! `Debug` says only whether there is one); answers never carry it nor its hash apart from
//! inside the signed assertion stream.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// `POST /v1/model-assertions`: sign a model statement (answered 201 with a
/// [`SignedModelView`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SignModel {
    /// The statement: headers as `snap sign` takes them, as JSON or YAML text (`type:
    /// model`, `body` optional; `timestamp` filled when absent).
    pub statement: String,
    /// The key (name or SHA3-384 id); when absent, the brand's only key that may sign it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The brand; the only one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_id: Option<String>,
}

/// A model assertion signed on the HSM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SignedModelView {
    /// `brand-id` (and `authority-id`).
    pub brand_id: String,
    /// `model`.
    pub model: String,
    /// `revision`.
    pub revision: u32,
    /// `timestamp`.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// The signing key's SHA3-384 id.
    pub key: String,
    /// The signing key's name.
    pub key_name: String,
    /// The signed assertion, as snapd encodes it.
    pub assertion: String,
}

/// `POST /v1/system-users`: issue a `system-user` assertion (answered 201 with a
/// [`SystemUserView`]).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CreateSystemUser {
    /// The model it is for (a model assertion this vault signed).
    pub model: String,
    /// The model's brand, when it is not the signing brand (an ODM's brand signing for a
    /// model whose `system-user-authority` lists it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_brand_id: Option<String>,
    /// `email`.
    pub email: String,
    /// `username`.
    pub username: String,
    /// `name` (the user's full name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The password in clear, hashed by the server with SHA-512 crypt; never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<zeroize::Zeroizing<String>>,
    /// `ssh-keys`: public keys, one per entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<String>,
    /// `serials`: only devices with one of these serials (the assertion is then format 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serials: Vec<String>,
    /// `since` (now when absent).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub since: Option<OffsetDateTime>,
    /// `until` (a year after `since` when absent).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub until: Option<OffsetDateTime>,
    /// `force-password-change` (needs a password).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_password_change: bool,
    /// The key (name or SHA3-384 id); when absent, the brand's only key that may sign it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The signing brand; the only one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_id: Option<String>,
}

impl std::fmt::Debug for CreateSystemUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateSystemUser")
            .field("model", &self.model)
            .field("model_brand_id", &self.model_brand_id)
            .field("email", &self.email)
            .field("username", &self.username)
            .field("name", &self.name)
            .field(
                "password",
                &self.password.as_ref().map(|_| format_args!("[redacted]")),
            )
            .field("ssh_keys", &self.ssh_keys.len())
            .field("serials", &self.serials)
            .field("since", &self.since)
            .field("until", &self.until)
            .field("force_password_change", &self.force_password_change)
            .field("key", &self.key)
            .field("brand_id", &self.brand_id)
            .finish()
    }
}

/// A `system-user` assertion issued, with the stream snapd's auto-import reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SystemUserView {
    /// The signing brand (`authority-id`).
    pub brand_id: String,
    /// The model's brand (`brand-id`).
    pub model_brand_id: String,
    /// The model.
    pub model: String,
    /// `username`.
    pub username: String,
    /// `email`.
    pub email: String,
    /// `serials` (empty: every device of the model).
    pub serials: Vec<String>,
    /// `since`.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// `until`.
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    /// The signing key's SHA3-384 id.
    pub key: String,
    /// The signing key's name.
    pub key_name: String,
    /// The signing brand's `account`, the key's `account-key`, then the `system-user`, as
    /// one assertion stream (an `auto-import.assert` file).
    pub assertions: String,
}

/// A system user issued (`GET /v1/system-users`): never the password, its hash, the email or
/// the ssh keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SystemUserRecordView {
    /// Row id.
    pub id: i64,
    /// The signing brand.
    pub brand_id: String,
    /// The model's brand.
    pub model_brand_id: String,
    /// The model.
    pub model: String,
    /// `username`.
    pub username: String,
    /// `serials` (empty: every device of the model).
    pub serials: Vec<String>,
    /// `until`.
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    /// Who issued it.
    pub issued_by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
}

impl From<crate::store::SystemUserRecord> for SystemUserRecordView {
    fn from(r: crate::store::SystemUserRecord) -> Self {
        SystemUserRecordView {
            id: r.id,
            brand_id: r.brand_id,
            model_brand_id: r.model_brand_id,
            model: r.model,
            username: r.username,
            serials: r.serials,
            until: r.until,
            issued_by: r.issued_by,
            issued_at: r.issued_at,
        }
    }
}
