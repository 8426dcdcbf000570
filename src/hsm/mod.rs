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
//! Files: this one ([`Hsm`]: opening the tokens, signing), `config.rs` ([`HsmConfig`]),
//! `keys.rs` (key ids, generation, look-ups), `run.rs` (one operation on a pooled session:
//! token rotation, retries, the session's way back into the pool), `health.rs`
//! ([`HsmHealth`]), `session.rs` (modules, instances, login, one logged-in session's
//! operations), `pool.rs` (deadpool manager, token state, recovery), `call.rs` (call threads
//! and the call timeout), `error.rs` (errors and the one cryptoki error mapping), `verify.rs`
//! (software checks).

mod call;
mod config;
mod error;
mod health;
mod import;
mod keys;
mod pool;
mod run;
mod session;
pub mod verify;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::RwLock;

use call::Calls;
use error::ErrorClass;
pub use error::HsmError;
use pool::Token;
use session::{LoggedInSession, Module, OpError};

pub use config::{HsmConfig, TokenSpec};
pub use health::{HsmHealth, TokenHealth};
use keys::KeyEntry;
pub use keys::{KeyInfo, decode_key_id};

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

/// What every clone of an [`Hsm`] shares.
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
        type Opened = (
            TokenSpec,
            Arc<Module>,
            Calls,
            Option<LoggedInSession>,
            Option<String>,
        );
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

    /// Closes every token's sessions and its login anchor now, each token on one of its call
    /// threads under the call timeout (all tokens at once), and stops background recovery;
    /// signing fails from then on. Returns how many sessions it closed (a token whose close
    /// timed out counts none; the call is abandoned like any other). The server calls it once
    /// both planes and the signer have stopped, so that the process does not exit while a
    /// module instance is still being closed: p11-kit's client module is unloaded at exit,
    /// and closing under its destructor failed and could hang the exit for good.
    pub async fn close(&self) -> usize {
        let closes = self.inner.tokens.iter().map(Token::close_on_call_thread);
        futures_util::future::join_all(closes)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .sum()
    }

    /// The health of every token: up/down, pool sessions, last error.
    pub fn health(&self) -> HsmHealth {
        HsmHealth {
            tokens: self.inner.tokens.iter().map(Token::health).collect(),
        }
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
        let out: Arc<parking_lot::Mutex<Vec<Vec<u8>>>> = Arc::new(parking_lot::Mutex::new(vec![
                Vec::new();
                digest_infos.len()
            ]));
        let sink = out.clone();
        self.sign_each(
            key_id,
            digest_infos,
            Arc::new(move |i, sig| sink.lock()[i] = sig),
        )
        .await?;
        Ok(std::mem::take(&mut *out.lock()))
    }

    /// [`Self::sign`], handing each signature to `signed` (with its index) as soon as it is
    /// made and verified in software, on the call thread, while the session goes on with the
    /// next: a caller answers each waiter of a batch when its own signature is ready, not when
    /// the batch ends. Each index is handed over once, also when a stale session makes the
    /// batch go on on a fresh one (the retry skips what was handed over); on an error, the
    /// indices not handed over are the ones that failed. (A call abandoned as stuck may still
    /// hand one over later, after the error: RSA PKCS#1 v1.5 is deterministic, so it is the
    /// same signature; a caller that answers each index once ignores it.)
    pub async fn sign_each(
        &self,
        key_id: &str,
        digest_infos: &[[u8; 83]],
        signed: Signed,
    ) -> Result<(), HsmError> {
        let id = decode_key_id(key_id)?;
        for di in digest_infos {
            verify::check_digest_info(di)?;
        }
        if digest_infos.is_empty() {
            return Ok(());
        }
        let entry = self
            .key_entry(&id, key_id)
            .await?
            .ok_or_else(|| HsmError::KeyNotFound(key_id.to_string()))?;
        let dis: Arc<[[u8; 83]]> = digest_infos.into();
        let done: Arc<[AtomicBool]> = dis.iter().map(|_| AtomicBool::new(false)).collect();
        let made = Arc::new(AtomicUsize::new(0));
        let counted = made.clone();
        let result = self
            .run(Some(key_id), move |session| {
                session.sign_each(
                    &id,
                    &dis,
                    &|i| done[i].load(Ordering::Relaxed),
                    &mut |i, sig| {
                        // Verified in software on the call thread before it leaves it.
                        if !entry.verifier.verify(&dis[i], &sig) {
                            return Err(OpError::Fatal(
                                "signature from the token failed software verification".into(),
                            ));
                        }
                        done[i].store(true, Ordering::Relaxed);
                        made.fetch_add(1, Ordering::Relaxed);
                        signed(i, sig);
                        Ok(())
                    },
                )
            })
            .await;
        metrics::counter!("hsm_signatures_total").increment(counted.load(Ordering::Relaxed) as u64);
        if let Err(e) = &result {
            if matches!(e, HsmError::KeyNotFound(_)) {
                self.inner.keys.write().remove(&id);
            }
            metrics::counter!("hsm_sign_errors_total").increment(1);
        }
        result
    }
}

/// Where [`Hsm::sign_each`] hands each signature: (its index in the batch, the signature).
pub type Signed = Arc<dyn Fn(usize, Vec<u8>) + Send + Sync>;
