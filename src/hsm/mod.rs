//! The HSM layer: the only code that touches cryptoki (PKCS#11).
//!
//! [`Hsm`] loads PKCS#11 modules, finds tokens by label, logs in, keeps a pool of logged-in
//! sessions per token, generates RSA-4096 keys on the token, finds keys by their snapd
//! SHA3-384 id, and signs SHA-512 DigestInfos with `CKM_RSA_PKCS`, verifying every signature in
//! software before returning it. It heals itself: sessions, logins, module instances and
//! p11-kit connections are re-opened in the background after a failure, while requests fail
//! fast with [`HsmError::Unavailable`]. Several tokens holding the same key (found by CKA_ID)
//! share the load; a failed one leaves rotation until it recovers.
//!
//! p11-kit facts this design rests on (measured with p11-kit 0.24.1 and SoftHSM 2.6.1):
//! - One p11-kit-client connection serializes its sessions, so every pool slot gets its own
//!   module instance: p11-kit-client's `C_GetFunctionList` allocates a new client state and
//!   RPC transport on every call, and cryptoki's safe `Pkcs11::new` calls it once per
//!   context (the `dlopen` handle being shared does not matter). No `unsafe`, no copies of
//!   the library under other names. Each instance is one `p11-kit-remote` process on the
//!   server side. (The client keeps each instance's small state until the library is
//!   unloaded, so every recovery leaks a few hundred bytes.)
//! - When the server and its per-connection processes die, every call on the old instances
//!   fails with `CKR_DEVICE_ERROR` until the instance is finalized; while the server is down,
//!   `C_Initialize` succeeds and the token is simply absent. Killing only the listening
//!   process leaves established connections working.
//!
//! - A p11-kit-client call may never return (seen with 0.24: after a server restart a call can
//!   spin forever, client and one `p11-kit-remote` each burning CPU), and any call on a
//!   server that stopped answering blocks. So every blocking call runs on a detached thread
//!   under the call timeout ([`HsmConfig::call_timeout`], default [`DEFAULT_CALL_TIMEOUT`]);
//!   past it the call is abandoned together with its session and module instance, the token
//!   goes out of rotation and recovery initializes fresh instances, which do not share
//!   anything with the stuck one (see `call.rs`). A runtime never waits for such a thread.
//!
//! Process-wide modules (SoftHSMv2, most vendor libraries) have no second instance: the
//! abandoned call keeps the one shared context, and whatever lock it holds inside the module.
//! The token is then out of rotation (requests get `Unavailable` at once), recovery keeps
//! retrying on the same context with at most `MAX_STUCK` calls left stuck, and the token comes
//! back only if the module answers again; otherwise only a restart of serialmint helps.
//!
//! Key generation runs on its own detached thread under its own, longer timeout
//! ([`HsmConfig::keygen_timeout`]); the call timeout does not apply to it.
//!
//! Files: `session.rs` (modules, instances, login, one session's operations), `pool.rs`
//! (deadpool manager, health, recovery), `call.rs` (call threads and the call timeout),
//! `error.rs` (errors and the one cryptoki error mapping), `verify.rs` (software checks).

mod call;
mod error;
mod pool;
mod session;
pub mod verify;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use deadpool::managed::Object;
use parking_lot::{Mutex, RwLock};

use call::Calls;
use error::ErrorClass;
pub use error::HsmError;
use pool::{SessionManager, Token};
use session::{Live, Module, OpError};
use verify::Verifier;

use crate::assertion::openpgp::RsaPublicKey;
use crate::config::{Config, Secret};

/// Length of a snapd key id (SHA3-384), which is also the key's CKA_ID on the token.
pub const KEY_ID_LEN: usize = 48;

/// How long a request waits for a free session by default.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest one blocking PKCS#11 call (or one batch of signatures) may take by default.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Most abandoned PKCS#11 calls that may be stuck, process-wide, before [`Hsm::open`] refuses
/// to try (each attempt into a module that hangs leaves one thread behind, so a caller that
/// retries could pile them up); see [`stuck_calls`].
pub const MAX_STUCK_CALLS: usize = 8;

/// Abandoned PKCS#11 calls still stuck in a module, process-wide: every token of every
/// [`Hsm`], and every [`Hsm::open`] that gave up. Each is a thread left behind; it ends when
/// its call returns.
pub fn stuck_calls() -> usize {
    call::stuck_total()
}

/// Where the HSM layer finds its tokens and how it uses them.
#[derive(Clone, Debug)]
pub struct HsmConfig {
    /// The PKCS#11 module used by tokens that do not name their own.
    pub module: PathBuf,
    /// The tokens to sign with; all should hold the same signing keys. The first is where
    /// keys are generated.
    pub tokens: Vec<TokenSpec>,
    /// Pooled sessions per token (bounded by the token's maximum session count).
    pub sessions: usize,
    /// Longest a key generation may take.
    pub keygen_timeout: Duration,
    /// Longest a request waits for a free session before failing with [`HsmError::Timeout`].
    pub acquire_timeout: Duration,
    /// Longest one blocking PKCS#11 call may take (module initialization, slot lookup,
    /// opening a session, login, key look-ups, one batch of signatures). Past it the call is
    /// abandoned and the token recovered on fresh instances. Not used for key generation.
    pub call_timeout: Duration,
}

/// One token: its label, its user PIN, and optionally its own module.
#[derive(Clone, Debug)]
pub struct TokenSpec {
    /// The token label (CKA_LABEL of the token, trailing blanks ignored).
    pub label: String,
    /// The user PIN; never logged.
    pub pin: Secret,
    /// The module holding this token, when it is not [`HsmConfig::module`].
    pub module: Option<PathBuf>,
}

impl TokenSpec {
    /// A token on the default module.
    pub fn new(label: impl Into<String>, pin: Secret) -> Self {
        TokenSpec {
            label: label.into(),
            pin,
            module: None,
        }
    }
}

impl HsmConfig {
    /// One token on one module, with default sizes.
    pub fn new(module: impl Into<PathBuf>, label: impl Into<String>, pin: Secret) -> Self {
        HsmConfig {
            module: module.into(),
            tokens: vec![TokenSpec::new(label, pin)],
            sessions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            keygen_timeout: Duration::from_secs(300),
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }
}

impl From<&Config> for HsmConfig {
    fn from(c: &Config) -> Self {
        let mut tokens = vec![TokenSpec::new(c.token_label.clone(), c.token_pin.clone())];
        tokens.extend(c.more_tokens.iter().enumerate().map(|(i, t)| TokenSpec {
            label: t.label.clone(),
            pin: c.more_token_pin(i),
            module: t.module.clone(),
        }));
        HsmConfig {
            module: c.pkcs11_module.clone(),
            tokens,
            sessions: c.hsm_sessions,
            keygen_timeout: c.keygen_timeout,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            call_timeout: c.hsm_call_timeout,
        }
    }
}

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

/// The health of the HSM layer.
#[derive(Clone, Debug)]
pub struct HsmHealth {
    /// One entry per configured token, in configuration order.
    pub tokens: Vec<TokenHealth>,
}

impl HsmHealth {
    /// Whether at least one token can sign.
    pub fn is_up(&self) -> bool {
        self.tokens.iter().any(|t| t.up)
    }
}

/// The health of one token.
#[derive(Clone, Debug)]
pub struct TokenHealth {
    /// The token label.
    pub label: String,
    /// Its module.
    pub module: PathBuf,
    /// Whether it is in rotation.
    pub up: bool,
    /// Whether each pooled session has its own module instance (p11-kit-client).
    pub connection_per_session: bool,
    /// Sessions open in the pool.
    pub sessions: usize,
    /// The pool's size limit.
    pub max_sessions: usize,
    /// Idle sessions.
    pub available: usize,
    /// Requests waiting for a session.
    pub waiting: usize,
    /// The last error seen on this token (kind and step; never secrets).
    pub last_error: Option<String>,
    /// How long it has been down, when down.
    pub down_for: Option<Duration>,
    /// How many times it came back after an outage.
    pub recoveries: u64,
    /// PKCS#11 calls abandoned after the call timeout, since start.
    pub abandoned_calls: u64,
    /// Abandoned calls whose thread is still stuck in the module.
    pub stuck_calls: usize,
    /// Operations (sign batches, lookups) it completed.
    pub served: u64,
}

/// A cached public key with its parsed verifier.
struct KeyEntry {
    info: KeyInfo,
    verifier: Verifier,
}

struct Inner {
    tokens: Vec<Token>,
    keys: RwLock<HashMap<[u8; KEY_ID_LEN], Arc<KeyEntry>>>,
    keygen_timeout: Duration,
    acquire_timeout: Duration,
    next: AtomicUsize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in &self.tokens {
            t.close();
        }
    }
}

/// The HSM: pools of logged-in sessions on one or more tokens. Cheap to clone.
#[derive(Clone)]
pub struct Hsm {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("health", &self.health())
            .finish()
    }
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
    /// Loads the module(s), finds every token by label, logs in (an existing login counts),
    /// and fills the session pools. Fails when a token label is absent (listing the labels
    /// found), a PIN is refused, or no token at all can be opened; a token beyond the first
    /// that is down for a reason that may heal starts out of rotation and is recovered in
    /// the background. Refused at once (`Unavailable`) while [`MAX_STUCK_CALLS`] abandoned
    /// calls are stuck.
    pub async fn open(cfg: HsmConfig) -> Result<Hsm, HsmError> {
        if cfg.tokens.is_empty() {
            return Err(HsmError::InvalidInput("no HSM token configured".into()));
        }
        let stuck = stuck_calls();
        if stuck >= MAX_STUCK_CALLS {
            return Err(HsmError::Unavailable(format!(
                "{stuck} PKCS#11 calls of earlier attempts are still stuck in the module; \
                 no new attempt until one returns"
            )));
        }
        let timeout = cfg.call_timeout;
        type Opened = (TokenSpec, Arc<Module>, Calls, Option<Live>, Option<String>);
        let mut modules: HashMap<PathBuf, Arc<Module>> = HashMap::new();
        let mut opened: Vec<Opened> = Vec::new();
        for spec in cfg.tokens.clone() {
            let path = spec.module.clone().unwrap_or_else(|| cfg.module.clone());
            let calls = Calls::new(&spec.label, timeout);
            let module = match modules.get(&path) {
                Some(m) => m.clone(),
                None => {
                    let p = path.clone();
                    let m = calls
                        .run("load module", move || Module::load(&p))
                        .await
                        .map_err(|e| {
                            HsmError::Unavailable(format!(
                                "PKCS#11 module {}: {}",
                                path.display(),
                                e.short()
                            ))
                        })??;
                    let m = Arc::new(m);
                    tracing::info!(module = %path.display(), sharing = ?m.sharing, "PKCS#11 module loaded");
                    modules.insert(path.clone(), m.clone());
                    m
                }
            };
            let (m, label, pin) = (module.clone(), spec.label.clone(), spec.pin.clone());
            let anchor = calls
                .run("open token", move || pool::open_anchor(&m, &label, &pin))
                .await
                .unwrap_or_else(|stuck| Err((stuck, true)));
            match anchor {
                Ok(anchor) => opened.push((spec, module, calls, anchor, None)),
                Err((e, heals)) => {
                    // A wrong label is a configuration error; an empty module (p11-kit
                    // server not up yet) may heal, except for the first token.
                    let wrong_label = match &e {
                        OpError::TokenNotFound(found) => !found.is_empty() || opened.is_empty(),
                        _ => false,
                    };
                    if !heals || wrong_label {
                        return Err(pool::startup_error(e, &spec.label, &path));
                    }
                    let why = format!("token {:?}: {}", spec.label, e.short());
                    opened.push((spec, module, calls, None, Some(why)));
                }
            }
        }

        if opened.iter().all(|o| o.3.is_none()) {
            let why: Vec<String> = opened.into_iter().filter_map(|o| o.4).collect();
            return Err(HsmError::Unavailable(why.join("; ")));
        }
        let mut tokens = Vec::new();
        for (spec, module, calls, anchor, why) in opened {
            if let Some(why) = &why {
                tracing::warn!("{why}; starting out of rotation");
            }
            tokens.push(Token::new(
                spec.label,
                spec.pin,
                module,
                calls,
                anchor,
                cfg.sessions,
            ));
        }
        // Built first, so an early return below closes the pools and stops recovery tasks.
        let hsm = Hsm {
            inner: Arc::new(Inner {
                tokens,
                keys: RwLock::new(HashMap::new()),
                keygen_timeout: cfg.keygen_timeout,
                acquire_timeout: cfg.acquire_timeout,
                next: AtomicUsize::new(0),
            }),
        };
        for t in &hsm.inner.tokens {
            if t.shared.is_up()
                && let Err(e) = t.prewarm().await
            {
                match e.class() {
                    Some(ErrorClass::Fatal) | Some(ErrorClass::Caller) => {
                        return Err(e.into_hsm(&t.shared.label, &pool::module_path(t), None));
                    }
                    _ => t.mark_down(&e),
                }
            }
        }
        tracing::info!(health = ?hsm.health(), "HSM ready");
        Ok(hsm)
    }

    /// The health of every token: up/down, pool sessions, last error.
    pub fn health(&self) -> HsmHealth {
        HsmHealth {
            tokens: self.inner.tokens.iter().map(Token::health).collect(),
        }
    }

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
        let token = self
            .inner
            .tokens
            .iter()
            .find(|t| t.shared.is_up())
            .ok_or_else(|| self.unavailable(Vec::new()))?;
        let shared = token.shared.clone();
        let name_owned = name.to_string();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let pin = token_pin(token);
        std::thread::Builder::new()
            .name("hsm-keygen".into())
            .spawn(move || {
                let result = Live::open(&shared.module, &shared.label, &pin, true)
                    .and_then(|mut live| live.generate_rsa4096(&name_owned, || !tx.is_closed()));
                let _ = tx.send(result);
            })
            .map_err(|e| HsmError::Fatal(format!("cannot start key generation thread: {e}")))?;
        let timeout = self.inner.keygen_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(HsmError::Timeout(format!(
                "key generation did not finish within {} s",
                timeout.as_secs_f64()
            ))),
            Ok(Err(_)) => Err(HsmError::Fatal(
                "key generation thread ended without a result".into(),
            )),
            Ok(Ok(Ok(info))) => {
                tracing::info!(name, key_id = %info.key_id, token = %token.shared.label, "RSA-4096 key generated on the token");
                Ok(info)
            }
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
        self.run(None, |live| live.list_keys()).await
    }

    /// The key with this id, or `None` when no token has it.
    pub async fn find_key(&self, key_id: &str) -> Result<Option<KeyInfo>, HsmError> {
        let id = decode_key_id(key_id)?;
        if let Some(k) = self.inner.keys.read().get(&id) {
            return Ok(Some(k.info.clone()));
        }
        Ok(self.key_entry(&id, key_id).await?.map(|k| k.info.clone()))
    }

    async fn key_entry(
        &self,
        id: &[u8; KEY_ID_LEN],
        key_id: &str,
    ) -> Result<Option<Arc<KeyEntry>>, HsmError> {
        if let Some(k) = self.inner.keys.read().get(id) {
            return Ok(Some(k.clone()));
        }
        let idc = *id;
        let found = match self
            .run(Some(key_id), move |live| live.find_key(&idc))
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

    /// Signs each SHA-512 DigestInfo with the key `key_id` (CKM_RSA_PKCS): one pooled session,
    /// all signed back to back on a blocking thread, each signature verified in software
    /// before any is returned. Signatures come back in input order, each as long as the
    /// modulus.
    pub async fn sign(
        &self,
        key_id: &str,
        digest_infos: &[[u8; 83]],
    ) -> Result<Vec<Vec<u8>>, HsmError> {
        let id = decode_key_id(key_id)?;
        for di in digest_infos {
            verify::check_digest_info(di)?;
        }
        if digest_infos.is_empty() {
            return Ok(Vec::new());
        }
        let entry = self
            .key_entry(&id, key_id)
            .await?
            .ok_or_else(|| HsmError::KeyNotFound(key_id.to_string()))?;
        let dis: Arc<[[u8; 83]]> = digest_infos.into();
        let n = dis.len() as u64;
        let checked = dis.clone();
        let result = self
            .run_checked(
                Some(key_id),
                move |live| live.sign_all(&id, &dis),
                // Verified in software on the same call thread, before any signature leaves
                // it (see `run_on` for why before the session goes back).
                move |sigs: &Vec<Vec<u8>>| {
                    if checked
                        .iter()
                        .zip(sigs)
                        .all(|(di, sig)| entry.verifier.verify(di, sig))
                    {
                        Ok(())
                    } else {
                        Err(OpError::Fatal(
                            "signature from the token failed software verification".into(),
                        ))
                    }
                },
            )
            .await;
        match &result {
            Ok(_) => metrics::counter!("hsm_signatures_total").increment(n),
            Err(e) => {
                if matches!(e, HsmError::KeyNotFound(_)) {
                    self.inner.keys.write().remove(&id);
                }
                metrics::counter!("hsm_sign_errors_total").increment(1);
            }
        }
        result
    }

    /// Tokens that are up, least loaded first (round-robin among equals).
    fn rotation(&self) -> Vec<&Token> {
        let tokens = &self.inner.tokens;
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let mut up: Vec<(isize, usize, &Token)> = tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| t.shared.is_up())
            .map(|(i, t)| {
                (
                    t.load(),
                    (i + tokens.len() - start % tokens.len()) % tokens.len(),
                    t,
                )
            })
            .collect();
        up.sort_by_key(|(load, order, _)| (*load, *order));
        up.into_iter().map(|(_, _, t)| t).collect()
    }

    fn unavailable(&self, mut reasons: Vec<String>) -> HsmError {
        for t in &self.inner.tokens {
            if !t.shared.is_up() {
                let r = t.down_reason();
                if !reasons.contains(&r) {
                    reasons.push(r);
                }
            }
        }
        if reasons.is_empty() {
            reasons.push("no token in rotation".into());
        }
        HsmError::Unavailable(reasons.join("; "))
    }

    /// Runs `op` on a pooled session of a token in rotation, on a blocking thread. A stale
    /// session is dropped and the operation retried once on a fresh one; a token that fails
    /// is taken out of rotation and the next one tried; when none is left, `Unavailable`.
    async fn run<T, F>(&self, key_id: Option<&str>, op: F) -> Result<T, HsmError>
    where
        T: Send + 'static,
        F: Fn(&mut Live) -> Result<T, OpError> + Send + Sync + 'static,
    {
        self.run_checked(key_id, op, |_| Ok(())).await
    }

    /// [`Self::run`], with `check` applied to the result on the call thread, right before
    /// the session goes back to the pool (see [`run_on`]).
    async fn run_checked<T, F, C>(
        &self,
        key_id: Option<&str>,
        op: F,
        check: C,
    ) -> Result<T, HsmError>
    where
        T: Send + 'static,
        F: Fn(&mut Live) -> Result<T, OpError> + Send + Sync + 'static,
        C: Fn(&T) -> Result<(), OpError> + Send + Sync + 'static,
    {
        let op = Arc::new(op);
        let check = Arc::new(check);
        let mut reasons = Vec::new();
        let mut missing_on = 0usize;
        let rotation = self.rotation();
        let tried = rotation.len();
        for token in rotation {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let err = match token.get(self.inner.acquire_timeout).await {
                    Err(pool::GetError::Timeout) => {
                        return Err(HsmError::Timeout(format!(
                            "no free HSM session on token {:?} within {} s",
                            token.shared.label,
                            self.inner.acquire_timeout.as_secs_f64()
                        )));
                    }
                    Err(pool::GetError::Op(e)) => e,
                    Ok(obj) => match run_on(token, obj, op.clone(), check.clone()).await {
                        Ok(v) => {
                            token.note_served();
                            return Ok(v);
                        }
                        Err(e) => e,
                    },
                };
                match err.class() {
                    None => {
                        missing_on += 1;
                        break;
                    }
                    Some(ErrorClass::Caller) | Some(ErrorClass::Fatal) => {
                        token.note_error(&err);
                        return Err(err.into_hsm(
                            &token.shared.label,
                            &token.shared.module.path,
                            key_id,
                        ));
                    }
                    Some(ErrorClass::Reopen) if attempt < 2 => {
                        token.note_error(&err);
                        continue;
                    }
                    Some(ErrorClass::Reopen) | Some(ErrorClass::TokenGone) => {
                        token.mark_down(&err);
                        reasons.push(format!("token {:?}: {}", token.shared.label, err.short()));
                        break;
                    }
                }
            }
        }
        if tried > 0 && missing_on == tried {
            return Err(HsmError::KeyNotFound(key_id.unwrap_or("?").to_string()));
        }
        Err(self.unavailable(reasons))
    }
}

/// Runs `op` on the pooled session on a call thread, under the call timeout, then `check` on
/// its result on the same thread; then the call thread puts the session back into the pool
/// itself (waking the next waiter directly, with no hop through the async side) and goes
/// idle before it answers. On a session- or token-level error the session is closed on that
/// thread and its pool slot freed; when the call is abandoned (timeout), the session stays
/// with the stuck thread, the slot is freed at once, and the caller takes the token out of
/// rotation.
async fn run_on<T, F, C>(
    token: &Token,
    obj: Object<SessionManager>,
    op: Arc<F>,
    check: Arc<C>,
) -> Result<T, OpError>
where
    T: Send + 'static,
    F: Fn(&mut Live) -> Result<T, OpError> + Send + Sync + 'static,
    C: Fn(&T) -> Result<(), OpError> + Send + Sync + 'static,
{
    let mut obj = obj;
    let mut live = obj.take_live();
    let mut slot = Handback {
        obj: Arc::new(Mutex::new(Some(obj))),
        wait: token.shared.calls.timeout(),
        over: false,
    };
    let back = slot.obj.clone();
    let result = token
        .shared
        .calls
        .run("sign or look up keys", move || {
            let mut r = op(&mut live);
            // Repairs that keep the session: log in again, re-find stale key handles.
            let repairable = match &r {
                Err(OpError::KeyNotFound) => true,
                Err(OpError::Ck(cryptoki::error::Error::Pkcs11(rv, _), _)) => matches!(
                    rv,
                    cryptoki::error::RvError::UserNotLoggedIn
                        | cryptoki::error::RvError::ObjectHandleInvalid
                        | cryptoki::error::RvError::KeyHandleInvalid
                ),
                _ => false,
            };
            if repairable && live.repair() {
                r = op(&mut live);
            }
            let keep = !matches!(
                r.as_ref().err().and_then(OpError::class),
                Some(ErrorClass::Reopen | ErrorClass::TokenGone)
            );
            // The software check first, then every hand-over at once, right before this
            // thread goes idle: a thread woken on a busy two-core machine waits for a core,
            // and gets this one as soon as this thread sleeps. (Checking after the hand-back
            // measured worse with the signer's batch of 8: 0.91-0.97 of bare against
            // 0.93-1.11, the check's CPU competing with both signing threads.)
            let r = r.and_then(|v| check(&v).map(|()| v));
            // `None`: abandoned meanwhile (its slot was freed); the session is closed here
            // and never handed out again.
            let obj = back.lock().take();
            match (obj, keep) {
                (Some(mut o), true) => {
                    o.put_live(live);
                    drop(o); // back in the pool: the next waiter gets it now
                }
                (Some(o), false) => {
                    drop(Object::take(o));
                    drop(live);
                }
                (None, _) => drop(live),
            }
            call::mark_idle();
            r
        })
        .await;
    // The call ended (its thread settled the session) or was abandoned (free the slot now;
    // the session stays with the stuck thread).
    slot.over = true;
    if matches!(result, Err(OpError::Stuck { .. })) {
        slot.free();
    }
    result.and_then(|r| r)
}

/// The pooled object whose session is out on a call thread, shared with that thread: the
/// thread takes it to put the session back (or to free the slot); whoever gives up on the
/// call takes it to free the slot. When the caller stops waiting before the call is over (a
/// cancelled request), the slot is freed after the call timeout unless the thread took it by
/// then, so a cancelled request neither loses nor leaks a session.
struct Handback {
    obj: Arc<Mutex<Option<Object<SessionManager>>>>,
    wait: Duration,
    /// The call ended or was abandoned: nothing left to watch.
    over: bool,
}

impl Handback {
    /// Frees the pool slot, if the call thread has not settled it.
    fn free(&self) {
        if let Some(o) = self.obj.lock().take() {
            drop(Object::take(o));
        }
    }
}

impl Drop for Handback {
    fn drop(&mut self) {
        if self.over || self.obj.lock().is_none() {
            return;
        }
        let rest = Handback {
            obj: self.obj.clone(),
            wait: self.wait,
            over: true,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    tokio::time::sleep(rest.wait).await;
                    rest.free();
                });
            }
            Err(_) => rest.free(),
        }
    }
}

fn token_pin(t: &Token) -> Secret {
    t.shared.pin()
}
