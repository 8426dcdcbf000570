//! Model assertions signed by this vault (`sign model`): kept as text, newest revision of a
//! brand's model first, so `create system-user` can check the model devices will have.

use time::OffsetDateTime;

use super::{Actor, Result, Store, changed};

/// A model assertion to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewModelAssertion {
    /// `brand-id` (the signing authority).
    pub brand_id: String,
    /// `model`.
    pub model: String,
    /// `revision`.
    pub revision: i32,
    /// The signing key's SHA3-384 id.
    pub key_sha3_384: String,
    /// The signed assertion text.
    pub assertion: String,
}

/// A recorded model assertion.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ModelAssertion {
    /// `brand-id`.
    pub brand_id: String,
    /// `model`.
    pub model: String,
    /// `revision`.
    pub revision: i32,
    /// The signing key's SHA3-384 id.
    pub key_sha3_384: String,
    /// The signed assertion text.
    pub assertion: String,
    /// Who signed it (the admin token's name).
    pub signed_by: String,
    /// When.
    pub signed_at: OffsetDateTime,
}

impl Store {
    /// Records a signed model with its audit-log row (`model.sign`), in one transaction.
    pub async fn record_model_assertion(
        &self,
        m: &NewModelAssertion,
        actor: &Actor,
    ) -> Result<ModelAssertion> {
        let mut tx = self.begin().await?;
        let row: ModelAssertion = sqlx::query_as(
            "INSERT INTO model_assertions \
               (brand_id, model, revision, key_sha3_384, assertion, signed_by) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             RETURNING brand_id, model, revision, key_sha3_384, assertion, signed_by, signed_at",
        )
        .bind(&m.brand_id)
        .bind(&m.model)
        .bind(m.revision)
        .bind(&m.key_sha3_384)
        .bind(&m.assertion)
        .bind(&actor.0)
        .fetch_one(&mut *tx)
        .await?;
        changed(
            &mut tx,
            actor,
            "model.sign",
            &format!("{}/{}", m.brand_id, m.model),
            serde_json::json!({"revision": m.revision, "key": m.key_sha3_384}),
        )
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// The newest model assertion of `brand_id`/`model` signed here, if any.
    pub async fn model_assertion(
        &self,
        brand_id: &str,
        model: &str,
    ) -> Result<Option<ModelAssertion>> {
        Ok(sqlx::query_as(
            "SELECT brand_id, model, revision, key_sha3_384, assertion, signed_by, signed_at \
             FROM model_assertions WHERE brand_id = $1 AND model = $2 \
             ORDER BY revision DESC, id DESC LIMIT 1",
        )
        .bind(brand_id)
        .bind(model)
        .fetch_optional(&self.pool)
        .await?)
    }
}
