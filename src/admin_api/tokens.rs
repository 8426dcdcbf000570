//! `/v1/tokens`: admin tokens. A new token's secret is in the answer to its creation only;
//! listings never carry secrets.

use hyper::StatusCode;

use super::error::{ApiError, ApiResult};
use super::wire::{CreateToken, CreatedToken, Revoked, TokenView};
use super::{Answer, Shared, json, list_of, ok};
use crate::domain::Role;
use crate::store::{Actor, TokenRecord};

impl From<TokenRecord> for TokenView {
    fn from(t: TokenRecord) -> Self {
        TokenView {
            id: t.id,
            name: t.name,
            role: t.role,
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
            revoked: t.revoked,
            brands: t.brands,
        }
    }
}

/// `GET /v1/tokens`.
pub(super) async fn list(s: &Shared) -> ApiResult<Answer> {
    list_of::<_, TokenView>(s.store.tokens().await?)
}

/// `POST /v1/tokens`: 201 with the secret, shown this once.
pub(super) async fn create(s: &Shared, req: CreateToken, actor: &Actor) -> ApiResult<Answer> {
    let role = req.role.unwrap_or(Role::ReadOnly);
    let t = s
        .store
        .create_token_for(
            &req.name,
            role,
            req.expires_at,
            req.brands.as_deref(),
            actor,
        )
        .await?;
    json(
        StatusCode::CREATED,
        &CreatedToken {
            id: t.info.id,
            name: t.info.name,
            role,
            expires_at: req.expires_at,
            token: t.secret,
            brands: t.info.brands,
        },
    )
}

/// `POST /v1/tokens/{id}/revoke`.
pub(super) async fn revoke(s: &Shared, id: &str, actor: &Actor) -> ApiResult<Answer> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request("a token is named by its id"))?;
    s.store.revoke_token(id, actor).await?;
    ok(&Revoked { revoked: id })
}
