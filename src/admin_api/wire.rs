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

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::{
    AssertionKind, DuplicatePolicy, KeyStatus, Role, SerialGeneration, UnknownChoice,
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
    pub revision: i32,
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

/// A bad query parameter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Not an RFC 3339 time.
    #[error("{name} must be an RFC 3339 time, got {got:?}")]
    NotATime {
        /// The parameter.
        name: &'static str,
        /// What was given.
        got: String,
    },
    /// Not a number.
    #[error("\"{name}\" must be {what}")]
    NotANumber {
        /// The parameter.
        name: &'static str,
        /// What it must be (`a row id`, `a number`).
        what: &'static str,
    },
    /// Not one of the choices.
    #[error(transparent)]
    Choice(#[from] UnknownChoice),
}

/// A query string, decoded (`+` and `%XX`); a repeated parameter keeps its last value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Decodes `raw` (the part after `?`).
    pub fn parse(raw: &str) -> Self {
        Query(
            form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The value of `name`, unless empty.
    fn non_empty(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).map(str::to_string)
    }

    fn time(&self, name: &'static str) -> Result<Option<OffsetDateTime>, QueryError> {
        self.get(name)
            .map(|v| {
                OffsetDateTime::parse(v, &Rfc3339).map_err(|_| QueryError::NotATime {
                    name,
                    got: v.to_string(),
                })
            })
            .transpose()
    }

    fn number(&self, name: &'static str, what: &'static str) -> Result<Option<i64>, QueryError> {
        self.get(name)
            .map(|v| v.parse().map_err(|_| QueryError::NotANumber { name, what }))
            .transpose()
    }
}

/// Builds a query string (`a=b&c=d`, form-encoded), empty when nothing is set.
#[derive(Default)]
struct QueryWriter(Option<form_urlencoded::Serializer<'static, String>>);

impl QueryWriter {
    fn put(&mut self, name: &str, value: Option<impl fmt::Display>) -> &mut Self {
        if let Some(v) = value {
            self.0
                .get_or_insert_with(|| form_urlencoded::Serializer::new(String::new()))
                .append_pair(name, &v.to_string());
        }
        self
    }

    fn time(&mut self, name: &str, value: Option<OffsetDateTime>) -> &mut Self {
        self.put(name, value.and_then(|t| t.format(&Rfc3339).ok()))
    }

    fn finish(&mut self) -> String {
        self.0.take().map(|mut s| s.finish()).unwrap_or_default()
    }
}

/// Which rows of the signing log (`GET /v1/signing-log` and its export).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only this brand.
    pub brand_id: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only serials starting with this.
    pub serial: Option<String>,
    /// Only rows signed at or after this.
    pub since: Option<OffsetDateTime>,
    /// Only rows signed before this.
    pub until: Option<OffsetDateTime>,
}

impl LogQuery {
    /// From `brand-id`, `model`, `serial`, `since` and `until` (empty `model`/`serial` are
    /// no filter).
    pub fn from_query(q: &Query) -> Result<Self, QueryError> {
        Ok(LogQuery {
            brand_id: q.get("brand-id").map(str::to_string),
            model: q.non_empty("model"),
            serial: q.non_empty("serial"),
            since: q.time("since")?,
            until: q.time("until")?,
        })
    }

    fn write(&self, w: &mut QueryWriter) {
        w.put("brand-id", self.brand_id.as_deref())
            .put("model", self.model.as_deref())
            .put("serial", self.serial.as_deref())
            .time("since", self.since)
            .time("until", self.until);
    }
}

/// `GET /v1/signing-log?...&before=&limit=`: one page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageQuery {
    /// Which rows.
    pub filter: LogQuery,
    /// Only rows older than this row id (the previous page's `next-before`).
    pub before: Option<i64>,
    /// At most this many rows (100 when absent; 1 to 1000).
    pub limit: Option<i64>,
}

impl PageQuery {
    /// Rows per page when no limit is asked for.
    pub const DEFAULT_LIMIT: i64 = 100;
    /// Most rows per page.
    pub const MAX_LIMIT: i64 = 1000;

    /// From the filter's parameters, `before` and `limit`.
    pub fn from_query(q: &Query) -> Result<Self, QueryError> {
        Ok(PageQuery {
            filter: LogQuery::from_query(q)?,
            before: q.number("before", "a row id")?,
            limit: q.number("limit", "a number")?,
        })
    }

    /// The page size the server uses.
    pub fn page_size(&self) -> i64 {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .clamp(1, Self::MAX_LIMIT)
    }

    /// The query string.
    pub fn to_query(&self) -> String {
        let mut w = QueryWriter::default();
        w.put("limit", self.limit);
        self.filter.write(&mut w);
        w.put("before", self.before).finish()
    }
}

/// The export's format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON array of rows with their assertions (the default).
    #[default]
    Json,
    /// RFC 4180 CSV with a header line.
    Csv,
}

impl ExportFormat {
    /// Every format.
    pub const ALL: &'static [ExportFormat] = &[ExportFormat::Csv, ExportFormat::Json];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Json => "json",
        }
    }

    /// The wire names, for CLI value parsers.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|f| f.as_str()).collect()
    }

    /// The answer's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Json => "application/json",
        }
    }
}

impl FromStr for ExportFormat {
    type Err = UnknownChoice;

    fn from_str(s: &str) -> Result<Self, UnknownChoice> {
        Self::ALL
            .iter()
            .copied()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownChoice {
                what: "format",
                choices: "csv or json",
                got: s.to_string(),
            })
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `GET /v1/signing-log/export?format=&...`: the whole filtered log, streamed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportQuery {
    /// CSV or JSON.
    pub format: ExportFormat,
    /// Which rows.
    pub filter: LogQuery,
}

impl ExportQuery {
    /// From `format` and the filter's parameters.
    pub fn from_query(q: &Query) -> Result<Self, QueryError> {
        Ok(ExportQuery {
            format: q
                .get("format")
                .map(str::parse)
                .transpose()?
                .unwrap_or_default(),
            filter: LogQuery::from_query(q)?,
        })
    }

    /// The query string.
    pub fn to_query(&self) -> String {
        let mut w = QueryWriter::default();
        w.put("format", Some(self.format));
        self.filter.write(&mut w);
        w.finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Audit log: /v1/audit-log

/// `GET /v1/audit-log?limit=`: the newest entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// At most this many (100 when absent or not a number; 1 to 1000).
    pub limit: Option<i64>,
}

impl AuditQuery {
    /// From `limit` (a bad value counts as absent).
    pub fn from_query(q: &Query) -> Self {
        AuditQuery {
            limit: q.get("limit").and_then(|l| l.parse().ok()),
        }
    }

    /// The number of entries the server answers.
    pub fn size(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}

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
    fn queries_round_trip() {
        let q = PageQuery {
            filter: LogQuery {
                model: Some("a b&c".into()),
                since: Some(time::macros::datetime!(2026-01-02 03:04:05 UTC)),
                ..LogQuery::default()
            },
            before: Some(7),
            limit: Some(5),
        };
        let text = q.to_query();
        assert_eq!(
            text,
            "limit=5&model=a+b%26c&since=2026-01-02T03%3A04%3A05Z&before=7"
        );
        assert_eq!(PageQuery::from_query(&Query::parse(&text)).unwrap(), q);
        assert_eq!(
            ExportQuery::from_query(&Query::parse("format=xml"))
                .unwrap_err()
                .to_string(),
            "format must be csv or json, not \"xml\""
        );
        assert_eq!(
            PageQuery::from_query(&Query::parse("before=x"))
                .unwrap_err()
                .to_string(),
            "\"before\" must be a row id"
        );
        assert_eq!(Query::parse("a=%2Fx&b=100%").get("b"), Some("100%"));
        assert_eq!(Query::parse("a=%2Fx").get("a"), Some("/x"));
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
