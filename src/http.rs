//! Shared hyper plumbing for both listeners: the accept loop with its connection cap and
//! timeouts, graceful shutdown, capped body reading and the JSON error shape snapd shows.
//!
//! Nothing here knows a route. A listener is a [`Handler`] served by [`serve`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

/// The response type of every handler.
pub type HttpResponse = Response<Full<Bytes>>;

/// A request handler for one listener.
pub trait Handler: Clone + Send + Sync + 'static {
    /// Answers one request. Errors are responses too: a handler never fails.
    fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = HttpResponse> + Send;
}

/// Limits that protect a listener from slow or greedy clients.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most open connections; past it, new connections wait in the kernel's backlog.
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers (also bounds idle keep-alive).
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) in bytes.
    pub max_header_bytes: usize,
    /// Longest graceful shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `handler` on `listener` until `shutdown` resolves, then stops accepting and drains
/// in-flight requests (at most `limits.drain_timeout`).
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: H,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    accept_loop(
        listener,
        move |req, peer| {
            let handler = handler.clone();
            async move { handler.handle(req, peer).await }
        },
        limits,
        shutdown,
    )
    .await;
}

/// A streamed response body (e.g. an export with no row cap): chunks arrive as produced.
pub type StreamBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// A handler whose answers may stream their body.
pub trait StreamingHandler: Clone + Send + Sync + 'static {
    /// Answers one request. Errors are responses too: a handler never fails.
    fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<StreamBody>> + Send;
}

/// [`serve`] for a [`StreamingHandler`].
pub async fn serve_streaming<H: StreamingHandler>(
    listener: TcpListener,
    handler: H,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    accept_loop(
        listener,
        move |req, peer| {
            let handler = handler.clone();
            async move { handler.handle(req, peer).await }
        },
        limits,
        shutdown,
    )
    .await;
}

/// A whole-body answer as a streamed one.
pub fn streamed(resp: HttpResponse) -> Response<StreamBody> {
    resp.map(|body| body.map_err(|never| match never {}).boxed_unsync())
}

/// A response body fed chunk by chunk through a bounded channel (back-pressure: the producer
/// waits while the client is slow). An `Err` chunk aborts the response.
pub fn channel_body(capacity: usize) -> (mpsc::Sender<Result<Bytes, std::io::Error>>, StreamBody) {
    let (tx, rx) = mpsc::channel(capacity);
    (tx, ChannelBody { rx }.boxed_unsync())
}

struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|r| r.map(hyper::body::Frame::data)))
    }
}

async fn accept_loop<F, Fut, B>(
    listener: TcpListener,
    handle: F,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let name = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("semaphore never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        let service = service_fn(move |req| {
            let fut = handle(req, peer);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(listener = %name, "stopped accepting; draining in-flight requests");
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(listener = %name, "drain timed out; closing the remaining connections");
    }
}

/// `Content-Type` of every error: exactly `application/json`, no charset, so snapd shows the
/// message (PROTOCOL.md 4.4).
pub const JSON: &str = "application/json";

/// An error answer in the shape snapd reads:
/// `{"message": ..., "error_list": [{"code": ..., "message": ...}]}`.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    let body = serde_json::json!({
        "message": message,
        "error_list": [{"code": code, "message": message}],
    });
    let mut resp = json_response(status, &body);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
}

/// A JSON answer with `Content-Type: application/json`.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    let bytes = serde_json::to_vec(body).expect("JSON values always serialize");
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    resp
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than the cap (declared or actual).
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// The client went away or sent a broken body.
    #[error("cannot read request body: {0}")]
    Read(String),
}

impl BodyError {
    /// The error as an HTTP answer (413 or 400).
    pub fn response(&self) -> HttpResponse {
        match self {
            BodyError::TooLarge(_) => json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                &self.to_string(),
            ),
            BodyError::Read(_) => {
                json_error(StatusCode::BAD_REQUEST, "bad-body", &self.to_string())
            }
        }
    }
}

/// Reads a whole body, refusing it before reading when `Content-Length` exceeds `max`, and
/// stopping as soon as more than `max` bytes arrive otherwise. Generic over the body so the
/// routes can be driven in-process (tests, fuzzing); the listeners pass hyper's `Incoming`.
pub async fn read_body<B>(req: Request<B>, max: usize) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge(max));
    }
    match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(max)),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// 404 for a path no route knows.
pub fn not_found() -> HttpResponse {
    json_error(StatusCode::NOT_FOUND, "not-found", "no such resource")
}

/// 405 for a known path with the wrong method.
pub fn method_not_allowed(allowed: &'static str) -> HttpResponse {
    let mut resp = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        &format!("method not allowed; use {allowed}"),
    );
    resp.headers_mut()
        .insert("allow", HeaderValue::from_static(allowed));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_carry_exact_json_content_type_and_snapd_shape() {
        let resp = json_error(StatusCode::FORBIDDEN, "bad-key", "wrong API key");
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["message"], "wrong API key");
        assert_eq!(v["error_list"][0]["code"], "bad-key");
        assert_eq!(v["error_list"][0]["message"], "wrong API key");
    }

    #[test]
    fn unavailable_says_when_to_retry() {
        let resp = json_error(StatusCode::SERVICE_UNAVAILABLE, "busy", "busy");
        assert_eq!(resp.headers()["retry-after"], "1");
    }
}
