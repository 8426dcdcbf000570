//! Signing assertions other than serials with a brand key on the HSM (model assertions,
//! system users): which key signs, what its pushed account-key admits, and the signature
//! followed by the check a device makes (`Database.Check` against the trusted roots and the
//! pushed accounts and account-keys) before anything leaves.
//!
//! A key signs only when it is the brand's, ready and enabled, its `account-key` was pushed
//! (without it no device can check the signature, and its `constraints` cannot be known), and
//! that account-key is valid now and admits the assertion (snapd's `canSign`). With no key
//! named, the brand's only key that passes for this assertion signs; none (409
//! `no-signing-key`) or several (400 `key-required`) are refused, naming what was found.

use hyper::StatusCode;
use time::OffsetDateTime;

use super::Shared;
use super::error::{ApiError, ApiResult};
use crate::assertion::{AccountKey, Assertion, decode_as};
use crate::domain::{AssertionKind, KeyStatus};
use crate::store::SigningKey;

/// A brand key with the pushed assertions that let devices check what it signs.
#[derive(Clone, Debug)]
pub(super) struct Chain {
    /// The key's row.
    pub key: SigningKey,
    /// Its SHA3-384 id.
    pub key_id: String,
    /// Its pushed account-key.
    pub account_key: AccountKey,
    /// The account-key's text.
    pub account_key_text: String,
    /// The text of the key's account assertion, when pushed.
    pub account_text: Option<String>,
    /// Every pushed account and account-key (for the final check).
    pub known: Vec<String>,
}

/// 409 with `code`.
pub(super) fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

/// The chain of `key` for `brand` at `now`, or why it cannot sign.
fn chain_of(
    key: SigningKey,
    brand: &str,
    pushed: &[crate::store::AccountAssertion],
    now: OffsetDateTime,
) -> ApiResult<Chain> {
    let name = key.name.clone();
    if key.brand_id != brand {
        return Err(conflict(
            "key-brand-mismatch",
            format!(
                "key {name:?} belongs to brand {}, not {brand}",
                key.brand_id
            ),
        ));
    }
    let state = match (key.status, key.active) {
        (KeyStatus::Ready, true) => None,
        (KeyStatus::Ready, false) => Some("disabled".to_string()),
        (s, _) => Some(s.to_string()),
    };
    if let Some(state) = state {
        return Err(conflict(
            "key-not-ready",
            format!("key {name:?} is {state}"),
        ));
    }
    let key_id = key.sha3_384.clone().unwrap_or_default();
    let Some(ak) = pushed
        .iter()
        .find(|a| a.kind == AssertionKind::AccountKey && a.primary_key == key_id)
    else {
        return Err(conflict(
            "key-not-registered",
            format!(
                "key {name:?} has no account-key here: register it with the brand store \
                 (`serialmint register-key`) and push the answer (`serialmint push-account-keys`) first"
            ),
        ));
    };
    let account_key = decode_as::<AccountKey>(ak.text.as_bytes()).map_err(|e| {
        conflict(
            "key-not-registered",
            format!("the account-key of key {name:?} cannot be read: {e}"),
        )
    })?;
    if !account_key.is_valid_at(now) {
        return Err(conflict(
            "key-expired",
            format!("the account-key of key {name:?} is not valid now"),
        ));
    }
    let account_text = pushed
        .iter()
        .find(|a| a.kind == AssertionKind::Account && a.primary_key == account_key.account_id())
        .map(|a| a.text.clone());
    Ok(Chain {
        key,
        key_id,
        account_key_text: ak.text.clone(),
        account_text,
        account_key,
        known: pushed.iter().map(|a| a.text.clone()).collect(),
    })
}

/// What `prepare` says of one key: `Ok(Ok(t))` it may sign (and `t` is what to sign),
/// `Ok(Err(e))` this key may not (another might), `Err(e)` the request itself is refused.
pub(super) type Prepared<T> = ApiResult<ApiResult<T>>;

/// The key that signs for `brand`: `key` (name or id) when given, else the brand's only
/// usable key for which `prepare` succeeds. Returns it with what `prepare` made.
pub(super) async fn choose_key<T>(
    s: &Shared,
    brand: &str,
    key: Option<&str>,
    now: OffsetDateTime,
    what: &str,
    prepare: impl Fn(&Chain) -> Prepared<T>,
) -> ApiResult<(Chain, T)> {
    let pushed = s.store.account_assertions().await?;
    if let Some(key) = key {
        let chain = chain_of(s.store.key(key).await?, brand, &pushed, now)?;
        let t = prepare(&chain)??;
        return Ok((chain, t));
    }
    let mut accepted = Vec::new();
    let mut first_refusal = None;
    for k in s.store.keys().await? {
        if k.brand_id != brand {
            continue;
        }
        let Ok(chain) = chain_of(k, brand, &pushed, now) else {
            continue;
        };
        match prepare(&chain)? {
            Ok(t) => accepted.push((chain, t)),
            Err(e) => {
                first_refusal.get_or_insert(e);
            }
        }
    }
    match accepted.len() {
        1 => Ok(accepted.remove(0)),
        0 => Err(first_refusal.unwrap_or_else(|| {
            conflict(
                "no-signing-key",
                format!(
                    "brand {brand} has no key that can sign {what}: a ready, enabled key with \
                     a pushed account-key"
                ),
            )
        })),
        _ => {
            let names: Vec<&str> = accepted.iter().map(|(c, _)| c.key.name.as_str()).collect();
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "key-required",
                format!(
                    "several keys of brand {brand} can sign {what} ({}); name one with --key",
                    names.join(", ")
                ),
            ))
        }
    }
}

/// 409 `key-role-refused` unless `chain`'s account-key admits `unsigned` (snapd's
/// `canSign`), naming the constraints.
pub(super) fn admits(chain: &Chain, unsigned: &Assertion, what: &str) -> ApiResult<()> {
    if chain.account_key.may_sign(unsigned) {
        return Ok(());
    }
    let constraints = chain
        .account_key
        .constraints()
        .map(|c| c.to_string())
        .unwrap_or_default();
    Err(conflict(
        "key-role-refused",
        format!(
            "key {:?} may not sign {what}: the constraints of its account-key ({constraints}) do not admit it",
            chain.key.name
        ),
    ))
}

/// Signs `content` with `chain`'s key on the HSM at `now` and checks the result as a device
/// would; the signed assertion, or 503 (HSM) / 500 (a signature the check refuses: a bug).
pub(super) async fn sign(
    s: &Shared,
    chain: &Chain,
    content: &[u8],
    now: OffsetDateTime,
) -> ApiResult<Assertion> {
    let created = u32::try_from(now.unix_timestamp())
        .map_err(|_| ApiError::from(super::backend::BackendError::ClockOutOfRange))?;
    let encoded = s
        .backend
        .sign_content(&chain.key_id, content, created)
        .await?;
    let refused = |why: String| {
        tracing::error!(key = %chain.key.name, error = %why, "a signed assertion does not check");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "signature-refused",
            format!("the signed assertion does not check: {why}"),
        )
    };
    let a = s
        .backend
        .check_signed(&encoded, &chain.known, now)
        .map_err(|r| refused(r.0))?;
    if a.content() != content {
        return Err(refused("its content is not what was signed".into()));
    }
    Ok(a)
}

/// Now, in whole seconds (assertion times have no fractions).
pub(super) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond")
}
