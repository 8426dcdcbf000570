//! What registration needs to know about models, policies, keys and held assertions: a small
//! trait, [`DeviceCatalog`], implemented by [`LiveCatalog`] over the admin plane's in-memory
//! [`crate::catalog::Catalog`] (one catalog, refreshed by LISTEN/NOTIFY; no copy of it here).

use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::assertion::RsaPublicKey;
use crate::catalog::{Catalog, PolicyError};
use crate::signer::RateLimit;
use crate::store;
use crate::trust::TrustDb;

/// What happens when a serial already issued to one device key is asked for by another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DuplicatePolicy {
    /// Refuse with 409.
    Refuse,
    /// Issue it again with the next revision.
    Reissue,
}

/// How a serial is chosen when the device proposes none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerialGeneration {
    /// A random UUID (the default).
    Uuid,
    /// This prefix followed by the next value of the model's counter.
    PrefixCounter(String),
    /// None: the device must propose one (400 otherwise).
    RequireProposed,
}

/// A model as registration sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceModel {
    /// Row id (what the signing log references).
    pub id: i64,
    /// The brand's account-id.
    pub brand_id: String,
    /// The model name.
    pub name: String,
    /// The API key devices of this model send.
    pub api_key: String,
    /// Whether devices of this model are served.
    pub enabled: bool,
    /// Its rate limit, if any.
    pub rate_limit: Option<RateLimit>,
    /// Duplicate-serial policy.
    pub duplicate_policy: DuplicatePolicy,
    /// Serial-generation policy.
    pub serial_generation: SerialGeneration,
}

/// The key that signs serials for a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialKey {
    /// Its snapd key id (`sign-key-sha3-384`; CKA_ID on the token).
    pub key_id: String,
    /// The account it signs for (`authority-id` of the serial).
    pub authority_id: String,
    /// Its public key (to verify what the HSM signed).
    pub public: RsaPublicKey,
}

/// Why no key may sign serials for a model right now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    /// No active serial policy, or its key may not sign serials for this model (409).
    #[error("{0}")]
    NotAllowed(String),
    /// The policy's key exists but is not usable now (503).
    #[error("{0}")]
    Unavailable(String),
}

/// Which held assertions `GET /v2/assertions` can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldKind {
    /// `account`, by account-id.
    Account,
    /// `account-key`, by public-key-sha3-384.
    AccountKey,
}

/// The device plane's view of the catalog. Every call reads the current snapshot.
pub trait DeviceCatalog: Send + Sync + 'static {
    /// Whether any model uses this API key, comparing in constant time with every key.
    fn api_key_known(&self, api_key: &str) -> bool;
    /// The model `name` of `brand_id`, enabled or not.
    fn model(&self, brand_id: &str, name: &str) -> Option<DeviceModel>;
    /// The key of the model's active serial policy, checked against its scope.
    fn serial_key(&self, model: &DeviceModel) -> Result<SerialKey, KeyRefusal>;
    /// The encoded `account-key` of `key_id` and then the `account` it belongs to, those held.
    fn key_chain(&self, key_id: &str) -> Vec<String>;
    /// A held assertion's text.
    fn held_assertion(&self, kind: HeldKind, primary_key: &str) -> Option<String>;
    /// The trust database used to verify model assertions: the trusted roots plus the
    /// pushed accounts and account-keys.
    fn trust(&self) -> Arc<TrustDb>;
}

/// Constant-time string equality (length leaks, content does not).
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The device plane's view of the admin catalog: models, policies, keys and the trust
/// database (configured roots plus pushed accounts and account-keys) all come from the
/// current [`crate::catalog::Snapshot`].
pub struct LiveCatalog {
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for LiveCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCatalog").finish_non_exhaustive()
    }
}

impl LiveCatalog {
    /// Registration's view of `catalog`.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }

    /// The catalog underneath.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }
}

/// A store model as registration sees it.
pub fn device_model(m: &store::Model) -> DeviceModel {
    DeviceModel {
        id: m.id,
        brand_id: m.brand_id.clone(),
        name: m.name.clone(),
        api_key: m.api_key.clone(),
        enabled: m.enabled,
        rate_limit: RateLimit::from_settings(m.rate_limit_per_sec, m.rate_limit_burst),
        duplicate_policy: match m.duplicate_policy {
            store::DuplicatePolicy::Refuse => DuplicatePolicy::Refuse,
            store::DuplicatePolicy::Reissue => DuplicatePolicy::Reissue,
        },
        serial_generation: match m.serial_generation {
            store::SerialGeneration::Uuid => SerialGeneration::Uuid,
            store::SerialGeneration::PrefixCounter => {
                SerialGeneration::PrefixCounter(m.serial_prefix.clone())
            }
            store::SerialGeneration::RequireProposed => SerialGeneration::RequireProposed,
        },
    }
}

impl DeviceCatalog for LiveCatalog {
    fn api_key_known(&self, api_key: &str) -> bool {
        let snap = self.catalog.snapshot();
        snap.models()
            .fold(false, |found, m| found | ct_eq(&m.api_key, api_key))
    }

    fn model(&self, brand_id: &str, name: &str) -> Option<DeviceModel> {
        self.catalog
            .snapshot()
            .model(brand_id, name)
            .map(|m| device_model(m))
    }

    fn serial_key(&self, model: &DeviceModel) -> Result<SerialKey, KeyRefusal> {
        let snap = self.catalog.snapshot();
        let m = snap.model_by_id(model.id).ok_or_else(|| {
            KeyRefusal::NotAllowed(format!("model {:?} has no serial policy", model.name))
        })?;
        let key = snap.serial_signing_key(m).map_err(|e| match e {
            PolicyError::NoPolicy(_) | PolicyError::KeyNotAllowed(..) => {
                KeyRefusal::NotAllowed(e.to_string())
            }
            PolicyError::KeyUnavailable(_) => KeyRefusal::Unavailable(e.to_string()),
        })?;
        let key_id = key.sha3_384.clone().unwrap_or_default();
        let public = key
            .public_key
            .as_deref()
            .and_then(|p| RsaPublicKey::decode(p.as_bytes()).ok())
            .filter(|p| p.key_id() == key_id)
            .ok_or_else(|| {
                KeyRefusal::Unavailable(format!(
                    "the public key of signing key {key_id} is missing or does not match its id"
                ))
            })?;
        Ok(SerialKey {
            key_id,
            authority_id: key.brand_id.clone(),
            public,
        })
    }

    fn key_chain(&self, key_id: &str) -> Vec<String> {
        let snap = self.catalog.snapshot();
        let (key, account) = snap.account_assertions_for_key(key_id);
        match key {
            Some(k) => std::iter::once(k)
                .chain(account)
                .map(|a| a.text.clone())
                .collect(),
            None => Vec::new(),
        }
    }

    fn held_assertion(&self, kind: HeldKind, primary_key: &str) -> Option<String> {
        let kind = match kind {
            HeldKind::Account => store::AssertionKind::Account,
            HeldKind::AccountKey => store::AssertionKind::AccountKey,
        };
        self.catalog
            .snapshot()
            .account_assertion(kind, primary_key)
            .map(|a| a.text.clone())
    }

    fn trust(&self) -> Arc<TrustDb> {
        self.catalog.snapshot().trust().clone()
    }
}
