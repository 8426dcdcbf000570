//! Serial policies: which key signs a model's serials, as numbered revisions (newest active).
//! `GET/POST /v1/models/{name}/serial-policies` and `GET /v1/serial-policies?model=`.
//!
//! A new revision is refused (409 `key-role-refused`) when the constraints of the key's pushed
//! account-key admit no serial of the model: a device with a current snapd would refuse what
//! it signed. Registration matches every serial again before signing, for account-keys
//! pushed after the policy.

use std::collections::HashMap;

use hyper::StatusCode;

use super::error::{ApiError, ApiResult};
use super::keys::{Roles, pushed_roles, roles_of};
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
        let b = s.brand(None, q).await?;
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
    let brand = s.brand(req.brand_id.as_deref(), q).await?;
    check_roles(s, &brand, model, &req.key).await?;
    let p = s
        .store
        .create_serial_policy(&brand, model, &req.key, actor)
        .await?;
    json(StatusCode::CREATED, &view(&p, true))
}

/// Refuses (409 `key-role-refused`) a key whose pushed account-key's constraints admit no
/// serial of `brand`/`model`, naming the constraints; an unknown model or key is left to the
/// store's own answer.
async fn check_roles(s: &Shared, brand: &str, model: &str, key: &str) -> ApiResult<()> {
    let m = s.store.model(brand, model).await?;
    let k = s.store.key(key).await?;
    let refuse = |why: String| {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "key-role-refused",
            format!(
                "key {:?} may not sign serials for model {}/{}: {why}",
                k.name, m.brand_id, m.name
            ),
        ))
    };
    if k.purpose == crate::domain::KeyPurpose::Audit {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "key-purpose-audit",
            format!(
                "key {:?} is an audit key: it signs the log's checkpoints, never an assertion",
                k.name
            ),
        ));
    }
    match roles_of(&pushed_roles(s).await?, &k) {
        Roles::NotRegistered | Roles::Any => Ok(()),
        Roles::Unreadable(e) => refuse(format!("its account-key cannot be read: {e}")),
        Roles::Constrained(c) => {
            let id = k.sha3_384.as_deref().unwrap_or_default();
            if crate::assertion::constraints_admit_serials(
                &c,
                &k.brand_id,
                &m.brand_id,
                &m.name,
                id,
            ) {
                Ok(())
            } else {
                refuse(format!(
                    "the constraints of its account-key ({c}) do not admit them"
                ))
            }
        }
    }
}
