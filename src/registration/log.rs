//! The signing log as registration uses it: a small trait, [`SigningLog`] (implemented by the
//! store in [`crate::wiring`]: the only SQL; Postgres' unique constraints decide replays and
//! conflicts), and [`GroupCommit`], which gathers rows from concurrent requests into one
//! `record` call (one transaction).
//!
//! A serial is answered only after its row is committed: "a serial we answered is a serial
//! we logged". Uniqueness (one issuance per request-id; one per brand, model, serial and
//! revision) is enforced by the log itself, never by a check-then-insert here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::domain::{Issuance, LoggedIssuance, RecordOutcome};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The log could not be used (Postgres down, timeout): answer 503, issue nothing. Cheap to
/// clone: one failed transaction answers every row of its group.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LogError {
    /// The log's backend failed (for the store: Postgres unreachable or refusing).
    #[error("signing log unavailable: {0}")]
    Backend(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// A commit, look-up or the watchdog's probe failed a moment ago and no probe has seen
    /// the log answer since: refused at once, before anything is signed.
    #[error("signing log unavailable: Postgres failed lately; waiting for it to answer again")]
    Down,
    /// The group-commit writer is gone (shutting down).
    #[error("signing log unavailable: its writer stopped")]
    WriterStopped,
    /// A transaction or look-up took longer than the log's timeout.
    #[error("signing log unavailable: no answer within {0:?}")]
    TimedOut(Duration),
    /// The backend answered another number of outcomes than rows (a bug: nothing answered).
    #[error("signing log unavailable: it answered {got} outcomes for {rows} rows")]
    WrongRowCount {
        /// Rows sent.
        rows: usize,
        /// Outcomes answered.
        got: usize,
    },
}

/// Two log errors are equal when they are the same kind and say the same (a backend's cause
/// is compared by its message: what a caller or a test can observe of it).
impl PartialEq for LogError {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
            && self.to_string() == other.to_string()
    }
}

impl Eq for LogError {}

impl LogError {
    /// A backend failure with its cause.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        LogError::Backend(Arc::new(e))
    }
}

/// The signing log.
pub trait SigningLog: Send + Sync + 'static {
    /// Records every row in one transaction; per row, in input order, what happened. On
    /// error nothing is committed.
    fn record<'a>(
        &'a self,
        rows: &'a [Issuance],
    ) -> BoxFuture<'a, Result<Vec<RecordOutcome>, LogError>>;
    /// The highest revision issued of this serial, if any.
    fn latest<'a>(
        &'a self,
        brand_id: &'a str,
        model: &'a str,
        serial: &'a str,
    ) -> BoxFuture<'a, Result<Option<LoggedIssuance>, LogError>>;
    /// The next value of the model's serial counter (prefix+counter generation).
    fn next_counter(&self, model_id: i64) -> BoxFuture<'_, Result<i64, LogError>>;
    /// Whether the log answers a trivial question (the probe that lifts [`LogError::Down`]).
    fn ping(&self) -> BoxFuture<'_, Result<(), LogError>> {
        Box::pin(async { Ok(()) })
    }
}

/// How often the watchdog asks the log whether it answers.
pub const PROBE_EVERY: Duration = Duration::from_millis(100);

/// Whether the log is down: set by a failed commit or look-up, or by the watchdog's probe;
/// cleared only by the watchdog's probe.
#[derive(Debug)]
struct Health {
    down: watch::Sender<bool>,
}

impl Health {
    fn new() -> Self {
        Self {
            down: watch::Sender::new(false),
        }
    }

    fn is_down(&self) -> bool {
        *self.down.borrow()
    }

    fn mark_down(&self, why: &LogError) {
        if !self.down.send_replace(true) {
            metrics::gauge!("signing_log_down").set(1.0);
            tracing::warn!(error = %why, "signing log down: serial requests get 503 until it answers again");
        }
    }

    fn mark_up(&self) {
        if self.down.send_replace(false) {
            metrics::gauge!("signing_log_down").set(0.0);
            tracing::info!("signing log answers again: serial requests are served");
        }
    }

    /// Resolves as soon as the log is down (at once when it is already).
    async fn went_down(&self) {
        let mut rx = self.down.subscribe();
        if rx.wait_for(|down| *down).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// `f`, bounded by `timeout`, given up on (as [`LogError::Down`]) as soon as the log is
    /// known down: a request stuck in the pool's connect retries while Postgres refuses
    /// connections is answered when the watchdog sees the outage, not when the pool gives up.
    /// Nothing is given up on that could still commit: down means the watchdog's own
    /// connection failed and a new one was refused.
    async fn guarded<T>(
        &self,
        timeout: Duration,
        f: impl Future<Output = Result<T, LogError>>,
    ) -> Result<T, LogError> {
        if self.is_down() {
            return Err(LogError::Down);
        }
        tokio::select! {
            r = bounded(timeout, f) => r,
            () = self.went_down() => Err(LogError::Down),
        }
    }
}

/// Asks the log every [`PROBE_EVERY`] whether it answers: marks it down when the probe fails
/// (Postgres gone: its connection closed, a new one refused; before any commit has to fail)
/// or gets no answer within `timeout`, the bound a commit has too (a slow answer on a busy
/// machine is not an outage), and up again when a probe answers (within a probe of Postgres
/// coming back, without a restart). Ends with the group commit.
async fn watchdog(log: Arc<dyn SigningLog>, health: std::sync::Weak<Health>, timeout: Duration) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let answer = bounded(timeout, log.ping()).await;
        let Some(health) = health.upgrade() else {
            return;
        };
        match answer {
            Ok(()) => health.mark_up(),
            Err(e) => health.mark_down(&e),
        }
    }
}

/// Whether a failure says the log is unreachable (so later requests should not wait for it).
fn is_outage(e: &LogError) -> bool {
    matches!(e, LogError::Backend(_) | LogError::TimedOut(_))
}

struct Pending {
    row: Issuance,
    reply: oneshot::Sender<Result<RecordOutcome, LogError>>,
}

/// Group commit: concurrent [`GroupCommit::record`] calls are gathered by one writer task
/// into `SigningLog::record` calls of up to `max_batch` rows, one transaction each. While a
/// transaction is in flight the next rows accumulate, so the batch size follows the load.
#[derive(Clone)]
pub struct GroupCommit {
    log: Arc<dyn SigningLog>,
    tx: mpsc::Sender<Pending>,
    timeout: Duration,
    health: Arc<Health>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Starts the writer task and the watchdog. `timeout` bounds one transaction (Postgres
    /// hanging counts as down).
    pub fn start(log: Arc<dyn SigningLog>, max_batch: usize, timeout: Duration) -> Self {
        let (tx, rx) = mpsc::channel(max_batch.max(1) * 8);
        let health = Arc::new(Health::new());
        tokio::spawn(watchdog(log.clone(), Arc::downgrade(&health), timeout));
        tokio::spawn(writer(
            log.clone(),
            rx,
            max_batch.max(1),
            timeout,
            health.clone(),
        ));
        Self {
            log,
            tx,
            timeout,
            health,
        }
    }

    /// `Err(LogError::Down)` while the log is down (a failed commit or look-up, or a failed
    /// probe, not followed by a probe that saw it answer): callers refuse at once instead of
    /// waiting out a pool timeout and spending a signature on a row that cannot be written.
    pub fn check_up(&self) -> Result<(), LogError> {
        if self.health.is_down() {
            Err(LogError::Down)
        } else {
            Ok(())
        }
    }

    /// Notes a failed look-up: an outage marks the log down as a failed commit does.
    fn noted<T>(&self, r: Result<T, LogError>) -> Result<T, LogError> {
        if let Err(e) = &r
            && is_outage(e)
        {
            self.health.mark_down(e);
        }
        r
    }

    /// The log underneath (for look-ups).
    pub fn log(&self) -> &Arc<dyn SigningLog> {
        &self.log
    }

    /// Records one row, committed together with whatever other rows are waiting.
    pub async fn record(&self, row: Issuance) -> Result<RecordOutcome, LogError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { row, reply })
            .await
            .map_err(|_| LogError::WriterStopped)?;
        rx.await.map_err(|_| LogError::WriterStopped)?
    }

    /// Looks up, bounded by the same timeout.
    pub async fn latest(
        &self,
        brand_id: &str,
        model: &str,
        serial: &str,
    ) -> Result<Option<LoggedIssuance>, LogError> {
        self.noted(
            self.health
                .guarded(self.timeout, self.log.latest(brand_id, model, serial))
                .await,
        )
    }

    /// The model's next counter value, bounded by the same timeout.
    pub async fn next_counter(&self, model_id: i64) -> Result<i64, LogError> {
        self.noted(
            self.health
                .guarded(self.timeout, self.log.next_counter(model_id))
                .await,
        )
    }
}

async fn bounded<T>(
    timeout: Duration,
    f: impl Future<Output = Result<T, LogError>>,
) -> Result<T, LogError> {
    tokio::time::timeout(timeout, f)
        .await
        .unwrap_or_else(|_| Err(LogError::TimedOut(timeout)))
}

async fn writer(
    log: Arc<dyn SigningLog>,
    mut rx: mpsc::Receiver<Pending>,
    max_batch: usize,
    timeout: Duration,
    health: Arc<Health>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        let rows: Vec<Issuance> = batch.iter().map(|p| p.row.clone()).collect();
        metrics::histogram!("signing_log_batch_size").record(rows.len() as f64);
        let started = std::time::Instant::now();
        let result = health.guarded(timeout, log.record(&rows)).await;
        metrics::histogram!("signing_log_commit_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok(outcomes) if outcomes.len() == rows.len() => {
                for (p, o) in batch.drain(..).zip(outcomes) {
                    let _ = p.reply.send(Ok(o));
                }
            }
            Ok(outcomes) => {
                let e = LogError::WrongRowCount {
                    rows: rows.len(),
                    got: outcomes.len(),
                };
                tracing::error!(error = %e, "signing log commit answered nonsense");
                for p in batch.drain(..) {
                    let _ = p.reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                metrics::counter!("signing_log_errors_total").increment(1);
                tracing::warn!(error = %e, rows = rows.len(), "signing log commit failed");
                if is_outage(&e) {
                    health.mark_down(&e);
                }
                for p in batch.drain(..) {
                    let _ = p.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Group-commit batching only: uniqueness, replays and conflicts are the store's, tested
    //! on a real Postgres (`tests/store.rs`, `tests/device_api.rs`).
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Accepts every row; counts transactions; can be switched "down".
    #[derive(Default)]
    struct CountingLog {
        rows: AtomicUsize,
        commits: AtomicUsize,
        down: AtomicBool,
    }

    impl CountingLog {
        fn check(&self) -> Result<(), LogError> {
            if self.down.load(Ordering::SeqCst) {
                Err(LogError::backend(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                )))
            } else {
                Ok(())
            }
        }
    }

    impl SigningLog for CountingLog {
        fn record<'a>(
            &'a self,
            rows: &'a [Issuance],
        ) -> BoxFuture<'a, Result<Vec<RecordOutcome>, LogError>> {
            Box::pin(async move {
                self.check()?;
                let first = self.rows.fetch_add(rows.len(), Ordering::SeqCst);
                self.commits.fetch_add(1, Ordering::SeqCst);
                Ok((first..)
                    .zip(rows)
                    .map(|(id, r)| {
                        RecordOutcome::Inserted(LoggedIssuance {
                            id: id as i64 + 1,
                            issued_at: time::OffsetDateTime::UNIX_EPOCH,
                            issuance: r.clone(),
                        })
                    })
                    .collect())
            })
        }

        fn latest<'a>(
            &'a self,
            _brand_id: &'a str,
            _model: &'a str,
            _serial: &'a str,
        ) -> BoxFuture<'a, Result<Option<LoggedIssuance>, LogError>> {
            Box::pin(async move { self.check().map(|()| None) })
        }

        fn next_counter(&self, _model_id: i64) -> BoxFuture<'_, Result<i64, LogError>> {
            Box::pin(async move { self.check().map(|()| 1) })
        }

        fn ping(&self) -> BoxFuture<'_, Result<(), LogError>> {
            Box::pin(async move { self.check() })
        }
    }

    fn row(i: usize) -> Issuance {
        Issuance {
            brand_id: "b".into(),
            model_id: 1,
            model_name: "m".into(),
            serial: format!("s{i}"),
            revision: 0,
            device_key_id: "d".into(),
            request_id: format!("r{i}"),
            signing_key_id: "k".into(),
            instance: "i".into(),
            serial_assertion: format!("serial s{i}"),
            original_serial: None,
            original_serial_id: None,
        }
    }

    #[tokio::test]
    async fn concurrent_rows_share_transactions() {
        let log = Arc::new(CountingLog::default());
        let gc = GroupCommit::start(log.clone(), 64, Duration::from_secs(5));
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let gc = gc.clone();
                tokio::spawn(async move { gc.record(row(i)).await })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(RecordOutcome::Inserted(logged)) => assert_eq!(logged.issuance, row(i)),
                other => panic!("expected an insert, got {other:?}"),
            }
        }
        assert_eq!(log.rows.load(Ordering::SeqCst), 200);
        let commits = log.commits.load(Ordering::SeqCst);
        assert!(commits < 200, "commits: {commits}");
    }

    #[tokio::test]
    async fn down_log_fails_every_waiter_and_recovers() {
        let log = Arc::new(CountingLog::default());
        let gc = GroupCommit::start(log.clone(), 8, Duration::from_secs(5));
        log.down.store(true, Ordering::SeqCst);
        assert!(gc.record(row(1)).await.is_err());
        assert!(gc.latest("b", "m", "s").await.is_err());
        assert_eq!(
            gc.check_up(),
            Err(LogError::Down),
            "refused at once meanwhile"
        );
        log.down.store(false, Ordering::SeqCst);
        // The watchdog's next probe sees it answer.
        while gc.check_up().is_err() {
            tokio::time::sleep(PROBE_EVERY / 2).await;
        }
        assert!(matches!(
            gc.record(row(1)).await,
            Ok(RecordOutcome::Inserted(logged)) if logged.issuance == row(1)
        ));
        assert_eq!(log.rows.load(Ordering::SeqCst), 1);
    }

    /// A log whose commits hang while it is down (as a pool waits out its connect retries
    /// while Postgres refuses connections) and whose probe fails meanwhile.
    #[derive(Default)]
    struct HangingLog {
        down: AtomicBool,
    }

    impl SigningLog for HangingLog {
        fn record<'a>(
            &'a self,
            _rows: &'a [Issuance],
        ) -> BoxFuture<'a, Result<Vec<RecordOutcome>, LogError>> {
            Box::pin(std::future::pending())
        }

        fn latest<'a>(
            &'a self,
            _brand_id: &'a str,
            _model: &'a str,
            _serial: &'a str,
        ) -> BoxFuture<'a, Result<Option<LoggedIssuance>, LogError>> {
            Box::pin(std::future::pending())
        }

        fn next_counter(&self, _model_id: i64) -> BoxFuture<'_, Result<i64, LogError>> {
            Box::pin(std::future::pending())
        }

        fn ping(&self) -> BoxFuture<'_, Result<(), LogError>> {
            Box::pin(async move {
                if self.down.load(Ordering::SeqCst) {
                    Err(LogError::backend(std::io::Error::from(
                        std::io::ErrorKind::ConnectionRefused,
                    )))
                } else {
                    Ok(())
                }
            })
        }
    }

    #[tokio::test]
    async fn the_watchdog_answers_waiters_stuck_on_a_log_that_went_down_and_closes_the_gate() {
        let log = Arc::new(HangingLog::default());
        // A transaction timeout far beyond the test: only the watchdog can answer these.
        let gc = GroupCommit::start(log.clone(), 8, Duration::from_secs(3600));
        assert_eq!(gc.check_up(), Ok(()));
        let commit = tokio::spawn({
            let gc = gc.clone();
            async move { gc.record(row(1)).await }
        });
        let counter = tokio::spawn({
            let gc = gc.clone();
            async move { gc.next_counter(1).await }
        });
        log.down.store(true, Ordering::SeqCst);
        assert_eq!(commit.await.unwrap(), Err(LogError::Down));
        assert_eq!(counter.await.unwrap(), Err(LogError::Down));
        assert_eq!(gc.check_up(), Err(LogError::Down));
        log.down.store(false, Ordering::SeqCst);
        while gc.check_up().is_err() {
            tokio::time::sleep(PROBE_EVERY / 2).await;
        }
    }
}
