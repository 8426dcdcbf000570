//! What registration needs to know about models, policies, keys and held assertions, as a
//! small trait over the admin plane's in-memory catalog (and an in-memory implementation for
//! tests and for a server without Postgres).

use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::assertion::RsaPublicKey;
use crate::signer::RateLimit;
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

/// A fixed, in-memory catalog.
#[derive(Clone, Debug)]
pub struct StaticCatalog {
    /// The models.
    pub models: Vec<DeviceModel>,
    /// `(model id, key)`: the active serial key of each model.
    pub policies: Vec<(i64, SerialKey)>,
    /// Held `account-key` assertions: `(public-key-sha3-384, account-id, text)`.
    pub account_keys: Vec<(String, String, String)>,
    /// Held `account` assertions: `(account-id, text)`.
    pub accounts: Vec<(String, String)>,
    /// The trust database.
    pub trust: Arc<TrustDb>,
}

impl DeviceCatalog for StaticCatalog {
    fn api_key_known(&self, api_key: &str) -> bool {
        self.models
            .iter()
            .fold(false, |found, m| found | ct_eq(&m.api_key, api_key))
    }

    fn model(&self, brand_id: &str, name: &str) -> Option<DeviceModel> {
        self.models
            .iter()
            .find(|m| m.brand_id == brand_id && m.name == name)
            .cloned()
    }

    fn serial_key(&self, model: &DeviceModel) -> Result<SerialKey, KeyRefusal> {
        self.policies
            .iter()
            .find(|(id, _)| *id == model.id)
            .map(|(_, k)| k.clone())
            .ok_or_else(|| {
                KeyRefusal::NotAllowed(format!("model {:?} has no serial policy", model.name))
            })
    }

    fn key_chain(&self, key_id: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((_, account, text)) = self.account_keys.iter().find(|(k, _, _)| k == key_id) {
            out.push(text.clone());
            if let Some((_, t)) = self.accounts.iter().find(|(a, _)| a == account) {
                out.push(t.clone());
            }
        }
        out
    }

    fn held_assertion(&self, kind: HeldKind, primary_key: &str) -> Option<String> {
        match kind {
            HeldKind::Account => self
                .accounts
                .iter()
                .find(|(a, _)| a == primary_key)
                .map(|(_, t)| t.clone()),
            HeldKind::AccountKey => self
                .account_keys
                .iter()
                .find(|(k, _, _)| k == primary_key)
                .map(|(_, _, t)| t.clone()),
        }
    }

    fn trust(&self) -> Arc<TrustDb> {
        self.trust.clone()
    }
}
