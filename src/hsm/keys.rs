//! Keys on the token: key ids, key generation (on its own thread, under its own timeout),
//! listing, and finding a key by id with its cached software verifier.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::ErrorClass;
use super::session::{LoggedInSession, OpError};
use super::verify::Verifier;
use super::{Hsm, HsmError, KEY_ID_LEN};
use crate::assertion::openpgp::RsaPublicKey;

/// A signing key on the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's name (its CKA_LABEL).
    pub name: String,
    /// The snapd key id: unpadded base64url of SHA3-384 over the encoded public key.
    pub key_id: String,
    /// The public key.
    pub public: RsaPublicKey,
}

/// A cached public key with its parsed verifier.
pub(super) struct KeyEntry {
    pub(super) info: KeyInfo,
    pub(super) verifier: Verifier,
}

/// Decodes a snapd key id (unpadded base64url of 48 bytes).
pub fn decode_key_id(key_id: &str) -> Result<[u8; KEY_ID_LEN], HsmError> {
    URL_SAFE_NO_PAD
        .decode(key_id)
        .ok()
        .and_then(|b| <[u8; KEY_ID_LEN]>::try_from(b).ok())
        .ok_or_else(|| {
            HsmError::InvalidInput(format!(
                "key id {key_id:?} is not a SHA3-384 key id (64 base64url characters)"
            ))
        })
}

fn check_name(name: &str) -> Result<(), HsmError> {
    if name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control()) {
        return Err(HsmError::InvalidInput(
            "key name must be 1-128 bytes without control characters".into(),
        ));
    }
    Ok(())
}

impl Hsm {
    /// Generates an RSA-4096 key pair on the first token that is up, named `name` (its
    /// CKA_LABEL), with CKA_ID set to its SHA3-384 key id. Runs on its own thread and its own
    /// session, so signing never waits for it; gives up after the configured timeout (a key
    /// finished after that is destroyed again).
    pub async fn generate_key(&self, name: &str) -> Result<KeyInfo, HsmError> {
        check_name(name)?;
        if self.list_keys().await?.iter().any(|k| k.name == name) {
            return Err(HsmError::InvalidInput(format!(
                "a key named {name:?} already exists"
            )));
        }
        let owned = name.to_string();
        let info = self
            .on_own_session("key generation", move |session, keep| {
                session.generate_rsa4096(&owned, keep)
            })
            .await?;
        tracing::info!(name, key_id = %info.key_id, "RSA-4096 key generated on the token");
        Ok(info)
    }

    /// Runs `op` on a read-write session of its own on the first token that is up, on a
    /// thread of its own (pooled sessions are read-only), under the key generation timeout.
    /// `op` gets `keep`, which says whether the caller still waits: what it wrote after
    /// the caller gave up, it removes again.
    pub(super) async fn on_own_session<T, F>(
        &self,
        what: &'static str,
        op: F,
    ) -> Result<T, HsmError>
    where
        T: Send + 'static,
        F: FnOnce(&mut LoggedInSession, &dyn Fn() -> bool) -> Result<T, OpError> + Send + 'static,
    {
        let token = self
            .inner
            .tokens
            .iter()
            .find(|t| t.shared.is_up())
            .ok_or_else(|| self.unavailable(Vec::new()))?;
        let shared = token.shared.clone();
        let pin = token.shared.pin();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("hsm {what}"))
            .spawn(move || {
                let result = LoggedInSession::open(&shared.module, &shared.label, &pin, true)
                    .and_then(|mut session| op(&mut session, &|| !tx.is_closed()));
                let _ = tx.send(result);
            })
            .map_err(|e| HsmError::Fatal(format!("cannot start the {what} thread: {e}")))?;
        let timeout = self.inner.keygen_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(HsmError::Timeout(format!(
                "{what} did not finish within {} s",
                timeout.as_secs_f64()
            ))),
            Ok(Err(_)) => Err(HsmError::Fatal(format!(
                "the {what} thread ended without a result"
            ))),
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => {
                if matches!(e.class(), Some(ErrorClass::TokenGone)) {
                    token.mark_down(&e);
                }
                Err(e.into_hsm(&token.shared.label, &token.shared.module.path, None))
            }
        }
    }

    /// Every signing key on the token (RSA private keys whose CKA_ID is their key id).
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, HsmError> {
        self.run(None, |session| session.list_keys()).await
    }

    /// The key with this id, or `None` when no token has it.
    pub async fn find_key(&self, key_id: &str) -> Result<Option<KeyInfo>, HsmError> {
        let id = decode_key_id(key_id)?;
        if let Some(k) = self.inner.keys.read().get(&id) {
            return Ok(Some(k.info.clone()));
        }
        Ok(self.key_entry(&id, key_id).await?.map(|k| k.info.clone()))
    }

    pub(super) async fn key_entry(
        &self,
        id: &[u8; KEY_ID_LEN],
        key_id: &str,
    ) -> Result<Option<Arc<KeyEntry>>, HsmError> {
        if let Some(k) = self.inner.keys.read().get(id) {
            return Ok(Some(k.clone()));
        }
        let idc = *id;
        let found = match self
            .run(Some(key_id), move |session| session.find_key(&idc))
            .await
        {
            Ok(k) => k,
            Err(HsmError::KeyNotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let Some(info) = found else { return Ok(None) };
        let entry = Arc::new(KeyEntry {
            verifier: Verifier::new(&info.public)?,
            info,
        });
        self.inner.keys.write().insert(*id, entry.clone());
        Ok(Some(entry))
    }
}
