//! `serialmint serve`: binds both listeners, wires the parts together and stops cleanly on
//! SIGINT or SIGTERM (stop accepting, drain in-flight requests, exit 0).

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::admin_api::{AdminApi, Backend, Unavailable};
use crate::catalog::{Catalog, DEFAULT_FULL_RELOAD};
use crate::config::Config;
use crate::http::{self, Handler, HttpResponse, Limits};
use crate::store::Store;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({which}): {source}")]
    Bind {
        /// Which listener.
        which: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Postgres could not be reached or migrated.
    #[error("{0}")]
    Database(#[from] crate::store::StoreError),
}

/// The device listener's routes.
#[derive(Clone)]
struct DeviceRoutes;

impl Handler for DeviceRoutes {
    async fn handle(&self, req: Request<Incoming>, _peer: SocketAddr) -> HttpResponse {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/v1/version") => version(),
            (_, "/v1/version") => http::method_not_allowed("GET"),
            _ => http::not_found(),
        }
    }
}

fn version() -> HttpResponse {
    http::json_response(
        StatusCode::OK,
        &serde_json::json!({"name": "serialmint", "version": env!("CARGO_PKG_VERSION")}),
    )
}

/// Installs the process-wide Prometheus recorder once; `None` when another recorder is
/// already installed (then `/metrics` renders nothing).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

/// Runs both listeners until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let store = Store::connect(&config).await?;
    store.migrate().await?;
    let stale = store.fail_stale_pending_keys(0).await?;
    if stale > 0 {
        tracing::warn!(
            stale,
            "keys left pending by an earlier run were marked failed"
        );
    }
    let metrics = metrics_handle();
    let catalog = Catalog::new(store.clone());
    catalog.reload().await?;
    let backend = admin_backend(&config).await;
    let device = bind("device", config.device_listen).await?;
    let admin = bind("admin", config.admin_listen).await?;
    let admin_api = AdminApi::new(store.clone(), catalog.clone(), backend, metrics);
    let limits = Limits {
        max_connections: config.max_connections,
        ..Limits::default()
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    tracing::info!(device = %config.device_listen, admin = %config.admin_listen, "serialmint listening");
    let device_task = tokio::spawn(http::serve(
        device,
        DeviceRoutes,
        limits,
        stopped(stop_rx.clone()),
    ));
    let refresher = catalog.spawn_refresher(DEFAULT_FULL_RELOAD, stopped(stop_rx.clone()));
    let admin_task = tokio::spawn(http::serve_streaming(
        admin,
        admin_api,
        limits,
        stopped(stop_rx),
    ));
    let signal = shutdown_signal().await;
    tracing::info!(signal, "shutting down");
    let _ = stop_tx.send(true);
    let _ = tokio::join!(device_task, admin_task, refresher);
    tracing::info!("stopped");
    Ok(())
}

/// The HSM and codec operations for the admin plane.
async fn admin_backend(_config: &Config) -> Arc<dyn Backend> {
    Arc::new(Unavailable(
        "the HSM layer is not part of this build yet".into(),
    ))
}

async fn bind(which: &'static str, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            which,
            addr,
            source,
        })
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Waits for SIGINT or SIGTERM and names the one that came.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
