//! `serialmint serve`: binds both listeners (https when their certificates are configured),
//! wires the parts together, reloads the TLS certificates on SIGHUP, and stops cleanly on
//! SIGINT or SIGTERM (stop accepting, drain in-flight requests, exit 0).

use std::net::SocketAddr;

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::admin_api::{AdminApi, AdminLimits, HsmBackend};
use crate::catalog::{Catalog, DEFAULT_FULL_RELOAD};
use crate::config::Config;
use crate::device_api::DeviceApi;
use crate::hsm::HsmConfig;
use crate::http::{self, Limits};
use crate::registration::{GroupCommit, Registration, RequestIds};
use crate::signer::{SignBackend, Signer, SignerConfig};
use crate::store::Store;
use crate::tls::ServerTls;
use crate::trust::TrustDb;
use crate::wiring::LazyHsm;

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
    /// A listener's TLS certificate, key or client CA could not be loaded.
    #[error("{which} TLS: {source}")]
    Tls {
        /// Which listener.
        which: &'static str,
        /// Why.
        #[source]
        source: Box<crate::tls::TlsError>,
    },
}

/// Most signing-log rows committed in one transaction (group commit).
pub const LOG_BATCH_MAX: usize = 256;

/// Longest one signing-log transaction or look-up may take; past it Postgres counts as down
/// (503, no serial).
pub const LOG_TIMEOUT: Duration = Duration::from_secs(5);

/// How often `serve` retries opening an HSM that could not be opened at start-up.
pub const HSM_RETRY: Duration = Duration::from_secs(5);

/// This process's name in the signing log: host, device port and pid.
fn instance_name(config: &Config) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!(
        "{host}:{}/{}",
        config.device_listen.port(),
        std::process::id()
    )
}

/// The device routes over the shared parts: the request-id secret from the store (shared by
/// every instance), the catalog, a signer over `backend` (the HSM), and the signing log in
/// the store behind group commit.
pub async fn device_api(
    config: &Config,
    store: &Store,
    catalog: Arc<Catalog>,
    backend: Arc<dyn SignBackend>,
) -> Result<DeviceApi, ServeError> {
    let secret = store.request_id_secret().await?;
    let request_ids = Arc::new(RequestIds::new(&secret, config.request_id_lifetime));
    let signer = Signer::start(backend, SignerConfig::from_config(config));
    let log = GroupCommit::start(Arc::new(store.clone()), LOG_BATCH_MAX, LOG_TIMEOUT);
    let registration = Registration::new(request_ids, catalog, signer, log, instance_name(config));
    Ok(
        DeviceApi::new(Arc::new(registration), config.max_body_bytes)
            .with_body_timeout(config.body_read_timeout),
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
    // TLS files first: a wrong path or key stops start-up before anything else is touched.
    let device_tls = server_tls(
        "device",
        &config.device_tls_cert,
        &config.device_tls_key,
        None,
    )?;
    let admin_tls = server_tls(
        "admin",
        &config.admin_tls_cert,
        &config.admin_tls_key,
        config.admin_tls_client_ca.as_deref(),
    )?;
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
    let (stop_tx, stop_rx) = watch::channel(false);
    // One HSM for both planes; when it cannot be opened now, the device plane answers 503
    // and keeps trying in the background.
    let hsm = LazyHsm::open_or_retry(
        HsmConfig::from(&config),
        HSM_RETRY,
        stopped(stop_rx.clone()),
    )
    .await;
    // The admin plane shares the slot: keys can be made once the HSM opens, no restart.
    let backend = Arc::new(HsmBackend::new(hsm.clone(), trust));
    // The tamper-evident log's checkpoints, signed with the audit key through the same HSM.
    let checkpointer = crate::checkpointer::spawn(
        store.clone(),
        hsm.clone(),
        crate::checkpointer::CheckpointPolicy {
            rows: config.checkpoint_rows,
            every: config.checkpoint_every,
            instance: instance_name(&config),
        },
        stopped(stop_rx.clone()),
    );
    // Both listeners before the signer starts: a port taken ends start-up here, before any
    // signer thread holds the HSM. From the signer's start on nothing fails until the
    // shutdown, which stops it and closes the HSM's sessions before the process exits.
    let device = bind("device", config.device_listen).await?;
    let admin = bind("admin", config.admin_listen).await?;
    let device_api = device_api(&config, &store, catalog.clone(), hsm.clone()).await?;
    let signer = device_api.registration().signer().clone();
    let admin_api = AdminApi::new(store.clone(), catalog.clone(), backend, metrics)
        .with_limits(AdminLimits::from_config(&config))
        .with_secure_cookies(admin_tls.is_some());
    let limits = Limits {
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout,
        drain_timeout: config.drain_timeout,
        ..Limits::default()
    };
    tracing::info!(
        device = %config.device_listen,
        device_tls = device_tls.is_some(),
        admin = %config.admin_listen,
        admin_tls = admin_tls.is_some(),
        admin_mtls = config.admin_tls_client_ca.is_some(),
        "serialmint listening"
    );
    let reloader = tokio::spawn(reload_on_sighup(
        [("device", device_tls.clone()), ("admin", admin_tls.clone())],
        stopped(stop_rx.clone()),
    ));
    let device_task = tokio::spawn(http::serve_tls(
        device,
        device_api,
        limits,
        device_tls,
        stopped(stop_rx.clone()),
    ));
    let refresher = catalog.spawn_refresher(DEFAULT_FULL_RELOAD, stopped(stop_rx.clone()));
    let admin_task = tokio::spawn(http::serve_tls(
        admin,
        admin_api,
        limits,
        admin_tls,
        stopped(stop_rx),
    ));
    // Both listeners are bound and serving: tell systemd (Type=notify; a no-op elsewhere).
    notify(sd_notify::NotifyState::Ready);
    let signal = shutdown_signal().await;
    tracing::info!(signal, "shutting down");
    notify(sd_notify::NotifyState::Stopping);
    let _ = stop_tx.send(true);
    let _ = tokio::join!(device_task, admin_task, refresher, reloader, checkpointer);
    close_hsm(signer, &hsm).await;
    tracing::info!("stopped");
    Ok(())
}

/// Longest the shutdown waits for the signer's workers to end.
const SIGNER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The last step of a shutdown, once both planes have stopped: the signer's workers end
/// (queued digests are signed first, at most [`SIGNER_STOP_TIMEOUT`]), then the HSM's
/// sessions are closed on its call threads (under `hsm.call_timeout_secs`) while this waits.
/// The process must not exit while a session or module instance is still being closed by a
/// thread nobody waits for: p11-kit's client module is unloaded at exit, and closing under
/// its destructor failed ("'bound != NULL' not true") and once in a few stops hung the exit
/// for good.
async fn close_hsm(signer: Signer, hsm: &LazyHsm) {
    signer.shutdown();
    let stopped = signer.stopped();
    drop(signer);
    if tokio::time::timeout(SIGNER_STOP_TIMEOUT, stopped)
        .await
        .is_err()
    {
        tracing::warn!(
            timeout_s = SIGNER_STOP_TIMEOUT.as_secs(),
            "the signer's workers did not end in time; closing the HSM's sessions anyway"
        );
    }
    let sessions = hsm.close().await;
    tracing::info!(sessions, "HSM sessions closed");
}

/// The configured trusted roots: `trust.assertions`, else the built-in Canonical roots.
pub fn trusted_roots(config: &Config) -> Result<TrustDb, ServeError> {
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

/// A listener's TLS when its certificate and key are configured (`validate_for_serve` has
/// checked they come in pairs).
fn server_tls(
    which: &'static str,
    cert: &Option<std::path::PathBuf>,
    key: &Option<std::path::PathBuf>,
    client_ca: Option<&std::path::Path>,
) -> Result<Option<ServerTls>, ServeError> {
    let (Some(cert), Some(key)) = (cert, key) else {
        return Ok(None);
    };
    ServerTls::load(cert, key, client_ca)
        .map(Some)
        .map_err(|source| ServeError::Tls {
            which,
            source: Box::new(source),
        })
}

/// On every SIGHUP until `stop`, reads each listener's certificate and key again; new
/// connections get the new certificate, open ones keep theirs. A failed reload keeps the
/// certificate served before and is logged. (Installing the handler also keeps SIGHUP from
/// ending the process.)
async fn reload_on_sighup(
    listeners: [(&'static str, Option<ServerTls>); 2],
    stop: impl std::future::Future<Output = ()>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP; certificates will not reload");
            return;
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = hup.recv() => {}
            () = &mut stop => return,
        }
        let mut any = false;
        for (which, tls) in &listeners {
            let Some(tls) = tls else { continue };
            any = true;
            match tls.reload() {
                Ok(()) => tracing::info!(
                    listener = which,
                    cert = %tls.cert_path().display(),
                    "SIGHUP: TLS certificate reloaded"
                ),
                Err(e) => tracing::error!(
                    listener = which,
                    error = %e,
                    "SIGHUP: TLS certificate not reloaded; the previous one stays"
                ),
            }
        }
        if !any {
            tracing::info!("SIGHUP: no TLS listener, nothing to reload");
        }
    }
}

/// Tells systemd our state when it started us with `Type=notify` (`NOTIFY_SOCKET` set);
/// does nothing otherwise.
fn notify(state: sd_notify::NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(false, &[state]) {
        tracing::warn!(error = %e, "cannot notify systemd");
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
