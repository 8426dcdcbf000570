//! `/v1/models`: device models (their API key, rate limit, duplicate policy and serial
//! generation), changed by PATCH or the `api-key`/`enable`/`disable` actions, deleted only
//! while no serial was issued.

use hyper::StatusCode;

use super::error::{ApiError, ApiResult};
use super::wire::{
    ActivePolicyView, CreateModel, Deleted, List, ModelPatch, ModelView, NewApiKey, Query,
    RateLimitView,
};
use super::{Answer, Shared, generate_api_key, json, ok};
use crate::store::{Actor, Model, ModelChange, NewModel, SerialPolicy};

impl ModelView {
    fn new(m: &Model, active: Option<&SerialPolicy>) -> Self {
        ModelView {
            brand_id: m.brand_id.clone(),
            name: m.name.clone(),
            api_key: m.api_key.clone(),
            enabled: m.enabled,
            rate_limit: RateLimitView {
                per_second: m.rate_limit_per_sec,
                burst: m.rate_limit_burst,
            },
            duplicate_policy: m.duplicate_policy,
            serial_generation: m.serial_generation,
            serial_prefix: m.serial_prefix.clone(),
            created_at: m.created_at,
            active_policy: active.map(|p| ActivePolicyView {
                revision: p.revision,
                key: p.key_sha3_384.clone(),
                key_name: p.key_name.clone(),
            }),
        }
    }
}

/// A rate-limit field: a positive 32-bit integer.
fn positive(name: &str, v: Option<u32>) -> ApiResult<Option<i32>> {
    v.map(|v| {
        i32::try_from(v)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| ApiError::bad_request(format!("\"{name}\" must be a positive integer")))
    })
    .transpose()
}

/// `GET /v1/models`.
pub(super) async fn list(s: &Shared, q: &Query) -> ApiResult<Answer> {
    let models = s.store.models().await?;
    let active = s.active_policies().await?;
    let brand = q.get("brand-id");
    ok(&List {
        items: models
            .iter()
            .filter(|m| brand.is_none_or(|b| m.brand_id == b))
            .map(|m| ModelView::new(m, active.get(&m.id)))
            .collect(),
    })
}

/// `GET /v1/models/{name}?brand-id=`.
pub(super) async fn show(s: &Shared, q: &Query, name: &str) -> ApiResult<Answer> {
    let brand = s.brand(None, q).await?;
    let m = s.store.model(&brand, name).await?;
    let active = s.active_policies().await?;
    ok(&ModelView::new(&m, active.get(&m.id)))
}

/// `POST /v1/models`: 201.
pub(super) async fn create(
    s: &Shared,
    q: &Query,
    req: CreateModel,
    actor: &Actor,
) -> ApiResult<Answer> {
    let new = NewModel {
        brand_id: s.brand(req.brand_id.as_deref(), q).await?,
        name: req.name,
        api_key: req.api_key.unwrap_or_else(generate_api_key),
        rate_limit_per_sec: positive("rate-limit", req.rate_limit)?,
        rate_limit_burst: positive("rate-limit-burst", req.rate_limit_burst)?,
        duplicate_policy: req.duplicate_policy.unwrap_or_default(),
        serial_generation: req.serial_generation.unwrap_or_default(),
        serial_prefix: req.serial_prefix.unwrap_or_default(),
    };
    let m = s.store.create_model(&new, actor).await?;
    json(StatusCode::CREATED, &ModelView::new(&m, None))
}

/// The change `PATCH /v1/models/{name}` asks for.
pub(super) fn patch(req: ModelPatch) -> ApiResult<ModelChange> {
    let limit = |name, v: Option<Option<u32>>| v.map(|v| positive(name, v)).transpose();
    Ok(ModelChange {
        api_key: req.api_key,
        enabled: req.enabled,
        rate_limit_per_sec: limit("rate-limit", req.rate_limit)?,
        rate_limit_burst: limit("rate-limit-burst", req.rate_limit_burst)?,
        duplicate_policy: req.duplicate_policy,
        serial_generation: req.serial_generation,
        serial_prefix: req.serial_prefix,
    })
}

/// The change `POST /v1/models/{name}/api-key` asks for: the key given, or a generated one.
pub(super) fn new_api_key(req: NewApiKey) -> ModelChange {
    ModelChange {
        api_key: Some(req.api_key.unwrap_or_else(generate_api_key)),
        ..ModelChange::default()
    }
}

/// The change `POST /v1/models/{name}/enable` (or `disable`) asks for.
pub(super) fn enable(enabled: bool) -> ModelChange {
    ModelChange {
        enabled: Some(enabled),
        ..ModelChange::default()
    }
}

/// Applies `change` to model `name` (of the `brand-id` query parameter, else the only brand).
pub(super) async fn change(
    s: &Shared,
    q: &Query,
    name: &str,
    change: ModelChange,
    actor: &Actor,
) -> ApiResult<Answer> {
    let brand = s.brand(None, q).await?;
    let m = s.store.update_model(&brand, name, &change, actor).await?;
    let active = s.active_policies().await?;
    ok(&ModelView::new(&m, active.get(&m.id)))
}

/// `DELETE /v1/models/{name}?brand-id=`: only while no serial was issued (409 after).
pub(super) async fn delete(s: &Shared, q: &Query, name: &str, actor: &Actor) -> ApiResult<Answer> {
    let brand = s.brand(None, q).await?;
    s.store.delete_model(&brand, name, actor).await?;
    ok(&Deleted {
        deleted: name.to_string(),
    })
}
