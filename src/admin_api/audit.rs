//! `/v1/audit-log`: who changed what, when (newest first); `/v1/checkpoints`: the
//! tamper-evident log's signed checkpoints, for copying off the machine.

use super::error::ApiResult;
use super::wire::{AuditEntryView, AuditQuery, CheckpointList, Query};
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
        }
    }
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
