//! The Postgres store: the only code in serialmint that speaks SQL.
//!
//! [`Store`] wraps a [`PgPool`]; each table family has its own file with typed functions.
//! Queries are checked at run time (`sqlx::query`, never the `query!` macros), so building needs
//! no database. Every admin change runs in one transaction together with its audit-log row and
//! a `NOTIFY serialmint_changes, '<what>'`, so every instance's catalog follows it. Errors are
//! sorted into [`StoreError`] kinds the HTTP edge maps to statuses; this module knows no HTTP.

mod accounts;
mod audit;
mod brands;
mod keys;
mod models;
mod policies;
mod secret;
mod signing_log;
mod tokens;

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

pub use crate::domain::{AssertionKind, DuplicatePolicy, KeyStatus, Role, SerialGeneration};
pub use accounts::{AccountAssertion, NewAccountAssertion};
pub use audit::AuditEntry;
pub use brands::Brand;
pub use keys::SigningKey;
pub use models::{Model, ModelChange, NewModel};
pub use policies::SerialPolicy;
pub use signing_log::{
    ConflictKind, Issuance, IssuanceOutcome, LogFilter, NewIssuance, ReplayReason,
};
pub use tokens::{NewToken, TokenInfo, TokenRecord};

/// The channel every admin change is announced on (`LISTEN serialmint_changes`).
pub const CHANGES_CHANNEL: &str = "serialmint_changes";

/// The migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change collides with existing data (a unique or foreign-key constraint).
    #[error("{0}")]
    Conflict(String),
    /// The input is not acceptable (a check constraint or a validation here).
    #[error("{0}")]
    Invalid(String),
    /// Postgres cannot be reached (connection refused, pool timed out, server gone).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound("not found".into()),
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) => {
                let msg = db.message().to_string();
                match db.code().as_deref() {
                    Some("23505") | Some("23503") | Some("23001") => StoreError::Conflict(msg),
                    Some("23514") | Some("22001") | Some("22P02") => StoreError::Invalid(msg),
                    Some(c) if c.starts_with("08") || c.starts_with("57P") => {
                        StoreError::Unavailable(msg)
                    }
                    _ => StoreError::Database(msg),
                }
            }
            _ => StoreError::Database(e.to_string()),
        }
    }
}

/// Shorthand for store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One consistent read of everything the in-memory catalog holds.
#[derive(Clone, Debug)]
pub struct CatalogRows {
    /// Every brand.
    pub brands: Vec<Brand>,
    /// Every model.
    pub models: Vec<Model>,
    /// The active (newest) serial policy of every model that has one.
    pub active_policies: Vec<SerialPolicy>,
    /// Every signing key.
    pub keys: Vec<SigningKey>,
    /// Every pushed account and account-key assertion.
    pub assertions: Vec<AccountAssertion>,
}

/// Who made an admin change, for the audit log and `created_by` columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    /// The actor for changes made by `serialmint init` directly in the database.
    pub fn bootstrap() -> Self {
        Actor("bootstrap".into())
    }
}

/// The Postgres store, cheap to clone (it is a pool handle).
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects a pool of at most `max_connections` to `url`, failing fast (5 s) when Postgres
    /// cannot be reached. The error never contains the URL (it carries the password).
    pub async fn connect_url(url: &str, max_connections: u32) -> Result<Self> {
        if url.is_empty() {
            return Err(StoreError::Invalid(
                "database.url (SERIALMINT_DATABASE_URL) is not set".into(),
            ));
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| match e {
                sqlx::Error::Configuration(_) => {
                    StoreError::Invalid("database.url is not a valid Postgres URL".into())
                }
                other => StoreError::Unavailable(format!("cannot connect to Postgres: {other}")),
            })?;
        Ok(Store { pool })
    }

    /// Connects with the configured URL and pool size.
    pub async fn connect(config: &crate::config::Config) -> Result<Self> {
        Self::connect_url(
            secrecy::ExposeSecret::expose_secret(&config.database_url),
            config.database_max_connections,
        )
        .await
    }

    /// Wraps an existing pool (tests hand in the per-test pool of `#[sqlx::test]`).
    pub fn from_pool(pool: PgPool) -> Self {
        Store { pool }
    }

    /// The pool, for the LISTEN connection of the catalog.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the embedded migrations that are not applied yet.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => StoreError::from(e),
            other => StoreError::Database(format!("migration failed: {other}")),
        })
    }

    /// Whether Postgres answers a trivial query.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Everything the catalog needs, read in one REPEATABLE READ, READ ONLY transaction, so
    /// the snapshot is consistent (no policy naming a key the same load did not see).
    pub async fn catalog_rows(&self) -> Result<CatalogRows> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let rows = CatalogRows {
            brands: brands::all_brands(&mut *tx).await?,
            models: models::all_models(&mut *tx).await?,
            active_policies: policies::all_active_policies(&mut *tx).await?,
            keys: keys::all_keys(&mut *tx).await?,
            assertions: accounts::all_account_assertions(&mut *tx).await?,
        };
        tx.commit().await?;
        Ok(rows)
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

/// Records an admin change in the audit log and announces it on [`CHANGES_CHANNEL`], both in
/// the caller's transaction (so neither happens unless the change commits).
async fn changed(
    tx: &mut Transaction<'static, Postgres>,
    actor: &Actor,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<()> {
    sqlx::query("INSERT INTO audit_log (actor, action, target, detail) VALUES ($1, $2, $3, $4)")
        .bind(&actor.0)
        .bind(action)
        .bind(target)
        .bind(sqlx::types::Json(detail))
        .execute(&mut **tx)
        .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGES_CHANNEL)
        .bind(format!("{action} {target}"))
        .execute(&mut **tx)
        .await?;
    Ok(())
}
