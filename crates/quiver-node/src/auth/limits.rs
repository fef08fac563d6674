//! Per-caller limits (`[limits]`): a token bucket of requests per caller, refilled at
//! `requests_per_sec` up to `burst`, and a cap on one request's size. Kept per node: a
//! client spreading its requests over n nodes gets up to n times the rate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use quiver_core::Error as CoreError;

use quiver_store::config::LimitsConfig;

pub struct Limits {
    config: LimitsConfig,
    /// Per caller: requests it may still send now, and when that was computed.
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Limits {
    pub fn new(config: LimitsConfig) -> Limits {
        Limits { config, buckets: Mutex::new(HashMap::new()) }
    }

    /// `TooLarge` when a request of `caller` (`bytes` long, measured only under a cap) is
    /// over the size cap.
    pub fn size(&self, caller: &str, bytes: impl FnOnce() -> usize) -> Result<(), CoreError> {
        let max = self.config.max_request_bytes;
        if max > 0
            && let bytes = bytes()
            && bytes as u64 > max
        {
            return Err(CoreError::TooLarge(format!(
                "a request of {bytes} bytes from '{caller}'; the limit is {max} bytes ([limits] max_request_bytes)"
            )));
        }
        Ok(())
    }

    /// Takes one request of `caller` at `now`; `RateLimited` when the caller is over its rate.
    pub fn rate(&self, caller: &str, now: Instant) -> Result<(), CoreError> {
        let rate = f64::from(self.config.requests_per_sec);
        if rate == 0.0 {
            return Ok(());
        }
        let burst = f64::from(self.config.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (left, at) = buckets.entry(caller.to_string()).or_insert((burst, now));
        *left = (*left + now.saturating_duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *left >= 1.0 {
            *left -= 1.0;
            return Ok(());
        }
        let retry_after_ms = ((1.0 - *left) / rate * 1000.0).ceil() as u64;
        Err(CoreError::RateLimited {
            reason: format!(
                "'{caller}' is over {} requests/s ([limits] requests_per_sec)",
                self.config.requests_per_sec
            ),
            retry_after_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_caller_gets_its_burst_then_its_rate_and_others_are_not_slowed() {
        let limits = Limits::new(LimitsConfig { requests_per_sec: 10, burst: 3, max_request_bytes: 0 });
        let t0 = Instant::now();
        for _ in 0..3 {
            limits.rate("a", t0).unwrap();
        }
        let err = limits.rate("a", t0).unwrap_err();
        assert!(matches!(err, CoreError::RateLimited { retry_after_ms: 100, .. }), "{err:?}");
        limits.rate("b", t0).expect("another caller has its own bucket");
        limits.rate("a", t0 + Duration::from_millis(100)).expect("refilled by one after 1/rate");
        assert!(limits.rate("a", t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn a_request_over_the_size_cap_is_refused_and_no_limits_means_none() {
        let limits = Limits::new(LimitsConfig { requests_per_sec: 0, burst: 1, max_request_bytes: 100 });
        let now = Instant::now();
        assert!(matches!(limits.size("a", || 101), Err(CoreError::TooLarge(_))));
        for _ in 0..1000 {
            limits.size("a", || 100).unwrap();
            limits.rate("a", now).unwrap();
        }
    }
}
