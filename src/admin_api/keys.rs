//! `/v1/keys`: signing keys generated on the HSM (answered 202 while the token works), their
//! listing, disabling, and the self-signed `account-key-request` for the brand store.

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Response, StatusCode};

use super::error::{ApiError, ApiResult};
use super::wire::{ASSERTION_TYPE, CreateKey, KeyView};
use super::{Answer, Shared, json, list_of, ok};
use crate::domain::KeyStatus;
use crate::http;
use crate::store::{Actor, SigningKey};

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
        }
    }
}

/// `GET /v1/keys`.
pub(super) async fn list(s: &Shared) -> ApiResult<Answer> {
    list_of::<_, KeyView>(s.store.keys().await?)
}

/// `GET /v1/keys/{name-or-id}`.
pub(super) async fn show(s: &Shared, key: &str) -> ApiResult<Answer> {
    ok(&KeyView::from(s.store.key(key).await?))
}

/// `POST /v1/keys/{name-or-id}/disable` and `/enable`.
pub(super) async fn set_active(
    s: &Shared,
    key: &str,
    active: bool,
    actor: &Actor,
) -> ApiResult<Answer> {
    let k = if active {
        s.store.enable_key(key, actor).await?
    } else {
        s.store.disable_key(key, actor).await?
    };
    ok(&KeyView::from(k))
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
