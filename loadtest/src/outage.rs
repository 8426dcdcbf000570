//! The outage step of an open-loop run (`run --outage-at S --outage-for S --outage-proxy PID`):
//! the `pg-proxy` between the server and Postgres is cut S seconds into phase 2 and restored
//! S seconds later (SIGUSR1 / SIGUSR2), and the report says how the server answered meanwhile
//! (every request a quick 503?) and how soon serials flowed again after Postgres was back.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::drive::Arrival;
use crate::stats::Outcome;

/// When the proxy was cut and restored, from the start of phase 2.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// The cut (SIGUSR1 sent).
    pub cut: Duration,
    /// The restore (SIGUSR2 sent).
    pub restored: Duration,
}

/// Cuts the proxy `pid` at `start + after` and restores it `length` later; the times are
/// what was sent, from `start`.
pub async fn play(
    pid: u32,
    start: Instant,
    after: Duration,
    length: Duration,
) -> Result<Window, String> {
    tokio::time::sleep_until(start + after).await;
    signal(pid, "-USR1")?;
    let cut = start.elapsed();
    tokio::time::sleep(length).await;
    signal(pid, "-USR2")?;
    Ok(Window {
        cut,
        restored: start.elapsed(),
    })
}

fn signal(pid: u32, which: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(which)
        .arg(pid.to_string())
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill {which} {pid} failed ({status})"))
    }
}

/// What the server answered while Postgres was away, and after.
#[derive(Debug, Clone, Serialize)]
pub struct OutageReport {
    /// The cut, ms from the start of phase 2.
    pub cut_at_ms: f64,
    /// The restore, ms from the start of phase 2.
    pub restored_at_ms: f64,
    /// Requests that arrived while the proxy was cut.
    pub during: usize,
    /// Their answers by status (`0`: no HTTP answer).
    pub during_statuses: BTreeMap<u16, u64>,
    /// Their answers' latency, from the scheduled arrival: p50, p99 and the longest, in ms.
    pub during_p50_ms: f64,
    /// See `during_p50_ms`.
    pub during_p99_ms: f64,
    /// See `during_p50_ms`.
    pub during_max_ms: f64,
    /// From the restore to the first serial answered after it to a request that arrived
    /// after the cut, in ms (`None`: none came).
    pub serials_again_after_ms: Option<f64>,
    /// Requests that arrived after the restore, by status.
    pub after_statuses: BTreeMap<u16, u64>,
}

impl OutageReport {
    /// Human-readable lines.
    pub fn render(&self) -> String {
        format!(
            "Postgres away from {:.0} to {:.0} ms: {} requests, statuses {:?}, p50 / p99 / max \
             {:.1} / {:.1} / {:.1} ms; serials again {} after its return; after: {:?}\n",
            self.cut_at_ms,
            self.restored_at_ms,
            self.during,
            self.during_statuses,
            self.during_p50_ms,
            self.during_p99_ms,
            self.during_max_ms,
            self.serials_again_after_ms
                .map_or("never".to_string(), |ms| format!("{ms:.0} ms")),
            self.after_statuses,
        )
    }
}

/// Reads the timeline around `w`.
pub fn report(timeline: &[Arrival], w: Window) -> OutageReport {
    let status = |o: Outcome| match o {
        Outcome::Status(s) => s,
        Outcome::Transport => 0,
    };
    let mut during_statuses = BTreeMap::new();
    let mut after_statuses = BTreeMap::new();
    let mut took: Vec<f64> = Vec::new();
    let mut again: Option<Duration> = None;
    for a in timeline {
        if a.at >= w.cut && a.at < w.restored {
            *during_statuses.entry(status(a.outcome)).or_insert(0) += 1;
            took.push(a.took.as_secs_f64() * 1000.0);
        } else if a.at >= w.restored {
            *after_statuses.entry(status(a.outcome)).or_insert(0) += 1;
        }
        let answered = a.at + a.took;
        if a.at >= w.cut && a.outcome.is_good() && answered >= w.restored {
            let since = answered - w.restored;
            again = Some(again.map_or(since, |d| d.min(since)));
        }
    }
    took.sort_by(f64::total_cmp);
    let pick = |q: f64| -> f64 {
        if took.is_empty() {
            0.0
        } else {
            took[((took.len() - 1) as f64 * q).round() as usize]
        }
    };
    OutageReport {
        cut_at_ms: w.cut.as_secs_f64() * 1000.0,
        restored_at_ms: w.restored.as_secs_f64() * 1000.0,
        during: took.len(),
        during_statuses,
        during_p50_ms: pick(0.5),
        during_p99_ms: pick(0.99),
        during_max_ms: took.last().copied().unwrap_or(0.0),
        serials_again_after_ms: again.map(|d| d.as_secs_f64() * 1000.0),
        after_statuses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(at_ms: u64, took_ms: u64, status: u16) -> Arrival {
        Arrival {
            at: Duration::from_millis(at_ms),
            took: Duration::from_millis(took_ms),
            start_lag: Duration::ZERO,
            outcome: Outcome::Status(status),
        }
    }

    #[test]
    fn the_window_splits_the_timeline_and_finds_the_first_serial_after_the_restore() {
        let w = Window {
            cut: Duration::from_millis(1000),
            restored: Duration::from_millis(2000),
        };
        let timeline = [
            arrival(900, 20, 200),   // before: not counted
            arrival(1000, 5, 503),   // during
            arrival(1500, 50, 503),  // during
            arrival(1990, 300, 200), // during, served after the restore: 290 ms after it
            arrival(2100, 10, 200),  // after: 110 ms after it
            arrival(2200, 10, 503),
        ];
        let r = report(&timeline, w);
        assert_eq!(r.during, 3);
        assert_eq!(r.during_statuses, BTreeMap::from([(200, 1), (503, 2)]));
        assert_eq!(r.during_max_ms, 300.0);
        assert_eq!(r.during_p50_ms, 50.0);
        assert_eq!(r.serials_again_after_ms, Some(110.0));
        assert_eq!(r.after_statuses, BTreeMap::from([(200, 1), (503, 1)]));
    }
}
