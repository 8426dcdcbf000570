//! The admin listener: JSON over HTTP for keys, models, serial policies, pushed account keys
//! and the signing log, plus `/metrics`, `/healthz` and `/readyz`.
//!
//! Every route but `/healthz` and `/readyz` needs `Authorization: Bearer <token>`: 401 when
//! the token is missing, unknown, revoked or expired; 403 when a read-only token asks for a
//! change; 429 with `Retry-After` while the client's address is shut out for sending too many
//! bad tokens ([`throttle`]). Tokens are looked up by their SHA-256 in the store and never
//! logged. Business
//! rules live in the store (constraints) and the [`Backend`] (HSM, codec); this module maps
//! HTTP to them and errors to `{"message", "error_list": [{"code", "message"}]}`.

pub mod backend;
pub mod throttle;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use rand::RngCore;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use backend::{Backend, GeneratedKey, HsmBackend, Refusal, Unavailable};
pub use throttle::{AuthThrottle, ThrottleConfig};

use crate::catalog::Catalog;
use crate::config::Config;
use crate::http::{self, HttpResponse, StreamBody, StreamingHandler};
use crate::store::{
    Actor, DuplicatePolicy, LogFilter, LoggedIssuance, Model, ModelChange, NewModel, Role,
    SerialGeneration, SerialPolicy, SigningKey, Store, StoreError, TokenInfo,
};

/// Largest admin request body (an account-key push is a few KiB).
pub const MAX_ADMIN_BODY: usize = 1024 * 1024;

/// The media type of assertions.
pub const ASSERTION_TYPE: &str = "application/x.ubuntu.assertion";

/// The admin listener's handler; cheap to clone.
#[derive(Clone)]
pub struct AdminApi {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    catalog: Arc<Catalog>,
    backend: Arc<dyn Backend>,
    metrics: Option<PrometheusHandle>,
    body_timeout: Duration,
    throttle: AuthThrottle,
}

/// Limits of the admin listener's handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    /// Longest a request body may take to arrive (408 past it).
    pub body_timeout: Duration,
    /// The bad-token throttle.
    pub throttle: ThrottleConfig,
}

impl AdminLimits {
    /// From the configuration (`device.body_read_timeout_ms`, `admin.auth_*`).
    pub fn from_config(config: &Config) -> Self {
        Self {
            body_timeout: config.body_read_timeout,
            throttle: ThrottleConfig::from_config(config),
        }
    }
}

impl Default for AdminLimits {
    fn default() -> Self {
        Self::from_config(&Config::default())
    }
}

/// An error answer.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// `Retry-After` in seconds (429).
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    /// 429 for a client shut out for bad tokens; `Retry-After` in whole seconds, rounded up.
    fn throttled(wait: Duration) -> Self {
        let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        ApiError {
            retry_after: Some(secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-bad-tokens",
                format!("too many bad admin tokens from this address; retry in {secs} s"),
            )
        }
    }

    fn response(&self) -> HttpResponse {
        let mut resp = http::json_error(self.status, self.code, &self.message);
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not-found", m),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid", m),
            e @ StoreError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database-unavailable",
                e.to_string(),
            ),
            e @ StoreError::Database(_) => {
                tracing::error!(error = %e, "admin request failed in the database");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "database-error",
                    e.to_string(),
                )
            }
        }
    }
}

impl From<http::BodyError> for ApiError {
    fn from(e: http::BodyError) -> Self {
        match e {
            http::BodyError::TooLarge(_) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", e.to_string())
            }
            http::BodyError::Read(_) => ApiError::bad_request(e.to_string()),
            http::BodyError::Timeout(_) => {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "body-timeout", e.to_string())
            }
        }
    }
}

type ApiResult<T = HttpResponse> = Result<T, ApiError>;

/// A generated API key: 32 random bytes, unpadded base64url (43 characters).
pub fn generate_api_key() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn parse_time(name: &str, v: &str) -> ApiResult<OffsetDateTime> {
    OffsetDateTime::parse(v, &Rfc3339)
        .map_err(|_| ApiError::bad_request(format!("{name} must be an RFC 3339 time, got {v:?}")))
}

/// JSON view of a key.
pub fn key_json(k: &SigningKey) -> Value {
    json!({
        "name": k.name,
        "sha3-384": k.sha3_384,
        "brand-id": k.brand_id,
        "status": k.status.as_str(),
        "error": k.error,
        "active": k.active,
        "allowed-types": k.allowed_types,
        "model-pattern": k.model_pattern,
        "public-key": k.public_key,
        "created-at": rfc3339(k.created_at),
    })
}

fn policy_json(p: &SerialPolicy, active: bool) -> Value {
    json!({
        "brand-id": p.brand_id,
        "model": p.model,
        "revision": p.revision,
        "key": p.key_sha3_384,
        "key-name": p.key_name,
        "created-at": rfc3339(p.created_at),
        "created-by": p.created_by,
        "active": active,
    })
}

fn model_json(m: &Model, active: Option<&SerialPolicy>) -> Value {
    json!({
        "brand-id": m.brand_id,
        "name": m.name,
        "api-key": m.api_key,
        "enabled": m.enabled,
        "rate-limit": {"per-second": m.rate_limit_per_sec, "burst": m.rate_limit_burst},
        "duplicate-policy": m.duplicate_policy.as_str(),
        "serial-generation": m.serial_generation.as_str(),
        "serial-prefix": m.serial_prefix,
        "created-at": rfc3339(m.created_at),
        "active-policy": active.map(|p| json!({
            "revision": p.revision,
            "key": p.key_sha3_384,
            "key-name": p.key_name,
        })),
    })
}

/// JSON view of a signing-log row; `full` adds the serial assertion text.
pub fn issuance_json(row: &LoggedIssuance, full: bool) -> Value {
    let i = &row.issuance;
    let mut v = json!({
        "id": row.id,
        "brand-id": i.brand_id,
        "model": i.model_name,
        "serial": i.serial,
        "revision": i.revision,
        "device-key": i.device_key_id,
        "request-id": i.request_id,
        "signing-key": i.signing_key_id,
        "instance": i.instance,
        "issued-at": rfc3339(row.issued_at),
    });
    if full {
        v["serial-assertion"] = json!(i.serial_assertion);
    }
    v
}

const CSV_HEADER: &str = "id,brand-id,model,serial,revision,device-key,request-id,signing-key,instance,issued-at,serial-assertion\n";

fn csv_field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

/// One signing-log row as a CSV record (RFC 4180 quoting), with its line end.
pub fn issuance_csv(row: &LoggedIssuance) -> String {
    let i = &row.issuance;
    let mut out = String::with_capacity(i.serial_assertion.len() + 256);
    let fields = [
        row.id.to_string(),
        i.brand_id.clone(),
        i.model_name.clone(),
        i.serial.clone(),
        i.revision.to_string(),
        i.device_key_id.clone(),
        i.request_id.clone(),
        i.signing_key_id.clone(),
        i.instance.clone(),
        rfc3339(row.issued_at),
    ];
    for f in &fields {
        csv_field(&mut out, f);
        out.push(',');
    }
    csv_field(&mut out, &i.serial_assertion);
    out.push_str("\r\n");
    out
}

fn query_params(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Decodes `%XX` escapes and `+` (as space) in a query component.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn str_field<'a>(body: &'a Value, name: &str) -> ApiResult<Option<&'a str>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(format!(
            "\"{name}\" must be a string"
        ))),
    }
}

fn int_field(body: &Value, name: &str) -> ApiResult<Option<Option<i32>>> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|v| i32::try_from(v).ok())
            .filter(|v| *v > 0)
            .map(|v| Some(Some(v)))
            .ok_or_else(|| ApiError::bad_request(format!("\"{name}\" must be a positive integer"))),
        Some(_) => Err(ApiError::bad_request(format!(
            "\"{name}\" must be a positive integer"
        ))),
    }
}

fn parse_json(body: &Bytes) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    Ok(v)
}

impl AdminApi {
    /// The handler over `store`, `catalog` and the HSM/codec `backend`; `metrics` renders
    /// `/metrics` when a Prometheus recorder is installed.
    pub fn new(
        store: Store,
        catalog: Arc<Catalog>,
        backend: Arc<dyn Backend>,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        let limits = AdminLimits::default();
        AdminApi {
            inner: Arc::new(Inner {
                store,
                catalog,
                backend,
                metrics,
                body_timeout: limits.body_timeout,
                throttle: AuthThrottle::new(limits.throttle),
            }),
        }
    }

    /// The same handler with other limits (and an empty bad-token table).
    pub fn with_limits(self, limits: AdminLimits) -> Self {
        let inner = &self.inner;
        AdminApi {
            inner: Arc::new(Inner {
                store: inner.store.clone(),
                catalog: inner.catalog.clone(),
                backend: inner.backend.clone(),
                metrics: inner.metrics.clone(),
                body_timeout: limits.body_timeout,
                throttle: AuthThrottle::new(limits.throttle),
            }),
        }
    }

    /// The token of `req`. A client address shut out for bad tokens gets 429 before its token
    /// is looked at; an unknown token counts against its address.
    async fn authenticate(
        &self,
        req: &Request<Incoming>,
        peer: SocketAddr,
    ) -> ApiResult<TokenInfo> {
        let throttle = &self.inner.throttle;
        if let Err(wait) = throttle.check(peer.ip(), Instant::now()) {
            metrics::counter!("admin_auth_throttled_total").increment(1);
            return Err(ApiError::throttled(wait));
        }
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid admin token (Authorization: Bearer <token>)",
            )
        };
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(unauthorized)?;
        match self.inner.store.authenticate(token).await? {
            Some(info) => Ok(info),
            None => {
                metrics::counter!("admin_auth_failures_total").increment(1);
                if let Some(delay) = throttle.failed(peer.ip(), Instant::now()) {
                    tracing::warn!(
                        client = %peer.ip(),
                        delay_ms = delay.as_millis() as u64,
                        "admin: too many bad tokens from this address; refusing it for a while"
                    );
                }
                Err(unauthorized())
            }
        }
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> ApiResult<Response<StreamBody>> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        match path.as_str() {
            "/healthz" => {
                return match method {
                    Method::GET => Ok(http::streamed(http::json_response(
                        StatusCode::OK,
                        &json!({"status": "ok"}),
                    ))),
                    _ => Ok(http::streamed(http::method_not_allowed("GET"))),
                };
            }
            "/readyz" => {
                return match method {
                    Method::GET => Ok(http::streamed(self.readyz().await)),
                    _ => Ok(http::streamed(http::method_not_allowed("GET"))),
                };
            }
            _ => {}
        }
        let token = self.authenticate(&req, peer).await?;
        let segments: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let writes = !matches!(method, Method::GET | Method::HEAD);
        if writes && token.role != Role::Admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token is read-only",
            ));
        }
        let actor = Actor(token.name.clone());
        let params = query_params(&req);
        let resp = match (&method, segs.as_slice()) {
            (&Method::GET, ["metrics"]) => self.metrics(),
            (&Method::GET, ["v1", "keys"]) => self.list_keys().await?,
            (&Method::POST, ["v1", "keys"]) => {
                let body = self.json_body(req).await?;
                self.create_key(&body, &actor).await?
            }
            (&Method::GET, ["v1", "keys", key]) => {
                let k = self.inner.store.key(key).await?;
                http::json_response(StatusCode::OK, &key_json(&k))
            }
            (&Method::POST, ["v1", "keys", key, "disable"]) => {
                let k = self.inner.store.disable_key(key, &actor).await?;
                http::json_response(StatusCode::OK, &key_json(&k))
            }
            (&Method::POST, ["v1", "keys", key, "register"]) => self.register_key(key).await?,
            (&Method::GET, ["v1", "account-keys"]) => self.list_account_assertions().await?,
            (&Method::POST, ["v1", "account-keys"]) => {
                let body = http::read_body(req, MAX_ADMIN_BODY, self.inner.body_timeout).await?;
                self.push_account_keys(&body, &actor).await?
            }
            (&Method::GET, ["v1", "models"]) => self.list_models().await?,
            (&Method::POST, ["v1", "models"]) => {
                let body = self.json_body(req).await?;
                self.create_model(&body, &actor).await?
            }
            (&Method::GET, ["v1", "models", name]) => self.get_model(&params, name).await?,
            (&Method::PATCH, ["v1", "models", name]) => {
                let body = self.json_body(req).await?;
                self.update_model(&params, name, &body, &actor).await?
            }
            (&Method::DELETE, ["v1", "models", name]) => {
                let brand = self
                    .brand(params.get("brand-id").map(String::as_str))
                    .await?;
                self.inner.store.delete_model(&brand, name, &actor).await?;
                http::json_response(StatusCode::OK, &json!({"deleted": name}))
            }
            (&Method::POST, ["v1", "models", name, "api-key"]) => {
                let body = self.json_body(req).await?;
                let key = str_field(&body, "api-key")?
                    .map(str::to_string)
                    .unwrap_or_else(generate_api_key);
                let change = ModelChange {
                    api_key: Some(key),
                    ..ModelChange::default()
                };
                self.change_model(&params, name, &change, &actor).await?
            }
            (&Method::POST, ["v1", "models", name, action @ ("disable" | "enable")]) => {
                let change = ModelChange {
                    enabled: Some(*action == "enable"),
                    ..ModelChange::default()
                };
                self.change_model(&params, name, &change, &actor).await?
            }
            (&Method::GET, ["v1", "models", name, "serial-policies"]) => {
                self.list_policies(&params, Some(name)).await?
            }
            (&Method::POST, ["v1", "models", name, "serial-policies"]) => {
                let body = self.json_body(req).await?;
                self.create_policy(&params, name, &body, &actor).await?
            }
            (&Method::GET, ["v1", "serial-policies"]) => {
                let model = params.get("model").cloned();
                self.list_policies(&params, model.as_deref()).await?
            }
            (&Method::GET, ["v1", "signing-log"]) => self.signing_log(&params).await?,
            (&Method::GET, ["v1", "signing-log", "export"]) => {
                return self.export(&params).await;
            }
            (&Method::GET, ["v1", "tokens"]) => self.list_tokens().await?,
            (&Method::POST, ["v1", "tokens"]) => {
                let body = self.json_body(req).await?;
                self.create_token(&body, &actor).await?
            }
            (&Method::POST, ["v1", "tokens", id, "revoke"]) => {
                let id: i64 = id
                    .parse()
                    .map_err(|_| ApiError::bad_request("a token is named by its id"))?;
                self.inner.store.revoke_token(id, &actor).await?;
                http::json_response(StatusCode::OK, &json!({ "revoked": id }))
            }
            (&Method::GET, ["v1", "audit-log"]) => {
                let limit = params
                    .get("limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(100i64)
                    .clamp(1, 1000);
                let entries = self.inner.store.audit_log(limit).await?;
                let items: Vec<Value> = entries
                    .iter()
                    .map(|e| {
                        json!({"at": rfc3339(e.at), "actor": e.actor, "action": e.action,
                               "target": e.target, "detail": e.detail})
                    })
                    .collect();
                http::json_response(StatusCode::OK, &json!({ "items": items }))
            }
            (_, ["metrics"]) | (_, ["v1", "keys", _]) | (_, ["v1", "audit-log"]) => {
                http::method_not_allowed("GET")
            }
            (_, ["v1", "keys"])
            | (_, ["v1", "account-keys"])
            | (_, ["v1", "models"])
            | (_, ["v1", "tokens"]) => http::method_not_allowed("GET, POST"),
            _ => http::not_found(),
        };
        Ok(http::streamed(resp))
    }

    async fn json_body(&self, req: Request<Incoming>) -> ApiResult<Value> {
        let body = http::read_body(req, MAX_ADMIN_BODY, self.inner.body_timeout).await?;
        parse_json(&body)
    }

    /// The brand a request means: the one named, else the only one.
    async fn brand(&self, named: Option<&str>) -> ApiResult<String> {
        match named {
            Some(b) => Ok(b.to_string()),
            None => Ok(self.inner.store.default_brand().await?.account_id),
        }
    }

    async fn readyz(&self) -> HttpResponse {
        let db = self.inner.store.ping().await.is_ok();
        let hsm = self.inner.backend.hsm_healthy();
        let catalog = self.inner.catalog.is_loaded();
        let ok = db && hsm && catalog;
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        http::json_response(
            status,
            &json!({
                "status": if ok { "ready" } else { "not-ready" },
                "checks": {"database": db, "hsm": hsm, "catalog": catalog},
            }),
        )
    }

    fn metrics(&self) -> HttpResponse {
        let text = self
            .inner
            .metrics
            .as_ref()
            .map(PrometheusHandle::render)
            .unwrap_or_default();
        let mut resp = Response::new(http_body_util::Full::new(Bytes::from(text)));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        resp
    }

    async fn list_tokens(&self) -> ApiResult {
        let tokens = self.inner.store.tokens().await?;
        let items: Vec<Value> = tokens
            .iter()
            .map(|t| {
                json!({
                    "id": t.id,
                    "name": t.name,
                    "role": t.role.as_str(),
                    "created-at": rfc3339(t.created_at),
                    "expires-at": t.expires_at.map(rfc3339),
                    "last-used-at": t.last_used_at.map(rfc3339),
                    "revoked": t.revoked,
                })
            })
            .collect();
        Ok(http::json_response(
            StatusCode::OK,
            &json!({ "items": items }),
        ))
    }

    async fn create_token(&self, body: &Value, actor: &Actor) -> ApiResult {
        let name = str_field(body, "name")?
            .ok_or_else(|| ApiError::bad_request("\"name\" is required"))?;
        let role = match str_field(body, "role")? {
            None => Role::ReadOnly,
            Some(r) => r
                .parse::<Role>()
                .ok()
                .ok_or_else(|| ApiError::bad_request("\"role\" must be admin or read-only"))?,
        };
        let expires_at = str_field(body, "expires-at")?
            .map(|v| parse_time("expires-at", v))
            .transpose()?;
        let t = self
            .inner
            .store
            .create_token(name, role, expires_at, actor)
            .await?;
        Ok(http::json_response(
            StatusCode::CREATED,
            &json!({
                "id": t.info.id,
                "name": t.info.name,
                "role": role.as_str(),
                "expires-at": expires_at.map(rfc3339),
                "token": t.secret,
            }),
        ))
    }

    async fn list_keys(&self) -> ApiResult {
        let keys = self.inner.store.keys().await?;
        let items: Vec<Value> = keys.iter().map(key_json).collect();
        Ok(http::json_response(
            StatusCode::OK,
            &json!({ "items": items }),
        ))
    }

    async fn create_key(&self, body: &Value, actor: &Actor) -> ApiResult {
        let name = str_field(body, "name")?
            .ok_or_else(|| ApiError::bad_request("\"name\" is required"))?
            .to_string();
        let brand = self.brand(str_field(body, "brand-id")?).await?;
        let types: Vec<String> = match body.get("allowed-types") {
            None | Some(Value::Null) => vec!["serial".into()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| ApiError::bad_request("\"allowed-types\" must be strings"))?,
            Some(_) => return Err(ApiError::bad_request("\"allowed-types\" must be a list")),
        };
        let pattern = str_field(body, "model-pattern")?.unwrap_or("*");
        let key = self
            .inner
            .store
            .create_pending_key(&name, &brand, &types, pattern, actor)
            .await?;
        let inner = self.inner.clone();
        let actor = actor.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let result = inner.backend.generate_key(&name).await;
            metrics::histogram!("admin_keygen_seconds").record(started.elapsed().as_secs_f64());
            let recorded = match result {
                Ok(k) => {
                    inner
                        .store
                        .mark_key_ready(&name, &k.sha3_384, &k.public_key, &actor)
                        .await
                }
                Err(e) => {
                    tracing::warn!(key = %name, error = %e, "key generation failed");
                    inner.store.mark_key_failed(&name, &e, &actor).await
                }
            };
            if let Err(e) = recorded {
                tracing::error!(key = %name, error = %e, "cannot record the key generation result");
            }
        });
        let mut resp = http::json_response(StatusCode::ACCEPTED, &key_json(&key));
        if let Ok(v) = HeaderValue::from_str(&format!("/v1/keys/{}", key.name)) {
            resp.headers_mut().insert(hyper::header::LOCATION, v);
        }
        Ok(resp)
    }

    async fn register_key(&self, key: &str) -> ApiResult {
        let k = self.inner.store.key(key).await?;
        if k.status != crate::store::KeyStatus::Ready {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "key-not-ready",
                format!("key {:?} is {}", k.name, k.status.as_str()),
            ));
        }
        let text = self
            .inner
            .backend
            .account_key_request(&k)
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "hsm-unavailable", e))?;
        let mut resp = Response::new(http_body_util::Full::new(Bytes::from(text)));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ASSERTION_TYPE));
        Ok(resp)
    }

    async fn push_account_keys(&self, body: &Bytes, actor: &Actor) -> ApiResult {
        let known: Vec<String> = self
            .inner
            .store
            .account_assertions()
            .await?
            .into_iter()
            .map(|a| a.text)
            .collect();
        let items = self
            .inner
            .backend
            .verify_account_assertions(body, &known)
            .map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, "refused-assertion", r.0))?;
        if items.is_empty() {
            return Err(ApiError::bad_request("no assertions in the body"));
        }
        let stored = self
            .inner
            .store
            .put_account_assertions(&items, actor)
            .await?;
        let list: Vec<Value> = items
            .iter()
            .map(|a| json!({"type": a.kind.as_str(), "primary-key": a.primary_key, "account-id": a.account_id}))
            .collect();
        Ok(http::json_response(
            StatusCode::OK,
            &json!({"assertions": list, "stored": stored}),
        ))
    }

    async fn list_account_assertions(&self) -> ApiResult {
        let all = self.inner.store.account_assertions().await?;
        let items: Vec<Value> = all
            .iter()
            .map(|a| {
                json!({"type": a.kind.as_str(), "primary-key": a.primary_key,
                       "account-id": a.account_id, "revision": a.revision,
                       "pushed-at": rfc3339(a.pushed_at)})
            })
            .collect();
        Ok(http::json_response(
            StatusCode::OK,
            &json!({ "items": items }),
        ))
    }

    async fn active_policies(&self) -> ApiResult<HashMap<i64, SerialPolicy>> {
        Ok(self
            .inner
            .store
            .active_serial_policies()
            .await?
            .into_iter()
            .map(|p| (p.model_id, p))
            .collect())
    }

    async fn list_models(&self) -> ApiResult {
        let models = self.inner.store.models().await?;
        let active = self.active_policies().await?;
        let items: Vec<Value> = models
            .iter()
            .map(|m| model_json(m, active.get(&m.id)))
            .collect();
        Ok(http::json_response(
            StatusCode::OK,
            &json!({ "items": items }),
        ))
    }

    async fn get_model(&self, params: &HashMap<String, String>, name: &str) -> ApiResult {
        let brand = self
            .brand(params.get("brand-id").map(String::as_str))
            .await?;
        let m = self.inner.store.model(&brand, name).await?;
        let active = self.active_policies().await?;
        Ok(http::json_response(
            StatusCode::OK,
            &model_json(&m, active.get(&m.id)),
        ))
    }

    async fn create_model(&self, body: &Value, actor: &Actor) -> ApiResult {
        let name = str_field(body, "name")?
            .ok_or_else(|| ApiError::bad_request("\"name\" is required"))?;
        let brand = self.brand(str_field(body, "brand-id")?).await?;
        let api_key = str_field(body, "api-key")?
            .map(str::to_string)
            .unwrap_or_else(generate_api_key);
        let duplicate_policy = match str_field(body, "duplicate-policy")? {
            None => DuplicatePolicy::Refuse,
            Some(s) => s.parse::<DuplicatePolicy>().ok().ok_or_else(|| {
                ApiError::bad_request("\"duplicate-policy\" must be refuse or reissue")
            })?,
        };
        let serial_generation = match str_field(body, "serial-generation")? {
            None => SerialGeneration::Uuid,
            Some(s) => s.parse::<SerialGeneration>().ok().ok_or_else(|| {
                ApiError::bad_request(
                    "\"serial-generation\" must be uuid, prefix-counter or require-proposed",
                )
            })?,
        };
        let new = NewModel {
            brand_id: brand,
            name: name.to_string(),
            api_key,
            rate_limit_per_sec: int_field(body, "rate-limit")?.flatten(),
            rate_limit_burst: int_field(body, "rate-limit-burst")?.flatten(),
            duplicate_policy,
            serial_generation,
            serial_prefix: str_field(body, "serial-prefix")?.unwrap_or("").to_string(),
        };
        let m = self.inner.store.create_model(&new, actor).await?;
        Ok(http::json_response(
            StatusCode::CREATED,
            &model_json(&m, None),
        ))
    }

    async fn update_model(
        &self,
        params: &HashMap<String, String>,
        name: &str,
        body: &Value,
        actor: &Actor,
    ) -> ApiResult {
        let change = ModelChange {
            api_key: str_field(body, "api-key")?.map(str::to_string),
            enabled: match body.get("enabled") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(_) => return Err(ApiError::bad_request("\"enabled\" must be true or false")),
            },
            rate_limit_per_sec: int_field(body, "rate-limit")?,
            rate_limit_burst: int_field(body, "rate-limit-burst")?,
            duplicate_policy: str_field(body, "duplicate-policy")?
                .map(|s| {
                    s.parse::<DuplicatePolicy>().ok().ok_or_else(|| {
                        ApiError::bad_request("\"duplicate-policy\" must be refuse or reissue")
                    })
                })
                .transpose()?,
            serial_generation: str_field(body, "serial-generation")?
                .map(|s| {
                    s.parse::<SerialGeneration>().ok().ok_or_else(|| {
                        ApiError::bad_request(
                            "\"serial-generation\" must be uuid, prefix-counter or require-proposed",
                        )
                    })
                })
                .transpose()?,
            serial_prefix: str_field(body, "serial-prefix")?.map(str::to_string),
        };
        self.change_model(params, name, &change, actor).await
    }

    async fn change_model(
        &self,
        params: &HashMap<String, String>,
        name: &str,
        change: &ModelChange,
        actor: &Actor,
    ) -> ApiResult {
        let brand = self
            .brand(params.get("brand-id").map(String::as_str))
            .await?;
        let m = self
            .inner
            .store
            .update_model(&brand, name, change, actor)
            .await?;
        let active = self.active_policies().await?;
        Ok(http::json_response(
            StatusCode::OK,
            &model_json(&m, active.get(&m.id)),
        ))
    }

    async fn list_policies(
        &self,
        params: &HashMap<String, String>,
        model: Option<&str>,
    ) -> ApiResult {
        let brand = params.get("brand-id").map(String::as_str);
        if let Some(m) = model {
            // A named model must exist: an empty history and a typo must not look alike.
            let b = self.brand(brand).await?;
            self.inner.store.model(&b, m).await?;
        }
        let policies = self.inner.store.serial_policies(brand, model).await?;
        let mut newest: HashMap<i64, i32> = HashMap::new();
        for p in &policies {
            let e = newest.entry(p.model_id).or_insert(p.revision);
            *e = (*e).max(p.revision);
        }
        let items: Vec<Value> = policies
            .iter()
            .map(|p| policy_json(p, newest.get(&p.model_id) == Some(&p.revision)))
            .collect();
        Ok(http::json_response(
            StatusCode::OK,
            &json!({ "items": items }),
        ))
    }

    async fn create_policy(
        &self,
        params: &HashMap<String, String>,
        model: &str,
        body: &Value,
        actor: &Actor,
    ) -> ApiResult {
        let key = str_field(body, "key")?
            .ok_or_else(|| ApiError::bad_request("\"key\" (name or SHA3-384) is required"))?;
        let brand = self
            .brand(str_field(body, "brand-id")?.or(params.get("brand-id").map(String::as_str)))
            .await?;
        let p = self
            .inner
            .store
            .create_serial_policy(&brand, model, key, actor)
            .await?;
        Ok(http::json_response(
            StatusCode::CREATED,
            &policy_json(&p, true),
        ))
    }

    fn log_filter(params: &HashMap<String, String>) -> ApiResult<LogFilter> {
        Ok(LogFilter {
            brand_id: params.get("brand-id").cloned(),
            model: params.get("model").cloned().filter(|s| !s.is_empty()),
            serial_prefix: params.get("serial").cloned().filter(|s| !s.is_empty()),
            since: params
                .get("since")
                .map(|v| parse_time("since", v))
                .transpose()?,
            until: params
                .get("until")
                .map(|v| parse_time("until", v))
                .transpose()?,
        })
    }

    async fn signing_log(&self, params: &HashMap<String, String>) -> ApiResult {
        let filter = Self::log_filter(params)?;
        let before = params
            .get("before")
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::bad_request("\"before\" must be a row id"))
            })
            .transpose()?;
        let limit = params
            .get("limit")
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::bad_request("\"limit\" must be a number"))
            })
            .transpose()?
            .unwrap_or(100)
            .clamp(1, 1000);
        let rows = self
            .inner
            .store
            .signing_log_page(&filter, before, limit)
            .await?;
        let next = (rows.len() as i64 == limit)
            .then(|| rows.last().map(|r| r.id))
            .flatten();
        let items: Vec<Value> = rows.iter().map(|r| issuance_json(r, false)).collect();
        Ok(http::json_response(
            StatusCode::OK,
            &json!({"items": items, "next-before": next}),
        ))
    }

    async fn export(&self, params: &HashMap<String, String>) -> ApiResult<Response<StreamBody>> {
        let filter = Self::log_filter(params)?;
        let csv = match params.get("format").map(String::as_str) {
            None | Some("json") => false,
            Some("csv") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "format must be csv or json, not {other:?}"
                )));
            }
        };
        // Fail before the 200 when the database is down; later errors abort the body.
        self.inner.store.ping().await?;
        let (rows_tx, mut rows_rx) = tokio::sync::mpsc::channel(256);
        let (body_tx, body) = http::channel_body(16);
        let store = self.inner.store.clone();
        tokio::spawn(async move { store.export_signing_log(&filter, rows_tx).await });
        tokio::spawn(async move {
            let head = if csv { CSV_HEADER } else { "[" };
            if body_tx
                .send(Ok(Bytes::from_static(head.as_bytes())))
                .await
                .is_err()
            {
                return;
            }
            let mut first = true;
            let mut buf = String::new();
            while let Some(row) = rows_rx.recv().await {
                let row = match row {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "signing-log export failed mid-way");
                        let _ = body_tx
                            .send(Err(std::io::Error::other(e.to_string())))
                            .await;
                        return;
                    }
                };
                if csv {
                    buf.push_str(&issuance_csv(&row));
                } else {
                    if !first {
                        buf.push(',');
                    }
                    buf.push('\n');
                    buf.push_str(&issuance_json(&row, true).to_string());
                }
                first = false;
                // Coalesce small rows into chunks of about 64 KiB.
                if buf.len() >= 64 * 1024 || rows_rx.is_empty() {
                    let chunk = Bytes::from(std::mem::take(&mut buf));
                    if body_tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
            }
            if !csv {
                buf.push_str("\n]\n");
            }
            if !buf.is_empty() {
                let _ = body_tx.send(Ok(Bytes::from(buf))).await;
            }
        });
        let content_type = if csv {
            "text/csv; charset=utf-8"
        } else {
            "application/json"
        };
        let mut resp = Response::new(body);
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        Ok(resp)
    }
}

impl StreamingHandler for AdminApi {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<StreamBody> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let resp = match self.route(req, peer).await {
            Ok(resp) => resp,
            Err(e) => http::streamed(e.response()),
        };
        metrics::counter!("admin_requests_total", "status" => resp.status().as_u16().to_string())
            .increment(1);
        tracing::debug!(%method, %path, status = resp.status().as_u16(), "admin request");
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%2Fx"), "/x");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let mut s = String::new();
        csv_field(&mut s, "plain");
        s.push('|');
        csv_field(&mut s, "a,b");
        s.push('|');
        csv_field(&mut s, "say \"hi\"\nthere");
        assert_eq!(s, "plain|\"a,b\"|\"say \"\"hi\"\"\nthere\"");
    }

    #[test]
    fn generated_api_keys_are_long_and_distinct() {
        let a = generate_api_key();
        assert_eq!(a.len(), 43);
        assert_ne!(a, generate_api_key());
    }
}
