//! `AppState`: what every handler can reach — the configuration and the server's counters. One
//! value passed explicitly (no globals); cloning it is cheap. Later layers add the database pool,
//! Redis and the websocket hub here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::HeaderValue;

use crate::config::Config;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Arc<Config>,
    started: Instant,
    stats: ServerStats,
    hsts: Option<HeaderValue>,
}

impl AppState {
    pub fn new(config: Arc<Config>) -> Self {
        let hsts = config
            .http
            .hsts
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok());
        AppState(Arc::new(Inner {
            config,
            started: Instant::now(),
            stats: ServerStats::default(),
            hsts,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.0.started.elapsed()
    }

    pub fn stats(&self) -> &ServerStats {
        &self.0.stats
    }

    pub fn hsts_header(&self) -> Option<&HeaderValue> {
        self.0.hsts.as_ref()
    }
}

/// Counters for the systemd STATUS line and `euraflow status`.
#[derive(Debug, Default)]
pub struct ServerStats {
    open_connections: AtomicU64,
    requests: AtomicU64,
    tls_handshake_failures: AtomicU64,
}

impl ServerStats {
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn open_connections(&self) -> u64 {
        self.open_connections.load(Ordering::Relaxed)
    }

    pub fn count_tls_failure(&self) {
        self.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn tls_handshake_failures(&self) -> u64 {
        self.tls_handshake_failures.load(Ordering::Relaxed)
    }

    /// Counts a connection as open until the guard is dropped.
    pub fn open_connection(&self) -> ConnectionGuard<'_> {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self)
    }
}

pub struct ConnectionGuard<'a>(&'a ServerStats);

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}
