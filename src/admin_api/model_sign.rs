//! `POST /v1/model-assertions`: a model statement (headers as `snap sign` takes them, JSON or
//! YAML) signed with a brand key on the HSM, after the codec checked it as snapd decodes
//! models and the key's account-key constraints admitted it; answered 201 with the signed
//! assertion, which is kept (newest revision per brand and model) for `create system-user`.
//!
//! Refusals: a statement that does not parse or that snapd would not decode (400
//! `invalid-statement`, with the codec's message), a key that may not sign it (409, see
//! [`super::signing`]), a timestamp outside the key's validity (409 `key-expired`).

use hyper::StatusCode;

use super::error::{ApiError, ApiResult};
use super::signing::{self, admits, choose_key, conflict};
use super::wire::{Query, SignModel, SignedModelView};
use super::{Answer, Shared, json};
use crate::assertion::{parse_statement, prepare_model};
use crate::store::{Actor, NewModelAssertion};

fn invalid(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid-statement", e.to_string())
}

/// `POST /v1/model-assertions`.
pub(super) async fn sign(
    s: &Shared,
    q: &Query,
    req: SignModel,
    actor: &Actor,
) -> ApiResult<Answer> {
    let brand = s.brand(req.brand_id.as_deref(), q).await?;
    let statement = parse_statement(req.statement.as_bytes()).map_err(invalid)?;
    let now = signing::now();
    let (chain, (content, model)) =
        choose_key(s, &brand, req.key.as_deref(), now, "this model", |c| {
            let (content, model) =
                prepare_model(statement.clone(), &brand, &c.key_id, now).map_err(invalid)?;
            if !c.account_key.is_valid_at(model.timestamp()) {
                return Ok(Err(conflict(
                    "key-expired",
                    format!(
                        "the model's timestamp is outside the validity of key {:?}'s account-key",
                        c.key.name
                    ),
                )));
            }
            Ok(admits(c, &model, "this model").map(|()| (content, model)))
        })
        .await?;
    let signed = signing::sign(s, &chain, &content, now).await?;
    let text = String::from_utf8_lossy(&signed.encode()).into_owned();
    s.store
        .record_model_assertion(
            &NewModelAssertion {
                brand_id: brand.clone(),
                model: model.model().to_string(),
                revision: i32::try_from(model.revision()).unwrap_or(i32::MAX),
                key_sha3_384: chain.key_id.clone(),
                assertion: text.clone(),
            },
            actor,
        )
        .await?;
    tracing::info!(brand = %brand, model = %model.model(), key = %chain.key.name, "model assertion signed");
    json(
        StatusCode::CREATED,
        &SignedModelView {
            brand_id: brand,
            model: model.model().to_string(),
            revision: model.revision(),
            timestamp: model.timestamp(),
            key: chain.key_id,
            key_name: chain.key.name,
            assertion: text,
        },
    )
}
