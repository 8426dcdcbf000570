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
    /// Requests per minute, sustained.
    pub per_minute: NonZeroU32,
    /// Requests that may arrive at once after a quiet period.
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// `per_minute` sustained with a burst of the same size as one second's worth (at least 1).
    pub fn per_minute(per_minute: NonZeroU32) -> Self {
        let burst = NonZeroU32::new(per_minute.get().div_ceil(60)).unwrap_or(NonZeroU32::MIN);
        Self { per_minute, burst }
    }

    fn quota(self) -> Quota {
        Quota::per_minute(self.per_minute).allow_burst(self.burst)
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
            per_minute: nz(60),
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
            per_minute: nz(1),
            burst: nz(1),
        };
        assert!(r.check("m", Some(tight)).is_ok());
        assert!(r.check("m", Some(tight)).is_err());
        let loose = RateLimit {
            per_minute: nz(6000),
            burst: nz(100),
        };
        assert!(r.check("m", Some(loose)).is_ok());
    }

    #[test]
    fn per_minute_derives_a_burst() {
        assert_eq!(RateLimit::per_minute(nz(600)).burst.get(), 10);
        assert_eq!(RateLimit::per_minute(nz(5)).burst.get(), 1);
    }
}
