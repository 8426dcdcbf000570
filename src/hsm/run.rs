//! Running one operation on a pooled session: picking tokens in rotation, retrying a stale
//! session once, taking failed tokens out, and the call thread that puts the session back
//! into the pool itself ([`CheckedOutSlot`] covers a caller that stops waiting).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use deadpool::managed::Object;
use parking_lot::Mutex;

use super::call;
use super::error::ErrorClass;
use super::pool::{self, SessionManager, Token};
use super::session::{LoggedInSession, OpError};
use super::{Hsm, HsmError};

impl Hsm {
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

    pub(super) fn unavailable(&self, mut reasons: Vec<String>) -> HsmError {
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
    /// (`op` may thus run more than once: a signing op skips what an earlier try answered.)
    pub(super) async fn run<T, F>(&self, key_id: Option<&str>, op: F) -> Result<T, HsmError>
    where
        T: Send + 'static,
        F: Fn(&mut LoggedInSession) -> Result<T, OpError> + Send + Sync + 'static,
    {
        let op = Arc::new(op);
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
                    Ok(obj) => match run_on(token, obj, op.clone()).await {
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

/// Runs `op` on the pooled session on a call thread, under the call timeout; then the call
/// thread puts the session back into the pool
/// itself (waking the next waiter directly, with no hop through the async side) and goes
/// idle before it answers. On a session- or token-level error the session is closed on that
/// thread and its pool slot freed; when the call is abandoned (timeout), the session stays
/// with the stuck thread, the slot is freed at once, and the caller takes the token out of
/// rotation.
async fn run_on<T, F>(token: &Token, obj: Object<SessionManager>, op: Arc<F>) -> Result<T, OpError>
where
    T: Send + 'static,
    F: Fn(&mut LoggedInSession) -> Result<T, OpError> + Send + Sync + 'static,
{
    let mut obj = obj;
    let mut session = obj.take_session();
    let mut slot = CheckedOutSlot {
        obj: Arc::new(Mutex::new(Some(obj))),
        wait: token.shared.calls.timeout(),
        over: false,
    };
    let back = slot.obj.clone();
    let result = token
        .shared
        .calls
        .run("sign or look up keys", move || {
            let mut r = op(&mut session);
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
            if repairable && session.repair() {
                r = op(&mut session);
            }
            let keep = !matches!(
                r.as_ref().err().and_then(OpError::class),
                Some(ErrorClass::Reopen | ErrorClass::TokenGone)
            );
            // The hand-over right before this thread goes idle: a thread woken on a busy
            // two-core machine waits for a core, and gets this one as soon as this one sleeps.
            // (A signing op has verified and answered each signature already, as it was made.)
            // `None`: abandoned meanwhile (its slot was freed); the session is closed here
            // and never handed out again.
            let obj = back.lock().take();
            match (obj, keep) {
                (Some(mut o), true) => {
                    o.put_session(session);
                    drop(o); // back in the pool: the next waiter gets it now
                }
                (Some(o), false) => {
                    drop(Object::take(o));
                    drop(session);
                }
                (None, _) => drop(session),
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

/// A pool slot whose session is checked out to a call thread, and the guard that frees the
/// slot if nobody else does. The pooled object is shared with that thread: the thread takes
/// it to put the session back (or to free the slot); whoever gives up on the
/// call takes it to free the slot. When the caller stops waiting before the call is over (a
/// cancelled request), the slot is freed after the call timeout unless the thread took it by
/// then, so a cancelled request neither loses nor leaks a session.
struct CheckedOutSlot {
    obj: Arc<Mutex<Option<Object<SessionManager>>>>,
    wait: Duration,
    /// The call ended or was abandoned: nothing left to watch.
    over: bool,
}

impl CheckedOutSlot {
    /// Frees the pool slot, if the call thread has not settled it.
    fn free(&self) {
        if let Some(o) = self.obj.lock().take() {
            drop(Object::take(o));
        }
    }
}

impl Drop for CheckedOutSlot {
    fn drop(&mut self) {
        if self.over || self.obj.lock().is_none() {
            return;
        }
        let rest = CheckedOutSlot {
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
