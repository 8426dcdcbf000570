//! The admin CLI's HTTP client: talks to the admin listener at `SERIALMINT_ADMIN_URL`
//! (default `http://127.0.0.1:8081`) with `SERIALMINT_ADMIN_TOKEN` as a bearer token, and
//! turns the server's JSON errors into one line.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Default admin URL.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:8081";

/// A client of the admin API.
pub struct Client {
    base: String,
    token: Option<String>,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client from `SERIALMINT_ADMIN_URL` and `SERIALMINT_ADMIN_TOKEN`.
    pub fn from_env() -> Result<Self, String> {
        let base = std::env::var("SERIALMINT_ADMIN_URL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_string());
        let token = std::env::var("SERIALMINT_ADMIN_TOKEN")
            .ok()
            .filter(|s| !s.is_empty());
        Self::new(&base, token)
    }

    /// A client of `base` (http only) with an optional token.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, String> {
        if !base.starts_with("http://") {
            return Err(format!(
                "SERIALMINT_ADMIN_URL must be an http:// URL (got {base:?}); put TLS in front with a proxy"
            ));
        }
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let token = self.token.as_deref().ok_or_else(|| {
            "SERIALMINT_ADMIN_TOKEN is not set (the token `serialmint init` printed)".to_string()
        })?;
        let uri = format!("{}{}", self.base, path);
        let mut req = Request::builder()
            .method(method)
            .uri(&uri)
            .body(Full::new(body))
            .map_err(|e| format!("bad request URL {uri}: {e}"))?;
        let auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "SERIALMINT_ADMIN_TOKEN contains invalid characters".to_string())?;
        req.headers_mut().insert(AUTHORIZATION, auth);
        if !content_type.is_empty() {
            req.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_str(content_type).expect("static content type"),
            );
        }
        self.http.request(req).await.map_err(|e| {
            format!(
                "cannot reach the admin API at {}: {}",
                self.base,
                source_chain(&e)
            )
        })
    }

    /// Sends a request and returns the whole body when the status is a success, else the
    /// server's message as the error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), String> {
        let resp = self.send(method, path, content_type, body).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer failed: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(error_message(status, &bytes));
        }
        Ok((status, bytes))
    }

    /// GET returning JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value, String> {
        let (_, body) = self.call(Method::GET, path, "", Bytes::new()).await?;
        parse(&body)
    }

    /// A JSON request returning JSON.
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<Value, String> {
        let (_, body) = self
            .call(
                method,
                path,
                "application/json",
                Bytes::from(body.to_string()),
            )
            .await?;
        parse(&body)
    }

    /// GET that streams the body to `out` as it arrives.
    pub async fn download(&self, path: &str, out: &mut dyn std::io::Write) -> Result<(), String> {
        let resp = self.send(Method::GET, path, "", Bytes::new()).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body
                .collect()
                .await
                .map_err(|e| format!("reading the answer failed: {e}"))?
                .to_bytes();
            return Err(error_message(status, &bytes));
        }
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("the download broke off: {e}"))?;
            if let Some(data) = frame.data_ref() {
                out.write_all(data)
                    .map_err(|e| format!("cannot write the output: {e}"))?;
            }
        }
        out.flush()
            .map_err(|e| format!("cannot write the output: {e}"))
    }
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("the admin API answered invalid JSON: {e}"))
}

fn error_message(status: StatusCode, body: &[u8]) -> String {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        message
    };
    format!("{message} (HTTP {})", status.as_u16())
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
