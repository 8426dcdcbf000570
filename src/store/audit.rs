//! The audit log of admin changes (written by every change, in its transaction).

use time::OffsetDateTime;

use super::{Result, Store};

/// One recorded admin change.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEntry {
    /// When.
    pub at: OffsetDateTime,
    /// Who (the token's name, or `bootstrap`).
    pub actor: String,
    /// What kind of change, e.g. `model.create`.
    pub action: String,
    /// What it changed, e.g. `brand/model`.
    pub target: String,
    /// Details.
    #[sqlx(json)]
    pub detail: serde_json::Value,
}

/// An audit entry as exported: with its link in the tamper-evident chain (both `None` for
/// entries written before the chain started).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ExportedAuditEntry {
    /// The entry.
    #[sqlx(flatten)]
    pub entry: AuditEntry,
    /// Its sequence number in the audit-log chain.
    pub chain_seq: Option<i64>,
    /// Its chain hash (32 bytes).
    pub chain_hash: Option<Vec<u8>>,
}

impl Store {
    /// The whole audit log with the chain links, oldest first (admin changes only: small
    /// enough to answer in one piece).
    pub async fn audit_log_export(&self) -> Result<Vec<ExportedAuditEntry>> {
        Ok(sqlx::query_as(
            "SELECT at, actor, action, target, detail, chain_seq, chain_hash FROM audit_log \
             ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The newest `limit` audit entries (only those at or after `since` when given), newest
    /// first.
    pub async fn audit_log(
        &self,
        since: Option<OffsetDateTime>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        Ok(sqlx::query_as(
            "SELECT at, actor, action, target, detail FROM audit_log \
             WHERE $1::timestamptz IS NULL OR at >= $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
