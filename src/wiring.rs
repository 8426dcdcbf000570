//! Where the parts are joined: the adapters that let registration (which knows neither the
//! store nor the HSM) use the in-memory catalog, the Postgres signing log and the PKCS#11
//! token, and the HSM that both planes share while it may still be opening.
//!
//! Each adapter is a thin pass-through: the catalog's snapshot already holds registration's
//! views, the store already speaks registration's issuance types, the HSM already verifies
//! what it signs.

use std::future::Future;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::domain::{Issuance, LoggedIssuance, RecordOutcome};
use crate::registration::log::BoxFuture;
use crate::registration::{
    AssertionKind, DeviceCatalog, DeviceModel, KeyRefusal, LogError, SerialKey, SigningLog,
    catalog::ct_eq,
};
use crate::signer::backend::{
    BackendError, DigestInfo, EachFuture, OnSigned, SignBackend, SignFuture,
};
use crate::store::Store;
use crate::trust::TrustDb;

/// Registration reads the current snapshot of the catalog.
impl DeviceCatalog for Catalog {
    fn api_key_known(&self, api_key: &str) -> bool {
        self.snapshot()
            .device_models()
            .fold(false, |found, m| found | ct_eq(&m.api_key, api_key))
    }

    fn model(&self, brand_id: &str, name: &str) -> Option<Arc<DeviceModel>> {
        self.snapshot().device_model(brand_id, name).cloned()
    }

    fn serial_key(&self, model: &DeviceModel) -> Result<Arc<SerialKey>, KeyRefusal> {
        self.snapshot().serial_key(model.id)
    }

    fn key_chain(&self, key_id: &str) -> Vec<String> {
        let snap = self.snapshot();
        match snap.account_assertions_for_key(key_id) {
            (Some(key), account) => std::iter::once(key)
                .chain(account)
                .map(|a| a.text.clone())
                .collect(),
            (None, _) => Vec::new(),
        }
    }

    fn held_assertion(&self, kind: AssertionKind, primary_key: &str) -> Option<String> {
        self.snapshot()
            .account_assertion(kind, primary_key)
            .map(|a| a.text.clone())
    }

    fn trust(&self) -> Arc<TrustDb> {
        self.snapshot().trust().clone()
    }

    fn remodel_allowed(&self, from: (&str, &str, &str), to: &DeviceModel) -> bool {
        self.snapshot()
            .remodel_allowed(from, (&to.brand_id, &to.name))
    }
}

/// The signing log in Postgres: [`Store::record_issuances`] commits each group in one
/// transaction, and its unique constraints decide replays and conflicts.
impl SigningLog for Store {
    fn record<'a>(
        &'a self,
        rows: &'a [Issuance],
    ) -> BoxFuture<'a, Result<Vec<RecordOutcome>, LogError>> {
        Box::pin(async move { self.record_issuances(rows).await.map_err(LogError::backend) })
    }

    fn latest<'a>(
        &'a self,
        brand_id: &'a str,
        model: &'a str,
        serial: &'a str,
    ) -> BoxFuture<'a, Result<Option<LoggedIssuance>, LogError>> {
        Box::pin(async move {
            self.latest_issuance(brand_id, model, serial)
                .await
                .map_err(LogError::backend)
        })
    }

    fn next_counter(&self, model_id: i64) -> BoxFuture<'_, Result<i64, LogError>> {
        Box::pin(async move {
            self.next_serial_counter(model_id)
                .await
                .map_err(LogError::backend)
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), LogError>> {
        Box::pin(async move { self.probe().await.map_err(LogError::backend) })
    }
}

impl SignBackend for crate::hsm::Hsm {
    fn sign<'a>(&'a self, key_id: &'a str, digest_infos: &'a [DigestInfo]) -> SignFuture<'a> {
        Box::pin(async move {
            crate::hsm::Hsm::sign(self, key_id, digest_infos)
                .await
                .map_err(backend_error)
        })
    }

    fn sign_each<'a>(
        &'a self,
        key_id: &'a str,
        digest_infos: &'a [DigestInfo],
        on_signed: OnSigned,
    ) -> EachFuture<'a> {
        Box::pin(async move {
            crate::hsm::Hsm::sign_each(self, key_id, digest_infos, on_signed)
                .await
                .map_err(backend_error)
        })
    }
}

/// What the signer needs to know of an HSM failure: 503 (unavailable, timed out), key
/// missing, or failed.
fn backend_error(e: crate::hsm::HsmError) -> BackendError {
    use crate::hsm::HsmError;
    match e {
        HsmError::Unavailable(m) => BackendError::Unavailable(m),
        HsmError::Timeout(m) => BackendError::Unavailable(format!("timed out: {m}")),
        HsmError::KeyNotFound(k) => BackendError::KeyNotFound(k),
        e => BackendError::Failed(e.to_string()),
    }
}

/// The HSM both planes share, which may not be open yet: `serve` starts even when the token
/// cannot be opened (module missing, token absent, PIN refused), answers 503 for every
/// signature meanwhile, and keeps trying to open it in the background; once opened it stays
/// (the HSM layer recovers sessions and tokens by itself).
pub struct LazyHsm {
    hsm: std::sync::OnceLock<crate::hsm::Hsm>,
    why: parking_lot::Mutex<String>,
}

impl std::fmt::Debug for LazyHsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyHsm")
            .field("open", &self.hsm.get().is_some())
            .finish_non_exhaustive()
    }
}

impl LazyHsm {
    /// An empty slot (every signature: "HSM not open").
    pub fn empty(why: impl Into<String>) -> Self {
        Self {
            hsm: std::sync::OnceLock::new(),
            why: parking_lot::Mutex::new(why.into()),
        }
    }

    /// A slot holding an open HSM.
    pub fn open(hsm: crate::hsm::Hsm) -> Self {
        let slot = Self::empty("");
        let _ = slot.hsm.set(hsm);
        slot
    }

    /// The HSM, when open.
    pub fn get(&self) -> Option<&crate::hsm::Hsm> {
        self.hsm.get()
    }

    /// Why the HSM is not open (the last error opening it); empty once open.
    pub fn why(&self) -> String {
        self.why.lock().clone()
    }

    /// The refusal while the HSM is not open yet.
    fn not_open(&self) -> BackendError {
        BackendError::Unavailable(format!("HSM not open: {}", self.why()))
    }

    /// Closes the HSM's sessions when it is open ([`crate::hsm::Hsm::close`]); returns how
    /// many it closed.
    pub async fn close(&self) -> usize {
        match self.hsm.get() {
            Some(hsm) => hsm.close().await,
            None => 0,
        }
    }

    /// Opens the HSM now; when that fails, logs why and retries every `retry` in the
    /// background until it opens or `shutdown` resolves. (An attempt into a module that hangs
    /// leaves a thread behind; [`crate::hsm::Hsm::open`] refuses to start another while
    /// [`crate::hsm::MAX_STUCK_CALLS`] are stuck.)
    pub async fn open_or_retry(
        cfg: crate::hsm::HsmConfig,
        retry: std::time::Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::sync::Arc<Self> {
        match crate::hsm::Hsm::open(cfg.clone()).await {
            Ok(hsm) => std::sync::Arc::new(Self::open(hsm)),
            Err(e) => {
                tracing::warn!(error = %e, "HSM not available; device requests get 503 until it opens");
                let slot = std::sync::Arc::new(Self::empty(e.to_string()));
                let bg = slot.clone();
                tokio::spawn(async move {
                    tokio::pin!(shutdown);
                    loop {
                        tokio::select! {
                            () = &mut shutdown => return,
                            () = tokio::time::sleep(retry) => {}
                        }
                        match crate::hsm::Hsm::open(cfg.clone()).await {
                            Ok(hsm) => {
                                tracing::info!("HSM opened");
                                let _ = bg.hsm.set(hsm);
                                return;
                            }
                            Err(e) => *bg.why.lock() = e.to_string(),
                        }
                    }
                });
                slot
            }
        }
    }
}

impl SignBackend for LazyHsm {
    fn sign<'a>(&'a self, key_id: &'a str, digest_infos: &'a [DigestInfo]) -> SignFuture<'a> {
        match self.hsm.get() {
            Some(hsm) => SignBackend::sign(hsm, key_id, digest_infos),
            None => {
                let e = self.not_open();
                Box::pin(async move { Err(e) })
            }
        }
    }

    fn sign_each<'a>(
        &'a self,
        key_id: &'a str,
        digest_infos: &'a [DigestInfo],
        on_signed: OnSigned,
    ) -> EachFuture<'a> {
        match self.hsm.get() {
            Some(hsm) => SignBackend::sign_each(hsm, key_id, digest_infos, on_signed),
            None => {
                let e = self.not_open();
                Box::pin(async move { Err(e) })
            }
        }
    }
}
