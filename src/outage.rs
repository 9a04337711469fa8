//! Tracks whether a dependency (PostgreSQL, Redis) is reachable, so that an outage is logged once
//! when it starts and once when it ends — not once per request — and so callers can back off
//! instead of hammering a server that is down.

use std::sync::Mutex;
use std::time::{Duration, Instant};

const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Outage {
    name: &'static str,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    down_since: Option<Instant>,
    failures: u32,
    next_attempt: Option<Instant>,
    last_error: String,
}

impl Outage {
    pub fn new(name: &'static str) -> Self {
        Outage {
            name,
            state: Mutex::new(State::default()),
        }
    }

    /// Record a failed attempt. The first failure of an outage is logged.
    pub fn failed(&self, error: &str) {
        let Ok(mut s) = self.state.lock() else { return };
        s.failures = s.failures.saturating_add(1);
        let backoff = FIRST_RETRY
            .saturating_mul(1u32 << s.failures.min(8).saturating_sub(1))
            .min(MAX_RETRY);
        s.next_attempt = Some(Instant::now() + backoff);
        s.last_error = error.to_owned();
        if s.down_since.is_none() {
            s.down_since = Some(Instant::now());
            tracing::warn!(
                dependency = self.name,
                error,
                "{} is unreachable; serving what does not need it and retrying with backoff",
                self.name
            );
        }
    }

    /// Record a success. The end of an outage is logged with its length.
    pub fn succeeded(&self) {
        let Ok(mut s) = self.state.lock() else { return };
        if let Some(since) = s.down_since.take() {
            tracing::info!(
                dependency = self.name,
                outage_s = since.elapsed().as_secs_f64(),
                "{} is reachable again",
                self.name
            );
        }
        s.failures = 0;
        s.next_attempt = None;
    }

    pub fn is_down(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.down_since.is_some())
            .unwrap_or(false)
    }

    /// While down, attempts are spaced out (exponential backoff up to 5 s); `Some(error)` means
    /// "do not try now, fail with this".
    pub fn should_skip(&self) -> Option<String> {
        let s = self.state.lock().ok()?;
        match s.next_attempt {
            Some(t) if Instant::now() < t => Some(s.last_error.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_outage_is_logged_once_when_it_starts_and_once_when_it_ends() {
        let buf = Buffer::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let o = Outage::new("Redis");
            for _ in 0..50 {
                o.failed("connection refused");
            }
            assert!(o.is_down());
            assert!(
                o.should_skip().is_some(),
                "retries are spaced out while down"
            );
            o.succeeded();
            o.succeeded();
            assert!(!o.is_down());
            assert!(o.should_skip().is_none());
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("is unreachable").count(), 1, "{text}");
        assert_eq!(text.matches("is reachable again").count(), 1, "{text}");
    }
}
