//! Brands: the snapd accounts that own models and keys.

use time::OffsetDateTime;

use super::{Actor, Reason, Result, Store, StoreError, changed, violated};

/// A brand account known to this vault.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Brand {
    /// The snapd account-id.
    pub account_id: String,
    /// When it was created here.
    pub created_at: OffsetDateTime,
}

impl Store {
    /// Creates the brand; creating an existing one is a no-op that returns it.
    pub async fn ensure_brand(&self, account_id: &str, actor: &Actor) -> Result<Brand> {
        match self.create_brand(account_id, actor).await {
            Err(StoreError::Conflict(_)) => Ok(sqlx::query_as(
                "SELECT account_id, created_at FROM brands WHERE account_id = $1",
            )
            .bind(account_id)
            .fetch_one(&self.pool)
            .await?),
            other => other,
        }
    }

    /// Creates a new brand (409 when it exists: an ODM adds each brand it builds for once).
    pub async fn create_brand(&self, account_id: &str, actor: &Actor) -> Result<Brand> {
        let mut tx = self.begin().await?;
        let brand: Brand = sqlx::query_as(
            "INSERT INTO brands (account_id) VALUES ($1) RETURNING account_id, created_at",
        )
        .bind(account_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match violated(&e) {
            Some("brands_pkey") => StoreError::Conflict(Reason::caused_by(
                format!("brand {account_id:?} already exists"),
                e,
            )),
            Some("brands_account_id_check") => StoreError::Invalid(Reason::caused_by(
                format!(
                    "invalid account-id {account_id:?}: letters, digits and dashes, \
                     starting with a letter or digit"
                ),
                e,
            )),
            _ => e.into(),
        })?;
        changed(
            &mut tx,
            actor,
            "brand.create",
            account_id,
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(brand)
    }

    /// Every brand, oldest first.
    pub async fn brands(&self) -> Result<Vec<Brand>> {
        all_brands(&self.pool).await
    }

    /// The only brand, when exactly one exists (the usual single-brand vault); admin requests
    /// that name no brand use it.
    pub async fn default_brand(&self) -> Result<Brand> {
        let mut brands = self.brands().await?;
        match brands.len() {
            1 => Ok(brands.remove(0)),
            0 => Err(StoreError::NotFound(
                "no brand yet; run `serialmint init --brand-id B` first".into(),
            )),
            _ => {
                let names: Vec<&str> = brands.iter().map(|b| b.account_id.as_str()).collect();
                Err(StoreError::Invalid(
                    format!(
                        "several brands exist ({}); name one with --brand (\"brand-id\")",
                        names.join(", ")
                    )
                    .into(),
                ))
            }
        }
    }
}

pub(super) async fn all_brands<'e, E: sqlx::PgExecutor<'e>>(e: E) -> Result<Vec<Brand>> {
    Ok(
        sqlx::query_as("SELECT account_id, created_at FROM brands ORDER BY created_at, account_id")
            .fetch_all(e)
            .await?,
    )
}
