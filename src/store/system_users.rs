//! System users issued (`create system-user`): who, when, for which model, the username, the
//! serials and `until`; never the password nor its hash, nor the email or ssh keys (they stay
//! in the assertion handed out). Each row is written with its audit-log row
//! (`system-user.create`) before the assertion leaves.

use time::OffsetDateTime;

use super::{Actor, Result, Store, changed};

/// A system user to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSystemUser {
    /// The signing brand (`authority-id`).
    pub brand_id: String,
    /// The model's brand (`brand-id`).
    pub model_brand_id: String,
    /// The model.
    pub model: String,
    /// `username`.
    pub username: String,
    /// `serials` (empty: every device of the model).
    pub serials: Vec<String>,
    /// `until`.
    pub until: OffsetDateTime,
}

/// A recorded system user.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SystemUserRecord {
    /// Row id.
    pub id: i64,
    /// The signing brand.
    pub brand_id: String,
    /// The model's brand.
    pub model_brand_id: String,
    /// The model.
    pub model: String,
    /// `username`.
    pub username: String,
    /// `serials`.
    pub serials: Vec<String>,
    /// `until`.
    pub until: OffsetDateTime,
    /// Who issued it (the admin token's name).
    pub issued_by: String,
    /// When.
    pub issued_at: OffsetDateTime,
}

const COLUMNS: &str =
    "id, brand_id, model_brand_id, model, username, serials, until, issued_by, issued_at";

impl Store {
    /// Records a system user with its audit-log row, in one transaction.
    pub async fn record_system_user(
        &self,
        u: &NewSystemUser,
        actor: &Actor,
    ) -> Result<SystemUserRecord> {
        let mut tx = self.begin().await?;
        let row: SystemUserRecord = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO system_users \
               (brand_id, model_brand_id, model, username, serials, until, issued_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
        )))
        .bind(&u.brand_id)
        .bind(&u.model_brand_id)
        .bind(&u.model)
        .bind(&u.username)
        .bind(&u.serials)
        .bind(u.until)
        .bind(&actor.0)
        .fetch_one(&mut *tx)
        .await?;
        changed(
            &mut tx,
            actor,
            "system-user.create",
            &format!("{}/{}/{}", u.model_brand_id, u.model, u.username),
            serde_json::json!({
                "brand-id": u.brand_id,
                "serials": u.serials,
                "until": u.until.format(&time::format_description::well_known::Rfc3339).ok(),
            }),
        )
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// The system users issued, newest first: every one, or those `brand` signed or whose
    /// model is `brand`'s.
    pub async fn system_users(&self, brand: Option<&str>) -> Result<Vec<SystemUserRecord>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM system_users \
             WHERE $1::text IS NULL OR brand_id = $1 OR model_brand_id = $1 ORDER BY id DESC"
        )))
        .bind(brand)
        .fetch_all(&self.pool)
        .await?)
    }
}
