//! Remodel policies: which devices may re-register from one model to another.
//! `GET /v1/remodel-policies[?to-model=]`, `POST /v1/remodel-policies` (201),
//! `DELETE /v1/remodel-policies?from-brand=&from-model=&to-model=` (200 with what it was).
//!
//! A policy belongs to the brand of the model devices move to (the request's brand). Its
//! original brand is any brand whose serials verify against the trusted roots and pushed
//! account-keys (the policy's own brand when not named); when it is one of this vault's
//! brands, the original model must exist, so a typo is a 404 rather than a policy that never
//! matches. Each change commits with its audit-log row and NOTIFY (the store does it).

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::error::{ApiError, ApiResult};
use super::wire::{CreateRemodelPolicy, Query, RemodelPolicyView};
use super::{Answer, Shared, json, list_of, ok};
use crate::http;
use crate::store::{Actor, NewRemodelPolicy, RemodelPolicy};

impl From<RemodelPolicy> for RemodelPolicyView {
    fn from(p: RemodelPolicy) -> Self {
        RemodelPolicyView {
            brand_id: p.brand_id,
            from_brand: p.from_brand_id,
            from_model: p.from_model,
            to_model: p.to_model,
            serial: p.serial_pattern,
            created_at: p.created_at,
            created_by: p.created_by,
        }
    }
}

/// `/v1/remodel-policies`, by method.
pub(super) async fn route(
    s: &Shared,
    method: &Method,
    q: &Query,
    req: Request<Incoming>,
    actor: &Actor,
) -> ApiResult<Answer> {
    match *method {
        Method::GET => list(s, q).await,
        Method::POST => create(s, q, s.body(req).await?, actor).await,
        Method::DELETE => delete(s, q, actor).await,
        _ => Ok(http::streamed(http::method_not_allowed(
            "GET, POST, DELETE",
        ))),
    }
}

/// `GET`: every policy (of the named brand; moving to `to-model` when named), oldest first.
async fn list(s: &Shared, q: &Query) -> ApiResult<Answer> {
    let policies = s
        .store
        .remodel_policies(q.get("brand-id"), q.get("to-model"))
        .await?;
    list_of::<_, RemodelPolicyView>(policies)
}

/// `POST`: 201; 404 for an unknown model, 409 when the move has a policy already.
async fn create(
    s: &Shared,
    q: &Query,
    req: CreateRemodelPolicy,
    actor: &Actor,
) -> ApiResult<Answer> {
    let brand = s.brand(None, q).await?;
    let from_brand = req.from_brand.unwrap_or_else(|| brand.clone());
    if s.store
        .brands()
        .await?
        .iter()
        .any(|b| b.account_id == from_brand)
    {
        s.store.model(&from_brand, &req.from_model).await?;
    }
    let new = NewRemodelPolicy {
        from_brand_id: from_brand,
        from_model: req.from_model,
        to_model: req.to_model,
        serial_pattern: req.serial,
    };
    let p = s.store.create_remodel_policy(&brand, &new, actor).await?;
    json(StatusCode::CREATED, &RemodelPolicyView::from(p))
}

/// `DELETE`: the policy of the move the query names; 404 when there is none.
async fn delete(s: &Shared, q: &Query, actor: &Actor) -> ApiResult<Answer> {
    let brand = s.brand(None, q).await?;
    let need = |name: &str| {
        q.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::bad_request(format!("name the move's {name:?}")))
    };
    let (from_model, to_model) = (need("from-model")?, need("to-model")?);
    let from_brand = q.get("from-brand").unwrap_or(&brand);
    let p = s
        .store
        .delete_remodel_policy(&brand, from_brand, from_model, to_model, actor)
        .await?;
    ok(&RemodelPolicyView::from(p))
}
