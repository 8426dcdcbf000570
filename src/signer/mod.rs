//! The hot-path signing engine: a bounded queue of pre-hashed digests, workers that sign them
//! in batches through a [`SignBackend`] (one pooled HSM session per batch), a deadline per
//! request, admission control and per-model rate limits.
//!
//! Owns: queueing, batching, deadlines, the service-time estimate and refusals. Does not
//! own: what is signed (registration builds and pre-hashes the content), how the token is
//! driven (the HSM layer), or HTTP (the device API maps [`SignError`] to statuses).
//!
//! How a digest travels:
//! 1. [`Signer::sign`] estimates when the queue would reach it (queued and in-flight
//!    signatures × the measured per-signature service time ÷ workers). If that is past the
//!    target wait (`signing.max_wait_ms`, by default half a batch per worker) or the
//!    request's deadline, or the queue is full, it refuses at once with
//!    [`SignError::Overloaded`] (the device gets 503 + `Retry-After` instead of a timeout);
//!    when a worker is free it admits whatever the estimate says.
//! 2. Otherwise the digest is queued. A free worker takes the oldest digest plus more queued
//!    for the same key, up to `batch_max` and its share of the queue among all workers, and
//!    hands them to one backend call that signs them back to back. There is no
//!    artificial batching window: batches form by themselves when every worker is busy, so
//!    an idle system adds no latency, and many workers (a network HSM's sessions) share a
//!    short queue instead of a few of them taking it all.
//! 3. Each waiter is answered as soon as its own signature is made and verified (the backend
//!    hands signatures over one by one, [`SignBackend::sign_each`]), not when its batch ends.
//!    The worker measures the batch (from the end of its previous batch when it went straight
//!    on, so gaps between batches count) and feeds the per-signature time into an EWMA.
//!    Workers are threads of their own (see [`Signer::start`]). A waiter whose deadline
//!    passes gets [`SignError::DeadlineExceeded`]; a digest whose waiter is gone is never
//!    sent to the HSM.

pub mod backend;
pub mod rate;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::Instant;

pub use backend::{BackendError, DigestInfo, EachFuture, OnSigned, SignBackend, SignFuture};
pub use rate::{ModelRateLimits, RateLimit};

use crate::config::{Config, MaxWait};

/// How the signer is sized.
#[derive(Clone, Debug)]
pub struct SignerConfig {
    /// Concurrent backend calls (one per pooled HSM session).
    pub workers: usize,
    /// Most digests one backend call signs.
    pub batch_max: usize,
    /// Most digests waiting in the queue; past it requests are refused.
    pub queue_max: usize,
    /// Longest a request may wait for its signature, queueing included.
    pub deadline: Duration,
    /// Admit a request only when the queue ahead of it is estimated to be signed within this
    /// (`signing.max_wait_ms`); the deadline (less a tenth) bounds it in every case.
    pub max_wait: MaxWait,
    /// The per-signature service time assumed until the first batch is measured.
    pub initial_service_time: Duration,
}

impl SignerConfig {
    /// Sizes from the configuration: one worker per HSM session, on every token.
    pub fn from_config(config: &Config) -> Self {
        Self {
            workers: config.hsm_sessions.max(1) * config.token_count(),
            batch_max: config.sign_batch_max.max(1),
            queue_max: config.sign_queue_max.max(1),
            deadline: config.sign_deadline,
            max_wait: config.sign_max_wait,
            initial_service_time: Duration::from_millis(50),
        }
    }
}

impl Default for SignerConfig {
    fn default() -> Self {
        Self::from_config(&Config::default())
    }
}

/// Why a digest was not signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The queue cannot meet the deadline (or is full): refused before queueing.
    #[error("signing queue is full; retry in {}s", retry_after.as_secs())]
    Overloaded {
        /// When a retry has a fair chance.
        retry_after: Duration,
    },
    /// The model's rate limit is exhausted.
    #[error("rate limit of this model reached; retry in {}s", retry_after.as_secs())]
    RateLimited {
        /// When the model's bucket has a token again.
        retry_after: Duration,
    },
    /// Admitted, but not signed before the deadline.
    #[error("signing did not finish before the deadline")]
    DeadlineExceeded,
    /// The HSM is unavailable right now.
    #[error("{0}")]
    Unavailable(String),
    /// The signing key is not on the HSM.
    #[error("{0}")]
    KeyNotFound(String),
    /// The backend failed for another reason.
    #[error("{0}")]
    Failed(String),
    /// The signer is shutting down.
    #[error("signer stopped")]
    Stopped,
}

impl SignError {
    /// The machine-readable code of this refusal: `error_list[0].code` of the device's 503
    /// answer and the `reason` label of the signer's metrics (one vocabulary for both).
    pub fn code(&self) -> &'static str {
        match self {
            SignError::Overloaded { .. } => "overloaded",
            SignError::RateLimited { .. } => "rate-limited",
            SignError::DeadlineExceeded => "signing-timeout",
            SignError::Unavailable(_) | SignError::Stopped => "hsm-unavailable",
            SignError::KeyNotFound(_) => "signing-key-unavailable",
            SignError::Failed(_) => "signing-failed",
        }
    }

    /// Whether this is load shed as configured (the queue's target wait or a model's rate
    /// limit), not a fault: under overload it is every other request.
    pub fn is_load_shed(&self) -> bool {
        matches!(
            self,
            SignError::Overloaded { .. } | SignError::RateLimited { .. }
        )
    }

    /// When the caller may retry (for 503 answers); `None` for permanent failures.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SignError::Overloaded { retry_after } | SignError::RateLimited { retry_after } => {
                Some(*retry_after)
            }
            SignError::DeadlineExceeded | SignError::Unavailable(_) | SignError::Stopped => {
                Some(Duration::from_secs(1))
            }
            SignError::KeyNotFound(_) | SignError::Failed(_) => None,
        }
    }
}

impl From<BackendError> for SignError {
    fn from(e: BackendError) -> Self {
        match e {
            e @ BackendError::Unavailable(_) => SignError::Unavailable(e.to_string()),
            BackendError::KeyNotFound(k) => {
                SignError::KeyNotFound(format!("signing key {k} not found on the HSM"))
            }
            BackendError::Failed(m) => SignError::Failed(m),
        }
    }
}

/// A snapshot of the signer's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignerStats {
    /// Digests waiting in the queue.
    pub queued: usize,
    /// Digests being signed right now.
    pub in_flight: usize,
    /// The measured per-signature service time (EWMA).
    pub service_time: Duration,
}

struct Job {
    key_id: Arc<str>,
    digest: DigestInfo,
    enqueued: Instant,
    deadline: Instant,
    reply: oneshot::Sender<Result<Vec<u8>, SignError>>,
}

struct Shared {
    backend: Arc<dyn SignBackend>,
    cfg: SignerConfig,
    queue: Mutex<VecDeque<Job>>,
    notify: Notify,
    in_flight: AtomicUsize,
    /// EWMA of the per-signature service time, in nanoseconds.
    service_ns: AtomicU64,
    closed: AtomicBool,
    rates: ModelRateLimits,
}

/// Stops the workers when the last [`Signer`] handle is dropped.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }
}

/// The signing engine. Cheap to clone; the workers stop (after draining the queue) when the
/// last clone is dropped or [`Signer::shutdown`] is called.
#[derive(Clone)]
pub struct Signer {
    shared: Arc<Shared>,
    _guard: Arc<StopGuard>,
    /// Closed when every worker thread has ended (each holds a receiver until its very end).
    workers: Arc<watch::Sender<()>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("config", &self.shared.cfg)
            .field("stats", &self.stats())
            .finish()
    }
}

/// EWMA weight of the newest measurement.
const EWMA_ALPHA: f64 = 0.2;

impl Signer {
    /// Starts `cfg.workers` workers (one thread each) on the current Tokio runtime.
    pub fn start(backend: Arc<dyn SignBackend>, cfg: SignerConfig) -> Self {
        let cfg = SignerConfig {
            workers: cfg.workers.max(1),
            batch_max: cfg.batch_max.max(1),
            queue_max: cfg.queue_max.max(1),
            ..cfg
        };
        let shared = Arc::new(Shared {
            backend,
            service_ns: AtomicU64::new(duration_ns(cfg.initial_service_time)),
            cfg,
            queue: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            in_flight: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            rates: ModelRateLimits::new(),
        });
        // Each worker is an OS thread of its own that drives its loop with the runtime's
        // handle: when a batch comes back from the HSM, the worker is woken directly and takes
        // the next batch at once, however long the async workers' run queue is (under
        // overload it is long: every request being read, checked or refused). On the async
        // workers a finished batch waited its turn behind them and the HSM sat idle meanwhile.
        let handle = tokio::runtime::Handle::current();
        let (workers, alive) = watch::channel(());
        for i in 0..shared.cfg.workers {
            let (shared, handle, alive) = (shared.clone(), handle.clone(), alive.clone());
            std::thread::Builder::new()
                .name(format!("signer-{i}"))
                .spawn(move || {
                    handle.block_on(worker(shared));
                    // Last: what the worker held (the backend, the HSM) is dropped by now.
                    drop(alive);
                })
                .expect("the OS starts a signer thread");
        }
        Self {
            _guard: Arc::new(StopGuard(shared.clone())),
            shared,
            workers: Arc::new(workers),
        }
    }

    /// Resolves when every worker thread has ended, after [`Signer::shutdown`] or the drop
    /// of the last handle (each drains the queue first): from then on no worker uses the
    /// backend, and the server may close the HSM's sessions before the process exits.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let workers = self.workers.clone();
        async move { workers.closed().await }
    }

    /// The configuration in force.
    pub fn config(&self) -> &SignerConfig {
        &self.shared.cfg
    }

    /// Queue length, in-flight count and the service-time estimate.
    pub fn stats(&self) -> SignerStats {
        SignerStats {
            queued: self.shared.queue.lock().len(),
            in_flight: self.shared.in_flight.load(Ordering::Relaxed),
            service_time: self.shared.per_sig(),
        }
    }

    /// Takes one token from `model`'s bucket (no-op when `limit` is `None`).
    pub fn check_rate(&self, model: &str, limit: Option<RateLimit>) -> Result<(), SignError> {
        self.shared.rates.check(model, limit).map_err(|wait| {
            metrics::counter!("signer_refused_total", "reason" => "rate-limited").increment(1);
            SignError::RateLimited {
                retry_after: round_up_secs(wait),
            }
        })
    }

    /// Signs one DigestInfo with `key_id`, within the configured deadline, or refuses at once
    /// when the queue cannot meet it.
    pub async fn sign(&self, key_id: &str, digest: DigestInfo) -> Result<Vec<u8>, SignError> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::SeqCst) {
            return Err(SignError::Stopped);
        }
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        let deadline = now + shared.cfg.deadline;
        {
            let mut queue = shared.queue.lock();
            if let Err(e) = shared.admit(queue.len()) {
                drop(queue);
                return Err(e);
            }
            queue.push_back(Job {
                key_id: Arc::from(key_id),
                digest,
                enqueued: now,
                deadline,
                reply: tx,
            });
            metrics::gauge!("signer_queue_depth").set(queue.len() as f64);
        }
        shared.notify.notify_one();
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(SignError::Stopped),
            Err(_) => {
                let e = SignError::DeadlineExceeded;
                metrics::counter!("signer_refused_total", "reason" => e.code()).increment(1);
                Err(e)
            }
        }
    }

    /// Refuses at once, like [`Signer::sign`] would, when a digest queued now could not be
    /// signed within the deadline (or the queue is full). Registration asks this before it
    /// spends CPU on decoding and verifying a request, so that under overload the excess is
    /// shed for the price of an HTTP exchange and the cores keep signing.
    pub fn check_admission(&self) -> Result<(), SignError> {
        let queued = self.shared.queue.lock().len();
        self.shared.admit(queued)
    }

    /// Stops accepting work; queued digests are still signed, then the workers exit.
    pub fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.notify.notify_waiters();
    }
}

fn refuse(reason: &'static str, wait: Duration) -> SignError {
    metrics::counter!("signer_refused_total", "reason" => reason).increment(1);
    SignError::Overloaded {
        retry_after: round_up_secs(wait),
    }
}

/// The automatic target wait, in signatures per worker: half a batch. (One batch per worker
/// measured 12.3x the single-sign p50 as the p99 of accepted requests at 2x overload on a
/// modelled network HSM, over the 10x aimed at; the goodput is the same either way.)
fn auto_rounds(batch_max: usize) -> u32 {
    u32::try_from(batch_max.div_ceil(2)).unwrap_or(u32::MAX)
}

/// Whole seconds, rounded up, at least one (what `Retry-After` can say).
fn round_up_secs(d: Duration) -> Duration {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Shared {
    /// Whether a digest may join a queue of `queued`: the queue has room and the estimate
    /// fits the deadline, less a tenth kept for what follows signing (verify, log, answer)
    /// and for estimation error, and fits the target wait: by default (`auto`) half a batch
    /// per worker at the measured per-signature time, enough queued to keep every worker
    /// signing and short enough that an admitted request waits a few signatures.
    fn admit(&self, queued: usize) -> Result<(), SignError> {
        if queued >= self.cfg.queue_max {
            return Err(refuse("queue-full", Duration::from_secs(1)));
        }
        // A worker is free: nothing is ahead of it, whatever the estimate says (a target
        // shorter than one signature must not refuse everything; the estimate is only
        // measured from signatures made).
        if queued + self.in_flight.load(Ordering::Relaxed) < self.cfg.workers {
            return Ok(());
        }
        let estimate = self.estimate(queued);
        let mut budget = self.cfg.deadline - self.cfg.deadline / 10;
        match self.cfg.max_wait {
            MaxWait::Auto => budget = budget.min(self.per_sig() * auto_rounds(self.cfg.batch_max)),
            MaxWait::Fixed(target) => budget = budget.min(target),
            MaxWait::Off => {}
        }
        if estimate > budget {
            return Err(refuse("overloaded", estimate - budget));
        }
        Ok(())
    }

    /// The measured per-signature service time (EWMA).
    fn per_sig(&self) -> Duration {
        Duration::from_nanos(self.service_ns.load(Ordering::Relaxed))
    }

    /// When a digest queued now would be signed: every signature ahead of it (queued and in
    /// flight) plus its own, spread over the workers, at the measured per-signature time.
    fn estimate(&self, queued: usize) -> Duration {
        let ahead = queued + self.in_flight.load(Ordering::Relaxed);
        let rounds = (ahead + 1).div_ceil(self.cfg.workers);
        self.per_sig()
            .saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX))
    }

    fn record_service_time(&self, per_sig: Duration) {
        let new = per_sig.as_nanos() as f64;
        let old = self.service_ns.load(Ordering::Relaxed) as f64;
        let next = EWMA_ALPHA * new + (1.0 - EWMA_ALPHA) * old;
        self.service_ns.store(next as u64, Ordering::Relaxed);
        metrics::gauge!("signer_service_time_seconds").set(next / 1e9);
    }

    /// The oldest live job plus more for the same key: up to `batch_max`, and no more than
    /// this worker's share of the queue among all workers (the busy ones free up within a
    /// signature or so), so that with many sessions (a network HSM) the worker that happens
    /// to be free does not take a long batch that the others would have signed in parallel.
    /// Jobs whose deadline passed or whose waiter left are answered or dropped on the way.
    fn take_batch(&self) -> Option<(Arc<str>, Vec<Job>)> {
        let mut queue = self.queue.lock();
        let now = Instant::now();
        let share = queue
            .len()
            .div_ceil(self.cfg.workers)
            .clamp(1, self.cfg.batch_max);
        let first = loop {
            let job = queue.pop_front()?;
            if job.reply.is_closed() {
                continue;
            }
            if job.deadline <= now {
                let _ = job.reply.send(Err(SignError::DeadlineExceeded));
                continue;
            }
            break job;
        };
        let key = first.key_id.clone();
        let mut batch = vec![first];
        let mut i = 0;
        while i < queue.len() && batch.len() < share {
            let job = &queue[i];
            if job.reply.is_closed() || job.deadline <= now {
                if let Some(job) = queue.remove(i) {
                    let _ = job.reply.send(Err(SignError::DeadlineExceeded));
                }
                continue;
            }
            if job.key_id == key {
                batch.extend(queue.remove(i));
            } else {
                i += 1;
            }
        }
        self.in_flight.fetch_add(batch.len(), Ordering::Relaxed);
        metrics::gauge!("signer_queue_depth").set(queue.len() as f64);
        Some((key, batch))
    }
}

async fn worker(shared: Arc<Shared>) {
    // When the worker goes from one batch straight to the next, the service time is counted
    // from the end of the previous batch, so whatever happens between two batches counts
    // too: the estimate is the rate at which the queue really drains, not the HSM's alone.
    let mut busy_since: Option<Instant> = None;
    loop {
        let notified = shared.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some((key, batch)) = shared.take_batch() {
            let since = busy_since.unwrap_or_else(Instant::now);
            sign_batch(&shared, &key, batch, since).await;
            busy_since = Some(Instant::now());
            continue;
        }
        busy_since = None;
        if shared.closed.load(Ordering::SeqCst) {
            break;
        }
        notified.await;
    }
}

/// Signs one batch, answering each waiter as soon as its own signature is made and verified
/// (the backend hands them over one by one); `since` is when the worker became busy with it
/// (the end of its previous batch when it went straight on), for the service-time estimate.
async fn sign_batch(shared: &Arc<Shared>, key: &str, batch: Vec<Job>, since: Instant) {
    let n = batch.len();
    let started = Instant::now();
    let mut digests = Vec::with_capacity(n);
    let mut replies = Vec::with_capacity(n);
    for job in batch {
        metrics::histogram!("signer_queue_wait_seconds")
            .record(started.duration_since(job.enqueued).as_secs_f64());
        digests.push(job.digest);
        replies.push(Mutex::new(Some(job.reply)));
    }
    metrics::histogram!("signer_batch_size").record(n as f64);
    let replies = Arc::new(replies);
    let on_signed: OnSigned = {
        let (replies, shared) = (replies.clone(), shared.clone());
        Arc::new(move |i, sig| {
            // Once per waiter: a late second hand-over (a stuck call finishing elsewhere)
            // finds its reply taken.
            if let Some(reply) = replies.get(i).and_then(|r| r.lock().take()) {
                shared.in_flight.fetch_sub(1, Ordering::Relaxed);
                metrics::counter!("signer_signatures_total").increment(1);
                let _ = reply.send(Ok(sig));
            }
        })
    };
    let result = shared.backend.sign_each(key, &digests, on_signed).await;
    metrics::histogram!("signer_sign_seconds").record(started.elapsed().as_secs_f64());
    let succeeded = result.is_ok();
    let e = match result {
        Ok(()) => {
            shared.record_service_time(since.elapsed() / n as u32);
            SignError::Failed("the backend handed over no signature for this digest".into())
        }
        Err(e) => {
            let e = SignError::from(e);
            metrics::counter!("signer_errors_total", "reason" => e.code()).increment(1);
            tracing::warn!(key, batch = n, error = %e, "signing batch failed");
            e
        }
    };
    // Whoever was not answered gets the batch's error (after a success: a backend that broke
    // its contract, logged).
    let mut unanswered = 0;
    for reply in replies.iter() {
        if let Some(reply) = reply.lock().take() {
            unanswered += 1;
            shared.in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = reply.send(Err(e.clone()));
        }
    }
    if unanswered > 0 && succeeded {
        tracing::error!(key, batch = n, unanswered, error = %e, "signing batch failed");
    }
}

#[cfg(test)]
mod tests;
