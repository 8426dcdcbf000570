//! Latency and outcome bookkeeping for one timed phase: a histogram of latencies, counts by
//! HTTP status (503 kept apart from other failures), transport errors, and the summary that
//! is printed and serialised with `--json`.
//!
//! Latencies are recorded in microseconds in an HDR histogram (3 significant digits), so a
//! percentile is exact to 0.1 % whatever the run length. Only answers that count as *good*
//! (status 200/201) go into the "accepted" histogram; every answer also goes into the "all"
//! histogram, so the p99 of accepted requests under overload is not diluted by fast 503s.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms track (longer ones are clamped to it): 10 minutes.
const MAX_LATENCY_US: u64 = 600_000_000;

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer with this status.
    Status(u16),
    /// No HTTP answer: connect failure, reset, client timeout.
    Transport,
}

impl Outcome {
    /// Whether the request did what it was for (200 or 201).
    pub fn is_good(self) -> bool {
        matches!(self, Outcome::Status(200 | 201))
    }
}

/// Collects outcomes and latencies of one phase.
#[derive(Debug, Clone)]
pub struct Recorder {
    all: Histogram<u64>,
    good: Histogram<u64>,
    rejected: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LATENCY_US)
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Recorder {
            all: histogram(),
            good: histogram(),
            rejected: histogram(),
            statuses: BTreeMap::new(),
            transport_errors: 0,
        }
    }

    /// Records one request's outcome and latency.
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        let us = micros(latency);
        self.all.saturating_record(us);
        match outcome {
            Outcome::Status(s) => {
                *self.statuses.entry(s).or_default() += 1;
                if outcome.is_good() {
                    self.good.saturating_record(us);
                } else if s == 503 {
                    self.rejected.saturating_record(us);
                }
            }
            Outcome::Transport => self.transport_errors += 1,
        }
    }

    /// Adds another recorder's data (one recorder per task, merged at the end).
    pub fn merge(&mut self, other: &Recorder) {
        self.all.add(&other.all).expect("same bounds");
        self.good.add(&other.good).expect("same bounds");
        self.rejected.add(&other.rejected).expect("same bounds");
        for (s, n) in &other.statuses {
            *self.statuses.entry(*s).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
    }

    /// Requests recorded.
    pub fn total(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.transport_errors
    }

    /// Requests answered 200/201.
    pub fn good(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| Outcome::Status(**s).is_good())
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests answered 503.
    pub fn unavailable(&self) -> u64 {
        self.statuses.get(&503).copied().unwrap_or(0)
    }

    /// Requests that neither succeeded nor got a 503: other statuses and transport errors.
    pub fn failed(&self) -> u64 {
        self.total() - self.good() - self.unavailable()
    }

    /// The summary of this phase, with `elapsed` as its wall-clock duration.
    pub fn summary(&self, elapsed: Duration) -> Summary {
        let secs = elapsed.as_secs_f64();
        let rate = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        Summary {
            requests: self.total(),
            good: self.good(),
            unavailable_503: self.unavailable(),
            failed: self.failed(),
            transport_errors: self.transport_errors,
            statuses: self
                .statuses
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
            elapsed_s: secs,
            good_per_s: rate(self.good()),
            requests_per_s: rate(self.total()),
            unavailable_share: if self.total() == 0 {
                0.0
            } else {
                self.unavailable() as f64 / self.total() as f64
            },
            latency_good: Percentiles::of(&self.good),
            latency_all: Percentiles::of(&self.all),
            latency_503: Percentiles::of(&self.rejected),
        }
    }
}

/// Latency percentiles in milliseconds (all zero when nothing was recorded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// The result of one timed phase.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Requests sent.
    pub requests: u64,
    /// Answered 200/201.
    pub good: u64,
    /// Answered 503 (load shed, rate limit, HSM unavailable).
    pub unavailable_503: u64,
    /// Anything else: other statuses and transport errors.
    pub failed: u64,
    /// Requests without an HTTP answer.
    pub transport_errors: u64,
    /// Count per HTTP status.
    pub statuses: BTreeMap<String, u64>,
    /// Wall-clock length of the phase.
    pub elapsed_s: f64,
    /// Good answers per second (goodput; for serials: serials/s).
    pub good_per_s: f64,
    /// Requests per second sent and answered.
    pub requests_per_s: f64,
    /// Share of requests answered 503.
    pub unavailable_share: f64,
    /// Latency of the good answers.
    pub latency_good: Percentiles,
    /// Latency of every answer.
    pub latency_all: Percentiles,
    /// Latency of the 503 answers (how quickly excess load is shed).
    pub latency_503: Percentiles,
}

impl Summary {
    /// Human-readable lines, one figure per line, under `title`.
    pub fn render(&self, title: &str) -> String {
        let p = |p: &Percentiles| {
            format!(
                "p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (n={})",
                p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms, p.count
            )
        };
        let statuses = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut out = format!(
            "{title}\n  requests {}  good {}  503 {} ({:.1} %)  failed {}  (transport errors {})\n  \
             statuses: {}\n  elapsed {:.2} s  good/s {:.1}  requests/s {:.1}\n  \
             latency (good): {}\n",
            self.requests,
            self.good,
            self.unavailable_503,
            self.unavailable_share * 100.0,
            self.failed,
            self.transport_errors,
            if statuses.is_empty() {
                "-".into()
            } else {
                statuses
            },
            self.elapsed_s,
            self.good_per_s,
            self.requests_per_s,
            p(&self.latency_good),
        );
        if self.unavailable_503 > 0 {
            out.push_str(&format!("  latency (503): {}\n", p(&self.latency_503)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut r = Recorder::new();
        for i in 1..=100 {
            r.record(Outcome::Status(200), ms(i));
        }
        let s = r.summary(Duration::from_secs(2));
        assert_eq!(s.requests, 100);
        assert_eq!(s.good, 100);
        // 3 significant digits: within 0.1 %.
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 0.001;
        assert!(close(s.latency_good.p50_ms, 50.0), "{:?}", s.latency_good);
        assert!(close(s.latency_good.p90_ms, 90.0), "{:?}", s.latency_good);
        assert!(close(s.latency_good.p99_ms, 99.0), "{:?}", s.latency_good);
        assert!(close(s.latency_good.max_ms, 100.0), "{:?}", s.latency_good);
        assert!((s.good_per_s - 50.0).abs() < 1e-9);
    }

    #[test]
    fn statuses_are_counted_apart_and_503_is_not_a_failure() {
        let mut r = Recorder::new();
        r.record(Outcome::Status(200), ms(10));
        r.record(Outcome::Status(201), ms(10));
        r.record(Outcome::Status(503), ms(1));
        r.record(Outcome::Status(503), ms(1));
        r.record(Outcome::Status(400), ms(1));
        r.record(Outcome::Transport, ms(1));
        let s = r.summary(Duration::from_secs(1));
        assert_eq!(s.requests, 6);
        assert_eq!(s.good, 2);
        assert_eq!(s.unavailable_503, 2);
        assert_eq!(s.failed, 2);
        assert_eq!(s.transport_errors, 1);
        assert_eq!(s.statuses.get("503"), Some(&2));
        assert_eq!(s.statuses.get("400"), Some(&1));
        assert!((s.unavailable_share - 2.0 / 6.0).abs() < 1e-9);
        // The fast 503s are not in the accepted latencies.
        assert_eq!(s.latency_good.count, 2);
        assert!(s.latency_good.p50_ms >= 9.9);
        assert_eq!(s.latency_503.count, 2);
        assert_eq!(s.latency_all.count, 6);
    }

    #[test]
    fn merging_adds_everything() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        a.record(Outcome::Status(200), ms(5));
        b.record(Outcome::Status(200), ms(500));
        b.record(Outcome::Transport, ms(1));
        a.merge(&b);
        let s = a.summary(Duration::from_secs(1));
        assert_eq!(s.requests, 3);
        assert_eq!(s.good, 2);
        assert!(s.latency_good.max_ms >= 499.0);
    }

    #[test]
    fn empty_summary_is_all_zero() {
        let s = Recorder::new().summary(Duration::ZERO);
        assert_eq!(s.requests, 0);
        assert_eq!(s.good_per_s, 0.0);
        assert_eq!(s.latency_good, Percentiles::default());
    }

    #[test]
    fn extreme_latencies_are_clamped_not_lost() {
        let mut r = Recorder::new();
        r.record(Outcome::Status(200), Duration::ZERO);
        r.record(Outcome::Status(200), Duration::from_secs(100_000));
        let s = r.summary(Duration::from_secs(1));
        assert_eq!(s.latency_good.count, 2);
        assert!(s.latency_good.max_ms >= 599_000.0);
    }
}
