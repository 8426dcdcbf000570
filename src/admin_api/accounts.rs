//! `/v1/account-keys`: the `account` and `account-key` assertions pushed from the brand store
//! (verified by the backend against the trust database; all or nothing), their listing, and
//! their export as one assertion stream (what `serialmint verify-log --check-serials` checks
//! serials against).

use bytes::Bytes;
use hyper::Response;
use hyper::header::{CONTENT_TYPE, HeaderValue};

use super::error::{ApiError, ApiResult};
use super::wire::{ASSERTION_TYPE, AccountAssertionView, PushAnswer, PushedAssertion, Query};
use super::{Answer, Shared, list_of, ok};
use crate::assertion::encode_stream;
use crate::domain::AssertionKind;
use crate::http;
use crate::store::{AccountAssertion, Actor};

impl From<AccountAssertion> for AccountAssertionView {
    fn from(a: AccountAssertion) -> Self {
        AccountAssertionView {
            kind: a.kind,
            primary_key: a.primary_key,
            account_id: a.account_id,
            revision: a.revision,
            pushed_at: a.pushed_at,
        }
    }
}

/// `GET /v1/account-keys`.
pub(super) async fn list(s: &Shared, q: &Query) -> ApiResult<Answer> {
    list_of::<_, AccountAssertionView>(held(s, q).await?)
}

/// The held assertions, of `brand-id` when the query names one.
async fn held(s: &Shared, q: &Query) -> ApiResult<Vec<AccountAssertion>> {
    let brand = q.get("brand-id");
    let mut held = s.store.account_assertions().await?;
    held.retain(|a| brand.is_none_or(|b| a.account_id == b));
    Ok(held)
}

/// `GET /v1/account-keys/export`: every held assertion (of `brand-id` when given) as one
/// assertion stream, accounts before account-keys, so it can be admitted in order.
pub(super) async fn export(s: &Shared, q: &Query) -> ApiResult<Answer> {
    let mut held = held(s, q).await?;
    held.sort_by_key(|a| a.kind != AssertionKind::Account);
    let body = encode_stream(held.iter().map(|a| a.text.as_bytes()));
    let mut resp = Response::new(http_body_util::Full::new(Bytes::from(body)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ASSERTION_TYPE));
    Ok(http::streamed(resp))
}

/// `POST /v1/account-keys`: an assertion stream; the first one that does not verify refuses
/// the whole push.
pub(super) async fn push(s: &Shared, body: Bytes, actor: &Actor) -> ApiResult<Answer> {
    let known: Vec<String> = s
        .store
        .account_assertions()
        .await?
        .into_iter()
        .map(|a| a.text)
        .collect();
    let items = s.backend.verify_account_assertions(&body, &known)?;
    if items.is_empty() {
        return Err(ApiError::bad_request("no assertions in the body"));
    }
    let stored = s.store.put_account_assertions(&items, actor).await?;
    ok(&PushAnswer {
        assertions: items
            .into_iter()
            .map(|a| PushedAssertion {
                kind: a.kind,
                primary_key: a.primary_key,
                account_id: a.account_id,
            })
            .collect(),
        stored,
    })
}
