//! Remodel policies: which devices may re-register from one model to another (snapd's
//! re-registration remodel). A policy names the original brand and model, the model devices
//! move to (one of the vault's, whose brand owns the policy) and optionally a regular
//! expression the original serial number must match whole. Creating and deleting one
//! commits with its audit-log row and a NOTIFY, so every instance's catalog follows.

use regex::Regex;
use time::OffsetDateTime;

use super::{Actor, Reason, Result, Store, StoreError, changed, violated};

/// A remodel policy as recorded.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct RemodelPolicy {
    /// Row id.
    pub id: i64,
    /// The brand of the model devices move to (who owns the policy).
    pub brand_id: String,
    /// The model devices move to.
    pub to_model: String,
    /// Its row id.
    pub to_model_id: i64,
    /// The original serial's brand.
    pub from_brand_id: String,
    /// The original serial's model.
    pub from_model: String,
    /// The regular expression the original serial must match whole; `None`: any.
    pub serial_pattern: Option<String>,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// Who created it.
    pub created_by: String,
}

impl RemodelPolicy {
    /// `from-brand/from-model -> brand/to-model`, as the audit log names it.
    pub fn describe(&self) -> String {
        move_name(
            &self.from_brand_id,
            &self.from_model,
            &self.brand_id,
            &self.to_model,
        )
    }
}

/// A remodel policy to create for one of the vault's models.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRemodelPolicy {
    /// The original serial's brand.
    pub from_brand_id: String,
    /// The original serial's model.
    pub from_model: String,
    /// The model devices move to (of the brand the policy is created for).
    pub to_model: String,
    /// A regular expression the original serial must match whole; `None`: any.
    pub serial_pattern: Option<String>,
}

/// Compiles a policy's serial pattern as it is matched: anchored at both ends, like snapd's
/// header constraints (`^(?:pattern)$`).
pub fn compile_serial_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

fn move_name(from_brand: &str, from_model: &str, brand: &str, to_model: &str) -> String {
    format!("{from_brand}/{from_model} -> {brand}/{to_model}")
}

const SELECT: &str = "SELECT p.id, m.brand_id, m.name AS to_model, p.to_model_id, \
     p.from_brand_id, p.from_model, p.serial_pattern, p.created_at, p.created_by \
     FROM remodel_policies p JOIN models m ON m.id = p.to_model_id";

/// Rewords a violated constraint of `remodel_policies` for the caller.
fn policy_error(e: sqlx::Error, new: &NewRemodelPolicy, brand: &str) -> StoreError {
    let what = move_name(&new.from_brand_id, &new.from_model, brand, &new.to_model);
    match violated(&e) {
        Some("remodel_policies_move_key") => StoreError::Conflict(Reason::caused_by(
            format!("a remodel policy {what} already exists"),
            e,
        )),
        Some("remodel_policies_from_brand_id_check") => StoreError::Invalid(Reason::caused_by(
            format!(
                "invalid from-brand {:?}: not a snapd account-id",
                new.from_brand_id
            ),
            e,
        )),
        Some("remodel_policies_from_model_check") => StoreError::Invalid(Reason::caused_by(
            format!(
                "invalid from-model {:?}: letters, digits and single dashes",
                new.from_model
            ),
            e,
        )),
        Some("remodel_policies_to_model_id_fkey") => StoreError::NotFound(Reason::caused_by(
            format!("no model {:?} for brand {brand:?}", new.to_model),
            e,
        )),
        _ => e.into(),
    }
}

impl Store {
    /// Creates a remodel policy for the model `new.to_model` of `brand_id`. Refused: an
    /// unknown model (not found), a move to the same model, a serial pattern that does not
    /// compile (invalid), a second policy for the same move (conflict).
    pub async fn create_remodel_policy(
        &self,
        brand_id: &str,
        new: &NewRemodelPolicy,
        actor: &Actor,
    ) -> Result<RemodelPolicy> {
        if new.from_brand_id == brand_id && new.from_model == new.to_model {
            return Err(StoreError::Invalid(
                format!(
                    "a remodel policy moves devices to another model, not from {brand_id}/{} to itself",
                    new.to_model
                )
                .into(),
            ));
        }
        if let Some(p) = &new.serial_pattern {
            if p.is_empty() {
                return Err(StoreError::Invalid(
                    "the serial pattern is empty; leave it out to allow any serial".into(),
                ));
            }
            // The pattern alone first, so an error points into what the admin wrote; the
            // regex crate's message spans lines, its last one says what is wrong.
            Regex::new(p)
                .and_then(|_| compile_serial_pattern(p))
                .map_err(|e| {
                    let e = e.to_string();
                    let why = e.lines().last().unwrap_or_default();
                    let why = why.trim().trim_start_matches("error: ");
                    StoreError::Invalid(format!("invalid serial pattern {p:?}: {why}").into())
                })?;
        }
        let model = self.model(brand_id, &new.to_model).await?;
        let mut tx = self.begin().await?;
        let (id, created_at): (i64, OffsetDateTime) = sqlx::query_as(
            "INSERT INTO remodel_policies (to_model_id, from_brand_id, from_model, \
             serial_pattern, created_by) VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at",
        )
        .bind(model.id)
        .bind(&new.from_brand_id)
        .bind(&new.from_model)
        .bind(new.serial_pattern.as_deref())
        .bind(&actor.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| policy_error(e, new, brand_id))?;
        let policy = RemodelPolicy {
            id,
            brand_id: model.brand_id,
            to_model: model.name,
            to_model_id: model.id,
            from_brand_id: new.from_brand_id.clone(),
            from_model: new.from_model.clone(),
            serial_pattern: new.serial_pattern.clone(),
            created_at,
            created_by: actor.0.clone(),
        };
        changed(
            &mut tx,
            actor,
            "remodel-policy.create",
            &policy.describe(),
            serde_json::json!({"serial": policy.serial_pattern}),
        )
        .await?;
        tx.commit().await?;
        Ok(policy)
    }

    /// Remodel policies, oldest first; only those of `brand_id` and moving to `to_model`
    /// when given.
    pub async fn remodel_policies(
        &self,
        brand_id: Option<&str>,
        to_model: Option<&str>,
    ) -> Result<Vec<RemodelPolicy>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE ($1::text IS NULL OR m.brand_id = $1) \
             AND ($2::text IS NULL OR m.name = $2) ORDER BY p.id"
        )))
        .bind(brand_id)
        .bind(to_model)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes the policy for the move `from_brand_id/from_model -> brand_id/to_model`;
    /// returns what it was (not found when there is none).
    pub async fn delete_remodel_policy(
        &self,
        brand_id: &str,
        from_brand_id: &str,
        from_model: &str,
        to_model: &str,
        actor: &Actor,
    ) -> Result<RemodelPolicy> {
        let mut tx = self.begin().await?;
        let found: Option<RemodelPolicy> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE m.brand_id = $1 AND m.name = $2 AND p.from_brand_id = $3 \
             AND p.from_model = $4 FOR UPDATE OF p"
        )))
        .bind(brand_id)
        .bind(to_model)
        .bind(from_brand_id)
        .bind(from_model)
        .fetch_optional(&mut *tx)
        .await?;
        let policy = found.ok_or_else(|| {
            StoreError::NotFound(
                format!(
                    "no remodel policy {}",
                    move_name(from_brand_id, from_model, brand_id, to_model)
                )
                .into(),
            )
        })?;
        sqlx::query("DELETE FROM remodel_policies WHERE id = $1")
            .bind(policy.id)
            .execute(&mut *tx)
            .await?;
        changed(
            &mut tx,
            actor,
            "remodel-policy.delete",
            &policy.describe(),
            serde_json::json!({"serial": policy.serial_pattern}),
        )
        .await?;
        tx.commit().await?;
        Ok(policy)
    }
}

/// Every remodel policy (the catalog's read).
pub(super) async fn all_remodel_policies<'e, E: sqlx::PgExecutor<'e>>(
    e: E,
) -> Result<Vec<RemodelPolicy>> {
    Ok(
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY p.id")))
            .fetch_all(e)
            .await?,
    )
}
