//! The rate budget of each shop (per Client-Id), shared by every process through Redis.
//!
//! Ozon limits requests per seller account, not per process: the server, the workers and a
//! manual sync all spend the same budget. Each call first reserves a slot here. The algorithm is
//! GCRA (a token bucket stored as one timestamp, the "theoretical arrival time"): slots are spaced
//! `1/rate` apart, with a burst of `burst` slots allowed on top. Reservation instead of
//! "try, fail, poll" means one Redis round trip per call and waiters served in order; a
//! reservation whose caller gave up is simply a slot not used, which errs on the safe side.
//! In any window of `w` seconds a shop gets at most `burst + rate·w` calls.
//!
//! A 429 from Ozon pushes the shop's timestamp forward by its `Retry-After`
//! ([`RateBudget::pause`]), so every process backs off, not only the one that was told.
//!
//! While Redis is down (or none is configured) the same algorithm runs in this process's memory:
//! calls continue and are still limited, per process instead of across processes. The switch is
//! logged once each way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::redis::Redis;

/// KEYS[1] the shop's timestamp (µs, Redis clock). ARGV: interval µs, burst tolerance µs, pause µs.
/// Returns how long the caller waits before its slot, in µs (0 = now). With pause > 0 only moves
/// the timestamp forward (no slot is reserved) and returns 0.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local pause = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if pause > 0 then
  if now + pause > tat then tat = now + pause end
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
  return 0
end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
local new = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.floor((new - now) / 1000) + 1000)
return wait
";

/// Entries kept by the in-memory fallback before idle shops are dropped.
const MEMORY_MAX_SHOPS: usize = 10_000;

pub struct RateBudget {
    redis: Option<Arc<Redis>>,
    interval: Duration,
    tolerance: Duration,
    memory: Mutex<HashMap<String, Instant>>,
    in_fallback: AtomicBool,
}

impl std::fmt::Debug for RateBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateBudget")
            .field("interval", &self.interval)
            .field("tolerance", &self.tolerance)
            .field("shared", &self.redis.is_some())
            .finish()
    }
}

impl RateBudget {
    /// `rate` requests per second per shop (0 is taken as 1), `burst` extra slots (≥ 1 in total).
    pub fn new(redis: Option<Arc<Redis>>, rate: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(1) / rate.max(1);
        RateBudget {
            redis,
            interval,
            tolerance: interval * burst.saturating_sub(1),
            memory: Mutex::new(HashMap::new()),
            in_fallback: AtomicBool::new(false),
        }
    }

    /// Reserve one call for `client_id` and wait until it is due.
    pub async fn acquire(&self, client_id: &str) {
        let wait = self.reserve(client_id, Duration::ZERO).await;
        if !wait.is_zero() {
            if wait > Duration::from_secs(1) {
                tracing::debug!(
                    client_id,
                    wait_ms = wait.as_millis() as u64,
                    "waiting for the shop's Ozon rate budget"
                );
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Ozon asked this shop to wait `pause`: no process sends for it before then.
    pub async fn pause(&self, client_id: &str, pause: Duration) {
        if !pause.is_zero() {
            self.reserve(client_id, pause).await;
        }
    }

    async fn reserve(&self, client_id: &str, pause: Duration) -> Duration {
        if let Some(redis) = &self.redis {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(GCRA)
                .arg(1)
                .arg(redis.key(&format!("ozon_rate:{client_id}")))
                .arg(self.interval.as_micros() as u64)
                .arg(self.tolerance.as_micros() as u64)
                .arg(pause.as_micros() as u64);
            match redis.query::<i64>(&cmd).await {
                Ok(wait_us) => {
                    if self.in_fallback.swap(false, Ordering::Relaxed) {
                        tracing::info!("Ozon rate budgets are shared through Redis again");
                    }
                    return Duration::from_micros(wait_us.max(0) as u64);
                }
                Err(e) => {
                    if !self.in_fallback.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            error = %e,
                            "Ozon rate budgets fall back to this process's memory while Redis \
                             is unavailable: limits hold per process"
                        );
                    }
                }
            }
        }
        self.reserve_in_memory(client_id, pause, Instant::now())
    }

    fn reserve_in_memory(&self, client_id: &str, pause: Duration, now: Instant) -> Duration {
        // A poisoned lock only means another call panicked mid-update of a timestamp; the map is
        // still usable.
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        if memory.len() >= MEMORY_MAX_SHOPS && !memory.contains_key(client_id) {
            memory.retain(|_, tat| *tat > now);
        }
        let tat = memory.entry(client_id.to_owned()).or_insert(now);
        if *tat < now {
            *tat = now;
        }
        if !pause.is_zero() {
            *tat = (*tat).max(now + pause);
            return Duration::ZERO;
        }
        let due = tat.checked_sub(self.tolerance).unwrap_or(now);
        let wait = due.saturating_duration_since(now);
        *tat += self.interval;
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slots granted to back-to-back callers within `window`, on a simulated clock.
    fn granted_within(budget: &RateBudget, window: Duration, callers: usize) -> usize {
        let start = Instant::now();
        (0..callers)
            .filter(|_| budget.reserve_in_memory("shop", Duration::ZERO, start) < window)
            .count()
    }

    #[test]
    fn memory_budget_spaces_calls_at_the_rate_with_the_burst_on_top() {
        let budget = RateBudget::new(None, 10, 3);
        // 3 immediately (the burst), then one per 100 ms: within 1 s, 3 + 10 minus the slot at
        // exactly 1 s.
        let n = granted_within(&budget, Duration::from_secs(1), 100);
        assert!((12..=13).contains(&n), "{n}");
        let first = budget.reserve_in_memory("other", Duration::ZERO, Instant::now());
        assert_eq!(first, Duration::ZERO, "shops have separate budgets");
    }

    #[test]
    fn a_pause_holds_every_caller_of_that_shop() {
        let budget = RateBudget::new(None, 50, 5);
        let now = Instant::now();
        budget.reserve_in_memory("shop", Duration::from_secs(2), now);
        let wait = budget.reserve_in_memory("shop", Duration::ZERO, now);
        // 2 s minus the burst tolerance of 4 × 20 ms.
        assert!(wait >= Duration::from_millis(1900), "{wait:?}");
        assert_eq!(
            budget.reserve_in_memory("elsewhere", Duration::ZERO, now),
            Duration::ZERO
        );
    }

    #[test]
    fn a_zero_rate_is_one_per_second_not_a_division_by_zero() {
        let budget = RateBudget::new(None, 0, 0);
        assert_eq!(budget.interval, Duration::from_secs(1));
        assert_eq!(budget.tolerance, Duration::ZERO);
    }
}
