//! Serial policies: which key signs a model's serials, as numbered revisions (newest active).
//! `GET/POST /v1/models/{name}/serial-policies` and `GET /v1/serial-policies?model=`.

use std::collections::HashMap;

use hyper::StatusCode;

use super::error::ApiResult;
use super::wire::{CreatePolicy, List, PolicyView, Query};
use super::{Answer, Shared, json, ok};
use crate::store::{Actor, SerialPolicy};

fn view(p: &SerialPolicy, active: bool) -> PolicyView {
    PolicyView {
        brand_id: p.brand_id.clone(),
        model: p.model.clone(),
        revision: p.revision,
        key: p.key_sha3_384.clone(),
        key_name: p.key_name.clone(),
        created_at: p.created_at,
        created_by: p.created_by.clone(),
        active,
    }
}

/// The revisions of `model` (which must exist), or of every model.
pub(super) async fn list(s: &Shared, q: &Query, model: Option<&str>) -> ApiResult<Answer> {
    let brand = q.get("brand-id");
    if let Some(m) = model {
        // A named model must exist: an empty history and a typo must not look alike.
        let b = s.brand(brand).await?;
        s.store.model(&b, m).await?;
    }
    let policies = s.store.serial_policies(brand, model).await?;
    let mut newest: HashMap<i64, i32> = HashMap::new();
    for p in &policies {
        let e = newest.entry(p.model_id).or_insert(p.revision);
        *e = (*e).max(p.revision);
    }
    ok(&List {
        items: policies
            .iter()
            .map(|p| view(p, newest.get(&p.model_id) == Some(&p.revision)))
            .collect(),
    })
}

/// `POST /v1/models/{name}/serial-policies`: a new revision, active at once (201).
pub(super) async fn create(
    s: &Shared,
    q: &Query,
    model: &str,
    req: CreatePolicy,
    actor: &Actor,
) -> ApiResult<Answer> {
    let brand = s
        .brand(req.brand_id.as_deref().or(q.get("brand-id")))
        .await?;
    let p = s
        .store
        .create_serial_policy(&brand, model, &req.key, actor)
        .await?;
    json(StatusCode::CREATED, &view(&p, true))
}
