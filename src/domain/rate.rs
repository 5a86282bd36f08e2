//! Rates as SPEC §2 writes them (`20/min`, `5/hour`, `10/sec`); `KeyedLimit`, the
//! per-key limit on requests (governor's GCRA, lock-free, so a busy credits API does not
//! queue on one mutex); and a sliding window that counts failures per key, for the one
//! limit governor cannot express: refusing the right password while an address is over
//! its failures needs a look at the count without adding to it.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub window: Duration,
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (count, unit) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("expected N/sec, N/min or N/hour, got {text:?}"))?;
        let count: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                format!("expected a positive whole number before the '/', got {text:?}")
            })?;
        let window = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => return Err(format!("unknown unit {other:?}: use sec, min or hour")),
        };
        Ok(Rate { count, window })
    }
}

/// Requests per key at `rate`: the first `count` at once, then one more each
/// `window / count` (GCRA: a bucket of `count` that refills evenly). In memory, so per
/// instance.
pub struct KeyedLimit<K: Hash + Eq + Clone> {
    limiter: governor::DefaultKeyedRateLimiter<K>,
}

impl<K: Hash + Eq + Clone> KeyedLimit<K> {
    pub fn new(rate: Rate) -> Self {
        let burst = std::num::NonZeroU32::new(rate.count).unwrap_or(std::num::NonZeroU32::MIN);
        let period = (rate.window / burst.get()).max(Duration::from_nanos(1));
        let quota = governor::Quota::with_period(period)
            .unwrap_or_else(|| governor::Quota::per_second(burst))
            .allow_burst(burst);
        KeyedLimit {
            limiter: governor::RateLimiter::keyed(quota),
        }
    }

    /// Admits one request for `key`, or says how long until one would be admitted.
    pub fn admit(&self, key: &K) -> Result<(), Duration> {
        use governor::clock::Clock;
        if self.limiter.len() >= SWEEP_AT {
            // Keys whose bucket is full again are the same as absent ones.
            self.limiter.retain_recent();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::DefaultClock::default().now())
        })
    }
}

/// Events per key within the last `rate.window`; at `rate.count` the key is over.
#[derive(Debug)]
pub struct SlidingWindow<K> {
    rate: Rate,
    seen: HashMap<K, VecDeque<Instant>>,
}

/// Keys kept before old ones are swept, so a flood of distinct keys stays bounded.
const SWEEP_AT: usize = 10_000;

impl<K: Hash + Eq + Clone> SlidingWindow<K> {
    pub fn new(rate: Rate) -> Self {
        SlidingWindow {
            rate,
            seen: HashMap::new(),
        }
    }

    /// `Some(wait)` while `key` is at its limit: how long until it is not.
    pub fn over(&mut self, key: &K, now: Instant) -> Option<Duration> {
        let window = self.rate.window;
        let times = self.seen.get_mut(key)?;
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            times.pop_front();
        }
        let over = times.len() >= self.rate.count as usize;
        over.then(|| {
            times
                .front()
                .map_or(Duration::ZERO, |t| window - now.duration_since(*t))
        })
    }

    pub fn record(&mut self, key: &K, now: Instant) {
        if self.seen.len() >= SWEEP_AT {
            let window = self.rate.window;
            self.seen.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let times = self.seen.entry(key.clone()).or_default();
        times.push_back(now);
        while times.len() > self.rate.count as usize {
            times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_keys_is_swept_down_to_those_seen_within_the_window() {
        let rate = Rate {
            count: 3,
            window: Duration::from_secs(60),
        };
        let mut w = SlidingWindow::new(rate);
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(120);
        for k in 0..SWEEP_AT - 2 {
            w.record(&k, t0);
        }
        // Exactly a window old: out of it, as `over` counts. Half a window old: in it.
        w.record(&(SWEEP_AT - 2), now - rate.window);
        w.record(&(SWEEP_AT - 1), now - rate.window / 2);
        assert_eq!(w.seen.len(), SWEEP_AT);
        w.record(&usize::MAX, now);
        let mut kept: Vec<usize> = w.seen.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, [SWEEP_AT - 1, usize::MAX]);
    }

    #[test]
    fn rates_parse_as_the_spec_writes_them() {
        assert_eq!(
            "20/min".parse::<Rate>().unwrap(),
            Rate {
                count: 20,
                window: Duration::from_secs(60)
            }
        );
        assert_eq!(
            "5/hour".parse::<Rate>().unwrap().window,
            Duration::from_secs(3600)
        );
        for bad in ["", "20", "0/min", "-1/min", "x/min", "5/day", "5/"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_keyed_limit_admits_its_count_then_says_how_long_to_wait() {
        let limit = KeyedLimit::new(Rate {
            count: 3,
            window: Duration::from_secs(60),
        });
        for i in 0..3 {
            assert_eq!(limit.admit(&"a"), Ok(()), "request {i}");
        }
        let wait = limit.admit(&"a").unwrap_err();
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "one more after window / count: {wait:?}"
        );
        assert_eq!(limit.admit(&"b"), Ok(()), "keys apart");
    }

    #[test]
    fn a_key_is_over_at_its_count_until_the_oldest_event_leaves_the_window() {
        let rate = Rate {
            count: 3,
            window: Duration::from_secs(60),
        };
        let mut w = SlidingWindow::new(rate);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(w.over(&"a", t0), None, "after {i}");
            w.record(&"a", t0 + Duration::from_secs(i));
        }
        assert_eq!(
            w.over(&"a", t0 + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(
            w.over(&"b", t0 + Duration::from_secs(10)),
            None,
            "keys apart"
        );
        assert_eq!(
            w.over(&"a", t0 + Duration::from_secs(60)),
            None,
            "the first one left"
        );
    }
}
