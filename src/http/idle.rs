//! When a connection is idle: no request in progress for the keep-alive limit.
//!
//! HTTP/1 keep-alive connections are also bounded by hyper's header-read timeout, but an HTTP/2
//! connection answers the server's pings and stays open forever, and a TLS connection that never
//! sends a request is read by nothing with a timeout, each holding one of the
//! `EF__MAX_CONNECTIONS` slots: a client could park thousands of them. Each connection counts
//! its requests in progress; once none has been for `EF__KEEPALIVE_TIMEOUT` (30 s, what the
//! README promises for idle connections), the connection is shut down gracefully (HTTP/2 sends
//! GOAWAY; a response still streaming is never cut: stalled ones are `send_timeout`'s).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Requests in progress on one connection and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `started` when a request last began or ended.
    last_ms: AtomicU64,
}

/// Held while a request is in progress (from the call until its response is ready).
pub struct InFlight(Arc<Activity>);

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    /// Whether a request is in progress now.
    pub fn in_progress(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }

    /// Returns once no request has been in progress for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            let last = self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + limit;
            if self.in_flight.load(Ordering::Relaxed) == 0 && Instant::now() >= deadline {
                return;
            }
            // Busy: look again after a full period; idle: wake at the deadline.
            let next = if self.in_flight.load(Ordering::Relaxed) > 0 {
                Instant::now() + limit
            } else {
                deadline
            };
            tokio::time::sleep_until(next).await;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_only_after_the_last_request_ended_plus_the_limit() {
        let a = Activity::new();
        let limit = Duration::from_secs(10);
        let guard = a.begin();
        // A request in progress for longer than the limit keeps the connection busy.
        let busy = tokio::time::timeout(Duration::from_secs(25), a.idle_for(limit)).await;
        assert!(busy.is_err(), "idle while a request was in progress");
        drop(guard);
        let ended = Instant::now();
        a.idle_for(limit).await;
        assert_eq!(Instant::now() - ended, limit);
    }
}
