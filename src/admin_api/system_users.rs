//! `POST /v1/system-users`: a `system-user` assertion for a model signed here, signed with a
//! key of the signing brand on the HSM and answered with the stream snapd's auto-import reads
//! (the brand's `account`, the key's `account-key`, the `system-user`); `GET /v1/system-users`
//! lists what was issued.
//!
//! The password arrives in clear only to be hashed here (SHA-512 crypt, `$6$rounds=N$`, a
//! fresh random salt) and is wiped when the request is dropped; neither it nor its hash is
//! logged or stored (the hash is only inside the assertion handed out).
//!
//! Refusals, each before anything is signed: no model assertion of the model signed here (409
//! `model-assertion-unknown`), a model whose `system-user-authority` does not admit the
//! signing brand (409 `system-user-authority-refused`), neither password nor ssh key (400
//! `credentials-required`), `until` not after `since` (400 `invalid-period`), what snapd would
//! not decode (400 `invalid-system-user`, e.g. serials with a model list, a bad username), a
//! key that may not sign it (409, see [`super::signing`]).

use hyper::StatusCode;
use rand::RngCore;
use sha_crypt::{Algorithm, Params, PasswordHasher, ShaCrypt};

use super::error::{ApiError, ApiResult};
use super::signing::{self, admits, choose_key, conflict};
use super::wire::{CreateSystemUser, Query, SystemUserView};
use super::{Answer, Shared, json, list_of};
use crate::assertion::{Model, SystemUserStatement, decode_as, encode_stream, system_user_content};
use crate::store::{Actor, NewSystemUser, SystemUserRecord};

/// SHA-512 crypt rounds: 20 × glibc's default of 5000, well inside snapd's
/// 5000..=999999999; each login on the device pays them once.
const ROUNDS: u32 = 100_000;

/// How long a system user is valid when `until` is not given.
const DEFAULT_VALIDITY: time::Duration = time::Duration::days(365);

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

fn hash_failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "password-hash-failed",
        format!("cannot hash the password: {e}"),
    )
}

/// `$6$rounds=N$salt$hash` of `password` with a fresh 16-character salt, on a blocking
/// thread (the rounds are the point: they take CPU time).
async fn hash_password(password: zeroize::Zeroizing<String>) -> ApiResult<String> {
    let mut salt = [0u8; 12];
    rand::rng().fill_bytes(&mut salt);
    let params = Params::new(ROUNDS).map_err(hash_failed)?;
    tokio::task::spawn_blocking(move || {
        ShaCrypt::new(Algorithm::Sha512Crypt, params)
            .hash_password_with_salt(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(hash_failed)
    })
    .await
    .map_err(hash_failed)?
}

/// The newest model assertion of `brand`/`model` signed here, decoded.
async fn held_model(s: &Shared, brand: &str, model: &str) -> ApiResult<Model> {
    let Some(held) = s.store.model_assertion(brand, model).await? else {
        return Err(conflict(
            "model-assertion-unknown",
            format!(
                "no model assertion of {brand}/{model} was signed here: sign it with \
                 `serialmint sign model` first (its system-user-authority decides who may \
                 sign system users for it)"
            ),
        ));
    };
    decode_as::<Model>(held.assertion.as_bytes()).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "model-assertion-unreadable",
            format!("the held model assertion of {brand}/{model} does not decode: {e}"),
        )
    })
}

/// `POST /v1/system-users`.
pub(super) async fn create(
    s: &Shared,
    q: &Query,
    req: CreateSystemUser,
    actor: &Actor,
) -> ApiResult<Answer> {
    let brand = s.brand(req.brand_id.as_deref(), q).await?;
    let model_brand = req.model_brand_id.clone().unwrap_or_else(|| brand.clone());
    let model = held_model(s, &model_brand, &req.model).await?;
    // snapd's create-user (`daemon/api_users.go`, getUserDetailsFromAssertion): the signer
    // must be one of the model's system-user authorities (absent: the brand; `*`: anyone).
    if let Some(auths) = model.system_user_authority()
        && !auths.contains(&brand)
    {
        return Err(conflict(
            "system-user-authority-refused",
            format!(
                "model {model_brand}/{} admits system users signed by {} only, not by {brand}",
                req.model,
                auths.join(", ")
            ),
        ));
    }
    let password = req.password.as_deref().map(String::as_str);
    if password.is_some_and(str::is_empty) {
        return Err(bad("invalid-system-user", "the password is empty"));
    }
    if password.is_none() && req.ssh_keys.is_empty() {
        return Err(bad(
            "credentials-required",
            "a system user needs a password or an ssh key to log in",
        ));
    }
    let now = signing::now();
    let since = req.since.unwrap_or(now);
    let until = req.until.unwrap_or(since + DEFAULT_VALIDITY);
    if until <= since {
        return Err(bad(
            "invalid-period",
            format!("until ({until}) must be after since ({since})"),
        ));
    }
    let hash = match password {
        Some(p) => Some(hash_password(zeroize::Zeroizing::new(p.to_owned())).await?),
        None => None,
    };
    let models = [req.model.clone()];
    let statement = SystemUserStatement {
        authority_id: &brand,
        brand_id: &model_brand,
        email: &req.email,
        models: &models,
        serials: &req.serials,
        name: req.name.as_deref(),
        username: &req.username,
        password_hash: hash.as_deref(),
        ssh_keys: &req.ssh_keys,
        since,
        until,
        force_password_change: req.force_password_change,
    };
    let what = format!("system users of model {model_brand}/{}", req.model);
    let (chain, (content, _)) = choose_key(s, &brand, req.key.as_deref(), now, &what, |c| {
        let (content, su) = system_user_content(&statement, &c.key_id)
            .map_err(|e| bad("invalid-system-user", e.to_string()))?;
        Ok(admits(c, &su, &what).map(|()| (content, su)))
    })
    .await?;
    let signed = signing::sign(s, &chain, &content, now).await?;
    s.store
        .record_system_user(
            &NewSystemUser {
                brand_id: brand.clone(),
                model_brand_id: model_brand.clone(),
                model: req.model.clone(),
                username: req.username.clone(),
                serials: req.serials.clone(),
                until,
            },
            actor,
        )
        .await?;
    tracing::info!(brand = %brand, model = %req.model, username = %req.username,
        serials = req.serials.len(), key = %chain.key.name, "system user issued");
    let account = chain.account_text.as_deref().unwrap_or_default();
    let stream = encode_stream([
        account.as_bytes(),
        chain.account_key_text.as_bytes(),
        &signed.encode(),
    ]);
    let assertions = String::from_utf8_lossy(&stream).into_owned();
    json(
        StatusCode::CREATED,
        &SystemUserView {
            brand_id: brand,
            model_brand_id: model_brand,
            model: req.model,
            username: req.username,
            email: req.email,
            serials: req.serials,
            since,
            until,
            key: chain.key_id,
            key_name: chain.key.name,
            assertions,
        },
    )
}

/// `GET /v1/system-users`: every system user issued, newest first (of `brand-id` when given).
pub(super) async fn list(s: &Shared, q: &Query) -> ApiResult<Answer> {
    let rows = s.store.system_users(q.get("brand-id")).await?;
    list_of::<SystemUserRecord, super::wire::SystemUserRecordView>(rows)
}
