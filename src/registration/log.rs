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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

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
    /// A commit or look-up failed a moment ago and the background probe has not seen the
    /// log answer since: refused at once, before anything is signed.
    #[error("signing log unavailable: its last commit failed; waiting for it to answer again")]
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

/// How often the background probe asks a log that failed whether it answers again.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Whether the log failed lately, and whether a probe is already asking it.
#[derive(Debug, Default)]
struct Health {
    down: AtomicBool,
    probing: AtomicBool,
}

impl Health {
    /// Marks the log down and, unless one runs, starts the probe that marks it up again.
    fn mark_down(self: &Arc<Self>, log: &Arc<dyn SigningLog>, timeout: Duration) {
        if !self.down.swap(true, Ordering::AcqRel) {
            metrics::gauge!("signing_log_down").set(1.0);
            tracing::warn!("signing log down: serial requests get 503 until it answers again");
        }
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (health, log) = (self.clone(), log.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                if bounded(timeout.min(PROBE_TIMEOUT), log.ping())
                    .await
                    .is_ok()
                {
                    break;
                }
            }
            health.probing.store(false, Ordering::Release);
            health.down.store(false, Ordering::Release);
            metrics::gauge!("signing_log_down").set(0.0);
            tracing::info!("signing log answers again: serial requests are served");
        });
    }
}

/// The longest one probe waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

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
    /// Starts the writer task. `timeout` bounds one transaction (Postgres hanging counts as
    /// down).
    pub fn start(log: Arc<dyn SigningLog>, max_batch: usize, timeout: Duration) -> Self {
        let (tx, rx) = mpsc::channel(max_batch.max(1) * 8);
        let health = Arc::new(Health::default());
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

    /// `Err(LogError::Down)` while a recent failure has not been followed by a probe that
    /// saw the log answer: callers refuse at once instead of waiting out a pool timeout and
    /// spending a signature on a row that cannot be written.
    pub fn check_up(&self) -> Result<(), LogError> {
        if self.health.down.load(Ordering::Acquire) {
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
            self.health.mark_down(&self.log, self.timeout);
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
        self.noted(bounded(self.timeout, self.log.latest(brand_id, model, serial)).await)
    }

    /// The model's next counter value, bounded by the same timeout.
    pub async fn next_counter(&self, model_id: i64) -> Result<i64, LogError> {
        self.noted(bounded(self.timeout, self.log.next_counter(model_id)).await)
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
        let result = bounded(timeout, log.record(&rows)).await;
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
                    health.mark_down(&log, timeout);
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
        log.down.store(false, Ordering::SeqCst);
        assert!(matches!(
            gc.record(row(1)).await,
            Ok(RecordOutcome::Inserted(logged)) if logged.issuance == row(1)
        ));
        assert_eq!(log.rows.load(Ordering::SeqCst), 1);
    }
}
