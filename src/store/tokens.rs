//! Admin API tokens: random bearer tokens of which only the SHA-256 is stored.
//!
//! A token is looked up by its hash (an index lookup, no comparison loop over secrets), so the
//! database never holds anything that authenticates by itself.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{Actor, Result, Store, StoreError, changed};
use crate::domain::Role;

/// A valid token's identity, as found by [`Store::authenticate`].
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenInfo {
    /// Row id.
    pub id: i64,
    /// The token's name (shown in the audit log as the actor).
    pub name: String,
    /// What it may do.
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// When it stops working, if ever.
    pub expires_at: Option<OffsetDateTime>,
    /// The brands it may act for; `None`: every brand.
    pub brands: Option<Vec<String>>,
}

/// A freshly created token: the secret is shown once and never stored.
#[derive(Clone, Debug)]
pub struct NewToken {
    /// The token's identity.
    pub info: TokenInfo,
    /// The bearer token itself.
    pub secret: String,
}

/// The SHA-256 under which a token is stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("smt_{}", URL_SAFE_NO_PAD.encode(bytes))
}

impl Store {
    /// Creates a token with a fresh random secret.
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
        expires_at: Option<OffsetDateTime>,
        actor: &Actor,
    ) -> Result<NewToken> {
        self.create_token_for(name, role, expires_at, None, actor)
            .await
    }

    /// [`Store::create_token`] for a token limited to `brands` (`None`: every brand); each
    /// must exist.
    pub async fn create_token_for(
        &self,
        name: &str,
        role: Role,
        expires_at: Option<OffsetDateTime>,
        brands: Option<&[String]>,
        actor: &Actor,
    ) -> Result<NewToken> {
        if let Some(list) = brands {
            if list.is_empty() {
                return Err(StoreError::Invalid(
                    "a brand-limited token needs at least one brand".into(),
                ));
            }
            let known = self.brands().await?;
            if let Some(b) = list
                .iter()
                .find(|b| !known.iter().any(|k| &k.account_id == *b))
            {
                return Err(StoreError::NotFound(format!("no brand {b:?}").into()));
            }
        }
        if name.trim().is_empty() {
            return Err(StoreError::Invalid("a token needs a name".into()));
        }
        let secret = new_secret();
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO admin_tokens (name, token_sha256, role, expires_at, brands) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(name)
        .bind(token_hash(&secret).as_slice())
        .bind(role.as_str())
        .bind(expires_at)
        .bind(brands)
        .fetch_one(&mut *tx)
        .await?;
        changed(
            &mut tx,
            actor,
            "token.create",
            name,
            serde_json::json!({"role": role.as_str(), "brands": brands}),
        )
        .await?;
        tx.commit().await?;
        Ok(NewToken {
            info: TokenInfo {
                id,
                name: name.to_string(),
                role,
                expires_at,
                brands: brands.map(<[String]>::to_vec),
            },
            secret,
        })
    }

    /// The token's identity when it exists, is not revoked and has not expired; records its
    /// use. `None` for anything else (the caller answers 401 without saying which).
    pub async fn authenticate(&self, token: &str) -> Result<Option<TokenInfo>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE admin_tokens SET last_used_at = now() \
             WHERE token_sha256 = $1 AND {WORKS} \
             RETURNING id, name, role, expires_at, brands"
        )))
        .bind(token_hash(token).as_slice())
        .fetch_optional(&self.pool)
        .await?)
    }
}

/// A token as listed (never with its secret).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRecord {
    /// Row id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its role.
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it stops working, if ever.
    pub expires_at: Option<OffsetDateTime>,
    /// When it was last used.
    pub last_used_at: Option<OffsetDateTime>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// The brands it may act for; `None`: every brand.
    pub brands: Option<Vec<String>>,
}

/// Which tokens authenticate: not revoked, not expired (by the database's clock).
const WORKS: &str = "NOT revoked AND (expires_at IS NULL OR expires_at > now())";

impl Store {
    /// Every token, oldest first.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        Ok(sqlx::query_as(
            "SELECT id, name, role, created_at, expires_at, last_used_at, revoked, brands \
             FROM admin_tokens ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many tokens with `role` would authenticate now.
    pub async fn working_tokens(&self, role: Role) -> Result<i64> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM admin_tokens WHERE role = $1 AND {WORKS}"
        )))
        .bind(role.as_str())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Revokes a token: it authenticates nothing any more.
    pub async fn revoke_token(&self, id: i64, actor: &Actor) -> Result<()> {
        let mut tx = self.begin().await?;
        let name: Option<String> = sqlx::query_scalar(
            "UPDATE admin_tokens SET revoked = true WHERE id = $1 RETURNING name",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let name = name.ok_or_else(|| StoreError::NotFound(format!("no token {id}").into()))?;
        changed(
            &mut tx,
            actor,
            "token.revoke",
            &name,
            serde_json::json!({ "id": id }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
