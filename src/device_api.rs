//! The device listener's routes: the HTTP edge of [`crate::registration`].
//!
//! `POST /v1/request-id` and `POST /api/v1/snaps/auth/request-id` give a request-id;
//! `POST /v1/serial` and `POST /api/v1/snaps/auth/devices` issue a serial;
//! `GET /v2/assertions/{account|account-key}/{primary-key}` serves the held assertions;
//! `GET /v1/version`. Errors are `application/json` exactly, in the shape snapd shows, and
//! every 503 carries `Retry-After`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::assertion::encode_stream;
use crate::http::{self, Handler, HttpResponse};
use crate::registration::{ASSERTION_MEDIA_TYPE, AssertionKind, RegError, Registration};

/// The device routes over a [`Registration`].
#[derive(Clone)]
pub struct DeviceApi {
    reg: Arc<Registration>,
    max_body: usize,
    body_timeout: Duration,
}

impl std::fmt::Debug for DeviceApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceApi")
            .field("max_body", &self.max_body)
            .field("body_timeout", &self.body_timeout)
            .finish_non_exhaustive()
    }
}

const REQUEST_ID_PATHS: [&str; 2] = ["/v1/request-id", "/api/v1/snaps/auth/request-id"];
const SERIAL_PATHS: [&str; 2] = ["/v1/serial", "/api/v1/snaps/auth/devices"];

impl Handler for DeviceApi {
    type Body = http_body_util::Full<bytes::Bytes>;

    async fn handle(&self, req: Request<Incoming>, _peer: SocketAddr) -> HttpResponse {
        self.route(req).await
    }
}

impl DeviceApi {
    /// Answers one request: what the listener does for each request it reads, with any body
    /// type, so the routes can be driven in-process (the `serial_route` fuzz target does).
    pub async fn route<B>(&self, req: Request<B>) -> HttpResponse
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        if REQUEST_ID_PATHS.contains(&path.as_str()) {
            return match method {
                Method::POST => self.request_id(&req),
                _ => http::method_not_allowed("POST"),
            };
        }
        if SERIAL_PATHS.contains(&path.as_str()) {
            return match method {
                Method::POST => self.serial(req).await,
                _ => http::method_not_allowed("POST"),
            };
        }
        if path == "/v1/version" {
            return match method {
                Method::GET => version(),
                _ => http::method_not_allowed("GET"),
            };
        }
        if let Some(rest) = path.strip_prefix("/v2/assertions/") {
            return match method {
                Method::GET | Method::HEAD => self.assertion(rest),
                _ => http::method_not_allowed("GET"),
            };
        }
        http::not_found()
    }
}

/// `GET /v1/version`.
pub fn version() -> HttpResponse {
    http::json_response(
        StatusCode::OK,
        &serde_json::json!({"name": "serialmint", "version": env!("CARGO_PKG_VERSION")}),
    )
}

/// An error answer: status, code and message as snapd shows them; `Retry-After` on 503.
pub fn error_response(e: &RegError) -> HttpResponse {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut resp = http::json_error(status, e.code(), &e.to_string());
    if let Some(after) = e.retry_after() {
        let secs = after.as_secs().max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert("retry-after", v);
        }
    }
    resp
}

fn header<'a, B>(req: &'a Request<B>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn assertion_response(body: Vec<u8>) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ASSERTION_MEDIA_TYPE));
    resp
}

/// Whether the device announced `Snap-Device-Capabilities: serial-stream`.
fn wants_stream<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all("snap-device-capabilities")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([' ', ',']))
        .any(|c| c.trim() == "serial-stream")
}

impl DeviceApi {
    /// The routes over `reg`, reading at most `max_body` bytes of a serial request, within
    /// the default body timeout (see [`DeviceApi::with_body_timeout`]).
    pub fn new(reg: Arc<Registration>, max_body: usize) -> Self {
        Self {
            reg,
            max_body,
            body_timeout: Duration::from_secs(30),
        }
    }

    /// The same routes, answering 408 when a serial request's body takes longer than
    /// `timeout` to arrive.
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// The registration behind the routes.
    pub fn registration(&self) -> &Arc<Registration> {
        &self.reg
    }

    fn request_id<B>(&self, req: &Request<B>) -> HttpResponse {
        if let Err(e) = self.reg.check_api_key(header(req, "api-key")) {
            metrics::counter!("request_ids_refused_total", "reason" => e.code()).increment(1);
            return error_response(&e);
        }
        metrics::counter!("request_ids_issued_total").increment(1);
        http::json_response(
            StatusCode::OK,
            &serde_json::json!({"request-id": self.reg.request_id()}),
        )
    }

    async fn serial<B>(&self, req: Request<B>) -> HttpResponse
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let api_key = match self.reg.check_api_key(header(&req, "api-key")) {
            Ok(k) => k.to_owned(),
            Err(e) => return refused(&e),
        };
        if let Err(e) = Registration::check_content_type(header(&req, "content-type")) {
            return refused(&e);
        }
        let stream = wants_stream(&req);
        let body = match http::read_body(req, self.max_body, self.body_timeout).await {
            Ok(b) => b,
            Err(http::BodyError::TooLarge(n)) => return refused(&RegError::TooLarge(n)),
            Err(e) => return e.response(),
        };
        match self.reg.issue(&api_key, &body).await {
            Ok(issued) => {
                let mut parts = vec![issued.serial.into_bytes()];
                if stream {
                    parts.extend(issued.chain.into_iter().map(String::into_bytes));
                }
                assertion_response(encode_stream(parts))
            }
            Err(e) => {
                if e.is_load_shed() {
                    // Shedding load is the service working as configured, and under overload
                    // it is every other request: counted (`serials_refused_total`), not a
                    // warning each (a line per refusal flooded the log and cost the 503s' time).
                    tracing::debug!(code = e.code(), error = %e, "serial request shed");
                } else if e.status() >= 500 {
                    tracing::warn!(code = e.code(), error = %e, "serial request failed");
                } else {
                    tracing::info!(code = e.code(), error = %e, "serial request refused");
                }
                error_response(&e)
            }
        }
    }

    fn assertion(&self, rest: &str) -> HttpResponse {
        let mut parts = rest.split('/');
        let (Some(kind), Some(pk), None) = (parts.next(), parts.next(), parts.next()) else {
            return http::not_found();
        };
        let Ok(kind) = kind.parse::<AssertionKind>() else {
            return http::not_found();
        };
        match self.reg.held_assertion(kind, pk) {
            Some(text) => assertion_response(encode_stream([text])),
            None => http::json_error(StatusCode::NOT_FOUND, "not-found", "assertion not found"),
        }
    }
}

/// Refusals before `issue` (API key, media type, size) are counted here.
fn refused(e: &RegError) -> HttpResponse {
    metrics::counter!("serials_refused_total", "model" => "unknown", "reason" => e.code())
        .increment(1);
    error_response(e)
}
