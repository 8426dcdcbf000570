//! Blocking PKCS#11 calls under a deadline, on detached threads of our own.
//!
//! Every blocking call of the HSM layer (module loading and initialization, slot lookup,
//! opening sessions, login, key look-ups, signing, closing sessions) runs here, never on a
//! tokio worker and never on tokio's blocking pool, for two reasons:
//! - A PKCS#11 call may never return. p11-kit 0.24's client can spin forever inside a call
//!   made on a freshly restarted `p11-kit server`, and a call on a server that stopped
//!   answering waits forever. The async side waits at most the call timeout
//!   (`hsm.call_timeout_secs`), then gives up: the call is *abandoned*. A thread cannot be
//!   killed, so it is left behind with everything the call owned (its session and, for
//!   p11-kit-client, its own module instance and connection). Nothing else holds those, so
//!   nothing uses them again; if the call ever returns, its thread closes them.
//! - A tokio runtime joins its blocking threads when it is dropped, with no time limit. A stuck
//!   call on tokio's pool would keep a test, or the server after its graceful drain, alive
//!   forever. Our threads are detached: nothing joins them, and process exit ends them.
//!
//! Two exceptions: key generation has a thread of its own and its own, longer timeout
//! (`hsm.keygen_timeout_secs`), and sessions still idle in a pool when the `Hsm` is dropped
//! are closed by the dropping thread (they were answering a moment ago).
//!
//! The threads form a small pool (a thread waits [`KEEP_IDLE`] for its next job before it
//! ends), so the signing path costs one channel hand-off per call, as `spawn_blocking` does.
//! A job may put its thread back on the idle list before it ends ([`mark_idle`]), once only
//! short steps are left: the caller's next call then lands on this thread, already running,
//! instead of waking another one that would wait for a core.
//!
//! [`Calls`] is one token's view: its timeout, how many of its abandoned calls are still
//! stuck, and how many were abandoned in all (for health and metrics).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::session::OpError;

/// How long an idle call thread waits for its next job before it ends.
const KEEP_IDLE: Duration = Duration::from_secs(30);

type Job = Box<dyn FnOnce() + Send>;

/// An idle call thread: its id and the sender of its own job channel.
type IdleThread = (u64, mpsc::Sender<Job>);

/// Abandoned calls of every token and every `Hsm`, still stuck in a module.
static STUCK_TOTAL: AtomicUsize = AtomicUsize::new(0);

/// Abandoned calls still stuck, process-wide (every token, every `Hsm` ever opened).
pub(crate) fn stuck_total() -> usize {
    STUCK_TOTAL.load(Ordering::Acquire)
}

/// Idle threads (last idle first: warm caches).
static IDLE: Mutex<Vec<IdleThread>> = Mutex::new(Vec::new());
static NEXT_THREAD: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// On a call thread: how to put it on the idle list, until its current job did so.
    static IDLE_ENTRY: std::cell::RefCell<Option<IdleThread>> =
        const { std::cell::RefCell::new(None) };
}

/// Puts the current call thread on the idle list now, while its job finishes its last,
/// short steps (a software check, handing over the answer). The next job dispatched then
/// most likely lands on this thread, on a core that is running anyway, and is waiting in its
/// channel when the current job returns: no thread has to be woken on a busy two-core
/// machine, where a woken thread waits about a millisecond for a core (measured with
/// `perf sched latency` on the `hsm_sign` bench). A no-op on other threads and on a second
/// call.
pub(crate) fn mark_idle() {
    if let Some(entry) = IDLE_ENTRY.with(|e| e.borrow_mut().take()) {
        IDLE.lock().push(entry);
    }
}

/// Runs `job` on an idle call thread, or on a new one.
fn dispatch(mut job: Job) -> std::io::Result<()> {
    loop {
        let idle = IDLE.lock().pop();
        match idle {
            Some((_, tx)) => match tx.send(job) {
                Ok(()) => return Ok(()),
                // Cannot happen (an idle thread keeps its receiver), but never lose a job.
                Err(mpsc::SendError(j)) => job = j,
            },
            None => return spawn(job),
        }
    }
}

fn spawn(first: Job) -> std::io::Result<()> {
    let id = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("hsm-call".into())
        .spawn(move || {
            let mut job = first;
            loop {
                IDLE_ENTRY.with(|e| *e.borrow_mut() = Some((id, tx.clone())));
                job();
                mark_idle();
                job = match rx.recv_timeout(KEEP_IDLE) {
                    Ok(j) => j,
                    Err(_) => {
                        let mut idle = IDLE.lock();
                        if let Some(i) = idle.iter().position(|(w, _)| *w == id) {
                            idle.remove(i);
                            return;
                        }
                        drop(idle);
                        // Someone took this thread off the idle list just now: its job is
                        // on the way (this thread holds a sender, so `recv` cannot fail).
                        match rx.recv() {
                            Ok(j) => j,
                            Err(_) => return,
                        }
                    }
                };
            }
        })
        .map(|_| ())
}

/// Runs `f` on a call thread without waiting for it (closing sessions off the async side).
pub(crate) fn detach(f: impl FnOnce() + Send + 'static) {
    if let Err(e) = dispatch(Box::new(f)) {
        tracing::error!("cannot start an HSM call thread: {e}");
    }
}

const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

/// The calls of one token: their timeout and what became of the ones that timed out.
pub(crate) struct Calls {
    label: String,
    timeout: Duration,
    /// Abandoned calls whose thread has not returned yet.
    stuck: Arc<AtomicUsize>,
    /// Calls abandoned since start.
    abandoned: AtomicU64,
}

impl Calls {
    pub(crate) fn new(label: &str, timeout: Duration) -> Calls {
        // Registered at 0: a scrape shows the series before anything got stuck.
        metrics::gauge!("hsm_calls_stuck", "token" => label.to_string()).increment(0.0);
        Calls {
            label: label.to_string(),
            timeout,
            stuck: Arc::new(AtomicUsize::new(0)),
            abandoned: AtomicU64::new(0),
        }
    }

    /// The call timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Abandoned calls still stuck in the module.
    pub(crate) fn stuck(&self) -> usize {
        self.stuck.load(Ordering::Acquire)
    }

    /// Calls abandoned since start.
    pub(crate) fn abandoned(&self) -> u64 {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// Runs the blocking `f` on a call thread and waits at most the call timeout for it. On
    /// timeout the call is abandoned (see the module docs), logged once at warn, and the
    /// answer is [`OpError::Stuck`]: the caller takes the token out of rotation, and recovery
    /// opens fresh instances.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, OpError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let state = Arc::new(AtomicU8::new(RUNNING));
        let job_state = state.clone();
        let stuck = self.stuck.clone();
        let label = self.label.clone();
        let started = Instant::now();
        dispatch(Box::new(move || {
            let out = f();
            if job_state.swap(DONE, Ordering::AcqRel) == ABANDONED {
                stuck.fetch_sub(1, Ordering::AcqRel);
                STUCK_TOTAL.fetch_sub(1, Ordering::AcqRel);
                metrics::gauge!("hsm_calls_stuck", "token" => label.clone()).decrement(1.0);
                tracing::info!(
                    token = %label,
                    call = what,
                    after_s = started.elapsed().as_secs(),
                    "an abandoned PKCS#11 call returned; its session and instance are closed"
                );
                // Nobody takes `out`: it is dropped below, on this thread (an abandoned
                // session or module instance is closed by the thread that owned it, never
                // reused), which is a PKCS#11 call of its own: this thread goes idle after.
            } else {
                mark_idle();
            }
            let _ = tx.send(out);
        }))
        .map_err(|e| OpError::Fatal(format!("cannot start an HSM call thread: {e}")))?;
        let mut rx = rx;
        match tokio::time::timeout(self.timeout, &mut rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(OpError::Fatal(format!("{what}: the HSM call thread died"))),
            Err(_) => {
                if state
                    .compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    // It finished just now: its answer is on the way.
                    return rx
                        .await
                        .map_err(|_| OpError::Fatal(format!("{what}: the HSM call thread died")));
                }
                self.stuck.fetch_add(1, Ordering::AcqRel);
                STUCK_TOTAL.fetch_add(1, Ordering::AcqRel);
                self.abandoned.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("hsm_calls_abandoned_total", "token" => self.label.clone())
                    .increment(1);
                // Alerted on: a stuck call may be spinning (p11-kit 0.24, module docs).
                // Moved by steps, as the count is: a call returning meanwhile cannot be lost.
                metrics::gauge!("hsm_calls_stuck", "token" => self.label.clone()).increment(1.0);
                tracing::warn!(
                    token = %self.label,
                    call = what,
                    timeout_s = self.timeout.as_secs_f64(),
                    stuck = self.stuck(),
                    "PKCS#11 call gave no answer in time; abandoning its thread, session and \
                     module instance (they are never used again)"
                );
                Err(OpError::Stuck {
                    what,
                    after: self.timeout,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_in_time_and_reuses_threads() {
        let calls = Calls::new("t", Duration::from_secs(30));
        for i in 0..20u32 {
            assert_eq!(calls.run("add", move || i + 1).await.unwrap(), i + 1);
        }
        assert_eq!((calls.stuck(), calls.abandoned()), (0, 0));
    }

    #[tokio::test]
    async fn a_thread_that_marked_itself_idle_takes_the_next_job_after_its_own() {
        let calls = Calls::new("t", Duration::from_secs(30));
        let (idle_tx, idle) = tokio::sync::oneshot::channel::<()>();
        let (dispatched_tx, dispatched) = std::sync::mpsc::channel::<()>();
        let (second_tx, second) = std::sync::mpsc::channel();
        let first = calls.run("first", move || {
            mark_idle();
            idle_tx.send(()).unwrap();
            // Still inside the first job: the second one is dispatched now, to this thread.
            dispatched.recv().unwrap();
            std::thread::current().id()
        });
        let dispatcher = async {
            idle.await.unwrap();
            detach(move || second_tx.send(std::thread::current().id()).unwrap());
            dispatched_tx.send(()).unwrap();
        };
        let (first, ()) = tokio::join!(first, dispatcher);
        let first = first.unwrap();
        let second = tokio::task::spawn_blocking(move || second.recv().unwrap())
            .await
            .unwrap();
        assert_eq!(
            first, second,
            "the second job ran on the first job's thread"
        );
    }

    #[tokio::test]
    async fn a_call_past_its_timeout_is_abandoned_and_counted_until_it_returns() {
        let calls = Calls::new("t", Duration::from_millis(50));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (dropped_tx, dropped) = std::sync::mpsc::channel::<()>();
        struct Owned(std::sync::mpsc::Sender<()>);
        impl Drop for Owned {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let r = calls
            .run("block", move || {
                let _ = wait.recv();
                Owned(dropped_tx)
            })
            .await;
        assert!(matches!(r, Err(OpError::Stuck { what: "block", .. })));
        assert_eq!((calls.stuck(), calls.abandoned()), (1, 1));
        // Other calls still run while one thread is stuck.
        assert_eq!(calls.run("other", || 7).await.unwrap(), 7);
        release.send(()).unwrap();
        // What the abandoned call returned is dropped on its own thread.
        dropped.recv_timeout(Duration::from_secs(30)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while calls.stuck() != 0 {
            assert!(Instant::now() < deadline, "stuck count never went down");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(calls.abandoned(), 1);
    }
}
