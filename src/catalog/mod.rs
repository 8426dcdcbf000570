//! The in-memory catalog the device hot path reads: brands, models with their API keys and
//! settings, the active serial policy of each model, signing keys, and the pushed
//! account/account-key assertions.
//!
//! A snapshot also holds what registration reads, built once per load: each model's
//! [`DeviceModel`] view and the [`SerialKey`] (with its parsed public key and the compiled
//! `constraints` of its account-key) that signs its serials, or why none may (a key whose
//! roles admit no serial of the model is refused here); so a request converts nothing.
//!
//! Readers take an `Arc<Snapshot>` (one short read-lock, then no locking at all); a refresh
//! builds a whole new snapshot from the store and swaps it in. [`Catalog::spawn_refresher`]
//! follows `LISTEN serialmint_changes` (reconnecting when Postgres goes away) and reloads on
//! every notification, with a periodic full reload as a safety net. This module holds no SQL.

mod remodel;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use time::OffsetDateTime;

use crate::assertion::{
    AccountKey, Constraints, RsaPublicKey, constraints_admit_serials, decode_stream,
};
use crate::domain::SerialGeneration;
use crate::registration::{DeviceModel, KeyRefusal, SerialKey, SerialScheme};
use crate::signer::RateLimit;
use crate::store::{
    AccountAssertion, AssertionKind, Change, KeyStatus, Model, SerialPolicy, SigningKey, Store,
    StoreError,
};
use crate::trust::TrustDb;

/// How often the catalog reloads everything even without a notification.
pub const DEFAULT_FULL_RELOAD: Duration = Duration::from_secs(30);

/// One consistent view of the catalog.
#[derive(Debug)]
pub struct Snapshot {
    brands: HashSet<String>,
    models: HashMap<(String, String), Arc<Model>>,
    models_by_id: HashMap<i64, Arc<Model>>,
    models_by_api_key: HashMap<String, Vec<Arc<Model>>>,
    active_policies: HashMap<i64, SerialPolicy>,
    keys: HashMap<String, Arc<SigningKey>>,
    accounts: HashMap<String, AccountAssertion>,
    account_keys: HashMap<String, AccountAssertion>,
    public_keys: HashMap<String, RsaPublicKey>,
    device_models: HashMap<(String, String), Arc<DeviceModel>>,
    serial_keys: HashMap<i64, Result<Arc<SerialKey>, KeyRefusal>>,
    trust: Arc<TrustDb>,
    remodel: remodel::RemodelTable,
    generation: u64,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            brands: HashSet::new(),
            models: HashMap::new(),
            models_by_id: HashMap::new(),
            models_by_api_key: HashMap::new(),
            active_policies: HashMap::new(),
            keys: HashMap::new(),
            accounts: HashMap::new(),
            account_keys: HashMap::new(),
            public_keys: HashMap::new(),
            device_models: HashMap::new(),
            serial_keys: HashMap::new(),
            trust: Arc::new(TrustDb::builtin()),
            remodel: remodel::RemodelTable::default(),
            generation: 0,
        }
    }
}

/// Why a model cannot get a serial signed right now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The model has no serial policy yet.
    #[error("model {0:?} has no serial policy")]
    NoPolicy(String),
    /// The active policy names a key the catalog does not know or that is not ready.
    #[error("the signing key {0} of the active serial policy is not available")]
    KeyUnavailable(String),
    /// The key is disabled or not allowed to sign serials for this model.
    #[error("the signing key {0} may not sign serials for model {1:?}")]
    KeyNotAllowed(String, String),
}

impl Snapshot {
    /// Builds a snapshot from store rows; `trust` is the configured trusted roots, to which
    /// the pushed account and account-key assertions are admitted (each was verified when it
    /// was pushed; one that no longer verifies, e.g. expired, is left out with a warning).
    pub fn build(
        brands: Vec<String>,
        models: Vec<Model>,
        policies: Vec<SerialPolicy>,
        keys: Vec<SigningKey>,
        assertions: Vec<AccountAssertion>,
        trust: &TrustDb,
        generation: u64,
    ) -> Self {
        let mut s = Snapshot {
            brands: brands.into_iter().collect(),
            generation,
            trust: Arc::new(admit_pushed(trust, &assertions)),
            ..Snapshot::default()
        };
        for m in models {
            let m = Arc::new(m);
            s.models
                .insert((m.brand_id.clone(), m.name.clone()), m.clone());
            s.models_by_id.insert(m.id, m.clone());
            s.models_by_api_key
                .entry(m.api_key.clone())
                .or_default()
                .push(m);
        }
        for p in policies {
            s.active_policies.insert(p.model_id, p);
        }
        for k in keys {
            if let Some(id) = k.sha3_384.clone() {
                match k
                    .public_key
                    .as_deref()
                    .map(|t| RsaPublicKey::decode(t.as_bytes()))
                {
                    Some(Ok(public)) => {
                        s.public_keys.insert(id.clone(), public);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(key = %id, error = %e, "catalog: stored public key does not decode");
                    }
                    None => {}
                }
                s.keys.insert(id, Arc::new(k));
            }
        }
        for a in assertions {
            match a.kind {
                AssertionKind::Account => s.accounts.insert(a.primary_key.clone(), a),
                AssertionKind::AccountKey => s.account_keys.insert(a.primary_key.clone(), a),
            };
        }
        for m in s.models_by_id.values() {
            let key = s.device_serial_key(m);
            s.serial_keys.insert(m.id, key);
            s.device_models.insert(
                (m.brand_id.clone(), m.name.clone()),
                Arc::new(device_model(m)),
            );
        }
        s
    }

    /// What registration reads of the model `name` of `brand_id`, enabled or not.
    pub fn device_model(&self, brand_id: &str, name: &str) -> Option<&Arc<DeviceModel>> {
        self.device_models
            .get(&(brand_id.to_string(), name.to_string()))
    }

    /// Every model as registration reads it (for constant-time API key checks over all).
    pub fn device_models(&self) -> impl Iterator<Item = &Arc<DeviceModel>> {
        self.device_models.values()
    }

    /// The key that signs serials for the model with this row id, with its parsed public key,
    /// or why none may now.
    pub fn serial_key(&self, model_id: i64) -> Result<Arc<SerialKey>, KeyRefusal> {
        self.serial_keys.get(&model_id).cloned().unwrap_or_else(|| {
            Err(KeyRefusal::NotAllowed(format!(
                "model {model_id} is not in the catalog"
            )))
        })
    }

    /// Builds the serial key of `model` (at load time): the active policy's key, in scope,
    /// ready, with a public key that decodes and matches its id.
    fn device_serial_key(&self, model: &Model) -> Result<Arc<SerialKey>, KeyRefusal> {
        let key = self.serial_signing_key(model).map_err(|e| match e {
            PolicyError::NoPolicy(_) | PolicyError::KeyNotAllowed(..) => {
                KeyRefusal::NotAllowed(e.to_string())
            }
            PolicyError::KeyUnavailable(_) => KeyRefusal::Unavailable(e.to_string()),
        })?;
        let key_id = key.sha3_384.clone().unwrap_or_default();
        let public = self
            .public_key(&key_id)
            .filter(|p| p.key_id() == key_id)
            .cloned()
            .ok_or_else(|| {
                KeyRefusal::Unavailable(format!(
                    "the public key of signing key {key_id} is missing or does not match its id"
                ))
            })?;
        let constraints = self.pushed_constraints(&key_id)?;
        if let Some(c) = &constraints
            && !constraints_admit_serials(c, &key.brand_id, &model.brand_id, &model.name, &key_id)
        {
            return Err(KeyRefusal::RoleRefused(format!(
                "the signing key {key_id} may not sign serials for model {}/{}: the constraints \
                 of its account-key ({c}) do not admit them",
                model.brand_id, model.name
            )));
        }
        Ok(Arc::new(SerialKey {
            key_id,
            authority_id: key.brand_id.clone(),
            public,
            constraints,
        }))
    }

    /// The `constraints` of the account-key of `key_id` (trusted, or pushed and admitted; a
    /// pushed one that no longer verifies still counts: its roles do not lapse with it).
    /// `None` when there is no account-key or it has none. A pushed account-key that does not
    /// decode makes the key unusable (fail closed).
    fn pushed_constraints(&self, key_id: &str) -> Result<Option<Arc<Constraints>>, KeyRefusal> {
        if let Some(k) = self.trust.account_key(key_id) {
            return Ok(k.constraints().cloned());
        }
        let Some(pushed) = self.account_keys.get(key_id) else {
            return Ok(None);
        };
        crate::assertion::decode_as::<AccountKey>(pushed.text.as_bytes())
            .map(|k| k.constraints().cloned())
            .map_err(|e| {
                KeyRefusal::Unavailable(format!(
                    "the pushed account-key of signing key {key_id} does not decode: {e}"
                ))
            })
    }

    /// The trusted roots plus every pushed account and account-key that still verifies: what
    /// model assertions and the served key chain are checked against.
    pub fn trust(&self) -> &Arc<TrustDb> {
        &self.trust
    }

    /// The parsed public key of the signing key with this SHA3-384 id (to verify what the
    /// HSM signed).
    pub fn public_key(&self, sha3_384: &str) -> Option<&RsaPublicKey> {
        self.public_keys.get(sha3_384)
    }

    /// How many reloads preceded this snapshot (0: never loaded).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the brand exists.
    pub fn has_brand(&self, brand_id: &str) -> bool {
        self.brands.contains(brand_id)
    }

    /// The model `name` of `brand_id`.
    pub fn model(&self, brand_id: &str, name: &str) -> Option<&Arc<Model>> {
        self.models.get(&(brand_id.to_string(), name.to_string()))
    }

    /// The model with this row id.
    pub fn model_by_id(&self, id: i64) -> Option<&Arc<Model>> {
        self.models_by_id.get(&id)
    }

    /// The models that use this API key (an API key may serve several models). This is a
    /// hash lookup; callers that hold the model from the request should prefer
    /// [`Snapshot::model`] plus a constant-time compare of `api_key`.
    pub fn models_by_api_key(&self, api_key: &str) -> &[Arc<Model>] {
        self.models_by_api_key
            .get(api_key)
            .map_or(&[][..], Vec::as_slice)
    }

    /// The model named `name` among those using `api_key`.
    pub fn model_by_api_key(
        &self,
        api_key: &str,
        brand_id: &str,
        name: &str,
    ) -> Option<&Arc<Model>> {
        self.models_by_api_key(api_key)
            .iter()
            .find(|m| m.brand_id == brand_id && m.name == name)
    }

    /// The active (newest) serial policy of the model.
    pub fn active_policy(&self, model_id: i64) -> Option<&SerialPolicy> {
        self.active_policies.get(&model_id)
    }

    /// The signing key with this SHA3-384 id (ready keys only; disabled ones included, see
    /// [`SigningKey::active`]).
    pub fn key(&self, sha3_384: &str) -> Option<&Arc<SigningKey>> {
        self.keys.get(sha3_384)
    }

    /// The key that signs serials for `model` now, checked against its scope.
    pub fn serial_signing_key(&self, model: &Model) -> Result<&Arc<SigningKey>, PolicyError> {
        let policy = self
            .active_policy(model.id)
            .ok_or_else(|| PolicyError::NoPolicy(model.name.clone()))?;
        let key = self
            .key(&policy.key_sha3_384)
            .filter(|k| k.status == KeyStatus::Ready)
            .ok_or_else(|| PolicyError::KeyUnavailable(policy.key_sha3_384.clone()))?;
        if !key.may_sign("serial", &model.name) {
            return Err(PolicyError::KeyNotAllowed(
                policy.key_sha3_384.clone(),
                model.name.clone(),
            ));
        }
        Ok(key)
    }

    /// The pushed `account-key` assertion of this key and the `account` assertion of its
    /// account, as text, when held (either may be missing).
    pub fn account_assertions_for_key(
        &self,
        sha3_384: &str,
    ) -> (Option<&AccountAssertion>, Option<&AccountAssertion>) {
        let key = self.account_keys.get(sha3_384);
        let account = key.and_then(|k| self.accounts.get(&k.account_id));
        (key, account)
    }

    /// Every model (for constant-time API key checks over all of them).
    pub fn models(&self) -> impl Iterator<Item = &Arc<Model>> {
        self.models_by_id.values()
    }

    /// A held assertion by type and primary key (for `GET /v2/assertions/...`).
    pub fn account_assertion(
        &self,
        kind: AssertionKind,
        primary_key: &str,
    ) -> Option<&AccountAssertion> {
        match kind {
            AssertionKind::Account => self.accounts.get(primary_key),
            AssertionKind::AccountKey => self.account_keys.get(primary_key),
        }
    }
}

/// A stored model as registration reads it.
fn device_model(m: &Model) -> DeviceModel {
    DeviceModel {
        id: m.id,
        brand_id: m.brand_id.clone(),
        name: m.name.clone(),
        api_key: m.api_key.clone(),
        enabled: m.enabled,
        rate_limit: RateLimit::from_settings(m.rate_limit_per_sec, m.rate_limit_burst),
        duplicate_policy: m.duplicate_policy,
        serial_scheme: match m.serial_generation {
            SerialGeneration::Uuid => SerialScheme::Uuid,
            SerialGeneration::PrefixCounter => SerialScheme::PrefixCounter(m.serial_prefix.clone()),
            SerialGeneration::RequireProposed => SerialScheme::RequireProposed,
        },
    }
}

/// `trust` with the pushed assertions admitted as far as they go
/// ([`TrustDb::admitting`]); the ones that do not decode or verify are left out with a
/// warning.
fn admit_pushed(trust: &TrustDb, pushed: &[AccountAssertion]) -> TrustDb {
    let mut pending = Vec::new();
    for a in pushed {
        match decode_stream(a.text.as_bytes()) {
            Ok(list) => pending.extend(list),
            Err(e) => {
                tracing::warn!(assertion = %a.primary_key, error = %e, "catalog: stored assertion does not decode")
            }
        }
    }
    let (db, left) = trust.admitting(pending, OffsetDateTime::now_utc());
    for (a, e) in left {
        tracing::warn!(assertion = %crate::trust::describe(&a), error = %e, "catalog: pushed assertion no longer verifies; left out");
    }
    db
}

/// The catalog: the current snapshot and how to refresh it.
#[derive(Debug)]
pub struct Catalog {
    store: Store,
    trust: TrustDb,
    current: RwLock<Arc<Snapshot>>,
    reloads: AtomicU64,
}

impl Catalog {
    /// An empty, not yet loaded catalog over `store`, with the built-in trusted roots.
    pub fn new(store: Store) -> Arc<Self> {
        Self::with_trust(store, TrustDb::builtin())
    }

    /// An empty, not yet loaded catalog over `store`, with these trusted roots.
    pub fn with_trust(store: Store, trust: TrustDb) -> Arc<Self> {
        Arc::new(Catalog {
            store,
            trust,
            current: RwLock::new(Arc::new(Snapshot::default())),
            reloads: AtomicU64::new(0),
        })
    }

    /// The current snapshot (cheap: one `Arc` clone under a read lock).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().clone()
    }

    /// Whether at least one load succeeded.
    pub fn is_loaded(&self) -> bool {
        self.snapshot().generation > 0
    }

    /// Reloads everything from the store and swaps the new snapshot in; on error the old
    /// snapshot stays.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let rows = self.store.catalog_rows().await?;
        let (brands, models, policies, keys, assertions) = (
            rows.brands,
            rows.models,
            rows.active_policies,
            rows.keys,
            rows.assertions,
        );
        let generation = self.reloads.fetch_add(1, Ordering::SeqCst) + 1;
        let snapshot = Snapshot::build(
            brands.into_iter().map(|b| b.account_id).collect(),
            models,
            policies,
            keys,
            assertions,
            &self.trust,
            generation,
        )
        .with_remodel_policies(rows.remodel_policies);
        let mut current = self.current.write();
        if current.generation < generation {
            *current = Arc::new(snapshot);
        }
        Ok(())
    }

    /// Follows change notifications until `shutdown` resolves: reloads on every
    /// `serialmint_changes` notification (several queued ones cause one reload), after every
    /// reconnection (notifications may have been missed), and every `full_reload`.
    pub fn spawn_refresher(
        self: &Arc<Self>,
        full_reload: Duration,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let catalog = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = catalog.follow(full_reload) => {}
                () = shutdown => {}
            }
        })
    }

    async fn follow(self: Arc<Self>, full_reload: Duration) {
        // The LISTEN connection lives in its own task and forwards events over a channel, so
        // the loop below never cancels a half-read notification.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<&'static str>(64);
        let listener = tokio::spawn(Self::forward_notifications(self.store.clone(), tx));
        let _abort = AbortOnDrop(listener);
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + full_reload, full_reload);
        loop {
            tokio::select! {
                why = rx.recv() => {
                    let Some(why) = why else { return };
                    // Several queued events cause one reload.
                    while rx.try_recv().is_ok() {}
                    self.reload_logged(why).await;
                }
                _ = tick.tick() => self.reload_logged("periodic").await,
            }
        }
    }

    async fn forward_notifications(store: Store, tx: tokio::sync::mpsc::Sender<&'static str>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match store.listen_changes().await {
                Ok(mut listener) => {
                    backoff = Duration::from_millis(200);
                    // Listening before loading: no change can slip between the two.
                    if tx.send("listen").await.is_err() {
                        return;
                    }
                    loop {
                        let why = match listener.next().await {
                            Ok(Change::Changed(_)) => "notify",
                            Ok(Change::Reconnected) => {
                                tracing::info!("catalog: LISTEN connection lost; reconnected");
                                "reconnect"
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "catalog: LISTEN failed");
                                break;
                            }
                        };
                        if tx.send(why).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "catalog: cannot LISTEN for changes; retrying")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn reload_logged(&self, why: &'static str) {
        let started = Instant::now();
        match self.reload().await {
            Ok(()) => {
                metrics::counter!("catalog_reloads_total", "why" => why).increment(1);
                tracing::debug!(
                    why,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "catalog reloaded"
                );
            }
            Err(e) => {
                metrics::counter!("catalog_reload_failures_total").increment(1);
                tracing::warn!(why, error = %e, "catalog reload failed; keeping the previous snapshot");
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests;
