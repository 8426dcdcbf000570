//! `/v1/audit-log`: who changed what, when (newest first), and `/v1/audit-log/export`: all
//! of it with the chain links (oldest first); `/v1/checkpoints`: the
//! tamper-evident log's signed checkpoints, for copying off the machine.

use super::error::ApiResult;
use super::wire::{AuditEntryView, AuditQuery, CheckpointList, List, Query};
use super::{Answer, Shared, list_of, ok};
use crate::store::AuditEntry;

impl From<AuditEntry> for AuditEntryView {
    fn from(e: AuditEntry) -> Self {
        AuditEntryView {
            at: e.at,
            actor: e.actor,
            action: e.action,
            target: e.target,
            detail: e.detail,
            chain_seq: None,
            chain_hash: None,
        }
    }
}

/// `GET /v1/audit-log/export`: every entry with its chain link, oldest first.
pub(super) async fn export(s: &Shared) -> ApiResult<Answer> {
    let items: Vec<AuditEntryView> = s
        .store
        .audit_log_export()
        .await?
        .into_iter()
        .map(|e| AuditEntryView {
            chain_seq: e.chain_seq,
            chain_hash: e.chain_hash.as_deref().map(crate::evidence::chain::hex),
            ..AuditEntryView::from(e.entry)
        })
        .collect();
    ok(&List { items })
}

/// `GET /v1/audit-log?since=&limit=`.
pub(super) async fn list(s: &Shared, q: &Query) -> ApiResult<Answer> {
    let q = AuditQuery::from_query(q)?;
    list_of::<_, AuditEntryView>(s.store.audit_log(q.since, q.size()).await?)
}

/// `GET /v1/checkpoints`.
pub(super) async fn checkpoints(s: &Shared) -> ApiResult<Answer> {
    ok(&CheckpointList {
        items: s.store.checkpoints().await?,
    })
}
