//! Shared hyper plumbing for both listeners: the accept loop with its connection cap and
//! timeouts, graceful shutdown, capped and timed body reading and the JSON error shape snapd
//! shows.
//!
//! Shutdown: the listener stops accepting (after taking over the connections the kernel had
//! already completed, which closing it would reset); a request under way is answered; a
//! connection with none gets [`Limits::shutdown_grace`] for a request already sent to arrive
//! (hyper would otherwise close it unread, though the client sent its request before the
//! signal); then each connection closes. All of it within [`Limits::drain_timeout`].
//!
//! TLS ([`serve_tls`]): the handshake runs on the connection's own task, after the connection
//! took its slot, under the header timeout, with the acceptor current at accept (`tls.rs`), so
//! a reload reaches the next handshake without touching open connections.
//!
//! Nothing here knows a route. A listener is a [`Handler`] served by [`serve`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

/// A whole-body answer.
pub type HttpResponse = Response<Full<Bytes>>;

/// A streamed response body (e.g. an export with no row cap): chunks arrive as produced.
pub type StreamBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// A request handler for one listener.
pub trait Handler: Clone + Send + Sync + 'static {
    /// The body of its answers: whole ([`HttpResponse`]'s `Full<Bytes>`) or streamed as
    /// produced ([`StreamBody`], e.g. an export with no row cap).
    type Body: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static;

    /// Answers one request. Errors are responses too: a handler never fails.
    fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Self::Body>> + Send;
}

/// What a body's error must turn into for hyper.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Limits that protect a listener from slow or greedy clients.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most open connections; past it, new connections wait in the kernel's backlog.
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers (also bounds idle keep-alive):
    /// the clock starts when the connection waits for a request head, so a client that sends
    /// nothing, or one byte at a time, is cut off all the same (slowloris).
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) in bytes.
    pub max_header_bytes: usize,
    /// Longest graceful shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// At shutdown, how long a connection with no request under way is kept for one already
    /// on its way (sent just before the signal, not read yet) before it is closed.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            drain_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(1),
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
    serve_tls(listener, handler, limits, None, shutdown).await;
}

/// [`serve`] over TLS when `tls` is given: each connection's handshake runs on its own task,
/// bounded by `limits.header_read_timeout` like a request head (a client that stalls the
/// handshake holds its slot no longer than one that stalls its headers).
pub async fn serve_tls<H: Handler>(
    listener: TcpListener,
    handler: H,
    limits: Limits,
    tls: Option<crate::tls::ServerTls>,
    shutdown: impl Future<Output = ()>,
) {
    accept_loop(
        listener,
        tls,
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
    tls: Option<crate::tls::ServerTls>,
    handle: F,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    let name = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let serve = |stream: TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit| {
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            builder: builder.clone(),
            peer,
            handle: handle.clone(),
            stop: stop_rx.clone(),
            grace: limits.shutdown_grace,
            permit,
        };
        match &tls {
            None => {
                tokio::spawn(conn.run(stream));
            }
            Some(tls) => {
                let handshake = tls.acceptor().accept(stream);
                let timeout = limits.header_read_timeout;
                tokio::spawn(async move {
                    match tokio::time::timeout(timeout, handshake).await {
                        Ok(Ok(stream)) => conn.run(stream).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    };
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
        serve(stream, peer, permit);
    }
    // Connections the kernel completed before the listener closes are taken too (closing
    // the listener would reset them): their requests may already be on the way. The queue is
    // read with non-blocking accept(2) until it is empty, not through the reactor, whose
    // readiness may lag behind the kernel's queue.
    match listener.into_std() {
        Ok(queue) => {
            while let Ok(permit) = slots.clone().try_acquire_owned() {
                let Ok((stream, peer)) = queue.accept() else {
                    break; // WouldBlock: the queue is empty
                };
                if let Ok(stream) = stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream))
                {
                    serve(stream, peer, permit);
                }
            }
        }
        Err(e) => tracing::warn!(listener = %name, error = %e, "cannot drain the listen queue"),
    }
    tracing::info!(listener = %name, "stopped accepting; draining in-flight requests");
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends: all slots back means all drained.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.drain_timeout, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(listener = %name, "drain timed out; closing the remaining connections");
    }
}

/// Serves one connection until it ends. When `stop` turns true, a request under way is
/// finished; a connection with none gets `grace` for one that is already on its way (sent
/// just before the signal, not yet read) to start, and is then closed once that request, if
/// any, is answered. `permit` (its connection slot) is held until the end.
struct Connection<F> {
    builder: http1::Builder,
    peer: SocketAddr,
    handle: F,
    stop: watch::Receiver<bool>,
    grace: Duration,
    permit: OwnedSemaphorePermit,
}

impl<F> Connection<F> {
    /// Serves the connection over `stream` (plain TCP, or TLS once the handshake is done).
    async fn run<Fut, B, S>(self, stream: S)
    where
        F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<B>> + Send + 'static,
        B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            builder,
            peer,
            handle,
            stop,
            grace,
            permit,
        } = self;
        connection(builder, stream, peer, handle, stop, grace, permit).await;
    }
}

async fn connection<F, Fut, B, S>(
    builder: http1::Builder,
    stream: S,
    peer: SocketAddr,
    handle: F,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    permit: OwnedSemaphorePermit,
) where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Requests started on this connection, and those not answered yet.
    let (started_tx, mut started) = watch::channel(0u64);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let service = {
        let in_flight = in_flight.clone();
        service_fn(move |req| {
            in_flight.fetch_add(1, Ordering::SeqCst);
            started_tx.send_modify(|n| *n += 1);
            let fut = handle(req, peer);
            let in_flight = in_flight.clone();
            async move {
                let resp = fut.await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = stop.wait_for(|s| *s) => None,
    };
    let result = match ended {
        Some(r) => r,
        None => {
            started.mark_unchanged();
            if in_flight.load(Ordering::SeqCst) == 0 {
                tokio::select! {
                    r = conn.as_mut() => {
                        drop(permit);
                        return log_end(peer, r);
                    }
                    _ = started.changed() => {}
                    () = tokio::time::sleep(grace) => {}
                }
            }
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    log_end(peer, result);
    drop(permit);
}

fn log_end(peer: SocketAddr, result: hyper::Result<()>) {
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
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
    /// The client did not send the whole body in time (a slow-body client holds a connection
    /// slot the header timeout no longer covers).
    #[error("request body not received within {} ms", .0.as_millis())]
    Timeout(Duration),
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
            BodyError::Timeout(_) => json_error(
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                &self.to_string(),
            ),
        }
    }
}

/// Reads a whole body, refusing it before reading when `Content-Length` exceeds `max`, and
/// stopping as soon as more than `max` bytes arrive otherwise, or when the whole body has not
/// arrived within `timeout`. Generic over the body so the routes can be driven in-process
/// (tests, fuzzing); the listeners pass hyper's `Incoming`.
pub async fn read_body<B>(
    req: Request<B>,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError>
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
    let read = tokio::time::timeout(timeout, Limited::new(req.into_body(), max).collect());
    match read.await.map_err(|_| BodyError::Timeout(timeout))? {
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
