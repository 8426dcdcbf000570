//! The two ways of applying load in a timed phase.
//!
//! * **Closed loop**: `concurrency` workers each send, wait for the answer, send the next,
//!   until `count` requests are done. Measures capacity: throughput at a fixed number of
//!   requests in flight. Latency is from send to answer.
//! * **Open loop**: requests arrive at a constant rate from a [`Schedule`], whether or not
//!   earlier ones were answered. Latency is measured from the *scheduled* arrival time, so
//!   time spent queued behind a slow server (or a slow client) is counted, not hidden.
//!
//! The request itself is a closure `f(i)` that returns the outcome and, when wanted, the
//! answer body (kept per index for the verification phase).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use indicatif::ProgressBar;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::schedule::Schedule;
use crate::stats::{Outcome, Recorder};

/// What a timed phase produced.
#[derive(Debug)]
pub struct Driven {
    /// Outcomes and latencies.
    pub recorder: Recorder,
    /// Wall clock from the first send to the last answer.
    pub elapsed: Duration,
    /// Answer bodies by request index (those the closure chose to keep).
    pub bodies: Vec<Option<Bytes>>,
    /// Open loop only: the largest lag of the sender behind the schedule (a client that
    /// cannot keep up would show here).
    pub max_send_lag: Duration,
    /// When the first request was due (open loop) or sent (closed loop).
    pub started: Instant,
    /// Open loop only: every request's scheduled arrival, latency and outcome, by index.
    pub timeline: Vec<Arrival>,
}

/// One open-loop request: when it was due (from [`Driven::started`]), how long its answer
/// took from then, and what it was.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// Scheduled arrival, from the start of the phase.
    pub at: Duration,
    /// From the scheduled arrival to the answer.
    pub took: Duration,
    /// From the scheduled arrival to when the request's task began (the client's own lag:
    /// part of `took`, spent before anything was sent).
    pub start_lag: Duration,
    /// The answer.
    pub outcome: Outcome,
}

/// Writes an open loop's timeline as CSV, one request per line in schedule order:
/// `due_ms,start_lag_ms,latency_ms,status` (status 0: no HTTP answer).
pub fn write_timeline(path: &std::path::Path, timeline: &[Arrival]) -> std::io::Result<()> {
    use std::io::Write;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "due_ms,start_lag_ms,latency_ms,status")?;
    for a in timeline {
        let status = match a.outcome {
            Outcome::Status(s) => s,
            Outcome::Transport => 0,
        };
        writeln!(
            w,
            "{:.3},{:.3},{:.3},{status}",
            ms(a.at),
            ms(a.start_lag),
            ms(a.took)
        )?;
    }
    w.flush()
}

/// Runs `count` requests with `concurrency` in flight.
pub async fn closed_loop<F, Fut>(
    count: usize,
    concurrency: usize,
    progress: &ProgressBar,
    f: F,
) -> Driven
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (Outcome, Option<Bytes>)> + Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (f, next, progress) = (f.clone(), next.clone(), progress.clone());
        set.spawn(async move {
            let mut rec = Recorder::new();
            let mut bodies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let t = Instant::now();
                let (outcome, body) = f(i).await;
                rec.record(outcome, t.elapsed());
                if let Some(b) = body {
                    bodies.push((i, b));
                }
                progress.inc(1);
            }
            (rec, bodies)
        });
    }
    let mut recorder = Recorder::new();
    let mut all = vec![None; count];
    while let Some(r) = set.join_next().await {
        let (rec, bodies) = r.expect("load worker panicked");
        recorder.merge(&rec);
        for (i, b) in bodies {
            all[i] = Some(b);
        }
    }
    Driven {
        recorder,
        elapsed: start.elapsed(),
        bodies: all,
        max_send_lag: Duration::ZERO,
        started: start,
        timeline: Vec::new(),
    }
}

/// Sends requests at the schedule's constant rate; latency counts from the scheduled time.
pub async fn open_loop<F, Fut>(schedule: Schedule, progress: &ProgressBar, f: F) -> Driven
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (Outcome, Option<Bytes>)> + Send + 'static,
{
    let f = Arc::new(f);
    let count = schedule.count() as usize;
    // A small head start so the first arrivals are not already late when the loop begins.
    let start = Instant::now() + Duration::from_millis(20);
    let mut set = JoinSet::new();
    let mut max_lag = Duration::ZERO;
    let mut recorder = Recorder::new();
    let mut all = vec![None; count];
    let mut timeline = vec![
        Arrival {
            at: Duration::ZERO,
            took: Duration::ZERO,
            start_lag: Duration::ZERO,
            outcome: Outcome::Transport,
        };
        count
    ];
    let mut collect = |r: Result<(usize, Outcome, Duration, Duration, Option<Bytes>), _>,
                       recorder: &mut Recorder| {
        let (i, outcome, start_lag, latency, body) = r.expect("load task panicked");
        recorder.record(outcome, latency);
        all[i] = body;
        timeline[i] = Arrival {
            at: schedule.offset(i as u64),
            took: latency,
            start_lag,
            outcome,
        };
        progress.inc(1);
    };
    for i in 0..count {
        let due = start + schedule.offset(i as u64);
        tokio::time::sleep_until(due).await;
        max_lag = max_lag.max(Instant::now().saturating_duration_since(due));
        let f = f.clone();
        set.spawn(async move {
            let start_lag = due.elapsed();
            let (outcome, body) = f(i).await;
            (i, outcome, start_lag, due.elapsed(), body)
        });
        // Reap finished tasks as we go so the set does not grow without bound.
        while let Some(r) = set.try_join_next() {
            collect(r, &mut recorder);
        }
    }
    while let Some(r) = set.join_next().await {
        collect(r, &mut recorder);
    }
    Driven {
        recorder,
        elapsed: start.elapsed(),
        bodies: all,
        max_send_lag: max_lag,
        started: start,
        timeline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closed_loop_runs_every_index_once_and_keeps_bodies() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let d = closed_loop(50, 7, &ProgressBar::hidden(), move |i| {
            s.lock().unwrap().push(i);
            async move {
                let status = if i % 10 == 0 { 503 } else { 200 };
                (
                    Outcome::Status(status),
                    Some(Bytes::from(i.to_string().into_bytes())),
                )
            }
        })
        .await;
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        assert_eq!(d.recorder.total(), 50);
        assert_eq!(d.recorder.unavailable(), 5);
        assert_eq!(d.bodies[42].as_deref(), Some(&b"42"[..]));
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_measures_from_the_schedule_not_the_send() {
        // 10 arrivals at 100/s; every request takes 1 s. In open loop they all overlap, so the
        // whole phase lasts about 1.09 s, not 10 s as a closed loop of one would.
        let schedule = Schedule::new(100.0, Duration::from_millis(100)).unwrap();
        let d = open_loop(schedule, &ProgressBar::hidden(), |_| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            (Outcome::Status(200), None)
        })
        .await;
        assert_eq!(d.recorder.total(), 10);
        assert!(d.elapsed < Duration::from_secs(2), "{:?}", d.elapsed);
        let s = d.recorder.summary(d.elapsed);
        assert!(s.latency_good.p50_ms >= 999.0, "{:?}", s.latency_good);
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeline_keeps_each_requests_due_time_lag_latency_and_status() {
        // Three arrivals at 10/s: the second answers 503, the third gets no answer; each
        // takes 30 ms in the request itself.
        let schedule = Schedule::new(10.0, Duration::from_millis(300)).unwrap();
        let d = open_loop(schedule, &ProgressBar::hidden(), |i| async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let outcome = match i {
                0 => Outcome::Status(200),
                1 => Outcome::Status(503),
                _ => Outcome::Transport,
            };
            (outcome, None)
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timeline.csv");
        write_timeline(&path, &d.timeline).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
        assert_eq!(lines[0], ["due_ms", "start_lag_ms", "latency_ms", "status"]);
        assert_eq!(lines.len(), 4, "{text}");
        for (i, (row, status)) in lines[1..].iter().zip(["200", "503", "0"]).enumerate() {
            let due: f64 = row[0].parse().unwrap();
            let lag: f64 = row[1].parse().unwrap();
            let took: f64 = row[2].parse().unwrap();
            assert_eq!(due, 100.0 * i as f64, "{text}");
            assert!(lag < 1.0, "{text}");
            assert!((30.0..31.0).contains(&took), "{text}");
            assert_eq!(row[3], status, "{text}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_keeps_going_when_answers_are_slow() {
        // A server that never answers faster than the arrival interval must not slow the
        // arrivals down: all 20 are sent within the 0.2 s window.
        let schedule = Schedule::new(100.0, Duration::from_millis(200)).unwrap();
        let sent = Arc::new(AtomicUsize::new(0));
        let s2 = sent.clone();
        let t0 = Instant::now();
        let d = open_loop(schedule, &ProgressBar::hidden(), move |_| {
            let s = s2.clone();
            async move {
                s.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(5)).await;
                (Outcome::Status(503), None)
            }
        })
        .await;
        assert_eq!(sent.load(Ordering::Relaxed), 20);
        assert_eq!(d.recorder.unavailable(), 20);
        assert!(t0.elapsed() < Duration::from_secs(6));
    }
}
