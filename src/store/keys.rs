//! Signing keys: names, SHA3-384 ids, public keys, scope, and the status of their
//! asynchronous generation on the HSM (pending, ready, failed).

use time::OffsetDateTime;

use super::{Actor, Reason, Result, Store, StoreError, changed, violated};
use crate::domain::{KeyOrigin, KeyPurpose, KeyStatus};

/// A signing key as recorded in the store.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SigningKey {
    /// Row id (what serial policies reference).
    pub id: i64,
    /// The key's name (its label on the token).
    pub name: String,
    /// The brand that owns it.
    pub brand_id: String,
    /// The snapd key id (`sign-key-sha3-384`), once generated.
    #[sqlx(rename = "key_sha3_384")]
    pub sha3_384: Option<String>,
    /// The public key as snapd encodes it (base64, 76 columns), once generated.
    pub public_key: Option<String>,
    /// Assertion types it may sign (default `serial`).
    pub allowed_types: Vec<String>,
    /// Models it may sign for: `*` or a glob with `*` (default `*`).
    pub model_pattern: String,
    /// Whether it may sign at all (disabling is one-way).
    pub active: bool,
    /// Where generation stands.
    #[sqlx(try_from = "String")]
    pub status: KeyStatus,
    /// Why generation failed.
    pub error: Option<String>,
    /// When it was requested.
    pub created_at: OffsetDateTime,
    /// Generated on the token, or imported onto it.
    #[sqlx(try_from = "String")]
    pub origin: KeyOrigin,
    /// Assertions, or only the tamper-evident log's checkpoints (an audit key).
    #[sqlx(try_from = "String")]
    pub purpose: KeyPurpose,
}

impl SigningKey {
    /// Whether this key may sign an assertion of `kind` for `model`.
    pub fn may_sign(&self, kind: &str, model: &str) -> bool {
        self.purpose == KeyPurpose::Assertions
            && self.active
            && self.status == KeyStatus::Ready
            && self.allowed_types.iter().any(|t| t == kind)
            && glob_match(&self.model_pattern, model)
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

const KEY_COLUMNS: &str = "id, name, brand_id, key_sha3_384, public_key, allowed_types, \
                           model_pattern, active, status, error, created_at, origin, \
                           purpose";

impl Store {
    /// Records a key about to be generated (status pending). Fails with a conflict when the
    /// name is taken.
    pub async fn create_pending_key(
        &self,
        name: &str,
        brand_id: &str,
        allowed_types: &[String],
        model_pattern: &str,
        actor: &Actor,
    ) -> Result<SigningKey> {
        let types: Vec<String> = if allowed_types.is_empty() {
            vec!["serial".into()]
        } else {
            allowed_types.to_vec()
        };
        self.insert_pending_key(
            name,
            brand_id,
            &types,
            model_pattern,
            KeyPurpose::Assertions,
            actor,
        )
        .await
    }

    /// Records an audit key about to be generated (status pending): it signs the
    /// tamper-evident log's checkpoints and nothing else (no assertion types, and
    /// [`SigningKey::may_sign`] is false whatever is asked).
    pub async fn create_pending_audit_key(
        &self,
        name: &str,
        brand_id: &str,
        actor: &Actor,
    ) -> Result<SigningKey> {
        self.insert_pending_key(name, brand_id, &[], "*", KeyPurpose::Audit, actor)
            .await
    }

    async fn insert_pending_key(
        &self,
        name: &str,
        brand_id: &str,
        types: &[String],
        model_pattern: &str,
        purpose: KeyPurpose,
        actor: &Actor,
    ) -> Result<SigningKey> {
        let mut tx = self.begin().await?;
        // A failed generation leaves its name free for another try.
        sqlx::query("DELETE FROM signing_keys WHERE name = $1 AND status = 'failed'")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let key: SigningKey = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO signing_keys (name, brand_id, allowed_types, model_pattern, purpose) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {KEY_COLUMNS}"
        )))
        .bind(name)
        .bind(brand_id)
        .bind(types)
        .bind(model_pattern)
        .bind(purpose.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| new_key_error(e, name, brand_id))?;
        changed(
            &mut tx,
            actor,
            "key.create",
            name,
            match purpose {
                KeyPurpose::Assertions => serde_json::json!({"status": "pending"}),
                KeyPurpose::Audit => serde_json::json!({"status": "pending", "purpose": "audit"}),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(key)
    }

    /// Marks a pending key generated, with its id and encoded public key.
    pub async fn mark_key_ready(
        &self,
        name: &str,
        sha3_384: &str,
        public_key: &str,
        actor: &Actor,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE signing_keys SET status = 'ready', key_sha3_384 = $2, public_key = $3, \
             error = NULL, ready_at = now() WHERE name = $1 AND status = 'pending'",
        )
        .bind(name)
        .bind(sha3_384)
        .bind(public_key)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(
                format!("no pending key {name:?}").into(),
            ));
        }
        changed(
            &mut tx,
            actor,
            "key.ready",
            name,
            serde_json::json!({"sha3-384": sha3_384}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks a pending key failed, with the reason.
    pub async fn mark_key_failed(&self, name: &str, error: &str, actor: &Actor) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE signing_keys SET status = 'failed', error = $2 \
             WHERE name = $1 AND status = 'pending'",
        )
        .bind(name)
        .bind(error)
        .execute(&mut *tx)
        .await?;
        changed(
            &mut tx,
            actor,
            "key.failed",
            name,
            serde_json::json!({"error": error}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Reserves name and id for a key about to be imported onto the token: a pending row
    /// with origin `imported`, its id and public key, so a second import of the same name or
    /// key is refused here, before it touches the token. A failed or abandoned row of the
    /// same name or id gives way. No audit row yet: [`Store::finish_imported_key`] writes it,
    /// [`Store::drop_reserved_key`] removes the reservation when the import fails.
    pub async fn reserve_imported_key(
        &self,
        name: &str,
        brand_id: &str,
        sha3_384: &str,
        public_key: &str,
    ) -> Result<SigningKey> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "DELETE FROM signing_keys WHERE (name = $1 OR key_sha3_384 = $2) \
             AND status = 'failed'",
        )
        .bind(name)
        .bind(sha3_384)
        .execute(&mut *tx)
        .await?;
        if let Some((held,)) =
            sqlx::query_as::<_, (String,)>("SELECT name FROM signing_keys WHERE key_sha3_384 = $1")
                .bind(sha3_384)
                .fetch_optional(&mut *tx)
                .await?
        {
            return Err(StoreError::Conflict(
                format!("key {sha3_384} is already held, as {held:?}").into(),
            ));
        }
        let key: SigningKey = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO signing_keys (name, brand_id, key_sha3_384, public_key, origin) \
             VALUES ($1, $2, $3, $4, 'imported') RETURNING {KEY_COLUMNS}"
        )))
        .bind(name)
        .bind(brand_id)
        .bind(sha3_384)
        .bind(public_key)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match violated(&e) {
            Some("signing_keys_key_sha3_384_key") => StoreError::Conflict(Reason::caused_by(
                format!("key {sha3_384} is already held"),
                e,
            )),
            _ => new_key_error(e, name, brand_id),
        })?;
        tx.commit().await?;
        Ok(key)
    }

    /// Marks a reserved import done (status ready), with its audit row and NOTIFY.
    pub async fn finish_imported_key(&self, name: &str, actor: &Actor) -> Result<SigningKey> {
        let mut tx = self.begin().await?;
        let key: Option<SigningKey> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE signing_keys SET status = 'ready', error = NULL, ready_at = now() \
             WHERE name = $1 AND status = 'pending' AND origin = 'imported' \
             RETURNING {KEY_COLUMNS}"
        )))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let key = key.ok_or_else(|| {
            StoreError::NotFound(format!("no key {name:?} being imported").into())
        })?;
        changed(
            &mut tx,
            actor,
            "key.import",
            name,
            serde_json::json!({"sha3-384": key.sha3_384, "origin": KeyOrigin::Imported}),
        )
        .await?;
        tx.commit().await?;
        Ok(key)
    }

    /// Removes the reservation of an import that failed (only a pending imported row).
    pub async fn drop_reserved_key(&self, name: &str) -> Result<()> {
        sqlx::query(
            "DELETE FROM signing_keys WHERE name = $1 AND status = 'pending' \
             AND origin = 'imported'",
        )
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every key, oldest first.
    pub async fn keys(&self) -> Result<Vec<SigningKey>> {
        all_keys(&self.pool).await
    }

    /// The key with this name or SHA3-384 id.
    pub async fn key(&self, name_or_id: &str) -> Result<SigningKey> {
        let key: Option<SigningKey> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM signing_keys WHERE name = $1 OR key_sha3_384 = $1 \
             ORDER BY (name = $1) DESC LIMIT 1"
        )))
        .bind(name_or_id)
        .fetch_optional(&self.pool)
        .await?;
        key.ok_or_else(|| StoreError::NotFound(format!("no key {name_or_id:?}").into()))
    }

    /// Disables a key: it signs nothing more (its models answer 409) until it is enabled
    /// again or a new policy revision names another key. The row stays for the history.
    pub async fn disable_key(&self, name_or_id: &str, actor: &Actor) -> Result<SigningKey> {
        self.set_key_active(name_or_id, false, actor).await
    }

    /// Enables a disabled key again.
    pub async fn enable_key(&self, name_or_id: &str, actor: &Actor) -> Result<SigningKey> {
        self.set_key_active(name_or_id, true, actor).await
    }

    async fn set_key_active(
        &self,
        name_or_id: &str,
        active: bool,
        actor: &Actor,
    ) -> Result<SigningKey> {
        let k = self.key(name_or_id).await?;
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE signing_keys SET active = $2 WHERE id = $1")
            .bind(k.id)
            .bind(active)
            .execute(&mut *tx)
            .await?;
        let action = if active { "key.enable" } else { "key.disable" };
        changed(&mut tx, actor, action, &k.name, serde_json::json!({})).await?;
        tx.commit().await?;
        Ok(SigningKey { active, ..k })
    }

    /// Marks pending keys failed that were left behind by a process that stopped while
    /// generating them (their generation cannot finish any more).
    pub async fn fail_stale_pending_keys(&self, older_than_secs: i64) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE signing_keys SET status = 'failed', \
             error = CASE origin WHEN 'imported' \
             THEN 'import interrupted (the server stopped); import the key again' \
             ELSE 'generation interrupted (the server stopped); create the key again' END \
             WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1)",
        )
        .bind(older_than_secs as f64)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

pub(super) async fn all_keys<'e, E: sqlx::PgExecutor<'e>>(e: E) -> Result<Vec<SigningKey>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM signing_keys ORDER BY created_at, id"
    )))
    .fetch_all(e)
    .await?)
}

/// A refused insert of a new key row, worded for the name and brand it was for.
fn new_key_error(e: sqlx::Error, name: &str, brand_id: &str) -> StoreError {
    match violated(&e) {
        Some("signing_keys_name_key") => StoreError::Conflict(Reason::caused_by(
            format!("a key named {name:?} already exists"),
            e,
        )),
        Some("signing_keys_brand_id_fkey") => {
            StoreError::NotFound(Reason::caused_by(format!("no brand {brand_id:?}"), e))
        }
        Some("signing_keys_name_check") => StoreError::Invalid(Reason::caused_by(
            format!(
                "invalid key name {name:?}: lowercase letters, digits and single dashes, \
                 with at least one letter"
            ),
            e,
        )),
        _ => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("pc-*", "pc-amd64"));
        assert!(!glob_match("pc-*", "pi-amd64"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("a*c*e", "abde"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("ab*ba", "aba"));
    }
}
