//! `/v1/audit-log`: who changed what, when (newest first).

use super::error::ApiResult;
use super::wire::{AuditEntryView, AuditQuery, Query};
use super::{Answer, Shared, list_of};
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
