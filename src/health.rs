//! The dependency health check behind `/api/ef/v1/health`: database (with pool numbers), Redis,
//! migrations and the worker's heartbeat.
//!
//! Probes are shared: at most one runs at a time, and its result is reused for `CACHE_FOR`, so
//! the guide's `ab -n 10000 -c 100` against health costs PostgreSQL a handful of queries, not ten
//! thousand. Every probe is bounded in time, so health answers even when a dependency hangs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::db::migrate::EMBEDDED;
use crate::db::{Database, PoolStatus};
use crate::redis::Redis;

/// How long one probe's result answers every caller.
pub const CACHE_FOR: Duration = Duration::from_secs(1);
/// A probe never waits longer than this for a dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A worker heartbeat older than this means the worker is gone.
pub const WORKER_STALE_AFTER: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Degraded,
    Down,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overall {
    Healthy,
    Degraded,
    Unhealthy,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub status: CheckStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Check {
    fn new(status: CheckStatus, latency: Option<Duration>, message: Option<String>) -> Self {
        Check {
            status,
            latency_ms: latency.map(|d| (d.as_secs_f64() * 10_000.0).round() / 10.0),
            message,
        }
    }
}

/// One probe's findings.
#[derive(Debug, Clone)]
pub struct Report {
    pub status: Overall,
    pub database: Check,
    pub pool: PoolStatus,
    pub redis: Check,
    pub migrations: Check,
    pub migrations_applied: usize,
    pub migrations_pending: usize,
    pub worker: Check,
    pub probed_at: Instant,
}

impl Report {
    /// What anyone may see: statuses only, so the answer has a stable length under load tests
    /// (`ab` counts a changed length as a failed request) and reveals nothing internal.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "status": self.status,
            "checks": {
                "database": {"status": self.database.status},
                "redis": {"status": self.redis.status},
                "migrations": {"status": self.migrations.status},
                "worker": {"status": self.worker.status},
            }
        })
    }

    /// For the loopback listener and admins: versions, latencies, pool numbers, messages.
    pub fn detailed(&self, uptime: Duration) -> serde_json::Value {
        let mut database = serde_json::to_value(&self.database).unwrap_or_default();
        if let Some(obj) = database.as_object_mut() {
            obj.insert(
                "pool".into(),
                serde_json::to_value(self.pool).unwrap_or_default(),
            );
        }
        let mut migrations = serde_json::to_value(&self.migrations).unwrap_or_default();
        if let Some(obj) = migrations.as_object_mut() {
            obj.insert("applied".into(), self.migrations_applied.into());
            obj.insert("pending".into(), self.migrations_pending.into());
        }
        serde_json::json!({
            "status": self.status,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": uptime.as_secs(),
            "checks": {
                "database": database,
                "redis": self.redis,
                "migrations": migrations,
                "worker": self.worker,
            }
        })
    }
}

pub struct Health {
    db: Arc<Database>,
    redis: Arc<Redis>,
    cache: std::sync::Mutex<Option<Arc<Report>>>,
    probing: tokio::sync::Mutex<()>,
    probes: AtomicU64,
    on_probe: Option<prometheus::IntCounter>,
}

impl Health {
    pub fn new(
        db: Arc<Database>,
        redis: Arc<Redis>,
        on_probe: Option<prometheus::IntCounter>,
    ) -> Self {
        Health {
            db,
            redis,
            cache: std::sync::Mutex::new(None),
            probing: tokio::sync::Mutex::new(()),
            probes: AtomicU64::new(0),
            on_probe,
        }
    }

    /// Probes run since start (each is one database round trip and one Redis PING).
    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::Relaxed)
    }

    fn cached(&self) -> Option<Arc<Report>> {
        let guard = self.cache.lock().ok()?;
        guard
            .as_ref()
            .filter(|r| r.probed_at.elapsed() < CACHE_FOR)
            .cloned()
    }

    /// The current report: cached, or probed once for everyone who asks meanwhile.
    pub async fn report(&self) -> Arc<Report> {
        if let Some(r) = self.cached() {
            return r;
        }
        let _one_at_a_time = self.probing.lock().await;
        // Whoever held the lock before us may have just refreshed it.
        if let Some(r) = self.cached() {
            return r;
        }
        let fresh = Arc::new(self.probe().await);
        if let Ok(mut guard) = self.cache.lock() {
            *guard = Some(fresh.clone());
        }
        fresh
    }

    async fn probe(&self) -> Report {
        self.probes.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = &self.on_probe {
            c.inc();
        }
        let (db, redis) = tokio::join!(self.probe_database(), self.probe_redis());
        let (database, migrations, applied, pending, worker) = db;
        let status =
            if database.status == CheckStatus::Down || migrations.status == CheckStatus::Down {
                Overall::Unhealthy
            } else if [&database, &redis, &migrations, &worker]
                .iter()
                .any(|c| matches!(c.status, CheckStatus::Degraded | CheckStatus::Down))
            {
                Overall::Degraded
            } else {
                Overall::Healthy
            };
        Report {
            status,
            database,
            pool: self.db.status(),
            redis,
            migrations,
            migrations_applied: applied,
            migrations_pending: pending,
            worker,
            probed_at: Instant::now(),
        }
    }

    async fn probe_redis(&self) -> Check {
        match tokio::time::timeout(PROBE_TIMEOUT, self.redis.ping()).await {
            Ok(Ok(latency)) => Check::new(CheckStatus::Ok, Some(latency), None),
            Ok(Err(e)) => Check::new(CheckStatus::Down, None, Some(e.to_string())),
            Err(_) => Check::new(
                CheckStatus::Down,
                None,
                Some(format!("no answer within {PROBE_TIMEOUT:?}")),
            ),
        }
    }

    /// One round trip gives the database's state, the migrations and the worker heartbeat.
    async fn probe_database(&self) -> (Check, Check, usize, usize, Check) {
        let unknown = |why: &str| Check::new(CheckStatus::Unknown, None, Some(why.to_owned()));
        let started = Instant::now();
        let client = match tokio::time::timeout(PROBE_TIMEOUT, self.db.get()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) if !e.is_unavailable() => {
                let db = Check::new(CheckStatus::Degraded, None, Some(e.to_string()));
                return (db, unknown("database busy"), 0, 0, unknown("database busy"));
            }
            Ok(Err(e)) => {
                let db = Check::new(CheckStatus::Down, None, Some(e.to_string()));
                let m = Check::new(CheckStatus::Unknown, None, Some("database down".into()));
                return (db, m, 0, EMBEDDED.len(), unknown("database down"));
            }
            Err(_) => {
                let db = Check::new(
                    CheckStatus::Degraded,
                    None,
                    Some(format!("no free connection within {PROBE_TIMEOUT:?}")),
                );
                return (db, unknown("database busy"), 0, 0, unknown("database busy"));
            }
        };
        let versions: Vec<i64> = EMBEDDED.iter().map(|m| m.version).collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&versions];
        let query = client.query_one(
            "SELECT (SELECT count(*) FROM schema_migrations WHERE version = ANY($1)),
                    (SELECT extract(epoch FROM now() - max(last_seen_at))::float8
                       FROM service_heartbeats WHERE kind = 'worker')",
            &params,
        );
        let row = tokio::time::timeout(PROBE_TIMEOUT, query).await;
        let latency = started.elapsed();
        let (applied, worker_age) = match row {
            Ok(Ok(r)) => (r.get::<_, i64>(0) as usize, r.get::<_, Option<f64>>(1)),
            // No bookkeeping table yet: nothing applied.
            Ok(Err(e)) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                (0, None)
            }
            Ok(Err(e)) => {
                let db = Check::new(CheckStatus::Down, Some(latency), Some(e.to_string()));
                return (db, unknown("query failed"), 0, 0, unknown("query failed"));
            }
            Err(_) => {
                let db = Check::new(
                    CheckStatus::Degraded,
                    None,
                    Some(format!("no answer within {PROBE_TIMEOUT:?}")),
                );
                return (db, unknown("database slow"), 0, 0, unknown("database slow"));
            }
        };
        let pending = EMBEDDED.len().saturating_sub(applied);
        let migrations = if pending == 0 {
            Check::new(CheckStatus::Ok, None, None)
        } else {
            Check::new(
                CheckStatus::Down,
                None,
                Some(format!("{pending} pending; run `euraflow migrate`")),
            )
        };
        let worker = match worker_age {
            None => Check::new(
                CheckStatus::Unknown,
                None,
                Some("no worker has reported".into()),
            ),
            Some(age) if age < WORKER_STALE_AFTER.as_secs_f64() => {
                Check::new(CheckStatus::Ok, None, None)
            }
            Some(age) => Check::new(
                CheckStatus::Down,
                None,
                Some(format!(
                    "last heartbeat {age:.0}s ago; is euraflow-worker running?"
                )),
            ),
        };
        (
            Check::new(CheckStatus::Ok, Some(latency), None),
            migrations,
            applied,
            pending,
            worker,
        )
    }
}
