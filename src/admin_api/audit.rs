//! `/v1/audit-log`: who changed what, when (newest first).

use super::error::ApiResult;
use super::wire::{AuditEntryView, AuditQuery, List, Query};
use super::{Answer, Shared, ok};

/// `GET /v1/audit-log?limit=`.
pub(super) async fn list(s: &Shared, q: &Query) -> ApiResult<Answer> {
    let entries = s.store.audit_log(AuditQuery::from_query(q).size()).await?;
    ok(&List {
        items: entries
            .into_iter()
            .map(|e| AuditEntryView {
                at: e.at,
                actor: e.actor,
                action: e.action,
                target: e.target,
                detail: e.detail,
            })
            .collect(),
    })
}
