//! `serialmint serve`: binds both listeners, wires the parts together and stops cleanly on
//! SIGINT or SIGTERM (stop accepting, drain in-flight requests, exit 0).

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::admin_api::{AdminApi, Backend, HsmBackend, Unavailable};
use crate::catalog::{Catalog, DEFAULT_FULL_RELOAD};
use crate::config::Config;
use crate::hsm::{Hsm, HsmConfig};
use crate::http::{self, Handler, HttpResponse, Limits};
use crate::store::Store;
use crate::trust::TrustDb;

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
    /// The trusted assertions could not be loaded.
    #[error("trust.assertions: {0}")]
    Trust(String),
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
    // A key pending for longer than a generation may take was abandoned by a stopped
    // process (another instance's generation in progress is younger than that).
    let abandoned_after = config.keygen_timeout.as_secs() as i64 + 60;
    let stale = store.fail_stale_pending_keys(abandoned_after).await?;
    if stale > 0 {
        tracing::warn!(
            stale,
            "keys left pending by an earlier run were marked failed"
        );
    }
    let metrics = metrics_handle();
    let trust = trusted_roots(&config)?;
    let catalog = Catalog::with_trust(store.clone(), trust.clone());
    catalog.reload().await?;
    // One HSM, one catalog and one store for both listeners: the device plane takes clones
    // of `hsm`, `catalog` and `store` (the catalog's snapshot carries the trust db).
    let hsm = open_hsm(&config).await;
    let backend = admin_backend(trust.clone(), hsm.clone());
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

/// The configured trusted roots: `trust.assertions`, else the built-in Canonical roots.
fn trusted_roots(config: &Config) -> Result<TrustDb, ServeError> {
    match &config.trusted_assertions {
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| ServeError::Trust(format!("cannot read {}: {e}", path.display())))?;
            TrustDb::from_assertions(&bytes)
                .map_err(|e| ServeError::Trust(format!("{}: {e}", path.display())))
        }
        None => Ok(TrustDb::builtin()),
    }
}

/// The HSM and codec operations for the admin plane. When the HSM cannot be opened the
/// server still starts (admin reads work, `/readyz` says 503) and says why in one log line.
fn admin_backend(trust: TrustDb, hsm: Option<Hsm>) -> Arc<dyn Backend> {
    match hsm {
        Some(hsm) => Arc::new(HsmBackend::new(hsm, trust)),
        None => Arc::new(Unavailable(
            "the HSM could not be opened; see the server log".into(),
        )),
    }
}

/// Opens the HSM; `None` (with one error line in the log) when it cannot be opened.
async fn open_hsm(config: &Config) -> Option<Hsm> {
    match Hsm::open(HsmConfig::from(config)).await {
        Ok(hsm) => Some(hsm),
        Err(e) => {
            tracing::error!(error = %e, "cannot open the HSM; keys cannot be created or used");
            None
        }
    }
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
