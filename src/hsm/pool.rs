//! One token's pool of logged-in sessions (a deadpool with our own [`SessionManager`]), its
//! health, and its background recovery.
//!
//! Rules the pool keeps:
//! - A pooled [`LoggedInSession`] is used by one task at a time: it is moved into the
//!   blocking closure that uses it and handed back to the pool when that closure ends. No Mutex around
//!   sessions, and no PKCS#11 call on an async worker (creation, recycling of stale sessions
//!   and their drop all run on blocking threads).
//! - Waiting is FIFO: deadpool's waiters queue on a fair tokio semaphore, and idle sessions
//!   are handed out in FIFO order so all connections share the load.
//! - A token is either up or down. Going down bumps its generation: every session opened
//!   before is stale and is dropped when next seen. While down, requests skip the token (or
//!   fail fast with `Unavailable`), and one background task re-opens it with backoff, then
//!   re-fills the pool one session after another.
//! - Every PKCS#11 call runs through the token's [`Calls`] (see `call.rs`), under the call
//!   timeout. A call that hangs is abandoned with its session (and, for p11-kit-client, its
//!   own module instance), the token goes out of rotation, and recovery carries on with fresh
//!   instances. While [`MAX_STUCK`] abandoned calls of a token are still stuck, recovery opens
//!   nothing new (so a module that hangs every call cannot pile up threads); it resumes as
//!   soon as one returns.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, Object, Pool, RecycleError, RecycleResult, Timeouts};
use parking_lot::Mutex;

use super::call::{self, Calls};
use super::error::{ErrorClass, HsmError};
use super::session::{LoggedInSession, Module, OpError, Sharing};
use secrecy::SecretString;

/// First and longest pause between two recovery attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Most abandoned calls of one token that may be stuck before recovery stops opening new
/// instances (each attempt that hangs leaves one thread behind).
pub(crate) const MAX_STUCK: usize = 8;

/// What the pool knows about one token, shared by its manager, the request path and the
/// recovery task.
pub(crate) struct TokenShared {
    pub(crate) label: String,
    pin: SecretString,
    pub(crate) module: Arc<Module>,
    /// Every blocking call on this token goes through here, under the call timeout.
    pub(crate) calls: Calls,
    state: Mutex<TokenState>,
    recovering: AtomicBool,
    closed: AtomicBool,
    served: AtomicU64,
}

struct TokenState {
    up: bool,
    generation: u64,
    last_error: Option<String>,
    /// What took the token out of rotation.
    cause: Option<String>,
    down_since: Option<Instant>,
    recoveries: u64,
    /// Keeps the token's login alive (login state is per application and token; closing the
    /// last session logs out). Never used for operations.
    anchor: Option<LoggedInSession>,
}

/// A pooled session tagged with the token generation it was opened in.
#[derive(Debug)]
pub(crate) struct Pooled {
    session: Option<LoggedInSession>,
    generation: u64,
}

impl Pooled {
    /// Takes the session out, to use it on a call thread; [`Self::put_session`] puts it back.
    /// A pooled object without its session is never handed out again: it is either given its
    /// session back or detached from the pool.
    pub(crate) fn take_session(&mut self) -> LoggedInSession {
        self.session
            .take()
            .expect("a pooled session always holds a logged-in session")
    }

    pub(crate) fn put_session(&mut self, session: LoggedInSession) {
        self.session = Some(session);
    }
}

/// Opens, checks and discards the sessions of one token for deadpool.
pub(crate) struct SessionManager {
    token: Arc<TokenShared>,
}

impl managed::Manager for SessionManager {
    type Type = Pooled;
    type Error = OpError;

    async fn create(&self) -> Result<Pooled, OpError> {
        let generation = {
            let st = self.token.state.lock();
            if !st.up {
                return Err(OpError::Down);
            }
            st.generation
        };
        let token = self.token.clone();
        let session = self
            .token
            .calls
            .run("open session", move || {
                LoggedInSession::open(&token.module, &token.label, &token.pin, false)
            })
            .await??;
        Ok(Pooled {
            session: Some(session),
            generation,
        })
    }

    async fn recycle(&self, obj: &mut Pooled, _: &Metrics) -> RecycleResult<OpError> {
        if obj.session.is_some() && obj.generation == self.token.generation() {
            return Ok(());
        }
        // Stale: close it (FFI) on a call thread, and let the pool open a new one.
        if let Some(session) = obj.session.take() {
            call::detach(move || drop(session));
        }
        Err(RecycleError::message(
            "session opened before the token's last outage",
        ))
    }
}

impl TokenShared {
    fn generation(&self) -> u64 {
        self.state.lock().generation
    }

    pub(crate) fn pin(&self) -> SecretString {
        self.pin.clone()
    }

    pub(crate) fn is_up(&self) -> bool {
        self.state.lock().up
    }
}

/// One token: its pool, its shared state.
pub(crate) struct Token {
    pub(crate) shared: Arc<TokenShared>,
    pub(crate) pool: Pool<SessionManager>,
    pub(crate) size: usize,
}

/// A failure while getting a session.
pub(crate) enum GetError {
    /// No session became free in time.
    Timeout,
    /// Opening a session failed.
    Op(OpError),
}

impl Token {
    /// Builds a token's pool around a first, already logged-in session (the anchor), opened
    /// through `calls`.
    pub(crate) fn new(
        label: String,
        pin: SecretString,
        module: Arc<Module>,
        calls: Calls,
        anchor: Option<LoggedInSession>,
        sessions: usize,
    ) -> Token {
        let up = anchor.is_some();
        let limit = anchor.as_ref().and_then(super::session::session_limit);
        // Leave one session for the anchor when the token has a limit.
        let size = match limit {
            Some(max) => sessions.min(max.saturating_sub(1)).max(1),
            None => sessions.max(1),
        };
        let shared = Arc::new(TokenShared {
            label,
            pin,
            module,
            calls,
            state: Mutex::new(TokenState {
                up,
                generation: 0,
                last_error: None,
                cause: None,
                down_since: (!up).then(Instant::now),
                recoveries: 0,
                anchor,
            }),
            recovering: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            served: AtomicU64::new(0),
        });
        let pool = Pool::builder(SessionManager {
            token: shared.clone(),
        })
        .max_size(size)
        .queue_mode(managed::QueueMode::Fifo)
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .expect("a runtime is configured");
        metrics::gauge!("hsm_token_up", "token" => shared.label.clone()).set(if up {
            1.0
        } else {
            0.0
        });
        let token = Token { shared, pool, size };
        if !up {
            token.start_recovery();
        }
        token
    }

    /// A session from the pool, waiting at most `wait` for one to be free.
    pub(crate) async fn get(&self, wait: Duration) -> Result<Object<SessionManager>, GetError> {
        let t = Timeouts {
            wait: Some(wait),
            create: None,
            recycle: None,
        };
        match self.pool.timeout_get(&t).await {
            Ok(o) => Ok(o),
            Err(managed::PoolError::Backend(e)) => Err(GetError::Op(e)),
            Err(managed::PoolError::Timeout(_)) => Err(GetError::Timeout),
            Err(e) => Err(GetError::Op(OpError::Fatal(format!("session pool: {e}")))),
        }
    }

    /// Opens sessions one after another until the pool is full (p11-kit-client connections
    /// are best opened one at a time). Stops at the first failure.
    pub(crate) async fn prewarm(&self) -> Result<(), OpError> {
        let mut held = Vec::with_capacity(self.size);
        for _ in 0..self.size {
            match self.get(Duration::from_secs(1)).await {
                Ok(o) => held.push(o),
                Err(GetError::Timeout) => break,
                Err(GetError::Op(e)) => return Err(e),
            }
        }
        drop(held);
        Ok(())
    }

    /// Takes the token out of rotation after `err` and starts its recovery (once).
    pub(crate) fn mark_down(&self, err: &OpError) {
        let anchor = {
            let mut st = self.shared.state.lock();
            if !matches!(err, OpError::Down) {
                st.last_error = Some(err.short());
            }
            if !st.up {
                None
            } else {
                st.up = false;
                st.cause = Some(err.short());
                st.generation += 1;
                st.down_since = Some(Instant::now());
                tracing::warn!(token = %self.shared.label, error = %err.short(), "HSM token out of rotation; recovering in the background");
                metrics::gauge!("hsm_token_up", "token" => self.shared.label.clone()).set(0.0);
                st.anchor.take()
            }
        };
        if let Some(a) = anchor {
            call::detach(move || drop(a));
        }
        self.start_recovery();
    }

    /// Counts an operation this token completed.
    pub(crate) fn note_served(&self) {
        self.shared.served.fetch_add(1, Ordering::Relaxed);
    }

    /// Records an error without taking the token down (for health reports).
    pub(crate) fn note_error(&self, err: &OpError) {
        self.shared.state.lock().last_error = Some(err.short());
    }

    fn start_recovery(&self) {
        if self.shared.recovering.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = self.shared.clone();
        let pool = self.pool.clone();
        let size = self.size;
        tokio::spawn(recover(shared, pool, size));
    }

    /// This token's health.
    pub(crate) fn health(&self) -> super::TokenHealth {
        let st = self.shared.state.lock();
        let status = self.pool.status();
        super::TokenHealth {
            label: self.shared.label.clone(),
            module: self.shared.module.path.clone(),
            up: st.up,
            connection_per_session: self.shared.module.sharing == Sharing::PerSlot,
            sessions: status.size,
            max_sessions: status.max_size,
            available: status.available,
            waiting: status.waiting,
            last_error: st.last_error.clone(),
            down_for: st.down_since.filter(|_| !st.up).map(|t| t.elapsed()),
            recoveries: st.recoveries,
            abandoned_calls: self.shared.calls.abandoned(),
            stuck_calls: self.shared.calls.stuck(),
            served: self.shared.served.load(Ordering::Relaxed),
        }
    }

    /// A one-line reason why this token cannot serve now.
    pub(crate) fn down_reason(&self) -> String {
        let st = self.shared.state.lock();
        let cause = st
            .cause
            .as_deref()
            .or(st.last_error.as_deref())
            .unwrap_or("not opened");
        match (&st.last_error, st.down_since) {
            (Some(last), Some(t)) if Some(last.as_str()) != st.cause.as_deref() => format!(
                "token {:?} down for {:.1} s ({cause}; last retry: {last})",
                self.shared.label,
                t.elapsed().as_secs_f64()
            ),
            _ => format!("token {:?} down ({cause})", self.shared.label),
        }
    }

    /// Load figure for picking a token: waiters minus free capacity (lower is better).
    pub(crate) fn load(&self) -> isize {
        let s = self.pool.status();
        s.waiting as isize - (s.available + s.max_size.saturating_sub(s.size)) as isize
    }

    /// Stops background recovery and closes the idle sessions and the login anchor on this
    /// thread (blocking PKCS#11 calls); later sessions and recoveries are refused. Returns
    /// how many sessions it closed. Idempotent: the `Hsm`'s drop calls it again.
    pub(crate) fn close(&self) -> usize {
        close_sessions(&self.shared, &self.pool)
    }

    /// [`Token::close`] on one of the token's call threads, under its call timeout.
    pub(crate) async fn close_on_call_thread(&self) -> Result<usize, OpError> {
        let (shared, pool) = (self.shared.clone(), self.pool.clone());
        self.shared
            .calls
            .run("close sessions", move || close_sessions(&shared, &pool))
            .await
    }
}

fn close_sessions(shared: &TokenShared, pool: &Pool<SessionManager>) -> usize {
    shared.closed.store(true, Ordering::Release);
    let pooled = pool.status().size;
    pool.close();
    let anchor = shared.state.lock().anchor.take();
    pooled + usize::from(anchor.is_some())
}

/// Re-opens a downed token with backoff: a new session (a new module instance for per-slot
/// modules), log in; then the token is back in rotation, stale sessions are dropped and the
/// pool is re-filled. An attempt that hangs is abandoned after the call timeout and the next
/// one starts on a fresh instance; with [`MAX_STUCK`] calls stuck, attempts pause until one
/// returns.
async fn recover(shared: Arc<TokenShared>, pool: Pool<SessionManager>, size: usize) {
    let mut delay = BACKOFF_MIN;
    let mut paused = false;
    loop {
        tokio::time::sleep(delay).await;
        if shared.closed.load(Ordering::Acquire) {
            break;
        }
        let stuck = shared.calls.stuck();
        if stuck >= MAX_STUCK {
            if !paused {
                paused = true;
                tracing::warn!(
                    token = %shared.label,
                    stuck,
                    "recovery paused: abandoned PKCS#11 calls are still stuck in the module; \
                     it resumes when one returns (a restart of serialmint clears them)"
                );
            }
            shared.state.lock().last_error = Some(format!(
                "{stuck} PKCS#11 calls stuck; recovery paused until one returns"
            ));
            delay = (delay * 2).min(BACKOFF_MAX);
            continue;
        }
        paused = false;
        let s = shared.clone();
        let attempt = shared.calls.run("re-open token", move || {
            let r = LoggedInSession::open(&s.module, &s.label, &s.pin, false);
            if let Err(OpError::Ck(e, _)) = &r
                && matches!(
                    e,
                    cryptoki::error::Error::Pkcs11(
                        cryptoki::error::RvError::CryptokiNotInitialized,
                        _
                    )
                )
            {
                s.module.reinitialize_shared();
            }
            r
        });
        match attempt.await.and_then(|r| r) {
            Ok(anchor) => {
                let generation = {
                    let mut st = shared.state.lock();
                    st.up = true;
                    st.anchor = Some(anchor);
                    st.recoveries += 1;
                    st.down_since = None;
                    st.generation
                };
                shared.recovering.store(false, Ordering::Release);
                metrics::gauge!("hsm_token_up", "token" => shared.label.clone()).set(1.0);
                metrics::counter!("hsm_token_recoveries_total", "token" => shared.label.clone())
                    .increment(1);
                tracing::info!(token = %shared.label, "HSM token back in rotation");
                // Drop stale idle sessions now, on a blocking thread, then re-fill.
                let p = pool.clone();
                let _ = shared
                    .calls
                    .run("close stale sessions", move || {
                        p.retain(|o, _| o.session.is_some() && o.generation == generation);
                    })
                    .await;
                let token = Token {
                    shared: shared.clone(),
                    pool: pool.clone(),
                    size,
                };
                if let Err(e) = token.prewarm().await
                    && matches!(e.class(), Some(ErrorClass::TokenGone | ErrorClass::Reopen))
                {
                    token.mark_down(&e);
                }
                return;
            }
            Err(e) => {
                tracing::debug!(token = %shared.label, error = %e.short(), "HSM token still down");
                shared.state.lock().last_error = Some(e.short());
            }
        }
        delay = (delay * 2).min(BACKOFF_MAX);
    }
    shared.recovering.store(false, Ordering::Release);
}

/// Opens the anchor session of a token at start-up: `Ok(None)` when the token is down for a
/// reason that may heal (it then starts in recovery), `Err` for configuration errors.
pub(crate) fn open_anchor(
    module: &Module,
    label: &str,
    pin: &SecretString,
) -> Result<Option<LoggedInSession>, (OpError, bool)> {
    match LoggedInSession::open(module, label, pin, false) {
        Ok(l) => Ok(Some(l)),
        Err(e) => {
            let heals = matches!(e.class(), Some(ErrorClass::TokenGone | ErrorClass::Reopen));
            Err((e, heals))
        }
    }
}

/// Turns a start-up failure into the caller's error.
pub(crate) fn startup_error(e: OpError, label: &str, module: &std::path::Path) -> HsmError {
    e.into_hsm(label, module, None)
}

/// Where a token's module lives, for messages.
pub(crate) fn module_path(t: &Token) -> PathBuf {
    t.shared.module.path.clone()
}
