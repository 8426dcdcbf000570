//! Per-model token buckets (GCRA, `governor`), from each model's own rate-limit setting.
//!
//! A model without a limit is never refused here. When an admin changes a model's limit the
//! next check sees the new quota (the bucket starts full again).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::RwLock;

/// A model's rate limit: a sustained rate and a burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: NonZeroU32,
    /// Requests that may arrive at once after a quiet period.
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// `per_second` sustained, with a burst of one second's worth.
    pub fn per_second(per_second: NonZeroU32) -> Self {
        Self {
            per_second,
            burst: per_second,
        }
    }

    /// From a model's settings (`rate_limit_per_sec`, `rate_limit_burst`); `None` when the
    /// model has no limit (or a non-positive one).
    pub fn from_settings(per_sec: Option<i32>, burst: Option<i32>) -> Option<Self> {
        let per_second = NonZeroU32::new(u32::try_from(per_sec?).ok()?)?;
        let burst = burst
            .and_then(|b| u32::try_from(b).ok())
            .and_then(NonZeroU32::new)
            .unwrap_or(per_second);
        Some(Self { per_second, burst })
    }

    fn quota(self) -> Quota {
        Quota::per_second(self.per_second).allow_burst(self.burst)
    }
}

/// The per-model limiters. Cheap to share behind an `Arc`.
#[derive(Default)]
pub struct ModelRateLimits {
    limiters: RwLock<HashMap<String, (RateLimit, Arc<DefaultDirectRateLimiter>)>>,
}

impl std::fmt::Debug for ModelRateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRateLimits")
            .field("models", &self.limiters.read().len())
            .finish()
    }
}

impl ModelRateLimits {
    /// No limits yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one token from `model`'s bucket; `Err(wait)` says how long until one is free.
    /// `limit == None` means the model is not limited.
    pub fn check(&self, model: &str, limit: Option<RateLimit>) -> Result<(), Duration> {
        let Some(limit) = limit else {
            return Ok(());
        };
        let limiter = self.limiter(model, limit);
        limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    fn limiter(&self, model: &str, limit: RateLimit) -> Arc<DefaultDirectRateLimiter> {
        if let Some((l, limiter)) = self.limiters.read().get(model)
            && *l == limit
        {
            return limiter.clone();
        }
        let mut map = self.limiters.write();
        match map.get(model) {
            Some((l, limiter)) if *l == limit => limiter.clone(),
            _ => {
                let limiter = Arc::new(RateLimiter::direct(limit.quota()));
                map.insert(model.to_owned(), (limit, limiter.clone()));
                limiter
            }
        }
    }

    /// Forgets a model's bucket (model deleted).
    pub fn forget(&self, model: &str) {
        self.limiters.write().remove(model);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn unlimited_models_pass() {
        let r = ModelRateLimits::new();
        for _ in 0..1000 {
            assert!(r.check("m", None).is_ok());
        }
    }

    #[test]
    fn burst_then_refusal_with_wait() {
        let r = ModelRateLimits::new();
        let limit = RateLimit {
            per_second: nz(1),
            burst: nz(3),
        };
        for _ in 0..3 {
            assert!(r.check("m", Some(limit)).is_ok());
        }
        let wait = r.check("m", Some(limit)).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another model has its own bucket.
        assert!(r.check("other", Some(limit)).is_ok());
    }

    #[test]
    fn changed_limit_takes_effect() {
        let r = ModelRateLimits::new();
        let tight = RateLimit {
            per_second: nz(1),
            burst: nz(1),
        };
        assert!(r.check("m", Some(tight)).is_ok());
        assert!(r.check("m", Some(tight)).is_err());
        let loose = RateLimit {
            per_second: nz(100),
            burst: nz(100),
        };
        assert!(r.check("m", Some(loose)).is_ok());
    }

    #[test]
    fn from_model_settings() {
        assert_eq!(RateLimit::from_settings(None, Some(3)), None);
        assert_eq!(RateLimit::from_settings(Some(0), None), None);
        assert_eq!(
            RateLimit::from_settings(Some(5), None),
            Some(RateLimit::per_second(nz(5)))
        );
        assert_eq!(
            RateLimit::from_settings(Some(5), Some(20)).unwrap().burst,
            nz(20)
        );
    }
}
