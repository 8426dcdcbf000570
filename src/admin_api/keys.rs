//! `/v1/keys`: signing keys generated on the HSM (answered 202 while the token works) or
//! imported onto it from a key file, their listing, disabling and enabling, and the
//! self-signed `account-key-request` for the brand store. A key's roles are those its pushed
//! account-key's `constraints` give it ([`Roles`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Response, StatusCode};

use super::backend::BackendError;
use super::error::{ApiError, ApiResult};
use super::wire::{ASSERTION_TYPE, CreateKey, ImportKey, KeyView, List, Query};
use super::{Answer, Shared, json, ok};
use crate::assertion::{AccountKey, Constraints, decode_as};
use crate::domain::{AssertionKind, KeyPurpose, KeyStatus};
use crate::http;
use crate::store::{Actor, SigningKey};

/// What a key may sign, from its pushed account-key.
#[derive(Clone, Debug)]
pub(super) enum Roles {
    /// No account-key was pushed for it.
    NotRegistered,
    /// Its account-key has no `constraints`: anything.
    Any,
    /// Its account-key's `constraints`.
    Constrained(Arc<Constraints>),
    /// Its stored account-key does not decode (never expected: it was verified when pushed).
    Unreadable(String),
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roles::NotRegistered => f.write_str("not registered"),
            Roles::Any => f.write_str("any"),
            Roles::Constrained(c) => c.fmt(f),
            Roles::Unreadable(e) => write!(f, "unreadable account-key: {e}"),
        }
    }
}

impl Roles {
    /// The roles an account-key's text gives its key.
    fn of_account_key(text: &str) -> Roles {
        match decode_as::<AccountKey>(text.as_bytes()) {
            Ok(k) => k
                .constraints()
                .map_or(Roles::Any, |c| Roles::Constrained(c.clone())),
            Err(e) => Roles::Unreadable(e),
        }
    }
}

/// The roles of every key with a pushed account-key, by SHA3-384 (read from the store, so a
/// push is seen at once).
pub(super) async fn pushed_roles(s: &Shared) -> ApiResult<HashMap<String, Roles>> {
    Ok(s.store
        .account_assertions()
        .await?
        .into_iter()
        .filter(|a| a.kind == AssertionKind::AccountKey)
        .map(|a| (a.primary_key, Roles::of_account_key(&a.text)))
        .collect())
}

/// The roles of `key` among `pushed`.
pub(super) fn roles_of(pushed: &HashMap<String, Roles>, key: &SigningKey) -> Roles {
    key.sha3_384
        .as_ref()
        .and_then(|id| pushed.get(id))
        .cloned()
        .unwrap_or(Roles::NotRegistered)
}

/// The key's view with its roles.
fn view_with_roles(k: SigningKey, pushed: &HashMap<String, Roles>) -> KeyView {
    let roles = roles_of(pushed, &k).to_string();
    KeyView {
        roles,
        ..KeyView::from(k)
    }
}

impl From<SigningKey> for KeyView {
    fn from(k: SigningKey) -> Self {
        KeyView {
            name: k.name,
            sha3_384: k.sha3_384,
            brand_id: k.brand_id,
            status: k.status,
            error: k.error,
            active: k.active,
            allowed_types: k.allowed_types,
            model_pattern: k.model_pattern,
            public_key: k.public_key,
            created_at: k.created_at,
            origin: k.origin,
            purpose: k.purpose,
            roles: Roles::NotRegistered.to_string(),
        }
    }
}

/// `GET /v1/keys`, each key with its roles.
pub(super) async fn list(s: &Shared, q: &Query) -> ApiResult<Answer> {
    let pushed = pushed_roles(s).await?;
    let brand = q.get("brand-id");
    ok(&List {
        items: s
            .store
            .keys()
            .await?
            .into_iter()
            .filter(|k| brand.is_none_or(|b| k.brand_id == b))
            .map(|k| view_with_roles(k, &pushed))
            .collect::<Vec<_>>(),
    })
}

/// `GET /v1/keys/{name-or-id}`.
pub(super) async fn show(s: &Shared, q: &Query, key: &str) -> ApiResult<Answer> {
    let k = key_of_brand(s, q, key).await?;
    ok(&view_with_roles(k, &pushed_roles(s).await?))
}

/// The key named `key` (name or SHA3-384 id), when it is the brand's the request names
/// (`?brand-id=`, always set for a brand-limited token); another brand's key is not found.
async fn key_of_brand(s: &Shared, q: &Query, key: &str) -> ApiResult<SigningKey> {
    let k = s.store.key(key).await?;
    match q.get("brand-id") {
        Some(b) if b != k.brand_id => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("brand {b} has no key {key:?}"),
        )),
        _ => Ok(k),
    }
}

/// `POST /v1/keys/{name-or-id}/disable` and `/enable`.
pub(super) async fn set_active(
    s: &Shared,
    q: &Query,
    key: &str,
    active: bool,
    actor: &Actor,
) -> ApiResult<Answer> {
    key_of_brand(s, q, key).await?;
    let k = if active {
        s.store.enable_key(key, actor).await?
    } else {
        s.store.disable_key(key, actor).await?
    };
    ok(&view_with_roles(k, &pushed_roles(s).await?))
}

/// `POST /v1/keys`: records the key as pending and generates it in the background; 202 with
/// `Location` to poll.
pub(super) async fn create(
    s: &Arc<Shared>,
    q: &Query,
    req: CreateKey,
    actor: &Actor,
) -> ApiResult<Answer> {
    let brand = s.brand(req.brand_id.as_deref(), q).await?;
    let key = match req.purpose.unwrap_or_default() {
        KeyPurpose::Assertions => {
            let types = req.allowed_types.unwrap_or_else(|| vec!["serial".into()]);
            let pattern = req.model_pattern.as_deref().unwrap_or("*");
            s.store
                .create_pending_key(&req.name, &brand, &types, pattern, actor)
                .await?
        }
        KeyPurpose::Audit => {
            if req.allowed_types.is_some() || req.model_pattern.is_some() {
                return Err(ApiError::bad_request(
                    "an audit key signs no assertion: allowed-types and model-pattern do not \
                     apply",
                ));
            }
            s.store
                .create_pending_audit_key(&req.name, &brand, actor)
                .await?
        }
    };
    tokio::spawn(generate(s.clone(), req.name, actor.clone()));
    let location = HeaderValue::from_str(&format!("/v1/keys/{}", key.name));
    let mut resp = json(StatusCode::ACCEPTED, &KeyView::from(key))?;
    if let Ok(v) = location {
        resp.headers_mut().insert(LOCATION, v);
    }
    Ok(resp)
}

/// `POST /v1/keys/import`: a private key file onto the token, answered 201 with the ready
/// key. Refusals, each before anything is written: a file that is not a usable RSA-4096+
/// private key (400, its own code from [`crate::keyfile::KeyFileError::code`]), a key or
/// name already held in the store or on the token (409 `key-already-held`,
/// `key-name-taken`). The name and id are reserved in the store first; when the token
/// refuses, the reservation goes again, and when the store cannot record the import, the
/// token objects go again.
pub(super) async fn import(
    s: &Shared,
    q: &Query,
    req: ImportKey,
    actor: &Actor,
) -> ApiResult<Answer> {
    let key = crate::keyfile::parse(req.private_key.as_bytes())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    drop(req.private_key);
    let name = req.name;
    let brand = s.brand(req.brand_id.as_deref(), q).await?;
    let id = key.public.key_id();
    let held = |m: String| ApiError::new(StatusCode::CONFLICT, "key-already-held", m);
    if let Some(k) = existing(s, &id).await? {
        return Err(held(format!("key {id} is already held, as {:?}", k.name)));
    }
    if existing(s, &name).await?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "key-name-taken",
            format!("a key named {name:?} already exists"),
        ));
    }
    s.store
        .reserve_imported_key(&name, &brand, &id, &key.public.encode())
        .await?;
    if let Err(e) = s.backend.import_key(&name, Arc::new(key)).await {
        if let Err(undo) = s.store.drop_reserved_key(&name).await {
            tracing::error!(key = %name, error = %undo, "cannot drop a failed import's row");
        }
        tracing::warn!(key = %name, error = %e, "key import refused by the HSM");
        return Err(match e {
            BackendError::Hsm(crate::hsm::HsmError::KeyExists(m)) => held(m),
            BackendError::Hsm(crate::hsm::HsmError::InvalidInput(m)) => {
                ApiError::new(StatusCode::BAD_REQUEST, "key-refused-by-token", m)
            }
            e => e.into(),
        });
    }
    let k = match s.store.finish_imported_key(&name, actor).await {
        Ok(k) => k,
        Err(e) => {
            if let Err(undo) = s.backend.delete_key(&id).await {
                tracing::error!(
                    key = %name, key_id = %id, error = %undo,
                    "import not recorded and its key not removed from the token: remove it by hand"
                );
            }
            if let Err(undo) = s.store.drop_reserved_key(&name).await {
                tracing::error!(key = %name, error = %undo, "cannot drop a failed import's row");
            }
            return Err(e.into());
        }
    };
    let location = HeaderValue::from_str(&format!("/v1/keys/{}", k.name));
    let mut resp = json(StatusCode::CREATED, &KeyView::from(k))?;
    if let Ok(v) = location {
        resp.headers_mut().insert(LOCATION, v);
    }
    Ok(resp)
}

/// The body of `POST /v1/keys/import`. The body's buffer is wiped after parsing when this
/// is its only owner (hyper's own read buffers are beyond reach).
pub(super) async fn import_body(
    s: &Shared,
    req: hyper::Request<hyper::body::Incoming>,
) -> ApiResult<ImportKey> {
    let body = s.raw_body(req).await?;
    let parsed = serde_json::from_slice(&body).map_err(|e| ApiError::bad_body(&e));
    if let Ok(mut owned) = body.try_into_mut() {
        zeroize::Zeroize::zeroize(&mut owned[..]);
    }
    parsed
}

/// The key with this name or id, unless it is a failed one (which gives way).
async fn existing(s: &Shared, name_or_id: &str) -> ApiResult<Option<SigningKey>> {
    match s.store.key(name_or_id).await {
        Ok(k) if k.status == KeyStatus::Failed => Ok(None),
        Ok(k) => Ok(Some(k)),
        Err(crate::store::StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Generates key `name` on the HSM and records the outcome.
async fn generate(s: Arc<Shared>, name: String, actor: Actor) {
    let started = std::time::Instant::now();
    let result = s.backend.generate_key(&name).await;
    metrics::histogram!("admin_keygen_seconds").record(started.elapsed().as_secs_f64());
    let recorded = match result {
        Ok(k) => {
            s.store
                .mark_key_ready(&name, &k.sha3_384, &k.public_key, &actor)
                .await
        }
        Err(e) => {
            tracing::warn!(key = %name, error = %e, "key generation failed");
            s.store.mark_key_failed(&name, &e.to_string(), &actor).await
        }
    };
    if let Err(e) = recorded {
        tracing::error!(key = %name, error = %e, "cannot record the key generation result");
    }
}

/// `POST /v1/keys/{name-or-id}/register`: the key's `account-key-request`, signed by itself.
pub(super) async fn register(s: &Shared, q: &Query, key: &str) -> ApiResult<Answer> {
    let k = key_of_brand(s, q, key).await?;
    if k.status != KeyStatus::Ready {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "key-not-ready",
            format!("key {:?} is {}", k.name, k.status),
        ));
    }
    if k.purpose == KeyPurpose::Audit {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "key-purpose-audit",
            format!(
                "key {:?} is an audit key: it signs the log's checkpoints, never an assertion",
                k.name
            ),
        ));
    }
    let text = s.backend.account_key_request(&k).await?;
    let mut resp = Response::new(http_body_util::Full::new(Bytes::from(text)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ASSERTION_TYPE));
    Ok(http::streamed(resp))
}
