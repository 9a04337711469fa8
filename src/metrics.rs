//! Prometheus metrics with the original's names (`ef_http_*`), plus the pools, Redis, build and
//! process. The `endpoint` label is the route pattern (`/api/ef/v1/users/{id}`), never the raw
//! path, so label cardinality stays bounded whatever clients request.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::db::Database;
use crate::redis::Redis;

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_request_size: HistogramVec,
    pub http_response_size: HistogramVec,
    db_pool_size: IntGauge,
    db_pool_max: IntGauge,
    db_pool_available: IntGauge,
    db_pool_waiting: IntGauge,
    db_pool_timeouts: IntCounter,
    redis_up: IntGauge,
    pub health_probes: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

const SIZE_BUCKETS: &[f64] = &[
    100.0,
    1_000.0,
    10_000.0,
    100_000.0,
    1_000_000.0,
    10_000_000.0,
    100_000_000.0,
];

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "ef_http_requests_total",
                "HTTP requests by method, route and status",
            ),
            &["method", "endpoint", "status_code"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "ef_http_request_duration_seconds",
                "Time to the response headers, by method and route",
            ),
            &["method", "endpoint"],
        )?;
        let http_request_size = HistogramVec::new(
            HistogramOpts::new("ef_http_request_size_bytes", "Request body sizes")
                .buckets(SIZE_BUCKETS.to_vec()),
            &["method", "endpoint"],
        )?;
        let http_response_size = HistogramVec::new(
            HistogramOpts::new("ef_http_response_size_bytes", "Response body sizes as sent")
                .buckets(SIZE_BUCKETS.to_vec()),
            &["method", "endpoint", "status_code"],
        )?;
        let db_pool_size = IntGauge::new("ef_db_pool_size", "Open database connections")?;
        let db_pool_max = IntGauge::new("ef_db_pool_max", "Most database connections allowed")?;
        let db_pool_available = IntGauge::new("ef_db_pool_available", "Idle database connections")?;
        let db_pool_waiting = IntGauge::new(
            "ef_db_pool_waiting",
            "Requests waiting for a database connection",
        )?;
        let db_pool_timeouts = IntCounter::new(
            "ef_db_pool_timeouts_total",
            "Requests answered 503 because no database connection was free in time",
        )?;
        let redis_up = IntGauge::new("ef_redis_up", "0 while Redis is unreachable, else 1")?;
        let health_probes = IntCounter::new(
            "ef_health_probes_total",
            "Dependency probes run by the health check (shared by concurrent callers)",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("ef_build_info", "Build information"),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(http_request_size.clone()),
            Box::new(http_response_size.clone()),
            Box::new(db_pool_size.clone()),
            Box::new(db_pool_max.clone()),
            Box::new(db_pool_available.clone()),
            Box::new(db_pool_waiting.clone()),
            Box::new(db_pool_timeouts.clone()),
            Box::new(redis_up.clone()),
            Box::new(health_probes.clone()),
            Box::new(build_info),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            registry.register(c)?;
        }
        Ok(Metrics {
            registry,
            http_requests,
            http_duration,
            http_request_size,
            http_response_size,
            db_pool_size,
            db_pool_max,
            db_pool_available,
            db_pool_waiting,
            db_pool_timeouts,
            redis_up,
            health_probes,
        })
    }

    /// Let another part of the process add its metrics (the Ozon client's).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// What the shipped alert rules watch beyond the counters: the health verdict and each of
    /// its checks (one-hot, so a rule compares to 1 rather than to a status code), when the
    /// served certificate expires, and when the newest finished backup was written (0 when
    /// there is none, so "older than 26 h" fires for a machine that never backed up).
    pub fn render_appliance(
        report: &crate::health::Report,
        tls_not_after: Option<u64>,
        newest_backup: Option<std::time::SystemTime>,
    ) -> String {
        use crate::health::{CheckStatus, Overall};
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP ef_health_status The health verdict (1 for the current one)\n# TYPE ef_health_status gauge"
        );
        for (name, status) in [
            ("healthy", Overall::Healthy),
            ("degraded", Overall::Degraded),
            ("unhealthy", Overall::Unhealthy),
        ] {
            let v = i32::from(report.status == status);
            let _ = writeln!(out, "ef_health_status{{status=\"{name}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP ef_health_check_ok 1 when the health check's dependency is ok, else 0\n# TYPE ef_health_check_ok gauge"
        );
        for (name, check) in [
            ("database", &report.database),
            ("redis", &report.redis),
            ("migrations", &report.migrations),
            ("worker", &report.worker),
        ] {
            let v = i32::from(check.status == CheckStatus::Ok);
            let _ = writeln!(out, "ef_health_check_ok{{check=\"{name}\"}} {v}");
        }
        if let Some(secs) = tls_not_after {
            let _ = writeln!(
                out,
                "# HELP ef_tls_certificate_expiry_timestamp_seconds When the served certificate expires\n# TYPE ef_tls_certificate_expiry_timestamp_seconds gauge\nef_tls_certificate_expiry_timestamp_seconds {secs}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP ef_log_lines_dropped_total Access log lines dropped because the log writer (journald or stderr) fell behind\n# TYPE ef_log_lines_dropped_total counter\nef_log_lines_dropped_total {}",
            crate::telemetry::access_pipe::dropped_total()
        );
        let backup = newest_backup
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let _ = writeln!(
            out,
            "# HELP ef_backup_newest_timestamp_seconds When the newest finished backup in EF__BACKUP_DIR was written (0: none)\n# TYPE ef_backup_newest_timestamp_seconds gauge\nef_backup_newest_timestamp_seconds {backup}"
        );
        out
    }

    /// The text exposition, with gauges read at scrape time.
    pub fn render(&self, db: &Database, redis: &Redis) -> String {
        let pool = db.status();
        self.db_pool_size.set(pool.size as i64);
        self.db_pool_max.set(pool.max as i64);
        self.db_pool_available.set(pool.idle as i64);
        self.db_pool_waiting.set(pool.waiting as i64);
        let timeouts = db.pool_timeouts();
        let seen = self.db_pool_timeouts.get();
        if timeouts > seen {
            self.db_pool_timeouts.inc_by(timeouts - seen);
        }
        self.redis_up.set(i64::from(!redis.is_down()));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
