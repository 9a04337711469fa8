//! Request rate limits, shared by every server process through Redis.
//!
//! - The general limit (`EF__RATE_LIMIT_DEFAULT`, e.g. `100/minute`) is a sliding window: at most N
//!   requests in any window, per user when authenticated and per client IP otherwise. It is
//!   exact — the N+1st request inside the window gets 429 — and does not allow the 2N bursts of a
//!   fixed window at its boundary.
//! - Login attempts have their own, stricter rules (reserved before the password is checked;
//!   hard locks per identifier and IP and per IP, a soft limit per identifier): see
//!   [`LoginLimiter`] and the comment above it.
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

/// A limit check waits at most this long for Redis (less when `EF__REDIS_TIMEOUT` is shorter)
/// before the in-memory fallback decides.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(2);

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
        // Unique per request across processes: 128 random bits from the thread's generator (a
        // v4 UUID would ask the kernel for them on every request).
        let member = format!("{:032x}-{}", rand::random::<u128>(), window_ms);
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
        let mut inv = self.script.key(key);
        inv.arg(window_ms).arg(self.rule.requests).arg(member);
        self.redis.script(&inv, SCRIPT_TIMEOUT).await
    }
}

// ----------------------------------------------------------------------------------------------
//
// Login attempts. The policy, and why:
//
// - An attempt is *reserved* before its password is checked, in one atomic step (one Redis script;
//   the in-memory fallback under one mutex), and the reservation counts as a failure until the
//   check proves otherwise. Checking first and counting afterwards let 60 parallel wrong passwords
//   through to 48 real checks: every request saw "not locked yet". Now at most
//   `PAIR_ATTEMPTS` checks per (identifier, IP) and `IP_ATTEMPTS` per IP run in any window,
//   whatever the parallelism; the rest are refused before any password work or database query.
// - The hard lock is on the (identifier, IP) pair and on the IP alone: the attacker's own address
//   is locked, for 1 minute and twice as long at each further lock within a day (up to an hour).
//   A lock is created once per window (the failure that fills the window creates it, with
//   `SET NX`), so one parallel burst is one lockout, not ten escalations in a row.
// - The identifier alone is limited only softly: `ID_ATTEMPTS` attempts a minute across all
//   addresses, after which attempts from addresses that never logged in to this account wait out
//   the minute — no lock, no escalation. Addresses the account logged in from within
//   `KNOWN_FOR` skip that soft limit, so an attacker can neither lock `admin` out from the
//   admin's usual address nor get more than `ID_ATTEMPTS` guesses a minute by spreading over many
//   addresses.
// - A good password clears the pair's count and lock, gives back the reservation on the IP and
//   identifier counts (a busy office behind one address is not throttled by its own successes) and
//   remembers the address as known for the account.

/// Attempts within this window count towards the limits.
const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Attempts per (identifier, IP) and window before that pair is locked.
pub const PAIR_ATTEMPTS: u32 = 5;
/// Attempts per IP (any identifiers) and window before the IP is locked.
pub const IP_ATTEMPTS: u32 = 20;
/// Attempts per identifier (any IP) and window before unknown addresses must wait.
pub const ID_ATTEMPTS: u32 = 20;
const FIRST_LOCKOUT: Duration = Duration::from_secs(60);
const MAX_LOCKOUT: Duration = Duration::from_secs(3600);
/// Lockouts are remembered this long to make the next one longer.
const LOCKOUT_MEMORY: Duration = Duration::from_secs(86_400);
/// An address a user logged in from stays "known" for their account this long.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 86_400);
/// Bound on each map of the in-memory fallback.
const MEMORY_MAX_ENTRIES: usize = 100_000;

/// Reserve an attempt. KEYS: pair lock, ip lock, pair count, ip count, id count, known marker.
/// ARGV: window ms, pair max, ip max, id max. Returns {1, 0} when reserved, {0, wait ms} when not.
const RESERVE: &str = r"
local wait = 0
for i = 1, 2 do
  local t = redis.call('PTTL', KEYS[i])
  if t > wait then wait = t end
end
if wait > 0 then return {0, wait} end
local known = redis.call('EXISTS', KEYS[6]) == 1
local limits = {tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])}
for i = 1, 3 do
  if not (i == 3 and known) then
    local n = tonumber(redis.call('GET', KEYS[i + 2]) or '0')
    if n >= limits[i] then
      local t = redis.call('PTTL', KEYS[i + 2])
      if t <= 0 then t = tonumber(ARGV[1]) end
      if t > wait then wait = t end
    end
  end
end
if wait > 0 then return {0, wait} end
for i = 3, 5 do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
end
return {1, 0}
";

/// A reserved attempt failed. KEYS: pair lock, ip lock, pair count, ip count, pair lockouts,
/// ip lockouts. ARGV: pair max, ip max, first lock ms, max lock ms, lockout memory ms. Returns
/// the new lock's length in ms (0: none).
const FAILED: &str = r"
local locked = 0
local limits = {tonumber(ARGV[1]), tonumber(ARGV[2])}
for i = 1, 2 do
  local n = tonumber(redis.call('GET', KEYS[i + 2]) or '0')
  if n >= limits[i] and redis.call('EXISTS', KEYS[i]) == 0 then
    local k = redis.call('INCR', KEYS[i + 4])
    redis.call('PEXPIRE', KEYS[i + 4], ARGV[5])
    local ms = math.floor(math.min(tonumber(ARGV[3]) * 2 ^ (k - 1), tonumber(ARGV[4])))
    redis.call('SET', KEYS[i], '1', 'PX', ms)
    redis.call('DEL', KEYS[i + 2])
    if ms > locked then locked = ms end
  end
end
return locked
";

/// Give back a reservation. KEYS: pair count, ip count, id count, pair lock, known marker.
/// ARGV: 1 when the password was right, known-for ms. A right password also clears the pair's
/// count and lock and marks the address as known.
const GIVE_BACK: &str = r"
for i = 1, 3 do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
end
if ARGV[1] == '1' then
  redis.call('DEL', KEYS[1], KEYS[4])
  redis.call('SET', KEYS[5], '1', 'PX', ARGV[2])
end
return 0
";

/// One reserved login attempt: the check may run. Report its outcome with
/// [`LoginLimiter::failed`], [`LoginLimiter::succeeded`] or [`LoginLimiter::give_back`].
#[derive(Debug)]
pub struct Attempt {
    /// pair lock, ip lock, pair count, ip count, id count, known, pair lockouts, ip lockouts
    keys: [String; 8],
    in_memory: bool,
}

#[derive(Default)]
struct MemoryAttempts {
    counts: HashMap<String, (u32, Instant)>,
    /// Until when; for locks, known markers and lockout memories (with their count).
    marks: HashMap<String, (u32, Instant)>,
}

impl MemoryAttempts {
    fn live(
        map: &HashMap<String, (u32, Instant)>,
        key: &str,
        now: Instant,
    ) -> Option<(u32, Instant)> {
        map.get(key).copied().filter(|(_, until)| *until > now)
    }

    fn prune(&mut self, now: Instant) {
        for map in [&mut self.counts, &mut self.marks] {
            if map.len() > MEMORY_MAX_ENTRIES {
                map.retain(|_, (_, until)| *until > now);
            }
            if map.len() > MEMORY_MAX_ENTRIES {
                map.clear();
            }
        }
    }

    fn reserve(&mut self, k: &[String; 8]) -> Result<(), Duration> {
        let now = Instant::now();
        self.prune(now);
        let wait = [&k[0], &k[1]]
            .iter()
            .filter_map(|key| Self::live(&self.marks, key, now))
            .map(|(_, until)| until - now)
            .max();
        if let Some(w) = wait {
            return Err(w);
        }
        let known = Self::live(&self.marks, &k[5], now).is_some();
        let limits = [PAIR_ATTEMPTS, IP_ATTEMPTS, ID_ATTEMPTS];
        let wait = (0..3)
            .filter(|i| !(*i == 2 && known))
            .filter_map(|i| {
                Self::live(&self.counts, &k[i + 2], now)
                    .filter(|(n, _)| *n >= limits[i])
                    .map(|(_, until)| until - now)
            })
            .max();
        if let Some(w) = wait {
            return Err(w);
        }
        for key in &k[2..5] {
            let e = self
                .counts
                .entry(key.clone())
                .or_insert((0, now + LOGIN_WINDOW));
            if e.1 <= now {
                *e = (0, now + LOGIN_WINDOW);
            }
            e.0 += 1;
        }
        Ok(())
    }

    fn failed(&mut self, k: &[String; 8]) -> Option<Duration> {
        let now = Instant::now();
        let mut locked = None;
        for (i, limit) in [PAIR_ATTEMPTS, IP_ATTEMPTS].into_iter().enumerate() {
            let n = Self::live(&self.counts, &k[i + 2], now).map_or(0, |(n, _)| n);
            if n < limit || Self::live(&self.marks, &k[i], now).is_some() {
                continue;
            }
            let lockouts = Self::live(&self.marks, &k[i + 6], now).map_or(0, |(n, _)| n) + 1;
            self.marks
                .insert(k[i + 6].clone(), (lockouts, now + LOCKOUT_MEMORY));
            let d = FIRST_LOCKOUT
                .saturating_mul(2u32.saturating_pow(lockouts - 1))
                .min(MAX_LOCKOUT);
            self.marks.insert(k[i].clone(), (1, now + d));
            self.counts.remove(&k[i + 2]);
            locked = Some(locked.map_or(d, |l: Duration| l.max(d)));
        }
        locked
    }

    fn give_back(&mut self, k: &[String; 8], right: bool) {
        let now = Instant::now();
        for key in &k[2..5] {
            if let Some(e) = self.counts.get_mut(key)
                && e.0 > 0
            {
                e.0 -= 1;
            }
        }
        if right {
            self.counts.remove(&k[2]);
            self.marks.remove(&k[0]);
            self.marks.insert(k[5].clone(), (1, now + KNOWN_FOR));
        }
    }
}

#[derive(Clone)]
pub struct LoginLimiter {
    redis: Arc<Redis>,
    memory: Arc<Mutex<MemoryAttempts>>,
    reserve: Arc<redis::Script>,
    failed: Arc<redis::Script>,
    give_back: Arc<redis::Script>,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl LoginLimiter {
    pub fn new(redis: Arc<Redis>) -> Self {
        LoginLimiter {
            redis,
            memory: Arc::new(Mutex::new(MemoryAttempts::default())),
            reserve: Arc::new(redis::Script::new(RESERVE)),
            failed: Arc::new(redis::Script::new(FAILED)),
            give_back: Arc::new(redis::Script::new(GIVE_BACK)),
        }
    }

    fn keys(&self, ip: &str, identifier: &str) -> [String; 8] {
        let id = identifier.trim().to_lowercase();
        let pair = format!("pair:{id}|{ip}");
        let ip = format!("ip:{ip}");
        let k = |kind: &str, s: &str| self.redis.key(&format!("login_{kind}:{s}"));
        [
            k("lock", &pair),
            k("lock", &ip),
            k("att", &pair),
            k("att", &ip),
            k("att", &format!("id:{id}")),
            k("known", &pair),
            k("lockouts", &pair),
            k("lockouts", &ip),
        ]
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, crate::redis::RedisError> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        self.redis.script(&inv, SCRIPT_TIMEOUT).await
    }

    fn in_memory<T>(&self, f: impl FnOnce(&mut MemoryAttempts) -> T) -> Option<T> {
        self.memory.lock().ok().map(|mut m| f(&mut m))
    }

    /// Reserve one attempt for `identifier` from `ip`, or say how long to wait. Atomic: however
    /// many requests race, no more attempts are reserved than the limits allow.
    pub async fn reserve(&self, ip: &str, identifier: &str) -> Result<Attempt, Duration> {
        let keys = self.keys(ip, identifier);
        let args = [
            ms(LOGIN_WINDOW),
            PAIR_ATTEMPTS.into(),
            IP_ATTEMPTS.into(),
            ID_ATTEMPTS.into(),
        ]
        .map(|v| v.to_string());
        match self
            .invoke::<(i64, i64)>(&self.reserve, &keys[..6], &args)
            .await
        {
            Ok((1, _)) => Ok(Attempt {
                keys,
                in_memory: false,
            }),
            Ok((_, wait)) => Err(Duration::from_millis(wait.max(1) as u64)),
            Err(_) => {
                // Fail-soft: the same rules in this process (see the module documentation).
                // A poisoned lock refuses rather than opening the door.
                self.in_memory(|m| m.reserve(&keys))
                    .unwrap_or(Err(FIRST_LOCKOUT))?;
                Ok(Attempt {
                    keys,
                    in_memory: true,
                })
            }
        }
    }

    /// The reserved attempt's password was wrong; returns the new lock when this failure caused
    /// one.
    pub async fn failed(&self, a: &Attempt) -> Option<Duration> {
        let k = &a.keys;
        let locked_ms = if a.in_memory {
            None
        } else {
            let keys = [&k[0], &k[1], &k[2], &k[3], &k[6], &k[7]].map(|s| s.clone());
            let args = [
                PAIR_ATTEMPTS.into(),
                IP_ATTEMPTS.into(),
                ms(FIRST_LOCKOUT),
                ms(MAX_LOCKOUT),
                ms(LOCKOUT_MEMORY),
            ]
            .map(|v: u64| v.to_string());
            self.invoke::<i64>(&self.failed, &keys, &args).await.ok()
        };
        match locked_ms {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms as u64)),
            None => self.in_memory(|m| m.failed(k)).flatten(),
        }
    }

    /// The reserved attempt's password was right.
    pub async fn succeeded(&self, a: &Attempt) {
        self.give_back_as(a, true).await;
    }

    /// The reserved attempt never reached the password check (busy, database error).
    pub async fn give_back(&self, a: &Attempt) {
        self.give_back_as(a, false).await;
    }

    async fn give_back_as(&self, a: &Attempt, right: bool) {
        let k = &a.keys;
        if !a.in_memory {
            let keys = [&k[2], &k[3], &k[4], &k[0], &k[5]].map(|s| s.clone());
            let args = [u8::from(right).to_string(), ms(KNOWN_FOR).to_string()];
            if self
                .invoke::<i64>(&self.give_back, &keys, &args)
                .await
                .is_ok()
            {
                return;
            }
        }
        self.in_memory(|m| m.give_back(k, right));
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
