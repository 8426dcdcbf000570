//! The device side of the HTTP protocol (PROTOCOL.md 4.3, 4.4): `POST request-id` and
//! `POST serial` with the headers snapd sends, over a pooled HTTP/1.1 client.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::stats::Outcome;

/// snapd's assertion media type.
pub const ASSERTION_MEDIA_TYPE: &str = "application/x.ubuntu.assertion";

/// An answer: status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// The outcome for the statistics.
    pub fn outcome(&self) -> Outcome {
        Outcome::Status(self.status)
    }
}

/// A device-service client: base URL, API key, per-request timeout.
#[derive(Clone, Debug)]
pub struct Client {
    http: HyperClient<HttpConnector, Full<Bytes>>,
    request_id_uri: Uri,
    serial_uri: Uri,
    api_key: HeaderValue,
    timeout: Duration,
}

/// Resolves `name` against a base URL the way snapd does (`device-service.url` always ends
/// in `/`, endpoints are relative to it).
fn endpoint(base: &str, name: &str) -> Result<Uri, String> {
    let mut base = base.to_string();
    if !base.ends_with('/') {
        base.push('/');
    }
    let uri: Uri = format!("{base}{name}")
        .parse()
        .map_err(|e| format!("bad URL {base}{name}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "only http:// URLs are supported (got {base}); the load test targets 127.0.0.1"
        ));
    }
    Ok(uri)
}

impl Client {
    /// A client for the device service at `base` (e.g. `http://127.0.0.1:8080/v1/`).
    pub fn new(base: &str, api_key: &str, timeout: Duration) -> Result<Client, String> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Client {
            http,
            request_id_uri: endpoint(base, "request-id")?,
            serial_uri: endpoint(base, "serial")?,
            api_key: HeaderValue::from_str(api_key).map_err(|_| "bad API key".to_string())?,
            timeout,
        })
    }

    fn base_request(&self, uri: &Uri) -> hyper::http::request::Builder {
        Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header(
                USER_AGENT,
                "snapd/2.57.6 (series 16) ubuntu-core/22 (amd64) linux/5.15 serialmint-loadtest",
            )
            .header("api-key", self.api_key.clone())
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Result<Answer, String> {
        let fut = async {
            let resp = self.http.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
    }

    /// `POST request-id` (no body, no Content-Type).
    pub async fn request_id_raw(&self) -> Result<Answer, String> {
        let req = self
            .base_request(&self.request_id_uri)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        self.send(req).await
    }

    /// `POST serial` with the serial-request + model stream, asking for the serial stream.
    pub async fn serial(&self, stream: Bytes) -> Result<Answer, String> {
        let req = self
            .base_request(&self.serial_uri)
            .header("Snap-Device-Capabilities", "serial-stream")
            .header(CONTENT_TYPE, ASSERTION_MEDIA_TYPE)
            .body(Full::new(stream))
            .map_err(|e| e.to_string())?;
        self.send(req).await
    }
}

/// The `request-id` field of the request-id answer (snapd ignores the other fields).
pub fn parse_request_id(body: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct RequestId {
        #[serde(rename = "request-id")]
        request_id: String,
    }
    let r: RequestId = serde_json::from_slice(body)
        .map_err(|e| format!("request-id answer is not the expected JSON: {e}"))?;
    if r.request_id.is_empty() {
        return Err("request-id answer has an empty request-id".into());
    }
    Ok(r.request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_resolve_like_snapd() {
        assert_eq!(
            endpoint("http://127.0.0.1:8080/v1/", "serial")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:8080/v1/serial"
        );
        assert_eq!(
            endpoint("http://127.0.0.1:8080/v1", "request-id")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:8080/v1/request-id"
        );
        assert!(endpoint("https://example.com/v1/", "serial").is_err());
    }

    #[test]
    fn request_id_json() {
        assert_eq!(
            parse_request_id(br#"{"request-id":"abc","success":true}"#).unwrap(),
            "abc"
        );
        assert!(parse_request_id(br#"{"request-id":""}"#).is_err());
        assert!(parse_request_id(b"nope").is_err());
    }
}
