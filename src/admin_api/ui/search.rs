//! The signing-log search: model, serial prefix, device key and time range, newest first,
//! paged, with a CSV export link of the same filter.
//!
//! The form's fields are the JSON route's query parameters, read by the same
//! [`PageQuery`]/[`ExportQuery`] and answered by the same store calls; a brand-limited token
//! is held to its brands exactly as the router holds it on `/v1/signing-log`. The export is
//! the JSON route's own streamed CSV.

use hyper::header::{CONTENT_DISPOSITION, HeaderValue};
use hyper::{Method, StatusCode};
use maud::html;

use super::Viewer;
use super::pages::frame;
use crate::admin_api::error::ApiResult;
use crate::admin_api::wire::{ExportFormat, ExportQuery, PageQuery, Query};
use crate::admin_api::{Answer, Shared, limit_to_brands, signing_log};
use crate::store::LogFilter;

/// Form fields as the JSON route's parameters: empty fields dropped, a browser's
/// `datetime-local` (`2026-12-03T09:30`, no zone) read as UTC.
fn normalize(q: &Query, keep: &[&str]) -> Query {
    let mut out = Query::parse("");
    for name in keep {
        let Some(v) = q.get(name).map(str::trim).filter(|v| !v.is_empty()) else {
            continue;
        };
        let v = match *name {
            "since" | "until" if v.len() == 16 => format!("{v}:00Z"),
            "since" | "until" if v.len() == 19 => format!("{v}Z"),
            _ => v.to_string(),
        };
        out.set(name, &v);
    }
    out
}

const FILTER: &[&str] = &[
    "brand-id",
    "model",
    "serial",
    "device-key",
    "since",
    "until",
];

/// The query of a search, held to the viewer's brands.
fn query(v: &Viewer, q: &Query, extra: &[&str]) -> ApiResult<Query> {
    let keep: Vec<&str> = FILTER.iter().chain(extra).copied().collect();
    let mut q = normalize(q, &keep);
    if let Some(brands) = v.brands() {
        limit_to_brands(brands, &Method::GET, &["v1", "signing-log"], &mut q)?;
    }
    Ok(q)
}

/// What a form field shows: the value asked for.
fn field(q: &Query, name: &str) -> String {
    q.get(name).unwrap_or_default().to_string()
}

/// `GET /ui/signing-log`.
pub async fn page(s: &Shared, v: &Viewer, raw: &Query) -> ApiResult<Answer> {
    let q = query(v, raw, &["before"])?;
    let pq = PageQuery::from_query(&q)?;
    let limit = 50;
    let f = &pq.filter;
    let filter = LogFilter {
        brand_id: f.brand_id.clone(),
        model: f.model.clone(),
        serial_prefix: f.serial.clone(),
        since: f.since,
        until: f.until,
        device_key: f.device_key.clone(),
    };
    let rows = s.store.signing_log_page(&filter, pq.before, limit).await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let export = ExportQuery {
        format: ExportFormat::Csv,
        filter: pq.filter.clone(),
    }
    .to_query();
    let older = next.map(|before| {
        PageQuery {
            filter: pq.filter.clone(),
            before: Some(before),
            limit: None,
        }
        .to_query()
    });
    let body = html! {
        form.card.search #search-form method="get" action="/ui/signing-log" role="search" {
            div.fields {
                label { "Model" input #f-model type="text" name="model" value=(field(raw, "model")); }
                label { "Serial starts with"
                    input #f-serial type="text" name="serial" value=(field(raw, "serial")); }
                label { "Device key (SHA3-384)"
                    input #f-device-key type="text" name="device-key"
                        value=(field(raw, "device-key")); }
                label { "Since (UTC)"
                    input #f-since type="datetime-local" name="since" value=(field(raw, "since")); }
                label { "Until (UTC)"
                    input #f-until type="datetime-local" name="until" value=(field(raw, "until")); }
            }
            button #search type="submit" { "Search" }
            " "
            a #export href=(format!("/ui/signing-log/export.csv?{export}")) { "Export these as CSV" }
        }
        table #results {
            caption {
                (rows.len()) @if rows.len() == 1 { " serial" } @else { " serials" } ", newest first"
            }
            thead { tr {
                th scope="col" { "Issued (UTC)" } th scope="col" { "Brand" }
                th scope="col" { "Model" } th scope="col" { "Serial" } th scope="col" { "Rev." }
                th scope="col" { "Device key" } th scope="col" { "Signing key" }
            } }
            tbody {
                @for r in &rows {
                    @let i = &r.issuance;
                    tr {
                        td { (r.issued_at.date()) " " (r.issued_at.time().to_string().get(..8).unwrap_or_default()) }
                        td { (i.brand_id) } td { (i.model_name) }
                        td.serial { (i.serial) } td { (i.revision) }
                        td.key title=(i.device_key_id) { (short(&i.device_key_id)) }
                        td.key title=(i.signing_key_id) { (short(&i.signing_key_id)) }
                    }
                }
            }
        }
        @if rows.is_empty() { p #no-results { "No serial matches." } }
        @if let Some(older) = older {
            p { a #older href=(format!("/ui/signing-log?{older}")) { "Older serials →" } }
        }
    };
    Ok(super::page(
        StatusCode::OK,
        frame(Some(v), "/ui/signing-log", "Signing log", body),
    ))
}

/// A long key id's first characters.
fn short(id: &str) -> String {
    match id.get(..12) {
        Some(head) if id.len() > 12 => format!("{head}…"),
        _ => id.to_string(),
    }
}

/// `GET /ui/signing-log/export.csv`: the JSON route's CSV export of the same filter.
pub async fn export(s: &Shared, v: &Viewer, raw: &Query) -> ApiResult<Answer> {
    let mut q = query(v, raw, &[])?;
    q.set("format", ExportFormat::Csv.as_str());
    let mut resp = signing_log::export(s, &q).await?;
    resp.headers_mut().insert(
        CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"signing-log.csv\""),
    );
    Ok(resp)
}
