//! `/v1/signing-log`: the issued serials, newest first, paged by `next-before`; and
//! `/v1/signing-log/export`: the whole filtered log streamed as CSV or JSON, with no row cap.
//!
//! The export checks the database before answering 200; rows then flow from the store's
//! cursor through a bounded channel into the body, coalesced into chunks of about 64 KiB. A
//! failure mid-way aborts the body (the client sees a broken transfer, not a short file).

use bytes::Bytes;
use hyper::Response;
use hyper::header::{CONTENT_TYPE, HeaderValue};

use super::error::ApiResult;
use super::wire::{
    CSV_HEADER, ExportFormat, ExportQuery, IssuanceView, LogQuery, PageQuery, Query, SigningLogPage,
};
use super::{Answer, Shared, ok};
use crate::domain::{ExportedIssuance, LoggedIssuance};
use crate::http;
use crate::store::LogFilter;

/// Chunks of the export are sent once this big (or when no row is waiting).
const EXPORT_CHUNK: usize = 64 * 1024;

/// A signing-log row's view; `full` adds the serial assertion text.
fn view(row: &LoggedIssuance, full: bool) -> IssuanceView {
    let i = &row.issuance;
    IssuanceView {
        id: row.id,
        brand_id: i.brand_id.clone(),
        model: i.model_name.clone(),
        serial: i.serial.clone(),
        revision: i.revision,
        device_key: i.device_key_id.clone(),
        request_id: i.request_id.clone(),
        signing_key: i.signing_key_id.clone(),
        instance: i.instance.clone(),
        issued_at: row.issued_at,
        serial_assertion: full.then(|| i.serial_assertion.clone()),
        original_serial: i.original_serial.clone(),
        model_id: None,
        chain_seq: None,
        chain_hash: None,
    }
}

fn filter(q: LogQuery) -> LogFilter {
    LogFilter {
        brand_id: q.brand_id,
        model: q.model,
        serial_prefix: q.serial,
        since: q.since,
        until: q.until,
        device_key: q.device_key,
    }
}

/// `GET /v1/signing-log?model=&serial=&since=&until=&before=&limit=`.
pub(super) async fn page(s: &Shared, q: &Query) -> ApiResult<Answer> {
    let q = PageQuery::from_query(q)?;
    let limit = q.page_size();
    let rows = s
        .store
        .signing_log_page(&filter(q.filter), q.before, limit)
        .await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    ok(&SigningLogPage {
        items: rows.iter().map(|r| view(r, false)).collect(),
        next_before,
    })
}

fn csv_field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

/// One signing-log row as a CSV record (RFC 4180 quoting, the columns of [`CSV_HEADER`]),
/// with its line end.
pub fn issuance_csv(row: &LoggedIssuance) -> String {
    let i = &row.issuance;
    let issued_at = row
        .issued_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| row.issued_at.to_string());
    let mut out = String::with_capacity(i.serial_assertion.len() + 256);
    let fields = [
        &row.id.to_string(),
        &i.brand_id,
        &i.model_name,
        &i.serial,
        &i.revision.to_string(),
        &i.device_key_id,
        &i.request_id,
        &i.signing_key_id,
        &i.instance,
        &issued_at,
    ];
    for f in fields {
        csv_field(&mut out, f);
        out.push(',');
    }
    csv_field(&mut out, &i.serial_assertion);
    out.push_str("\r\n");
    out
}

/// An exported row's view: the full row, with the model's row id and the chain link the
/// tamper-evident log's canonical bytes need (`docs/EVIDENT-LOG.md`).
fn exported_view(e: &ExportedIssuance) -> IssuanceView {
    IssuanceView {
        model_id: Some(e.row.issuance.model_id),
        chain_seq: e.chain_seq,
        chain_hash: e.chain_hash.as_deref().map(crate::evidence::chain::hex),
        ..view(&e.row, true)
    }
}

/// Appends one row to the export body in `format` (the chain fields in JSON only: the CSV
/// columns stay as they were).
fn push_row(buf: &mut String, format: ExportFormat, e: &ExportedIssuance, first: bool) {
    let row = &e.row;
    match format {
        ExportFormat::Csv => buf.push_str(&issuance_csv(row)),
        ExportFormat::Json => {
            if !first {
                buf.push(',');
            }
            buf.push('\n');
            // Through `Value` for sorted keys, as the paged answers.
            match serde_json::to_value(exported_view(e)) {
                Ok(v) => buf.push_str(&v.to_string()),
                Err(e) => tracing::error!(id = row.id, error = %e, "unexportable row"),
            }
        }
    }
}

/// `GET /v1/signing-log/export?format=csv|json&model=&serial=&since=&until=`.
pub(super) async fn export(s: &Shared, q: &Query) -> ApiResult<Answer> {
    let ExportQuery { format, filter: f } = ExportQuery::from_query(q)?;
    // Fail before the 200 when the database is down; later errors abort the body.
    s.store.ping().await?;
    let (rows_tx, mut rows_rx) = tokio::sync::mpsc::channel(256);
    let (body_tx, body) = http::channel_body(16);
    let store = s.store.clone();
    let f = filter(f);
    tokio::spawn(async move { store.export_signing_log(&f, rows_tx).await });
    tokio::spawn(async move {
        let head = match format {
            ExportFormat::Csv => CSV_HEADER,
            ExportFormat::Json => "[",
        };
        if body_tx
            .send(Ok(Bytes::from_static(head.as_bytes())))
            .await
            .is_err()
        {
            return;
        }
        let mut first = true;
        let mut buf = String::new();
        while let Some(row) = rows_rx.recv().await {
            let row = match row {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "signing-log export failed mid-way");
                    let _ = body_tx.send(Err(std::io::Error::other(e))).await;
                    return;
                }
            };
            push_row(&mut buf, format, &row, first);
            first = false;
            if buf.len() >= EXPORT_CHUNK || rows_rx.is_empty() {
                let chunk = Bytes::from(std::mem::take(&mut buf));
                if body_tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        }
        if format == ExportFormat::Json {
            buf.push_str("\n]\n");
        }
        if !buf.is_empty() {
            let _ = body_tx.send(Ok(Bytes::from(buf))).await;
        }
    });
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        let mut s = String::new();
        csv_field(&mut s, "plain");
        s.push('|');
        csv_field(&mut s, "a,b");
        s.push('|');
        csv_field(&mut s, "say \"hi\"\nthere");
        assert_eq!(s, "plain|\"a,b\"|\"say \"\"hi\"\"\nthere\"");
    }
}
