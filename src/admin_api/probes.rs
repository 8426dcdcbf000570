//! `/healthz` and `/readyz` (no token: the process is up; ready means Postgres answers, the
//! HSM can sign and the catalog has loaded) and `/metrics` (Prometheus text, any token).

use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;

use super::error::ApiResult;
use super::wire::{Health, Readiness, ReadinessChecks};
use super::{Answer, Shared, json};
use crate::http;

/// The answer of a route that needs no token, or `None` when `path` is not one.
pub(super) async fn unauthenticated(
    s: &Shared,
    method: &Method,
    path: &str,
) -> Option<ApiResult<Answer>> {
    if !matches!(path, "/healthz" | "/readyz") {
        return None;
    }
    if method != Method::GET {
        return Some(Ok(http::streamed(http::method_not_allowed("GET"))));
    }
    Some(match path {
        "/healthz" => json(
            StatusCode::OK,
            &Health {
                status: "ok".into(),
            },
        ),
        _ => readyz(s).await,
    })
}

async fn readyz(s: &Shared) -> ApiResult<Answer> {
    let checks = ReadinessChecks {
        // The store's own probe connection, bounded: while Postgres is away this answers in
        // a second at most (a pooled query would wait out the pool's connect retries).
        database: matches!(
            tokio::time::timeout(std::time::Duration::from_secs(1), s.store.probe()).await,
            Ok(Ok(()))
        ),
        hsm: s.backend.hsm_healthy(),
        catalog: s.catalog.is_loaded(),
    };
    let ready = checks.database && checks.hsm && checks.catalog;
    let (status, word) = if ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not-ready")
    };
    json(
        status,
        &Readiness {
            status: word.into(),
            checks,
        },
    )
}

/// `GET /metrics`.
pub(super) fn metrics(s: &Shared) -> Answer {
    let text = s
        .metrics
        .as_ref()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    let mut resp = Response::new(http_body_util::Full::new(Bytes::from(text)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    http::streamed(resp)
}
