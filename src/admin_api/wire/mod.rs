//! The admin API's wire: one serde struct per request body and per answer of every admin
//! route, plus the query strings of the signing log and the audit log, and the error shape.
//!
//! Owns: the JSON field names (kebab-case, as `README.md` lists them) and the query
//! parameters. The server ([`crate::admin_api`]) reads requests and writes answers through
//! these types and the CLI ([`crate::cli`]) writes requests and reads answers through the same
//! ones, so the two cannot drift. This module depends only on [`crate::domain`] (the named
//! choices, already serde as their wire names), serde and `time`: the CLI uses it without the
//! server.
//!
//! Requests carry `#[serde(deny_unknown_fields)]`: a misspelt field is a 400 naming it, not a
//! setting silently ignored. Answers do not, so an older CLI reads a newer server. Times are
//! RFC 3339 strings. Optional request fields that are `null` mean the same as absent, except
//! in [`ModelPatch`], where `null` clears a rate limit.

mod query;
mod remodel;
mod signing;

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

use crate::domain::{
    AssertionKind, DuplicatePolicy, KeyOrigin, KeyPurpose, KeyStatus, Role, SerialGeneration,
};

pub use query::{AuditQuery, ExportFormat, ExportQuery, LogQuery, PageQuery, Query, QueryError};
pub use remodel::{CreateRemodelPolicy, RemodelPolicyView};
pub use signing::{
    CreateSystemUser, SignModel, SignedModelView, SystemUserRecordView, SystemUserView,
};

/// The media type of assertions (`POST /v1/account-keys`, `POST /v1/keys/{id}/register`).
pub const ASSERTION_TYPE: &str = "application/x.ubuntu.assertion";

/// `{"items": [...]}`: the answer of every listing route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct List<T> {
    /// The listed things.
    pub items: Vec<T>,
}

// ---------------------------------------------------------------------------------------------
// Brands: /v1/brands

/// `POST /v1/brands`: add a brand account (an ODM building for several brands).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CreateBrand {
    /// The brand's snapd account-id.
    pub account_id: String,
}

/// A brand account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BrandView {
    /// Its snapd account-id.
    pub account_id: String,
    /// When it was added.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

// ---------------------------------------------------------------------------------------------
// Keys: /v1/keys

/// `POST /v1/keys`: generate a key on the HSM (answered 202 with a pending [`KeyView`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CreateKey {
    /// The key name (lowercase letters, digits, dashes).
    pub name: String,
    /// The brand; the only one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_id: Option<String>,
    /// Assertion types the key may sign (`["serial"]` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_types: Option<Vec<String>>,
    /// Models the key may sign for, as a glob (`*` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_pattern: Option<String>,
    /// What the key is for: `assertions` (when absent) or `audit` (only the tamper-evident
    /// log's checkpoints; then neither `allowed-types` nor `model-pattern`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<KeyPurpose>,
}

/// A signing key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct KeyView {
    /// Its name.
    pub name: String,
    /// Its snapd id (SHA3-384), once generated.
    pub sha3_384: Option<String>,
    /// Its brand.
    pub brand_id: String,
    /// Where its generation stands.
    pub status: KeyStatus,
    /// Why its generation failed.
    pub error: Option<String>,
    /// False once disabled.
    pub active: bool,
    /// Assertion types it may sign.
    pub allowed_types: Vec<String>,
    /// Models it may sign for (glob).
    pub model_pattern: String,
    /// Its public key as snapd encodes it, once generated.
    pub public_key: Option<String>,
    /// When it was asked for.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Generated on the token or imported onto it (`generated` from older servers).
    #[serde(default)]
    pub origin: KeyOrigin,
    /// `assertions`, or `audit` for a key that signs only the log's checkpoints
    /// (`assertions` from older servers).
    #[serde(default)]
    pub purpose: KeyPurpose,
    /// What it may sign, from its pushed account-key: the `constraints` in short
    /// (`serial model=foo-.*; system-user`), `any` when that account-key has none, or
    /// `not registered` when none was pushed.
    #[serde(default)]
    pub roles: String,
}

/// `POST /v1/keys/import`: import a private key file onto the HSM (answered 201 with the
/// ready [`KeyView`]). The key text is held in a [`zeroize::Zeroizing`] string, wiped when
/// the request is dropped, and never printed (its `Debug` says only how long it is).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ImportKey {
    /// The key name (lowercase letters, digits, dashes).
    pub name: String,
    /// The brand; the only one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_id: Option<String>,
    /// The key file's text: an ASCII-armored OpenPGP secret key without passphrase, or PEM
    /// (`RSA PRIVATE KEY`, `PRIVATE KEY`).
    pub private_key: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for ImportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportKey")
            .field("name", &self.name)
            .field("brand_id", &self.brand_id)
            .field(
                "private_key",
                &format_args!("[{} bytes]", self.private_key.len()),
            )
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Account keys: /v1/account-keys

/// One assertion a push admitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PushedAssertion {
    /// `account` or `account-key`.
    #[serde(rename = "type")]
    pub kind: AssertionKind,
    /// Its primary key (account-id, or the key's SHA3-384).
    pub primary_key: String,
    /// The account it belongs to.
    pub account_id: String,
}

/// The answer to `POST /v1/account-keys` (the body is an assertion stream, not JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushAnswer {
    /// Every assertion of the push, in stream order.
    pub assertions: Vec<PushedAssertion>,
    /// How many were new or newer revisions.
    pub stored: u64,
}

/// A held account or account-key assertion (`GET /v1/account-keys`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AccountAssertionView {
    /// `account` or `account-key`.
    #[serde(rename = "type")]
    pub kind: AssertionKind,
    /// Its primary key.
    pub primary_key: String,
    /// The account it belongs to.
    pub account_id: String,
    /// Its revision.
    pub revision: i32,
    /// When it was pushed.
    #[serde(with = "time::serde::rfc3339")]
    pub pushed_at: OffsetDateTime,
}

// ---------------------------------------------------------------------------------------------
// Models: /v1/models

/// `POST /v1/models`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CreateModel {
    /// The model name.
    pub name: String,
    /// The brand; the only one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_id: Option<String>,
    /// The API key devices send; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Serials per second (a positive integer); no limit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Burst above the rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_burst: Option<u32>,
    /// `refuse` (the default) or `reissue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_policy: Option<DuplicatePolicy>,
    /// `uuid` (the default), `prefix-counter` or `require-proposed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_generation: Option<SerialGeneration>,
    /// The prefix of prefix-counter serials (empty when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_prefix: Option<String>,
}

/// `PATCH /v1/models/{name}`: absent fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ModelPatch {
    /// A new API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Serve (true) or refuse (false) its devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// A new rate; `null` removes the limit.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub rate_limit: Option<Option<u32>>,
    /// A new burst; `null` removes it.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub rate_limit_burst: Option<Option<u32>>,
    /// A new duplicate policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_policy: Option<DuplicatePolicy>,
    /// A new serial generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_generation: Option<SerialGeneration>,
    /// A new serial prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_prefix: Option<String>,
}

/// A field that is present, `null` included: absent is `None` (from `#[serde(default)]`),
/// `null` is `Some(None)`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /v1/models/{name}/api-key`: a new API key, generated when absent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NewApiKey {
    /// The new key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

/// A model's rate limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RateLimitView {
    /// Serials per second, if limited.
    pub per_second: Option<i32>,
    /// Burst above the rate.
    pub burst: Option<i32>,
}

/// The serial policy a model signs with now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ActivePolicyView {
    /// The policy revision.
    pub revision: i32,
    /// The key's SHA3-384.
    pub key: String,
    /// The key's name.
    pub key_name: String,
}

/// A model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModelView {
    /// Its brand.
    pub brand_id: String,
    /// Its name.
    pub name: String,
    /// The API key its devices send.
    pub api_key: String,
    /// False while its devices are refused.
    pub enabled: bool,
    /// Its rate limit.
    pub rate_limit: RateLimitView,
    /// Its duplicate policy.
    pub duplicate_policy: DuplicatePolicy,
    /// How its serials are chosen.
    pub serial_generation: SerialGeneration,
    /// The prefix of prefix-counter serials.
    pub serial_prefix: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The newest serial policy, if any.
    pub active_policy: Option<ActivePolicyView>,
}

/// The answer to `DELETE /v1/models/{name}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    /// The deleted model's name.
    pub deleted: String,
}

// ---------------------------------------------------------------------------------------------
// Serial policies: /v1/models/{name}/serial-policies, /v1/serial-policies

/// `POST /v1/models/{name}/serial-policies`: the model signs serials with this key from now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CreatePolicy {
    /// The key, by name or SHA3-384.
    pub key: String,
    /// The brand (else the `brand-id` query parameter, else the only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_id: Option<String>,
}

/// A serial-policy revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyView {
    /// The model's brand.
    pub brand_id: String,
    /// The model.
    pub model: String,
    /// The revision (1, 2, ... per model).
    pub revision: i32,
    /// The key's SHA3-384.
    pub key: String,
    /// The key's name.
    pub key_name: String,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The token that made it.
    pub created_by: String,
    /// Whether it is the model's newest revision.
    pub active: bool,
}

// ---------------------------------------------------------------------------------------------
// Tokens: /v1/tokens

/// `POST /v1/tokens`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CreateToken {
    /// A name for it (shown in the audit log).
    pub name: String,
    /// `read-only` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// When it stops working; never when absent.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
    /// Limit the token to these brands (absent: every brand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brands: Option<Vec<String>>,
}

/// A new token: the only answer that carries its secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CreatedToken {
    /// Its id (for revoking).
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// When it stops working.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// The secret, shown this once.
    pub token: String,
    /// The brands it is limited to (absent: every brand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brands: Option<Vec<String>>,
}

/// A token as listed (never its secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TokenView {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it stops working.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// When it was last used.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// The brands it is limited to (absent: every brand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brands: Option<Vec<String>>,
}

/// The answer to `POST /v1/tokens/{id}/revoke`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Revoked {
    /// The revoked token's id.
    pub revoked: i64,
}

// ---------------------------------------------------------------------------------------------
// Signing log: /v1/signing-log, /v1/signing-log/export

/// A signing-log row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IssuanceView {
    /// Its row id (pages go `before` it).
    pub id: i64,
    /// The brand.
    pub brand_id: String,
    /// The model.
    pub model: String,
    /// The serial.
    pub serial: String,
    /// The serial assertion's revision.
    pub revision: u32,
    /// The device key's SHA3-384.
    pub device_key: String,
    /// The request id.
    pub request_id: String,
    /// The signing key's SHA3-384.
    pub signing_key: String,
    /// The instance that signed it.
    pub instance: String,
    /// When it was signed.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// The serial assertion text (in exports only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_assertion: Option<String>,
    /// On a remodel re-registration, the replaced serial's `brand-id/model/serial`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_serial: Option<String>,
    /// The model's row id (in JSON exports only: the chain hashes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<i64>,
    /// The row's sequence number in the tamper-evident chain (JSON exports only; absent for
    /// rows written before the chain started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_seq: Option<i64>,
    /// Its chain hash, 64 hex digits (JSON exports only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_hash: Option<String>,
}

/// A page of the signing log, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SigningLogPage {
    /// The rows.
    pub items: Vec<IssuanceView>,
    /// Ask for `before` this to get the next page; none on the last page.
    pub next_before: Option<i64>,
}

/// The CSV export's header line (the columns of [`IssuanceView`], assertion last).
pub const CSV_HEADER: &str = "id,brand-id,model,serial,revision,device-key,request-id,signing-key,instance,issued-at,serial-assertion\n";

// ---------------------------------------------------------------------------------------------
// Audit log: /v1/audit-log

/// An audit-log entry: who changed what, when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntryView {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The token's name.
    pub actor: String,
    /// What was done (`create-model`, ...).
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// The change's details.
    pub detail: serde_json::Value,
    /// Its sequence number in the tamper-evident chain (in exports only).
    #[serde(rename = "chain-seq", default, skip_serializing_if = "Option::is_none")]
    pub chain_seq: Option<i64>,
    /// Its chain hash, 64 hex digits (in exports only).
    #[serde(
        rename = "chain-hash",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub chain_hash: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Probes and errors

/// The answer to `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// The answer to `GET /readyz` (200 when ready, else 503).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    /// `ready` or `not-ready`.
    pub status: String,
    /// Each part.
    pub checks: ReadinessChecks,
}

/// The parts `/readyz` checks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadinessChecks {
    /// Postgres answers.
    pub database: bool,
    /// The HSM can sign.
    pub hsm: bool,
    /// The catalog has loaded.
    pub catalog: bool,
}

/// An error answer, in the shape snapd shows (every listener answers errors so).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub message: String,
    /// The same, with a machine-readable code.
    pub error_list: Vec<ErrorItem>,
}

/// One entry of [`ErrorBody::error_list`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorItem {
    /// A stable code (`not-found`, `conflict`, `invalid`, ...).
    pub code: String,
    /// What went wrong.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_named() {
        let e = serde_json::from_str::<CreateModel>(r#"{"name":"w","rate_limit":5}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `rate_limit`"), "{e}");
    }

    #[test]
    fn a_patch_tells_null_from_absent() {
        let p: ModelPatch = serde_json::from_str(r#"{"rate-limit":null}"#).unwrap();
        assert_eq!(p.rate_limit, Some(None));
        assert_eq!(p.rate_limit_burst, None);
        let p: ModelPatch = serde_json::from_str(r#"{"rate-limit-burst":7}"#).unwrap();
        assert_eq!(p.rate_limit_burst, Some(Some(7)));
        assert_eq!(
            serde_json::to_string(&ModelPatch {
                rate_limit: Some(None),
                ..ModelPatch::default()
            })
            .unwrap(),
            r#"{"rate-limit":null}"#
        );
    }

    #[test]
    fn the_error_shape_is_what_the_listeners_send() {
        let resp = crate::http::json_error(hyper::StatusCode::NOT_FOUND, "not-found", "gone");
        let body = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(
            resp.into_body(),
        ))
        .unwrap()
        .unwrap()
        .to_bytes();
        let e: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(e.message, "gone");
        assert_eq!(e.error_list[0].code, "not-found");
    }
}

// ---------------------------------------------------------------------------------------------
// Tamper-evident log: /v1/checkpoints

/// `GET /v1/checkpoints`: every checkpoint, per chain oldest first (signing log first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointList {
    /// The checkpoints, as `serialmint verify-log --checkpoints` reads them.
    pub items: Vec<crate::evidence::checkpoint::Checkpoint>,
}
