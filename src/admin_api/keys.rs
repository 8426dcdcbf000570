//! `/v1/keys`: signing keys generated on the HSM (answered 202 while the token works), their
//! listing, disabling, and the self-signed `account-key-request` for the brand store. A key's
//! roles are those its pushed account-key's `constraints` give it ([`Roles`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Response, StatusCode};

use super::error::{ApiError, ApiResult};
use super::wire::{ASSERTION_TYPE, CreateKey, KeyView, List};
use super::{Answer, Shared, json, ok};
use crate::assertion::{AccountKey, Constraints, decode};
use crate::domain::{AssertionKind, KeyStatus};
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
        match decode(text.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|a| AccountKey::try_from(a).map_err(|e| e.to_string()))
        {
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
            roles: Roles::NotRegistered.to_string(),
        }
    }
}

/// `GET /v1/keys`, each key with its roles.
pub(super) async fn list(s: &Shared) -> ApiResult<Answer> {
    let pushed = pushed_roles(s).await?;
    ok(&List {
        items: s
            .store
            .keys()
            .await?
            .into_iter()
            .map(|k| view_with_roles(k, &pushed))
            .collect::<Vec<_>>(),
    })
}

/// `GET /v1/keys/{name-or-id}`.
pub(super) async fn show(s: &Shared, key: &str) -> ApiResult<Answer> {
    let k = s.store.key(key).await?;
    ok(&view_with_roles(k, &pushed_roles(s).await?))
}

/// `POST /v1/keys/{name-or-id}/disable`.
pub(super) async fn disable(s: &Shared, key: &str, actor: &Actor) -> ApiResult<Answer> {
    let k = s.store.disable_key(key, actor).await?;
    ok(&view_with_roles(k, &pushed_roles(s).await?))
}

/// `POST /v1/keys`: records the key as pending and generates it in the background; 202 with
/// `Location` to poll.
pub(super) async fn create(s: &Arc<Shared>, req: CreateKey, actor: &Actor) -> ApiResult<Answer> {
    let brand = s.brand(req.brand_id.as_deref()).await?;
    let types = req.allowed_types.unwrap_or_else(|| vec!["serial".into()]);
    let pattern = req.model_pattern.as_deref().unwrap_or("*");
    let key = s
        .store
        .create_pending_key(&req.name, &brand, &types, pattern, actor)
        .await?;
    tokio::spawn(generate(s.clone(), req.name, actor.clone()));
    let location = HeaderValue::from_str(&format!("/v1/keys/{}", key.name));
    let mut resp = json(StatusCode::ACCEPTED, &KeyView::from(key))?;
    if let Ok(v) = location {
        resp.headers_mut().insert(LOCATION, v);
    }
    Ok(resp)
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
pub(super) async fn register(s: &Shared, key: &str) -> ApiResult<Answer> {
    let k = s.store.key(key).await?;
    if k.status != KeyStatus::Ready {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "key-not-ready",
            format!("key {:?} is {}", k.name, k.status),
        ));
    }
    let text = s.backend.account_key_request(&k).await?;
    let mut resp = Response::new(http_body_util::Full::new(Bytes::from(text)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ASSERTION_TYPE));
    Ok(http::streamed(resp))
}
