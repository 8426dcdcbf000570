//! `/v1/brands`: the brand accounts this vault serves. One is made by `serialmint init`; an
//! ODM building devices for several brands adds the others here. Requests that name no brand
//! use the only one, and are refused naming the brands when there are several.

use hyper::StatusCode;

use super::error::ApiResult;
use super::wire::{BrandView, CreateBrand};
use super::{Answer, Shared, json, list_of};
use crate::store::{Actor, Brand};

impl From<Brand> for BrandView {
    fn from(b: Brand) -> Self {
        BrandView {
            account_id: b.account_id,
            created_at: b.created_at,
        }
    }
}

/// `GET /v1/brands`, oldest first.
pub(super) async fn list(s: &Shared) -> ApiResult<Answer> {
    list_of::<_, BrandView>(s.store.brands().await?)
}

/// `POST /v1/brands`: 201; 409 when it exists.
pub(super) async fn create(s: &Shared, req: CreateBrand, actor: &Actor) -> ApiResult<Answer> {
    let b = s.store.create_brand(&req.account_id, actor).await?;
    json(StatusCode::CREATED, &BrandView::from(b))
}
