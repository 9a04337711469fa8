//! `AppState`: what every handler can reach — configuration, database, Redis, health, metrics and
//! the server's counters. One value passed explicitly (no globals); cloning it is cheap.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::HeaderValue;

use crate::auth::Auth;
use crate::config::Config;
use crate::db::Database;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::redis::Redis;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Arc<Config>,
    db: Arc<Database>,
    redis: Arc<Redis>,
    health: Health,
    metrics: Metrics,
    auth: Auth,
    realtime: crate::realtime::Realtime,
    /// The job types this server knows (for `/sync-services/handlers` and triggering).
    job_registry: crate::jobs::Registry,
    ozon: Arc<crate::ozon::Ozon>,
    static_files: crate::http::static_cache::StaticCache,
    exchange_rates: Arc<crate::exchange_rates::ExchangeRates>,
    started: Instant,
    stats: ServerStats,
    hsts: Option<HeaderValue>,
}

impl AppState {
    pub fn new(config: Arc<Config>, db: Arc<Database>, redis: Arc<Redis>) -> anyhow::Result<Self> {
        let hsts = config
            .http
            .hsts
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok());
        let metrics = Metrics::new()?;
        let health = Health::new(
            db.clone(),
            redis.clone(),
            Some(metrics.health_probes.clone()),
        );
        let realtime = crate::realtime::Realtime::new(&config, redis.clone())?;
        realtime.metrics().register(metrics.registry())?;
        let auth = Auth::new(&config, db.clone(), redis.clone(), realtime.clone())?;
        let ozon_metrics = crate::ozon::client::OzonMetrics::new()?;
        ozon_metrics.register(metrics.registry())?;
        let ozon = Arc::new(crate::ozon::Ozon::new(
            &config,
            redis.clone(),
            ozon_metrics,
        )?);
        let static_files = crate::http::static_cache::StaticCache::new(metrics.registry())?;
        let exchange_rates = Arc::new(crate::exchange_rates::ExchangeRates::from_config(&config)?);
        Ok(AppState(Arc::new(Inner {
            ozon,
            static_files,
            exchange_rates,
            job_registry: crate::jobs::builtin_registry(),
            auth,
            realtime,
            config,
            db,
            redis,
            health,
            metrics,
            started: Instant::now(),
            stats: ServerStats::default(),
            hsts,
        })))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub fn db(&self) -> &Arc<Database> {
        &self.0.db
    }

    pub fn redis(&self) -> &Arc<Redis> {
        &self.0.redis
    }

    pub fn health(&self) -> &Health {
        &self.0.health
    }

    pub fn auth(&self) -> &Auth {
        &self.0.auth
    }

    /// The websockets of this process and the notifications to every process's.
    pub fn realtime(&self) -> &crate::realtime::Realtime {
        &self.0.realtime
    }

    pub fn job_registry(&self) -> &crate::jobs::Registry {
        &self.0.job_registry
    }

    pub fn ozon(&self) -> &crate::ozon::Ozon {
        &self.0.ozon
    }

    /// The static handler's file and compressed-variant caches.
    pub fn static_files(&self) -> &crate::http::static_cache::StaticCache {
        &self.0.static_files
    }

    /// The exchange-rate provider client and data key.
    pub fn exchange_rates(&self) -> &crate::exchange_rates::ExchangeRates {
        &self.0.exchange_rates
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
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
    send_timeouts: AtomicU64,
    /// When the certificate being served expires, in Unix seconds; 0 without HTTPS.
    tls_not_after: AtomicU64,
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

    /// A connection closed by `EF__SEND_TIMEOUT`: its client stopped taking a response.
    pub fn count_send_timeout(&self) {
        self.send_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn send_timeouts(&self) -> u64 {
        self.send_timeouts.load(Ordering::Relaxed)
    }

    /// The certificate now served (at start and after each accepted reload), for the expiry
    /// metric an alert watches.
    pub fn set_tls_not_after(&self, not_after: std::time::SystemTime) {
        let secs = not_after
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.tls_not_after.store(secs, Ordering::Relaxed);
    }

    pub fn tls_not_after(&self) -> Option<u64> {
        Some(self.tls_not_after.load(Ordering::Relaxed)).filter(|&s| s > 0)
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
