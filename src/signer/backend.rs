//! The one thing the signer needs from an HSM: sign a batch of SHA-512 DigestInfos with one
//! key, back to back, through one pooled session.
//!
//! [`crate::hsm::Hsm`] implements it for real tokens; tests of the queue, batching and
//! admission logic plug in an in-memory backend.

use std::future::Future;
use std::pin::Pin;

/// A SHA-512 DigestInfo (DER prefix + 64-byte digest), the input of `CKM_RSA_PKCS`.
pub type DigestInfo = [u8; 83];

/// The future returned by [`SignBackend::sign`].
pub type SignFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Vec<u8>>, BackendError>> + Send + 'a>>;

/// Why a backend could not sign a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The HSM cannot serve right now (outage, recovery under way): answer 503.
    #[error("HSM unavailable: {0}")]
    Unavailable(String),
    /// No token holds this key.
    #[error("signing key {0} not found on the HSM")]
    KeyNotFound(String),
    /// Anything else: a bad input, a signature that does not verify, a fatal token error.
    #[error("signing failed: {0}")]
    Failed(String),
}

/// Signs batches of DigestInfos; implemented by the HSM layer and by test fakes.
pub trait SignBackend: Send + Sync + 'static {
    /// Signs every DigestInfo with the key `key_id` (a snapd SHA3-384 key id), in order,
    /// returning one signature per input. One call is one session used back to back.
    ///
    /// Contract: every signature returned has been verified in software against the key's
    /// public half over its DigestInfo (the HSM layer does; a fake must too). Registration
    /// relies on it and checks only that the assembled serial carries that signature.
    fn sign<'a>(&'a self, key_id: &'a str, digest_infos: &'a [DigestInfo]) -> SignFuture<'a>;
}

impl SignBackend for crate::hsm::Hsm {
    fn sign<'a>(&'a self, key_id: &'a str, digest_infos: &'a [DigestInfo]) -> SignFuture<'a> {
        Box::pin(async move {
            crate::hsm::Hsm::sign(self, key_id, digest_infos)
                .await
                .map_err(|e| {
                    use crate::hsm::HsmError;
                    match e {
                        HsmError::Unavailable(m) => BackendError::Unavailable(m),
                        HsmError::Timeout(m) => {
                            BackendError::Unavailable(format!("timed out: {m}"))
                        }
                        HsmError::KeyNotFound(k) => BackendError::KeyNotFound(k),
                        e => BackendError::Failed(e.to_string()),
                    }
                })
        })
    }
}

/// The HSM as a [`SignBackend`] that may not be open yet: `serve` starts even when the token
/// cannot be opened (module missing, token absent, PIN refused), answers 503 for every
/// signature meanwhile, and keeps trying to open it in the background.
pub struct HsmSlot {
    hsm: std::sync::OnceLock<crate::hsm::Hsm>,
    why: parking_lot::Mutex<String>,
}

impl std::fmt::Debug for HsmSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmSlot")
            .field("open", &self.hsm.get().is_some())
            .finish_non_exhaustive()
    }
}

impl HsmSlot {
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

impl SignBackend for HsmSlot {
    fn sign<'a>(&'a self, key_id: &'a str, digest_infos: &'a [DigestInfo]) -> SignFuture<'a> {
        match self.hsm.get() {
            Some(hsm) => SignBackend::sign(hsm, key_id, digest_infos),
            None => {
                let why = self.why();
                Box::pin(
                    async move { Err(BackendError::Unavailable(format!("HSM not open: {why}"))) },
                )
            }
        }
    }
}
