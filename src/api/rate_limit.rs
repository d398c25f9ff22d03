//! `rate_limit_per_minute` of API keys (SPEC §4): `429 rate_limited` with `Retry-After`.
//!
//! Counted per node, in memory (SPEC §1: N nodes allow N × the limit). Each limited key holds
//! one number, its theoretical arrival time (the generic cell rate algorithm): requests are
//! spaced `60 s / limit` apart on average, and up to `limit` may come at once after a quiet
//! minute. Written here rather than with the `governor` crate because every key has its own
//! quota (governor's keyed limiter shares one) and the answer needs the wait in seconds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Keys are forgotten this long after their last request (their state is back to "quiet").
const FORGET_AFTER_SECS: f64 = 120.0;

pub struct RateLimiter {
    started: Instant,
    /// Key id → theoretical arrival time, in seconds since `started`.
    tat: Mutex<HashMap<String, f64>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new()
    }
}

impl RateLimiter {
    pub fn new() -> RateLimiter {
        RateLimiter {
            started: Instant::now(),
            tat: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request of `key_id` against `per_minute`; `Err(seconds)` to wait when over.
    pub fn check(&self, key_id: &str, per_minute: u32) -> Result<(), u64> {
        let now = self.started.elapsed().as_secs_f64();
        self.check_at(key_id, per_minute, now)
    }

    fn check_at(&self, key_id: &str, per_minute: u32, now: f64) -> Result<(), u64> {
        let interval = 60.0 / f64::from(per_minute.max(1));
        let tolerance = 60.0 - interval;
        let mut map = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, tat| *tat > now - FORGET_AFTER_SECS);
        }
        let tat = map.get(key_id).copied().unwrap_or(now).max(now);
        if tat - now > tolerance {
            return Err((tat - now - tolerance).ceil().max(1.0) as u64);
        }
        map.insert(key_id.to_string(), tat + interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_of_requests_may_come_at_once_then_they_are_spaced() {
        let r = RateLimiter::new();
        for _ in 0..3 {
            assert_eq!(r.check_at("k", 3, 0.0), Ok(()));
        }
        assert_eq!(
            r.check_at("k", 3, 0.0),
            Err(20),
            "the next slot is 20 s away"
        );
        assert_eq!(
            r.check_at("other", 3, 0.0),
            Ok(()),
            "keys are counted apart"
        );
        assert_eq!(r.check_at("k", 3, 19.5), Err(1));
        assert_eq!(r.check_at("k", 3, 20.0), Ok(()), "one slot came back");
        assert_eq!(r.check_at("k", 3, 20.0), Err(20));
        assert_eq!(
            r.check_at("k", 3, 200.0),
            Ok(()),
            "a quiet spell restores the burst"
        );
        assert_eq!(r.check_at("k", 3, 200.0), Ok(()));
        assert_eq!(r.check_at("k", 3, 200.0), Ok(()));
        assert!(r.check_at("k", 3, 200.0).is_err());
    }
}
