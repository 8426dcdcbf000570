//! Models: brand, name, API key, rate limit, duplicate-serial and serial-generation policy,
//! enabled; and the per-model counter behind prefix+counter serials.

use time::OffsetDateTime;

use super::{Actor, Reason, Result, Store, StoreError, changed, violated};
use crate::domain::{DuplicatePolicy, SerialGeneration};

/// A model as recorded in the store.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Model {
    /// Row id.
    pub id: i64,
    /// The brand's account-id.
    pub brand_id: String,
    /// The model name.
    pub name: String,
    /// The API key factory devices send (`api-key` header).
    pub api_key: String,
    /// Serials per second allowed for this model (`None`: no limit).
    pub rate_limit_per_sec: Option<i32>,
    /// Burst size of that limit (`None`: equal to the rate).
    pub rate_limit_burst: Option<i32>,
    /// Duplicate-serial policy.
    #[sqlx(try_from = "String")]
    pub duplicate_policy: DuplicatePolicy,
    /// Serial-generation policy.
    #[sqlx(try_from = "String")]
    pub serial_generation: SerialGeneration,
    /// Prefix for prefix+counter serials.
    pub serial_prefix: String,
    /// Whether devices of this model are served.
    pub enabled: bool,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// A model to create.
#[derive(Clone, Debug)]
pub struct NewModel {
    /// The brand; must exist.
    pub brand_id: String,
    /// The model name.
    pub name: String,
    /// The API key (at least 16 characters).
    pub api_key: String,
    /// Serials per second (`None`: no limit).
    pub rate_limit_per_sec: Option<i32>,
    /// Burst size.
    pub rate_limit_burst: Option<i32>,
    /// Duplicate-serial policy.
    pub duplicate_policy: DuplicatePolicy,
    /// Serial-generation policy.
    pub serial_generation: SerialGeneration,
    /// Prefix for prefix+counter serials.
    pub serial_prefix: String,
}

/// A change to a model; `None` fields stay as they are.
#[derive(Clone, Debug, Default)]
pub struct ModelChange {
    /// A new API key.
    pub api_key: Option<String>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// New rate limit (`Some(None)` removes it).
    pub rate_limit_per_sec: Option<Option<i32>>,
    /// New burst (`Some(None)` removes it).
    pub rate_limit_burst: Option<Option<i32>>,
    /// New duplicate-serial policy.
    pub duplicate_policy: Option<DuplicatePolicy>,
    /// New serial-generation policy.
    pub serial_generation: Option<SerialGeneration>,
    /// New prefix.
    pub serial_prefix: Option<String>,
}

const MODEL_COLUMNS: &str = "id, brand_id, name, api_key, rate_limit_per_sec, rate_limit_burst, \
                             duplicate_policy, serial_generation, serial_prefix, enabled, created_at";

/// Rewords a violated constraint of `models` for the caller (model `m` of `brand`).
fn model_error(e: sqlx::Error, m: &str, brand: &str) -> StoreError {
    match violated(&e) {
        Some("models_brand_id_fkey") => {
            StoreError::NotFound(Reason::caused_by(format!("no brand {brand:?}"), e))
        }
        Some("models_brand_id_name_key") => {
            StoreError::Conflict(Reason::caused_by(format!("model {m:?} already exists"), e))
        }
        Some("models_api_key_check") => StoreError::Invalid(Reason::caused_by(
            "an API key needs at least 16 characters",
            e,
        )),
        Some("models_name_check") => StoreError::Invalid(Reason::caused_by(
            format!("invalid model name {m:?}: letters, digits and single dashes"),
            e,
        )),
        Some("signing_log_model_id_fkey") => StoreError::Conflict(Reason::caused_by(
            format!("model {m:?} has issued serials; disable it instead"),
            e,
        )),
        _ => e.into(),
    }
}

fn no_model(brand_id: &str, name: &str) -> StoreError {
    StoreError::NotFound(format!("no model {name:?} for brand {brand_id:?}").into())
}

impl Store {
    /// Creates a model.
    pub async fn create_model(&self, new: &NewModel, actor: &Actor) -> Result<Model> {
        let mut tx = self.begin().await?;
        let model: Model = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO models (brand_id, name, api_key, rate_limit_per_sec, rate_limit_burst, \
             duplicate_policy, serial_generation, serial_prefix) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {MODEL_COLUMNS}"
        )))
        .bind(&new.brand_id)
        .bind(&new.name)
        .bind(&new.api_key)
        .bind(new.rate_limit_per_sec)
        .bind(new.rate_limit_burst)
        .bind(new.duplicate_policy.as_str())
        .bind(new.serial_generation.as_str())
        .bind(&new.serial_prefix)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| model_error(e, &new.name, &new.brand_id))?;
        sqlx::query("INSERT INTO serial_counters (model_id) VALUES ($1)")
            .bind(model.id)
            .execute(&mut *tx)
            .await?;
        changed(
            &mut tx,
            actor,
            "model.create",
            &format!("{}/{}", new.brand_id, new.name),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(model)
    }

    /// Every model, by brand and name.
    pub async fn models(&self) -> Result<Vec<Model>> {
        all_models(&self.pool).await
    }

    /// The model `name` of `brand_id`.
    pub async fn model(&self, brand_id: &str, name: &str) -> Result<Model> {
        let model: Option<Model> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MODEL_COLUMNS} FROM models WHERE brand_id = $1 AND name = $2"
        )))
        .bind(brand_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        model.ok_or_else(|| no_model(brand_id, name))
    }

    /// Applies `change` to a model.
    pub async fn update_model(
        &self,
        brand_id: &str,
        name: &str,
        change: &ModelChange,
        actor: &Actor,
    ) -> Result<Model> {
        let mut tx = self.begin().await?;
        let model: Option<Model> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE models SET \
               api_key = COALESCE($3, api_key), \
               enabled = COALESCE($4, enabled), \
               rate_limit_per_sec = CASE WHEN $5 THEN $6 ELSE rate_limit_per_sec END, \
               rate_limit_burst = CASE WHEN $7 THEN $8 ELSE rate_limit_burst END, \
               duplicate_policy = COALESCE($9, duplicate_policy), \
               serial_generation = COALESCE($10, serial_generation), \
               serial_prefix = COALESCE($11, serial_prefix) \
             WHERE brand_id = $1 AND name = $2 RETURNING {MODEL_COLUMNS}"
        )))
        .bind(brand_id)
        .bind(name)
        .bind(change.api_key.as_deref())
        .bind(change.enabled)
        .bind(change.rate_limit_per_sec.is_some())
        .bind(change.rate_limit_per_sec.flatten())
        .bind(change.rate_limit_burst.is_some())
        .bind(change.rate_limit_burst.flatten())
        .bind(change.duplicate_policy.map(DuplicatePolicy::as_str))
        .bind(change.serial_generation.map(SerialGeneration::as_str))
        .bind(change.serial_prefix.as_deref())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| model_error(e, name, brand_id))?;
        let model = model.ok_or_else(|| no_model(brand_id, name))?;
        let mut what = Vec::new();
        if change.api_key.is_some() {
            what.push("api-key");
        }
        if let Some(e) = change.enabled {
            what.push(if e { "enabled" } else { "disabled" });
        }
        if change.rate_limit_per_sec.is_some() || change.rate_limit_burst.is_some() {
            what.push("rate-limit");
        }
        if change.duplicate_policy.is_some()
            || change.serial_generation.is_some()
            || change.serial_prefix.is_some()
        {
            what.push("serial-policy-settings");
        }
        changed(
            &mut tx,
            actor,
            "model.update",
            &format!("{brand_id}/{name}"),
            serde_json::json!({ "changed": what }),
        )
        .await?;
        tx.commit().await?;
        Ok(model)
    }

    /// Deletes a model; refused (conflict) once any serial was issued for it.
    pub async fn delete_model(&self, brand_id: &str, name: &str, actor: &Actor) -> Result<()> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM models WHERE brand_id = $1 AND name = $2")
            .bind(brand_id)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(|e| model_error(e, name, brand_id))?
            .rows_affected();
        if n == 0 {
            return Err(no_model(brand_id, name));
        }
        changed(
            &mut tx,
            actor,
            "model.delete",
            &format!("{brand_id}/{name}"),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The next value of the model's serial counter (1, 2, ...): atomic across instances,
    /// never handed out twice (a value whose serial is never issued is simply skipped).
    pub async fn next_serial_counter(&self, model_id: i64) -> Result<i64> {
        let v: Option<i64> = sqlx::query_scalar(
            "UPDATE serial_counters SET value = value + 1 WHERE model_id = $1 RETURNING value",
        )
        .bind(model_id)
        .fetch_optional(&self.pool)
        .await?;
        v.ok_or_else(|| StoreError::NotFound(format!("no model with id {model_id}").into()))
    }
}

pub(super) async fn all_models<'e, E: sqlx::PgExecutor<'e>>(e: E) -> Result<Vec<Model>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {MODEL_COLUMNS} FROM models ORDER BY brand_id, name"
    )))
    .fetch_all(e)
    .await?)
}
