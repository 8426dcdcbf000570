//! The one thing the signer needs from an HSM: sign a batch of SHA-512 DigestInfos with one
//! key, back to back, through one pooled session.
//!
//! The HSM implements it (in [`crate::wiring`], where the parts are joined); tests of the
//! queue, batching and admission logic plug in an in-memory backend.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A SHA-512 DigestInfo (DER prefix + 64-byte digest), the input of `CKM_RSA_PKCS`.
pub type DigestInfo = [u8; 83];

/// The future returned by [`SignBackend::sign`].
pub type SignFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Vec<u8>>, BackendError>> + Send + 'a>>;

/// The future returned by [`SignBackend::sign_each`].
pub type EachFuture<'a> = Pin<Box<dyn Future<Output = Result<(), BackendError>> + Send + 'a>>;

/// Where [`SignBackend::sign_each`] hands each signature: (its index in the batch, the
/// signature), called from whatever thread made it.
pub type OnSigned = Arc<dyn Fn(usize, Vec<u8>) + Send + Sync>;

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

    /// [`SignBackend::sign`], handing each signature to `on_signed` as soon as it is made and
    /// verified, so that each waiter of a batch is answered when its own signature is ready.
    /// On an error, the indices not handed over are those that failed. The default hands
    /// them all over when the batch ends (for backends that cannot do better, and fakes).
    fn sign_each<'a>(
        &'a self,
        key_id: &'a str,
        digest_infos: &'a [DigestInfo],
        on_signed: OnSigned,
    ) -> EachFuture<'a> {
        Box::pin(async move {
            let sigs = self.sign(key_id, digest_infos).await?;
            if sigs.len() != digest_infos.len() {
                return Err(BackendError::Failed(format!(
                    "backend returned {} signatures for {} digests",
                    sigs.len(),
                    digest_infos.len()
                )));
            }
            for (i, sig) in sigs.into_iter().enumerate() {
                on_signed(i, sig);
            }
            Ok(())
        })
    }
}
