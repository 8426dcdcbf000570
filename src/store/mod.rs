//! The Postgres store: the only code in serialmint that speaks SQL.
//!
//! [`Store`] wraps a [`PgPool`]; each table family has its own file with typed functions, and
//! [`ChangeListener`] follows the changes other instances announce.
//! Queries are checked at run time (`sqlx::query`, never the `query!` macros), so building needs
//! no database. Every admin change runs in one transaction together with its audit-log row and
//! a `NOTIFY serialmint_changes, '<what>'`, so every instance's catalog follows it. Errors are
//! sorted into [`StoreError`] kinds the HTTP edge maps to statuses; this module knows no HTTP.

mod accounts;
mod audit;
mod brands;
mod chain;
mod changes;
mod checkpoints;
mod dashboard;
mod keys;
mod model_assertions;
mod models;
mod policies;
mod remodel_policies;
mod secret;
mod signing_log;
mod system_users;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

pub use crate::domain::{
    AssertionKind, DuplicatePolicy, ExportedIssuance, Issuance, KeyOrigin, KeyStatus,
    LoggedIssuance, RecordOutcome, Role, SerialGeneration,
};
pub use accounts::{AccountAssertion, NewAccountAssertion};
pub use audit::{AuditEntry, ExportedAuditEntry};
pub use brands::Brand;
pub use changes::{Change, ChangeListener};
pub use checkpoints::{ChainState, CheckpointTx};
pub use dashboard::{MinuteCount, ModelCount};
pub use keys::SigningKey;
pub use model_assertions::{ModelAssertion, NewModelAssertion};
pub use models::{Model, ModelChange, NewModel};
pub use policies::SerialPolicy;
pub use remodel_policies::{NewRemodelPolicy, RemodelPolicy, compile_serial_pattern};
pub use signing_log::LogFilter;
pub use system_users::{NewSystemUser, SystemUserRecord};
pub use tokens::{NewToken, TokenInfo, TokenRecord};

/// The channel every admin change is announced on (`LISTEN serialmint_changes`).
pub const CHANGES_CHANNEL: &str = "serialmint_changes";

/// The migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Why a store operation failed. The kinds are what callers sort on (the HTTP edge maps
/// them to statuses); each carries a [`Reason`]: words for the caller, and the error beneath
/// (sqlx's, the migrator's), which is this error's [`std::error::Error::source`].
///
/// The words of the unavailable and database kinds include the cause's text, as they always
/// did, since the edges print one line; walking the source chain repeats it.
#[derive(Debug)]
pub enum StoreError {
    /// The named thing does not exist.
    NotFound(Reason),
    /// The change collides with existing data (a unique or foreign-key constraint).
    Conflict(Reason),
    /// The input is not acceptable (a check constraint or a validation here).
    Invalid(Reason),
    /// Postgres cannot be reached (connection refused, pool timed out, server gone).
    Unavailable(Reason),
    /// Any other database error, including a row the store cannot read (a corrupt row).
    Database(Reason),
}

impl StoreError {
    /// What it says, and its cause.
    pub fn reason(&self) -> &Reason {
        match self {
            StoreError::NotFound(r)
            | StoreError::Conflict(r)
            | StoreError::Invalid(r)
            | StoreError::Unavailable(r)
            | StoreError::Database(r) => r,
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound(r) | StoreError::Conflict(r) | StoreError::Invalid(r) => {
                write!(f, "{r}")
            }
            StoreError::Unavailable(r) => write!(f, "database unavailable: {r}"),
            StoreError::Database(r) => write!(f, "database error: {r}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.reason()
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// What a [`StoreError`] says, with the error beneath it when there was one.
///
/// Derefs to the message, so `m.contains("...")` reads it, and `String::from` takes it. The
/// cause is never the connection URL's parse error (the URL carries the password).
#[derive(Debug)]
pub struct Reason {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Reason {
    /// A message with the error that caused it.
    fn caused_by(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Reason {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::ops::Deref for Reason {
    type Target = str;

    fn deref(&self) -> &str {
        &self.message
    }
}

impl From<String> for Reason {
    fn from(message: String) -> Self {
        Reason {
            message,
            source: None,
        }
    }
}

impl From<&str> for Reason {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

impl From<Reason> for String {
    fn from(r: Reason) -> Self {
        r.message
    }
}

impl From<sqlx::Error> for StoreError {
    /// Sorts by SQLSTATE: integrity violations are conflicts (23505 unique, 23503 foreign
    /// key, 23001 restrict) or invalid input (23514 check, 22001 too long, 22P02 bad text);
    /// connection classes (08, 57P) and pool failures are unavailability; a column that does
    /// not decode is a corrupt row. Callers that know a constraint reword it first
    /// (by its name).
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound(Reason::caused_by("not found", e)),
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => {
                StoreError::Unavailable(Reason::caused_by(e.to_string(), e))
            }
            sqlx::Error::ColumnDecode { index, source } => StoreError::Database(Reason::caused_by(
                format!("corrupt row: column {index}: {source}"),
                e,
            )),
            sqlx::Error::Database(db) => {
                let msg = db.message().to_string();
                match db.code().as_deref() {
                    Some("23505" | "23503" | "23001") => {
                        StoreError::Conflict(Reason::caused_by(msg, e))
                    }
                    Some("23514" | "22001" | "22P02") => {
                        StoreError::Invalid(Reason::caused_by(msg, e))
                    }
                    Some(c) if c.starts_with("08") || c.starts_with("57P") => {
                        StoreError::Unavailable(Reason::caused_by(msg, e))
                    }
                    _ => StoreError::Database(Reason::caused_by(msg, e)),
                }
            }
            _ => StoreError::Database(Reason::caused_by(e.to_string(), e)),
        }
    }
}

/// Whether Postgres refused the statement for a constraint (SQLSTATE class 23): the
/// statement's fault, not the connection's.
fn is_constraint_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("23")))
}

/// The constraint `e` violated, by its name in the migrations (Postgres' generated names:
/// `<table>_<column>_key`, `_fkey`, `_check`), when `e` is a constraint violation.
fn violated(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(db) if is_constraint_violation(e) => db.constraint(),
        _ => None,
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
    /// Every remodel policy.
    pub remodel_policies: Vec<RemodelPolicy>,
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
    /// The connection of [`Store::probe`], outside the pool (made on first use).
    probe: Arc<tokio::sync::Mutex<Option<sqlx::PgConnection>>>,
    /// The group commit's connection, outside the pool (made on first use): see
    /// [`Store::writer_connection`].
    writer: Arc<parking_lot::Mutex<Option<sqlx::PgConnection>>>,
    /// The signing-log chain head as this store last wrote or read it: the next group
    /// commit appends at it in one statement that holds only if it is still the head
    /// (`signing_log.rs`). `None` until known, and after a surprise.
    signing_head: Arc<parking_lot::Mutex<Option<crate::evidence::chain::Head>>>,
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
                // No source: a parse error may quote the URL, password and all.
                sqlx::Error::Configuration(_) => {
                    StoreError::Invalid("database.url is not a valid Postgres URL".into())
                }
                other => StoreError::Unavailable(Reason::caused_by(
                    format!("cannot connect to Postgres: {other}"),
                    other,
                )),
            })?;
        Ok(Store::from_pool(pool))
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
        Store {
            pool,
            probe: Arc::default(),
            writer: Arc::default(),
            signing_head: Arc::default(),
        }
    }

    /// Closes every connection and refuses new ones: every later call fails as
    /// [`StoreError::Unavailable`] (shutdown; tests use it to simulate an outage).
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.lock().take();
    }

    /// The group commit's own connection, outside the pool, taken out of its slot (made when
    /// there is none), and whether it was kept from an earlier call.
    ///
    /// A pooled query costs two more round trips than its statement: sqlx pings a connection
    /// before it hands it out (`test_before_acquire`) and again when it takes it back. The
    /// group commit sends one statement per commit from one task, so it keeps a connection
    /// of its own: one round trip per commit, one Postgres wake-up on the answer's path
    /// instead of two. The caller puts it back with [`Store::keep_writer_connection`] when
    /// its statement answered; dropped instead (an error, or the call itself dropped half-way:
    /// the commit's timeout, the log seen down), it is closed and the next call connects
    /// again. A closed store fails it like the pool does.
    pub(crate) async fn writer_connection(
        &self,
    ) -> std::result::Result<(sqlx::PgConnection, bool), sqlx::Error> {
        if self.pool.is_closed() {
            return Err(sqlx::Error::PoolClosed);
        }
        let held = self.writer.lock().take();
        match held {
            Some(conn) => Ok((conn, true)),
            None => Ok((self.connect_outside_pool().await?, false)),
        }
    }

    /// A new connection with the pool's options, not counted in the pool (the probe's and the
    /// group commit's).
    async fn connect_outside_pool(&self) -> std::result::Result<sqlx::PgConnection, sqlx::Error> {
        use sqlx::Connection;
        sqlx::PgConnection::connect_with(&self.pool.connect_options()).await
    }

    /// Puts the group commit's connection back after `answer` (see
    /// [`Store::writer_connection`]) when the connection is known good: rows came back, or
    /// Postgres refused a row (a constraint violation); otherwise it is closed.
    pub(crate) fn keep_writer_connection<T>(
        &self,
        conn: sqlx::PgConnection,
        answer: &std::result::Result<T, sqlx::Error>,
    ) {
        let good = answer.as_ref().err().is_none_or(is_constraint_violation);
        if good && !self.pool.is_closed() {
            *self.writer.lock() = Some(conn);
        }
    }

    /// Applies the embedded migrations that are not applied yet.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => StoreError::from(e),
            other => StoreError::Database(Reason::caused_by(
                format!("migration failed: {other}"),
                other,
            )),
        })
    }

    /// Whether Postgres answers a trivial query.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// `SELECT 1` on a connection of its own, outside the pool: the signing log's watchdog,
    /// which must see an outage at once (a pooled query waits out the pool's connect retries
    /// while Postgres refuses connections) and must not wait behind a busy pool. A connection
    /// that fails is dropped and a new one tried once at once (Postgres may have closed only
    /// this one); the caller bounds the time. A closed pool fails it too: the store is
    /// unusable however Postgres is.
    pub async fn probe(&self) -> Result<()> {
        if self.pool.is_closed() {
            return Err(sqlx::Error::PoolClosed.into());
        }
        let mut slot = self.probe.lock().await;
        if let Some(conn) = slot.as_mut() {
            if sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok() {
                return Ok(());
            }
            *slot = None;
        }
        let mut conn = self.connect_outside_pool().await?;
        let answered = sqlx::query("SELECT 1").execute(&mut conn).await;
        if answered.is_ok() {
            *slot = Some(conn);
        }
        answered.map(|_| ()).map_err(Into::into)
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
            remodel_policies: remodel_policies::all_remodel_policies(&mut *tx).await?,
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
    use crate::evidence::chain::{AuditRow, Chain, audit_row_bytes, canonical_json};
    // The audit chain: lock its head, link the row, store both (docs/EVIDENT-LOG.md).
    let locked = chain::lock_head(tx, Chain::AuditLog).await?;
    let mut head = locked.head;
    let detail = canonical_json(&detail);
    let row = AuditRow {
        at: locked.now,
        actor: &actor.0,
        action,
        target,
        detail: &detail,
    };
    let (seq, hash) = head.append(|seq| audit_row_bytes(seq, &row));
    sqlx::query(
        "INSERT INTO audit_log (actor, action, target, detail, at, chain_seq, chain_hash) \
         VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)",
    )
    .bind(&actor.0)
    .bind(action)
    .bind(target)
    .bind(&detail)
    .bind(locked.now)
    .bind(seq)
    .bind(hash.as_slice())
    .execute(&mut **tx)
    .await?;
    chain::set_head(tx, Chain::AuditLog, &head).await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGES_CHANNEL)
        .bind(format!("{action} {target}"))
        .execute(&mut **tx)
        .await?;
    Ok(())
}
