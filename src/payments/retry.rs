//! Exponential backoff with full jitter, bounded in attempts and in total time.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// No new attempt starts once this much time has gone by.
    pub total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(2),
            total: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// Sleep before attempt `attempt + 1` (attempt counts from 1): uniform in [0, min(cap, base·2^(attempt-1))].
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let ceiling = exp.min(self.cap);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_the_capped_exponential() {
        let p = RetryPolicy::default();
        for attempt in 1..10 {
            let ceiling = (p.base * 2u32.pow(attempt - 1)).min(p.cap);
            for _ in 0..50 {
                assert!(p.backoff(attempt) <= ceiling);
            }
        }
    }
}
