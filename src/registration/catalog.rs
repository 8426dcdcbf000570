//! What registration needs to know about models, policies, keys and held assertions: a small
//! trait, [`DeviceCatalog`], and the views it hands out, each built once when the catalog
//! loads (the in-memory [`crate::catalog::Catalog`] implements it in [`crate::wiring`]; tests
//! and the fuzz harness plug in their own). Nothing here knows the store.

use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::assertion::{Constraints, RsaPublicKey};
pub use crate::domain::{AssertionKind, DuplicatePolicy};
use crate::signer::RateLimit;
use crate::trust::TrustDb;

/// How a serial number is chosen when the device proposes none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerialScheme {
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
    /// How a serial is chosen when the device proposes none.
    pub serial_scheme: SerialScheme,
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
    /// The `constraints` of its pushed account-key, compiled at catalog load: every serial
    /// is matched against them right before it is signed. `None` when no account-key was
    /// pushed or it has none (the key may sign anything, as snapd sees it).
    pub constraints: Option<Arc<Constraints>>,
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
    /// The constraints of the key's pushed account-key admit no serial of this model: a
    /// device with a current snapd would refuse what it signed (409).
    #[error("{0}")]
    RoleRefused(String),
}

/// The device plane's view of the catalog. Every call reads the current snapshot; the views
/// are shared, built when the snapshot was.
pub trait DeviceCatalog: Send + Sync + 'static {
    /// Whether any model uses this API key, comparing in constant time with every key.
    fn api_key_known(&self, api_key: &str) -> bool;
    /// The model `name` of `brand_id`, enabled or not.
    fn model(&self, brand_id: &str, name: &str) -> Option<Arc<DeviceModel>>;
    /// The key of the model's active serial policy, checked against its scope.
    fn serial_key(&self, model: &DeviceModel) -> Result<Arc<SerialKey>, KeyRefusal>;
    /// The encoded `account-key` of `key_id` and then the `account` it belongs to, those held.
    fn key_chain(&self, key_id: &str) -> Vec<String>;
    /// A held assertion's text.
    fn held_assertion(&self, kind: AssertionKind, primary_key: &str) -> Option<String>;
    /// The trust database used to verify model assertions: the trusted roots plus the
    /// pushed accounts and account-keys.
    fn trust(&self) -> Arc<TrustDb>;
    /// Whether a remodel policy lets the device holding the serial `from` (brand, model,
    /// serial number) re-register as `to`. None does unless the catalog says so.
    fn remodel_allowed(&self, from: (&str, &str, &str), to: &DeviceModel) -> bool {
        let _ = (from, to);
        false
    }
}

/// Constant-time string equality (length leaks, content does not).
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
