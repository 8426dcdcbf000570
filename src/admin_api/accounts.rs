//! `/v1/account-keys`: the `account` and `account-key` assertions pushed from the brand store
//! (verified by the backend against the trust database; all or nothing), and their listing.

use bytes::Bytes;

use super::error::{ApiError, ApiResult};
use super::wire::{AccountAssertionView, PushAnswer, PushedAssertion, Query};
use super::{Answer, Shared, list_of, ok};
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
    let brand = q.get("brand-id");
    let mut held = s.store.account_assertions().await?;
    held.retain(|a| brand.is_none_or(|b| a.account_id == b));
    list_of::<_, AccountAssertionView>(held)
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
