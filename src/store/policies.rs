//! Serial policies: per model an append-only list of revisions, each naming the signing key;
//! the newest revision is the active one, so rotating a key is one insert and the history
//! stays. The database refuses UPDATE and DELETE on the table (a trigger), except the cascade
//! of deleting a model that never issued a serial.

use time::OffsetDateTime;

use super::{Actor, KeyStatus, Result, Store, StoreError, changed};

/// One revision of a model's serial policy.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SerialPolicy {
    /// The brand.
    pub brand_id: String,
    /// The model name.
    pub model: String,
    /// The model's row id.
    pub model_id: i64,
    /// 1, 2, ...; the highest is active.
    pub revision: i32,
    /// The signing key's row id.
    pub key_id: i64,
    /// The signing key's name.
    pub key_name: String,
    /// The signing key's SHA3-384 id.
    pub key_sha3_384: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// Who created it.
    pub created_by: String,
}

const POLICY_SELECT: &str = "SELECT m.brand_id, m.name AS model, p.model_id, p.revision, \
     p.key_id, k.name AS key_name, COALESCE(k.key_sha3_384, '') AS key_sha3_384, \
     p.created_at, p.created_by \
     FROM serial_policies p JOIN models m ON m.id = p.model_id \
     JOIN signing_keys k ON k.id = p.key_id";

/// What appending a revision assigned.
#[derive(sqlx::FromRow)]
struct Appended {
    revision: i32,
    created_at: OffsetDateTime,
}

impl Store {
    /// Appends a revision to the model's serial policy naming the key (by name or SHA3-384),
    /// which becomes the active one. The key must be ready, active, of the model's brand,
    /// and allowed to sign serials for this model.
    pub async fn create_serial_policy(
        &self,
        brand_id: &str,
        model: &str,
        key: &str,
        actor: &Actor,
    ) -> Result<SerialPolicy> {
        let m = self.model(brand_id, model).await?;
        let k = self.key(key).await?;
        if k.status != KeyStatus::Ready {
            return Err(StoreError::Invalid(
                format!(
                    "key {:?} is {} and cannot sign yet",
                    k.name,
                    k.status.as_str()
                )
                .into(),
            ));
        }
        if !k.active {
            return Err(StoreError::Invalid(
                format!("key {:?} is disabled", k.name).into(),
            ));
        }
        if k.brand_id != m.brand_id {
            return Err(StoreError::Invalid(
                format!(
                    "key {:?} belongs to brand {:?}, model {:?} to brand {:?}",
                    k.name, k.brand_id, m.name, m.brand_id
                )
                .into(),
            ));
        }
        if !k.may_sign("serial", &m.name) {
            return Err(StoreError::Invalid(
                format!(
                    "key {:?} may not sign serials for model {:?}",
                    k.name, m.name
                )
                .into(),
            ));
        }
        let mut tx = self.begin().await?;
        // Lock the model row so concurrent revisions serialize; the primary key would refuse
        // a duplicate revision anyway.
        sqlx::query("SELECT id FROM models WHERE id = $1 FOR UPDATE")
            .bind(m.id)
            .execute(&mut *tx)
            .await?;
        let appended: Appended = sqlx::query_as(
            "INSERT INTO serial_policies (model_id, revision, key_id, created_by) \
             SELECT $1, COALESCE(MAX(revision), 0) + 1, $2, $3 FROM serial_policies \
             WHERE model_id = $1 RETURNING revision, created_at",
        )
        .bind(m.id)
        .bind(k.id)
        .bind(&actor.0)
        .fetch_one(&mut *tx)
        .await?;
        changed(
            &mut tx,
            actor,
            "serial-policy.create",
            &format!("{}/{}", m.brand_id, m.name),
            serde_json::json!({"revision": appended.revision, "key": k.sha3_384}),
        )
        .await?;
        tx.commit().await?;
        Ok(SerialPolicy {
            brand_id: m.brand_id,
            model: m.name,
            model_id: m.id,
            revision: appended.revision,
            key_id: k.id,
            key_name: k.name,
            key_sha3_384: k.sha3_384.unwrap_or_default(),
            created_at: appended.created_at,
            created_by: actor.0.clone(),
        })
    }

    /// Policy history, newest revision first per model; all models when `model` is `None`.
    pub async fn serial_policies(
        &self,
        brand_id: Option<&str>,
        model: Option<&str>,
    ) -> Result<Vec<SerialPolicy>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{POLICY_SELECT} WHERE ($1::text IS NULL OR m.brand_id = $1) \
             AND ($2::text IS NULL OR m.name = $2) \
             ORDER BY m.brand_id, m.name, p.revision DESC"
        )))
        .bind(brand_id)
        .bind(model)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The active (newest) revision of every model that has one.
    pub async fn active_serial_policies(&self) -> Result<Vec<SerialPolicy>> {
        all_active_policies(&self.pool).await
    }
}

pub(super) async fn all_active_policies<'e, E: sqlx::PgExecutor<'e>>(
    e: E,
) -> Result<Vec<SerialPolicy>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{POLICY_SELECT} WHERE p.revision = \
         (SELECT MAX(revision) FROM serial_policies q WHERE q.model_id = p.model_id) \
         ORDER BY m.brand_id, m.name"
    )))
    .fetch_all(e)
    .await?)
}
