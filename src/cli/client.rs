//! The admin CLI's HTTP client: talks to the admin listener at `SERIALMINT_ADMIN_URL`
//! (default `http://127.0.0.1:8081`) with `SERIALMINT_ADMIN_TOKEN` as a bearer token, sends
//! and reads the typed bodies of [`crate::admin_api::wire`], and turns the server's error
//! answers into [`Error::Refused`].
//!
//! An `https://` URL is verified against `SERIALMINT_ADMIN_CA` (a PEM file: a private CA)
//! when set, else against the system's roots; `SERIALMINT_ADMIN_CLIENT_CERT` and
//! `SERIALMINT_ADMIN_CLIENT_KEY` (PEM files) are presented for mutual TLS (`tls.rs`).

use std::fmt;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Error;
use crate::admin_api::wire::ErrorBody;

/// Default admin URL.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:8081";

/// Everything but RFC 3986's unreserved characters is escaped in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` percent-encoded for use as one path segment (a `/` in a name stays inside it).
pub fn path_segment(s: &str) -> impl fmt::Display + '_ {
    utf8_percent_encode(s, SEGMENT)
}

/// A client of the admin API.
pub struct Client {
    base: String,
    token: Option<String>,
    brand: Option<String>,
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A non-empty environment variable.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

impl Client {
    /// A client from `SERIALMINT_ADMIN_URL` and `SERIALMINT_ADMIN_TOKEN`.
    pub fn from_env() -> Result<Self, Error> {
        let base = std::env::var("SERIALMINT_ADMIN_URL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_string());
        let token = var("SERIALMINT_ADMIN_TOKEN");
        if !base.starts_with("https://") {
            return Self::new(&base, token);
        }
        let ca = var("SERIALMINT_ADMIN_CA").map(PathBuf::from);
        let client = match (
            var("SERIALMINT_ADMIN_CLIENT_CERT").map(PathBuf::from),
            var("SERIALMINT_ADMIN_CLIENT_KEY").map(PathBuf::from),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => return Err(Error::ClientCertHalf("SERIALMINT_ADMIN_CLIENT_KEY")),
            (None, Some(_)) => return Err(Error::ClientCertHalf("SERIALMINT_ADMIN_CLIENT_CERT")),
        };
        let tls = crate::tls::client_config(
            ca.as_deref(),
            client.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        )
        .map_err(|e| Error::Tls(Box::new(e)))?;
        Self::with_tls(&base, token, tls)
    }

    /// A client of `base` (http only) with an optional token.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, Error> {
        if !base.starts_with("http://") {
            return Err(Error::NotHttp(base.to_string()));
        }
        // Never used for http://, but the connector type is one for both schemes.
        let unused = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(Box::new(crate::tls::TlsError::Config(e))))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(unused)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self::with_connector(base, token, connector))
    }

    /// A client of `base` (https only) with an optional token and this TLS configuration.
    pub fn with_tls(
        base: &str,
        token: Option<String>,
        tls: rustls::ClientConfig,
    ) -> Result<Self, Error> {
        if !base.starts_with("https://") {
            return Err(Error::NotHttp(base.to_string()));
        }
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        Ok(Self::with_connector(base, token, connector))
    }

    fn with_connector(
        base: &str,
        token: Option<String>,
        connector: HttpsConnector<HttpConnector>,
    ) -> Self {
        Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            brand: None,
            http: HyperClient::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// The same client acting for `brand` (`--brand`): every request names it as
    /// `brand-id` (in the query; request bodies that have a brand field carry it too).
    pub fn for_brand(mut self, brand: Option<String>) -> Self {
        self.brand = brand;
        self
    }

    /// The brand named with `--brand`, if any (absent: the server's only brand).
    pub fn brand(&self) -> Option<&str> {
        self.brand.as_deref()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Error> {
        let token = self.token.as_deref().ok_or(Error::NoToken)?;
        let uri = match &self.brand {
            Some(b) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                let query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("brand-id", b)
                    .finish();
                format!("{}{path}{sep}{query}", self.base)
            }
            None => format!("{}{}", self.base, path),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(&uri)
            .body(Full::new(body))
            .map_err(|source| Error::BadUrl { uri, source })?;
        let auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Error::TokenNotAHeader)?;
        req.headers_mut().insert(AUTHORIZATION, auth);
        if !content_type.is_empty() {
            req.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_str(content_type).expect("static content type"),
            );
        }
        self.http
            .request(req)
            .await
            .map_err(|source| Error::Unreachable {
                base: self.base.clone(),
                source,
            })
    }

    /// Sends a request and returns the whole body when the status is a success, else the
    /// server's refusal.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), Error> {
        let resp = self.send(method, path, content_type, body).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(Error::ReadAnswer)?
            .to_bytes();
        if !status.is_success() {
            return Err(refusal(status, &bytes));
        }
        Ok((status, bytes))
    }

    /// GET, answered with a `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let (_, body) = self.call(Method::GET, path, "", Bytes::new()).await?;
        serde_json::from_slice(&body).map_err(Error::BadAnswer)
    }

    /// A JSON request, answered with a `T`.
    pub async fn request<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, Error> {
        let json = serde_json::to_vec(body).map_err(Error::BadAnswer)?;
        let (_, body) = self
            .call(method, path, "application/json", Bytes::from(json))
            .await?;
        serde_json::from_slice(&body).map_err(Error::BadAnswer)
    }

    /// POST of a JSON body, answered with a `T`.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Error> {
        self.request(Method::POST, path, body).await
    }

    /// GET of untyped JSON (for tests and scripts; the verbs use [`Client::get`]).
    pub async fn get_json(&self, path: &str) -> Result<Value, Error> {
        self.get(path).await
    }

    /// A request with an untyped JSON body and answer (for tests and scripts).
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<Value, Error> {
        self.request(method, path, body).await
    }

    /// GET that streams the body to `out` as it arrives.
    pub async fn download(&self, path: &str, out: &mut dyn std::io::Write) -> Result<(), Error> {
        let resp = self.send(Method::GET, path, "", Bytes::new()).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body.collect().await.map_err(Error::ReadAnswer)?.to_bytes();
            return Err(refusal(status, &bytes));
        }
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(Error::DownloadBroke)?;
            if let Some(data) = frame.data_ref() {
                out.write_all(data).map_err(Error::Output)?;
            }
        }
        out.flush().map_err(Error::Output)
    }
}

/// The server's refusal: its message (from the error body, else the body's text, else the
/// status's reason) and status.
fn refusal(status: StatusCode, body: &[u8]) -> Error {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_string());
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        message
    };
    Error::Refused { status, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_escape_all_but_unreserved() {
        assert_eq!(path_segment("a-b_c.d~e").to_string(), "a-b_c.d~e");
        assert_eq!(path_segment("a/b c").to_string(), "a%2Fb%20c");
        assert_eq!(path_segment("é").to_string(), "%C3%A9");
    }
}
