//! The admin listener: JSON over HTTP for keys, models, serial policies, pushed account keys,
//! tokens, the signing log and the audit log, plus `/metrics`, `/healthz` and `/readyz`.
//!
//! Owns: the route table and authentication. Each domain has a file of handlers (`keys`,
//! `models`, `policies`, `accounts`, `tokens`, `signing_log`, `audit`, `probes`); each handler
//! takes a typed request from [`wire`], calls the store or the [`Backend`], and answers a
//! typed view from [`wire`]. Failures become `error::ApiError`, answered as
//! `{"message", "error_list": [{"code", "message"}]}`. Business rules live in the store
//! (constraints) and the backend (HSM, codec).
//!
//! Every route but `/healthz` and `/readyz` needs `Authorization: Bearer <token>`: 401 when
//! the token is missing, unknown, revoked or expired; 403 when a read-only token asks for a
//! change; 429 with `Retry-After` while the client's address is shut out for sending too many
//! bad tokens ([`throttle`]). Tokens are looked up by their SHA-256 in the store and never
//! logged.

mod accounts;
mod audit;
pub mod backend;
mod brands;
mod error;
mod keys;
mod model_sign;
mod models;
mod policies;
mod probes;
mod remodel_policies;
mod signing;
mod signing_log;
mod system_users;
pub mod throttle;
mod tokens;
pub mod ui;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use rand::RngCore;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use backend::{Backend, BackendError, GeneratedKey, HsmBackend, Refusal, Unavailable};
pub use signing_log::issuance_csv;
pub use throttle::{AuthThrottle, ThrottleConfig};
pub use wire::ASSERTION_TYPE;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::domain::Role;
use crate::http::{self, Handler, StreamBody};
use crate::store::{Actor, SerialPolicy, Store, TokenInfo};
use error::{ApiError, ApiResult};
use wire::Query;

/// Largest admin request body (an account-key push is a few KiB).
pub const MAX_ADMIN_BODY: usize = 1024 * 1024;

/// Every answer: a body that may stream (the export) or not.
type Answer = Response<StreamBody>;

/// The admin listener's handler; cheap to clone.
#[derive(Clone)]
pub struct AdminApi {
    shared: Arc<Shared>,
}

/// What every handler works with.
struct Shared {
    store: Store,
    catalog: Arc<Catalog>,
    backend: Arc<dyn Backend>,
    metrics: Option<PrometheusHandle>,
    body_timeout: Duration,
    throttle: AuthThrottle,
    /// The dashboard's sessions (shared by every copy of the handler).
    ui: Arc<ui::Ui>,
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

/// A generated API key: 32 random bytes, unpadded base64url (43 characters).
pub fn generate_api_key() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A JSON answer. The view goes through `serde_json::Value` (sorted keys), so answers read
/// the same as they always have.
fn json<T: Serialize>(status: StatusCode, view: &T) -> ApiResult<Answer> {
    let value = serde_json::to_value(view).map_err(|e| ApiError::unserializable(&e))?;
    Ok(http::streamed(http::json_response(status, &value)))
}

/// 200 with `view`.
fn ok<T: Serialize>(view: &T) -> ApiResult<Answer> {
    json(StatusCode::OK, view)
}

/// 200 with `{"items": [...]}`, each row as its view.
fn list_of<R, V: Serialize + From<R>>(rows: Vec<R>) -> ApiResult<Answer> {
    ok(&wire::List {
        items: rows.into_iter().map(V::from).collect::<Vec<V>>(),
    })
}

/// A path segment, percent-decoded (`/v1/keys/a%2Fb` names `a/b`).
fn path_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

impl Shared {
    /// The request body as the route's request type; an empty body is `{}`.
    async fn body<T: DeserializeOwned>(&self, req: Request<Incoming>) -> ApiResult<T> {
        let bytes = self.raw_body(req).await?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map_err(|e| ApiError::bad_body(&e))
    }

    /// The request body as it came (an assertion stream).
    async fn raw_body(&self, req: Request<Incoming>) -> ApiResult<bytes::Bytes> {
        Ok(http::read_body(req, MAX_ADMIN_BODY, self.body_timeout).await?)
    }

    /// The brand a request means: the one its body names, else the one its query names
    /// (`?brand-id=`; for a brand-limited token the router checked or set it), else the only
    /// one. A body and a query naming different brands are refused.
    async fn brand(&self, body: Option<&str>, q: &Query) -> ApiResult<String> {
        match (body, q.get("brand-id")) {
            (Some(b), Some(qb)) if b != qb => Err(ApiError::bad_request(format!(
                "the body names brand {b:?} and the query brand {qb:?}"
            ))),
            (Some(b), _) | (None, Some(b)) => Ok(b.to_string()),
            (None, None) => Ok(self.store.default_brand().await?.account_id),
        }
    }

    /// 429 while `peer` is shut out for bad tokens.
    fn throttle_check(&self, peer: SocketAddr) -> ApiResult<()> {
        self.throttle
            .check(peer.ip(), Instant::now())
            .map_err(|wait| {
                metrics::counter!("admin_auth_throttled_total").increment(1);
                ApiError::throttled(wait)
            })
    }

    /// The identity of `token`; an unknown one counts against `peer`'s address (401).
    async fn token_info(&self, token: &str, peer: SocketAddr) -> ApiResult<TokenInfo> {
        match self.store.authenticate(token).await? {
            Some(info) => Ok(info),
            None => {
                metrics::counter!("admin_auth_failures_total").increment(1);
                if let Some(delay) = self.throttle.failed(peer.ip(), Instant::now()) {
                    tracing::warn!(
                        client = %peer.ip(),
                        delay_ms = delay.as_millis() as u64,
                        "admin: too many bad tokens from this address; refusing it for a while"
                    );
                }
                Err(ApiError::unauthorized())
            }
        }
    }

    /// Each model's newest serial policy, by model id.
    async fn active_policies(&self) -> ApiResult<HashMap<i64, SerialPolicy>> {
        Ok(self
            .store
            .active_serial_policies()
            .await?
            .into_iter()
            .map(|p| (p.model_id, p))
            .collect())
    }
}

/// What a token limited to `brands` may reach: the routes of one brand, named with
/// `?brand-id=` (its only brand when it has one and names none); 403 for another brand and
/// for what belongs to no one brand (tokens, the audit log, brands, account-key pushes).
fn limit_to_brands(
    brands: &[String],
    method: &Method,
    segments: &[&str],
    q: &mut Query,
) -> ApiResult<()> {
    let list = brands.join(", ");
    match (method, segments) {
        (_, ["metrics"]) => return Ok(()),
        (_, ["v1", "tokens" | "audit-log" | "brands" | "checkpoints", ..])
        | (&Method::POST, ["v1", "account-keys"]) => {
            return Err(ApiError::other_brand(format!(
                "this token is limited to brands {list}: it may not use /{}",
                segments.join("/")
            )));
        }
        _ => {}
    }
    match q.get("brand-id") {
        Some(b) if brands.iter().any(|x| x == b) => Ok(()),
        Some(b) => Err(ApiError::other_brand(format!(
            "this token is limited to brands {list}, not {b:?}"
        ))),
        None => match brands {
            [only] => {
                let only = only.clone();
                q.set("brand-id", &only);
                Ok(())
            }
            _ => Err(ApiError::bad_request(format!(
                "this token is limited to brands {list}; name one with --brand (\"brand-id\")"
            ))),
        },
    }
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
            shared: Arc::new(Shared {
                store,
                catalog,
                backend,
                metrics,
                body_timeout: limits.body_timeout,
                throttle: AuthThrottle::new(limits.throttle),
                ui: Arc::default(),
            }),
        }
    }

    /// The same handler with the dashboard's cookies marked `Secure` (the admin listener
    /// speaks TLS).
    pub fn with_secure_cookies(self, secure: bool) -> Self {
        self.shared.ui.set_secure(secure);
        self
    }

    /// The same handler with other limits (and an empty bad-token table).
    pub fn with_limits(self, limits: AdminLimits) -> Self {
        let s = &self.shared;
        AdminApi {
            shared: Arc::new(Shared {
                store: s.store.clone(),
                catalog: s.catalog.clone(),
                backend: s.backend.clone(),
                metrics: s.metrics.clone(),
                body_timeout: limits.body_timeout,
                throttle: AuthThrottle::new(limits.throttle),
                ui: s.ui.clone(),
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
        self.shared.throttle_check(peer)?;
        let token = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(ApiError::unauthorized)?;
        self.shared.token_info(token, peer).await
    }

    /// The route table: probes first (no token), then every authenticated route.
    async fn route(&self, req: Request<Incoming>, peer: SocketAddr) -> ApiResult<Answer> {
        let s = &self.shared;
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        if ui::owns(&path) {
            return Ok(ui::route(s, req, peer).await);
        }
        if let Some(answer) = probes::unauthenticated(s, &method, &path).await {
            return answer;
        }
        let token = self.authenticate(&req, peer).await?;
        if !matches!(method, Method::GET | Method::HEAD) && token.role != Role::Admin {
            return Err(ApiError::read_only());
        }
        let mut q = Query::parse(req.uri().query().unwrap_or_default());
        let segments: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .map(path_segment)
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        if let Some(brands) = &token.brands {
            limit_to_brands(brands, &method, &segments, &mut q)?;
        }
        let actor = Actor(token.name);
        let a = &actor;
        use Method as M;
        match (&method, segments.as_slice()) {
            (&M::GET, ["metrics"]) => Ok(probes::metrics(s)),
            (&M::GET, ["v1", "brands"]) => brands::list(s).await,
            (&M::POST, ["v1", "brands"]) => brands::create(s, s.body(req).await?, a).await,
            (&M::GET, ["v1", "keys"]) => keys::list(s, &q).await,
            (&M::POST, ["v1", "keys"]) => keys::create(s, &q, s.body(req).await?, a).await,
            (&M::POST, ["v1", "keys", "import"]) => {
                keys::import(s, &q, keys::import_body(s, req).await?, a).await
            }
            (&M::GET, ["v1", "keys", key]) => keys::show(s, &q, key).await,
            (&M::POST, ["v1", "keys", key, action @ ("enable" | "disable")]) => {
                keys::set_active(s, &q, key, *action == "enable", a).await
            }
            (&M::POST, ["v1", "keys", key, "register"]) => keys::register(s, &q, key).await,
            (&M::GET, ["v1", "account-keys"]) => accounts::list(s, &q).await,
            (&M::GET, ["v1", "account-keys", "export"]) => accounts::export(s, &q).await,
            (&M::POST, ["v1", "account-keys"]) => {
                accounts::push(s, s.raw_body(req).await?, a).await
            }
            (&M::POST, ["v1", "model-assertions"]) => {
                model_sign::sign(s, &q, s.body(req).await?, a).await
            }
            (&M::GET, ["v1", "system-users"]) => system_users::list(s, &q).await,
            (&M::POST, ["v1", "system-users"]) => {
                system_users::create(s, &q, s.body(req).await?, a).await
            }
            (&M::GET, ["v1", "models"]) => models::list(s, &q).await,
            (&M::POST, ["v1", "models"]) => models::create(s, &q, s.body(req).await?, a).await,
            (&M::GET, ["v1", "models", name]) => models::show(s, &q, name).await,
            (&M::PATCH, ["v1", "models", name]) => {
                let change = models::patch(s.body(req).await?)?;
                models::change(s, &q, name, change, a).await
            }
            (&M::DELETE, ["v1", "models", name]) => models::delete(s, &q, name, a).await,
            (&M::POST, ["v1", "models", name, "api-key"]) => {
                let change = models::new_api_key(s.body(req).await?);
                models::change(s, &q, name, change, a).await
            }
            (&M::POST, ["v1", "models", name, action @ ("enable" | "disable")]) => {
                let change = models::enable(*action == "enable");
                models::change(s, &q, name, change, a).await
            }
            (&M::GET, ["v1", "models", name, "serial-policies"]) => {
                policies::list(s, &q, Some(name)).await
            }
            (&M::POST, ["v1", "models", name, "serial-policies"]) => {
                policies::create(s, &q, name, s.body(req).await?, a).await
            }
            (&M::GET, ["v1", "serial-policies"]) => policies::list(s, &q, q.get("model")).await,
            (m, ["v1", "remodel-policies"]) => remodel_policies::route(s, m, &q, req, a).await,
            (&M::GET, ["v1", "signing-log"]) => signing_log::page(s, &q).await,
            (&M::GET, ["v1", "signing-log", "export"]) => signing_log::export(s, &q).await,
            (&M::GET, ["v1", "tokens"]) => tokens::list(s).await,
            (&M::POST, ["v1", "tokens"]) => tokens::create(s, s.body(req).await?, a).await,
            (&M::POST, ["v1", "tokens", id, "revoke"]) => tokens::revoke(s, id, a).await,
            (&M::GET, ["v1", "audit-log"]) => audit::list(s, &q).await,
            (&M::GET, ["v1", "audit-log", "export"]) => audit::export(s).await,
            (&M::GET, ["v1", "checkpoints"]) => audit::checkpoints(s).await,
            (_, ["metrics"] | ["v1", "keys", _] | ["v1", "audit-log" | "checkpoints"]) => {
                Ok(http::streamed(http::method_not_allowed("GET")))
            }
            (
                _,
                [
                    "v1",
                    "brands" | "keys" | "account-keys" | "models" | "tokens",
                ],
            ) => Ok(http::streamed(http::method_not_allowed("GET, POST"))),
            _ => Ok(http::streamed(http::not_found())),
        }
    }
}

impl Handler for AdminApi {
    type Body = StreamBody;

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
    fn path_segments_are_percent_decoded() {
        assert_eq!(path_segment("a%20b"), "a b");
        assert_eq!(path_segment("100%"), "100%");
        assert_eq!(path_segment("%2Fx"), "/x");
        assert_eq!(path_segment("%zz"), "%zz");
    }

    #[test]
    fn generated_api_keys_are_long_and_distinct() {
        let a = generate_api_key();
        assert_eq!(a.len(), 43);
        assert_ne!(a, generate_api_key());
    }
}
