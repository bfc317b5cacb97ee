//! Rate limits per agent (`[ingest.rate_limit]`): a token bucket of
//! requests and one of events for each agent identity — its client
//! certificate's name over mutual TLS, else the `agent_id` its batches
//! carry. A batch over either limit is refused with 429 and a `Retry-After`
//! saying when the bucket will hold it; the agent waits that long and sends
//! it again, so nothing is lost, only slowed.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `[ingest.rate_limit]`; 0 turns a limit off (the default).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Batches (requests) per second per agent. Default 0: no limit.
    #[serde(default)]
    pub requests_per_sec: f64,
    /// Events per second per agent. Default 0: no limit.
    #[serde(default)]
    pub events_per_sec: f64,
    /// Seconds of the rate a bucket holds: how large a burst passes after
    /// a quiet spell. Default 2.
    #[serde(default = "RateLimitConfig::default_burst_secs")]
    pub burst_secs: f64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            requests_per_sec: 0.0,
            events_per_sec: 0.0,
            burst_secs: Self::default_burst_secs(),
        }
    }
}

impl Eq for RateLimitConfig {}

impl RateLimitConfig {
    const fn default_burst_secs() -> f64 {
        2.0
    }

    /// Whether any limit is on.
    pub fn is_on(&self) -> bool {
        self.requests_per_sec > 0.0 || self.events_per_sec > 0.0
    }

    pub fn validate(&self) -> Result<(), String> {
        let finite = |v: f64| v.is_finite() && v >= 0.0;
        if !finite(self.requests_per_sec) || !finite(self.events_per_sec) {
            return Err("[ingest.rate_limit] rates must be 0 (off) or positive".into());
        }
        if !(self.burst_secs.is_finite() && self.burst_secs > 0.0) {
            return Err("[ingest.rate_limit] burst_secs must be positive".into());
        }
        Ok(())
    }
}

/// One token bucket: `rate` a second, holding at most `rate × burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: f64, burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: rate * burst,
            at: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate * burst);
        self.at = now;
    }

    /// How long until `n` can be taken: zero when it can now. A cost larger
    /// than the bucket holds passes when the bucket is full, leaving a debt
    /// the rate pays back, so a large batch is slowed, never refused forever.
    fn wait(&self, n: f64, rate: f64, burst: f64) -> Duration {
        let need = n.min(rate * burst);
        if self.tokens >= need {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((need - self.tokens) / rate)
        }
    }
}

/// The buckets of one agent.
#[derive(Debug, Clone, Copy)]
struct Buckets {
    requests: Bucket,
    events: Bucket,
}

/// Agents whose buckets are kept at most; past it, those full again (idle
/// long enough to have refilled) are forgotten.
const MAX_AGENTS: usize = 16_384;

/// The limiter shared by the ingest handlers.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    agents: Mutex<HashMap<String, Buckets>>,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> RateLimiter {
        RateLimiter {
            config,
            agents: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request and `events` events from `agent`'s buckets, or
    /// says how long to wait (nothing is taken then).
    pub fn take(&self, agent: &str, events: u64, now: Instant) -> Result<(), Duration> {
        let c = &self.config;
        if !c.is_on() {
            return Ok(());
        }
        let (rr, er, burst) = (c.requests_per_sec, c.events_per_sec, c.burst_secs);
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        if agents.len() >= MAX_AGENTS && !agents.contains_key(agent) {
            agents.retain(|_, b| {
                let mut b = *b;
                b.requests.refill(rr, burst, now);
                b.events.refill(er, burst, now);
                (rr > 0.0 && b.requests.tokens < rr * burst)
                    || (er > 0.0 && b.events.tokens < er * burst)
            });
        }
        let b = agents.entry(agent.to_owned()).or_insert_with(|| Buckets {
            requests: Bucket::full(rr, burst, now),
            events: Bucket::full(er, burst, now),
        });
        let mut wait = Duration::ZERO;
        if rr > 0.0 {
            b.requests.refill(rr, burst, now);
            wait = wait.max(b.requests.wait(1.0, rr, burst));
        }
        if er > 0.0 {
            b.events.refill(er, burst, now);
            wait = wait.max(b.events.wait(events as f64, er, burst));
        }
        if wait > Duration::ZERO {
            return Err(wait);
        }
        if rr > 0.0 {
            b.requests.tokens -= 1.0;
        }
        if er > 0.0 {
            b.events.tokens -= events as f64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(requests: f64, events: f64) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            requests_per_sec: requests,
            events_per_sec: events,
            burst_secs: 2.0,
        })
    }

    #[test]
    fn off_by_default() {
        let l = RateLimiter::new(RateLimitConfig::default());
        let now = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(l.take("a", 1_000_000, now), Ok(()));
        }
    }

    #[test]
    fn a_burst_passes_then_the_rate_and_each_agent_has_its_own() {
        let l = limiter(5.0, 0.0);
        let t0 = Instant::now();
        // The bucket holds 2 s of 5 a second.
        for _ in 0..10 {
            assert_eq!(l.take("a", 1, t0), Ok(()));
        }
        assert_eq!(l.take("a", 1, t0), Err(Duration::from_secs_f64(0.2)));
        assert_eq!(l.take("b", 1, t0), Ok(()), "another agent's bucket is full");
        // 200 ms later one more passes, the next waits again.
        let t1 = t0 + Duration::from_millis(200);
        assert_eq!(l.take("a", 1, t1), Ok(()));
        assert!(l.take("a", 1, t1).is_err());
        // After a quiet spell no more than the burst is saved up.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..10 {
            assert_eq!(l.take("a", 1, t2), Ok(()));
        }
        assert!(l.take("a", 1, t2).is_err());
    }

    #[test]
    fn events_are_counted_and_a_batch_larger_than_the_bucket_waits_for_a_full_one() {
        let l = limiter(0.0, 100.0);
        let t0 = Instant::now();
        assert_eq!(l.take("a", 150, t0), Ok(()));
        // 50 left: 100 more need half a second.
        assert_eq!(l.take("a", 100, t0), Err(Duration::from_millis(500)));
        // A refused batch takes nothing.
        assert_eq!(l.take("a", 50, t0), Ok(()));
        // 1,000 events, more than the 200 the bucket holds: it passes once
        // the bucket is full (2 s), and leaves a debt of 800 (8 s).
        assert_eq!(l.take("a", 1_000, t0), Err(Duration::from_secs(2)));
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(l.take("a", 1_000, t1), Ok(()));
        assert_eq!(l.take("a", 1, t1), Err(Duration::from_secs_f64(8.01)));
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = |r: f64, e: f64, b: f64| {
            RateLimitConfig {
                requests_per_sec: r,
                events_per_sec: e,
                burst_secs: b,
            }
            .validate()
            .is_err()
        };
        assert!(bad(-1.0, 0.0, 2.0));
        assert!(bad(0.0, f64::NAN, 2.0));
        assert!(bad(1.0, 1.0, 0.0));
        assert!(!bad(1.0, 1.0, 0.5));
    }
}
