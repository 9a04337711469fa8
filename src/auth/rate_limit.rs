//! Request rate limits, shared by every server process through Redis.
//!
//! - The general limit (`EF__RATE_LIMIT_DEFAULT`, e.g. `100/minute`) is a sliding window: at most N
//!   requests in any window, per user when authenticated and per client IP otherwise. It is
//!   exact — the N+1st request inside the window gets 429 — and does not allow the 2N bursts of a
//!   fixed window at its boundary.
//! - Login failures have their own, stricter rule: 5 failures within a minute (per identifier and
//!   per IP) lock that identifier or IP out, for 1 minute the first time and twice as long each
//!   further time within a day (up to an hour).
//!
//! While Redis is down the same rules run in this process's memory (fail-soft: limits then hold
//! per process instead of across them), so an outage neither opens the door to brute force nor
//! locks everyone out.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::RateLimit;
use crate::redis::Redis;

/// The outcome of one rate-limit check, with what the `X-RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the next request would be allowed (0 when it already is).
    pub retry_after: Duration,
    /// Until the window has room for a full burst again.
    pub reset: Duration,
}

/// A sliding-window log: each request is a member scored by the server's clock, in milliseconds.
const SLIDING_WINDOW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  count = count + 1
  allowed = 1
end
redis.call('PEXPIRE', KEYS[1], window)
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local reset = 0
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
return {allowed, count, reset}
";

/// Bound on keys kept by the in-memory fallback (oldest are dropped first).
const MEMORY_MAX_KEYS: usize = 100_000;

#[derive(Default)]
struct Memory {
    windows: HashMap<String, VecDeque<Instant>>,
    order: VecDeque<String>,
}

impl Memory {
    fn check(&mut self, key: &str, limit: u32, window: Duration) -> Decision {
        let now = Instant::now();
        if !self.windows.contains_key(key) {
            if self.windows.len() >= MEMORY_MAX_KEYS {
                while let Some(old) = self.order.pop_front() {
                    if self.windows.remove(&old).is_some() {
                        break;
                    }
                }
            }
            self.order.push_back(key.to_owned());
        }
        let log = self.windows.entry(key.to_owned()).or_default();
        while log
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            log.pop_front();
        }
        let allowed = (log.len() as u32) < limit;
        if allowed {
            log.push_back(now);
        }
        let reset = log
            .front()
            .map(|t| window.saturating_sub(now.duration_since(*t)))
            .unwrap_or_default();
        decision(allowed, log.len() as u32, limit, reset)
    }
}

fn decision(allowed: bool, count: u32, limit: u32, reset: Duration) -> Decision {
    Decision {
        allowed,
        limit,
        remaining: limit.saturating_sub(count),
        retry_after: if allowed { Duration::ZERO } else { reset },
        reset,
    }
}

#[derive(Clone)]
pub struct RateLimiter {
    redis: Arc<Redis>,
    rule: RateLimit,
    memory: Arc<Mutex<Memory>>,
    script: Arc<redis::Script>,
}

impl RateLimiter {
    pub fn new(redis: Arc<Redis>, rule: RateLimit) -> Self {
        RateLimiter {
            redis,
            rule,
            memory: Arc::new(Mutex::new(Memory::default())),
            script: Arc::new(redis::Script::new(SLIDING_WINDOW)),
        }
    }

    pub fn rule(&self) -> RateLimit {
        self.rule
    }

    /// Count one request for `subject` (e.g. `user:42`, `ip:203.0.113.9`).
    pub async fn check(&self, subject: &str) -> Decision {
        let key = self.redis.key(&format!("rl:{subject}"));
        let window_ms = self.rule.per.as_millis() as u64;
        let member = format!("{}-{}", uuid::Uuid::new_v4().simple(), window_ms);
        match self.run_script(&key, window_ms, &member).await {
            Ok((allowed, count, reset_ms)) => decision(
                allowed == 1,
                count.max(0) as u32,
                self.rule.requests,
                Duration::from_millis(reset_ms.max(0) as u64),
            ),
            Err(_) => match self.memory.lock() {
                Ok(mut m) => m.check(&key, self.rule.requests, self.rule.per),
                Err(_) => decision(true, 0, self.rule.requests, Duration::ZERO),
            },
        }
    }

    async fn run_script(
        &self,
        key: &str,
        window_ms: u64,
        member: &str,
    ) -> Result<(i64, i64, i64), crate::redis::RedisError> {
        let mut conn = self.redis.conn().await?;
        let mut inv = self.script.key(key);
        inv.arg(window_ms).arg(self.rule.requests).arg(member);
        let r = tokio::time::timeout(Duration::from_secs(2), inv.invoke_async(&mut *conn)).await;
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(crate::redis::RedisError::Command(e)),
            Err(_) => Err(crate::redis::RedisError::Timeout(Duration::from_secs(2))),
        }
    }
}

// ----------------------------------------------------------------------------------------------

/// Failures within this window count towards a lockout.
const LOGIN_WINDOW: Duration = Duration::from_secs(60);
pub const LOGIN_MAX_FAILURES: u32 = 5;
const FIRST_LOCKOUT: Duration = Duration::from_secs(60);
const MAX_LOCKOUT: Duration = Duration::from_secs(3600);
/// Lockouts are remembered this long to make the next one longer.
const LOCKOUT_MEMORY: Duration = Duration::from_secs(86_400);

/// Record a failure; lock when the window's count reaches the maximum. Returns the lock's TTL in
/// milliseconds (0 when not locked).
const LOGIN_FAILURE: &str = r"
local fails = redis.call('INCR', KEYS[1])
if fails == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if fails >= tonumber(ARGV[2]) then
  local n = redis.call('INCR', KEYS[3])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
  local ms = tonumber(ARGV[3]) * (2 ^ (n - 1))
  if ms > tonumber(ARGV[4]) then ms = tonumber(ARGV[4]) end
  redis.call('SET', KEYS[2], '1', 'PX', math.floor(ms))
  redis.call('DEL', KEYS[1])
  return math.floor(ms)
end
return 0
";

#[derive(Default)]
struct MemoryLocks {
    fails: HashMap<String, (u32, Instant)>,
    locks: HashMap<String, Instant>,
    lockouts: HashMap<String, (u32, Instant)>,
}

#[derive(Clone)]
pub struct LoginLimiter {
    redis: Arc<Redis>,
    memory: Arc<Mutex<MemoryLocks>>,
    script: Arc<redis::Script>,
}

impl LoginLimiter {
    pub fn new(redis: Arc<Redis>) -> Self {
        LoginLimiter {
            redis,
            memory: Arc::new(Mutex::new(MemoryLocks::default())),
            script: Arc::new(redis::Script::new(LOGIN_FAILURE)),
        }
    }

    fn subjects(ip: &str, identifier: &str) -> [String; 2] {
        [
            format!("ip:{ip}"),
            format!("id:{}", identifier.trim().to_lowercase()),
        ]
    }

    /// How long login stays locked for this IP or identifier (the longer of the two), if at all.
    pub async fn locked_for(&self, ip: &str, identifier: &str) -> Option<Duration> {
        let keys: Vec<String> = Self::subjects(ip, identifier)
            .iter()
            .map(|s| self.redis.key(&format!("login_lock:{s}")))
            .collect();
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("PTTL").arg(k);
        }
        match self.redis.pipeline::<Vec<i64>>(&pipe).await {
            Ok(ttls) => ttls
                .into_iter()
                .filter(|t| *t > 0)
                .max()
                .map(|ms| Duration::from_millis(ms as u64)),
            Err(_) => {
                let m = self.memory.lock().ok()?;
                keys.iter()
                    .filter_map(|k| m.locks.get(k))
                    .filter_map(|until| until.checked_duration_since(Instant::now()))
                    .max()
            }
        }
    }

    /// Count a failed login; returns the new lockout when this failure caused one.
    pub async fn failed(&self, ip: &str, identifier: &str) -> Option<Duration> {
        let mut locked = None;
        for s in Self::subjects(ip, identifier) {
            let keys = [
                self.redis.key(&format!("login_fail:{s}")),
                self.redis.key(&format!("login_lock:{s}")),
                self.redis.key(&format!("login_lockouts:{s}")),
            ];
            let ms = match self.record_failure(&keys).await {
                Ok(ms) => ms,
                Err(_) => self.record_failure_in_memory(&keys),
            };
            if ms > 0 {
                let d = Duration::from_millis(ms as u64);
                locked = Some(locked.map_or(d, |l: Duration| l.max(d)));
            }
        }
        locked
    }

    async fn record_failure(&self, keys: &[String; 3]) -> Result<i64, crate::redis::RedisError> {
        let mut conn = self.redis.conn().await?;
        let mut inv = self.script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        inv.arg(LOGIN_WINDOW.as_millis() as u64)
            .arg(LOGIN_MAX_FAILURES)
            .arg(FIRST_LOCKOUT.as_millis() as u64)
            .arg(MAX_LOCKOUT.as_millis() as u64)
            .arg(LOCKOUT_MEMORY.as_millis() as u64);
        match tokio::time::timeout(Duration::from_secs(2), inv.invoke_async(&mut *conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(crate::redis::RedisError::Command(e)),
            Err(_) => Err(crate::redis::RedisError::Timeout(Duration::from_secs(2))),
        }
    }

    fn record_failure_in_memory(&self, keys: &[String; 3]) -> i64 {
        let Ok(mut m) = self.memory.lock() else {
            return 0;
        };
        let now = Instant::now();
        let entry = m.fails.entry(keys[0].clone()).or_insert((0, now));
        if now.duration_since(entry.1) >= LOGIN_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
        if entry.0 < LOGIN_MAX_FAILURES {
            return 0;
        }
        m.fails.remove(&keys[0]);
        let lockouts = m.lockouts.entry(keys[2].clone()).or_insert((0, now));
        if now.duration_since(lockouts.1) >= LOCKOUT_MEMORY {
            *lockouts = (0, now);
        }
        lockouts.0 += 1;
        let factor = 2u32.saturating_pow(lockouts.0.saturating_sub(1));
        let d = FIRST_LOCKOUT.saturating_mul(factor).min(MAX_LOCKOUT);
        m.locks.insert(keys[1].clone(), now + d);
        // Keep the maps bounded.
        if m.fails.len() > MEMORY_MAX_KEYS {
            m.fails.clear();
        }
        m.locks.retain(|_, until| *until > now);
        d.as_millis() as i64
    }

    /// A good login clears the failure counts (not the memory of past lockouts).
    pub async fn succeeded(&self, ip: &str, identifier: &str) {
        let keys: Vec<String> = Self::subjects(ip, identifier)
            .iter()
            .map(|s| self.redis.key(&format!("login_fail:{s}")))
            .collect();
        let r: Result<(), _> = self.redis.query(redis::cmd("DEL").arg(&keys)).await;
        if r.is_err()
            && let Ok(mut m) = self.memory.lock()
        {
            for k in &keys {
                m.fails.remove(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_window_is_exact() {
        let mut m = Memory::default();
        let w = Duration::from_secs(60);
        for i in 0..3 {
            let d = m.check("k", 3, w);
            assert!(d.allowed, "{i}");
            assert_eq!(d.remaining, 2 - i);
        }
        let d = m.check("k", 3, w);
        assert!(!d.allowed);
        assert!(d.retry_after > Duration::from_secs(59));
        assert!(m.check("other", 3, w).allowed);
    }
}
