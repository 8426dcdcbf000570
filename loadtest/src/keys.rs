//! Device keys: RSA-4096 key pairs generated in parallel once and cached on disk as PKCS#8
//! files (`device-00000.pk8`, ...), so key generation is never part of a timed phase.
//!
//! A simulated device is a (key, request-id) pair: when a run needs more devices than there
//! are cached keys, keys are reused round-robin, like a device registering again with the
//! same key (snapd keeps its device key across attempts).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA512};
use indicatif::ProgressBar;
use serialmint::assertion::openpgp::RsaPublicKey;

/// One device key: the private key and its snapd encodings.
pub struct DeviceKey {
    pair: KeyPair,
    text: String,
    id: String,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKey").field("id", &self.id).finish()
    }
}

impl DeviceKey {
    /// A key from its PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<DeviceKey, String> {
        let pair = KeyPair::from_pkcs8(der).map_err(|e| format!("bad PKCS#8 key: {e}"))?;
        let c: PublicKeyComponents<Vec<u8>> = pair.public_key().into();
        let public = RsaPublicKey::new(&c.n, &c.e);
        Ok(DeviceKey {
            text: public.encode(),
            id: public.key_id(),
            pair,
        })
    }

    /// The `device-key` header value (snapd's encoding, wrapped at 76 columns).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The key id (`sign-key-sha3-384` of a serial-request).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// RSA PKCS#1 v1.5 with SHA-512 over `message`; as long as the modulus.
    pub fn sign_sha512(&self, message: &[u8]) -> Vec<u8> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA512,
                &aws_lc_rs::rand::SystemRandom::new(),
                message,
                &mut sig,
            )
            .expect("RSA signing with a valid key cannot fail");
        sig
    }
}

fn key_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("device-{i:05}.pk8"))
}

/// Loads `count` keys from `dir`, generating (on `threads` threads) and saving the missing
/// ones first. Files are written under a temporary name and renamed, so an interrupted run
/// never leaves a half-written key behind.
pub fn load_or_generate(
    dir: &Path,
    count: usize,
    threads: usize,
    progress: &ProgressBar,
) -> Result<Vec<Arc<DeviceKey>>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let missing: Vec<usize> = (0..count).filter(|i| !key_path(dir, *i).exists()).collect();
    if !missing.is_empty() {
        progress.set_length(missing.len() as u64);
        progress.set_message("generating RSA-4096 device keys");
        let next = AtomicUsize::new(0);
        let result: Result<(), String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    s.spawn(|| -> Result<(), String> {
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&i) = missing.get(k) else {
                                return Ok(());
                            };
                            let pair = KeyPair::generate(KeySize::Rsa4096)
                                .map_err(|_| "RSA-4096 key generation failed".to_string())?;
                            let der = pair
                                .as_der()
                                .map_err(|_| "cannot encode the key as PKCS#8".to_string())?;
                            let path = key_path(dir, i);
                            let tmp = path.with_extension("tmp");
                            std::fs::write(&tmp, der.as_ref())
                                .and_then(|()| std::fs::rename(&tmp, &path))
                                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                            progress.inc(1);
                        }
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("key thread panicked".into()))
            })
        });
        result?;
    }
    (0..count)
        .map(|i| {
            let path = key_path(dir, i);
            let der =
                std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            DeviceKey::from_pkcs8(&der)
                .map(Arc::new)
                .map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_generated_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let pb = ProgressBar::hidden();
        let keys = load_or_generate(dir.path(), 1, 1, &pb).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].pair.public_modulus_len(), 512);
        assert!(keys[0].text().starts_with("AcbBTQRWhcGAARAA"));
        assert_eq!(keys[0].id().len(), 64);
        let again = load_or_generate(dir.path(), 1, 1, &pb).unwrap();
        assert_eq!(again[0].id(), keys[0].id(), "the cached key is reused");
    }

    #[test]
    fn signatures_verify_with_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = load_or_generate(dir.path(), 1, 1, &ProgressBar::hidden()).unwrap();
        let sig = keys[0].sign_sha512(b"hello");
        assert_eq!(sig.len(), 512);
        let c: PublicKeyComponents<Vec<u8>> = keys[0].pair.public_key().into();
        c.verify(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA512,
            b"hello",
            &sig,
        )
        .unwrap();
        assert!(
            c.verify(
                &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA512,
                b"other",
                &sig
            )
            .is_err()
        );
    }

    #[test]
    fn a_corrupt_cache_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(key_path(dir.path(), 0), b"not a key").unwrap();
        let err = load_or_generate(dir.path(), 1, 1, &ProgressBar::hidden()).unwrap_err();
        assert!(err.contains("device-00000.pk8"), "{err}");
    }
}
