//! The open-loop arrival schedule: request `i` is due at `start + i / rate`, whatever happened
//! to the requests before it.
//!
//! Latency in open loop is measured from the *scheduled* time, not from when the client got
//! around to sending, so a server (or a client) that falls behind shows up as queueing delay
//! instead of silently lowering the offered load (coordinated omission).

use std::time::Duration;

/// A constant-rate schedule of `count` arrivals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate: f64,
    count: u64,
}

/// Why a schedule could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The rate is zero, negative or not a number.
    #[error("rate must be a positive number of requests per second")]
    BadRate,
    /// The duration is zero.
    #[error("duration must be positive")]
    BadDuration,
}

impl Schedule {
    /// `rate` requests per second for `duration`: `ceil(rate * duration)` arrivals, at least 1.
    pub fn new(rate: f64, duration: Duration) -> Result<Schedule, ScheduleError> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(ScheduleError::BadRate);
        }
        if duration.is_zero() {
            return Err(ScheduleError::BadDuration);
        }
        let count = (rate * duration.as_secs_f64()).ceil().max(1.0) as u64;
        Ok(Schedule { rate, count })
    }

    /// Arrivals in the schedule.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// When arrival `i` is due, as an offset from the start. Computed from `i` directly (not
    /// by adding intervals), so rounding never accumulates.
    pub fn offset(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_covers_rate_times_duration() {
        let s = Schedule::new(100.0, Duration::from_secs(5)).unwrap();
        assert_eq!(s.count(), 500);
        let s = Schedule::new(2.5, Duration::from_secs(1)).unwrap();
        assert_eq!(s.count(), 3);
        let s = Schedule::new(0.1, Duration::from_secs(1)).unwrap();
        assert_eq!(s.count(), 1);
    }

    #[test]
    fn offsets_are_evenly_spaced_without_drift() {
        let s = Schedule::new(3.0, Duration::from_secs(1000)).unwrap();
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(3), Duration::from_secs(1));
        // Far into the schedule the offset is still exact to the nanosecond grid.
        let far = s.offset(2_999_999);
        let want = Duration::from_secs_f64(2_999_999.0 / 3.0);
        assert_eq!(far, want);
        for i in 1..100 {
            assert!(s.offset(i) > s.offset(i - 1));
        }
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert_eq!(
            Schedule::new(0.0, Duration::from_secs(1)),
            Err(ScheduleError::BadRate)
        );
        assert_eq!(
            Schedule::new(f64::NAN, Duration::from_secs(1)),
            Err(ScheduleError::BadRate)
        );
        assert_eq!(
            Schedule::new(-5.0, Duration::from_secs(1)),
            Err(ScheduleError::BadRate)
        );
        assert_eq!(
            Schedule::new(5.0, Duration::ZERO),
            Err(ScheduleError::BadDuration)
        );
    }
}
