//! Rules that involve more than one value, or depend on production vs development (a real secret
//! in production, no debug output, positive sizes and counts, a lease long enough to renew, ...).
//! They run on the typed `Config` after `resolve` read every key, and report through the same
//! `Resolver`, so a broken rule is listed together with the malformed values.

use std::time::Duration;

use super::loaded::{Diagnostic, Severity};
use super::resolve::{Resolver, default_text};
use super::secret::MIN_SECRET_LEN;
use super::sections::Config;

/// Rules that involve more than one value, or depend on production vs development.
pub(super) fn validate(c: &Config, r: &mut Resolver<'_>, diagnostics: &mut Vec<Diagnostic>) {
    let prod = c.is_production();
    let secret = &c.security.secret_key;
    if prod {
        if secret.is_empty() {
            r.fail(
                "EF__SECRET_KEY",
                "EF__SECRET_KEY is not set; production needs a random secret of at least 64 characters; fix: run `euraflow gen-secret > /etc/euraflow/credentials/secret_key` (or put EF__SECRET_KEY=<output> in /etc/euraflow/euraflow.env)".into(),
            );
        } else if looks_like_placeholder(secret.expose()) {
            r.fail(
                "EF__SECRET_KEY",
                format!(
                    "EF__SECRET_KEY ({}) is the template's placeholder, not a secret; fix: replace it with the output of `euraflow gen-secret`",
                    r.source_of("EF__SECRET_KEY")
                ),
            );
        } else if secret.len() < MIN_SECRET_LEN {
            r.fail(
                "EF__SECRET_KEY",
                format!(
                    "EF__SECRET_KEY ({}) has {} characters; production needs at least {MIN_SECRET_LEN}; fix: replace it with the output of `euraflow gen-secret`",
                    r.source_of("EF__SECRET_KEY"),
                    secret.len()
                ),
            );
        }
        if c.debug {
            r.fail(
                "EF__API_DEBUG",
                format!(
                    "EF__API_DEBUG=true ({}) is refused in production: debug output exposes internals; fix: set EF__API_DEBUG=false (or run `euraflow serve --dev` on a workstation)",
                    r.source_of("EF__API_DEBUG")
                ),
            );
        }
    }
    if !c.http.api_prefix.starts_with("/api/ef/") || c.http.api_prefix.ends_with('/') {
        r.fail(
            "EF__API_PREFIX",
            format!(
                "EF__API_PREFIX={} ({}) must start with /api/ef/ and not end with /; fix: use /api/ef/v1",
                c.http.api_prefix,
                r.source_of("EF__API_PREFIX")
            ),
        );
    }
    let algorithm = r
        .settings
        .get("EF__ALGORITHM")
        .map(|s| s.value.trim().to_owned())
        .unwrap_or_default();
    if !algorithm.eq_ignore_ascii_case("HS256") {
        r.fail(
            "EF__ALGORITHM",
            format!(
                "EF__ALGORITHM={algorithm} ({}) is not supported: tokens are signed with HS256 only; fix: set EF__ALGORITHM=HS256 or remove the line",
                r.source_of("EF__ALGORITHM")
            ),
        );
    }
    let positive = [
        ("EF__MAX_CONNECTIONS", c.http.max_connections as u64),
        ("EF__MAX_BODY_SIZE", c.http.max_body_size),
        ("EF__MAX_JSON_BODY_SIZE", c.http.max_json_body_size),
        ("EF__DB_POOL_SIZE", c.db.pool_size as u64),
        ("EF__REDIS_MAX_CONNECTIONS", c.redis.max_connections as u64),
        ("EF__WORKER_CONCURRENCY", c.worker.concurrency as u64),
        (
            "EF__JOB_RETENTION_DAYS",
            u64::from(c.worker.job_retention_days),
        ),
        (
            "EF__BACKUP_RETENTION_DAYS",
            u64::from(c.worker.backup_retention_days),
        ),
        (
            "EF__ACCESS_TOKEN_EXPIRE_MINUTES",
            c.security.access_token_ttl.as_secs(),
        ),
        (
            "EF__REFRESH_TOKEN_EXPIRE_DAYS",
            c.security.refresh_token_ttl.as_secs(),
        ),
    ];
    for (name, v) in positive {
        if v == 0 && !r.has_error(name) {
            r.fail(
                name,
                format!(
                    "{name}=0 ({}) would make the server unusable; fix: use a positive number (default {})",
                    r.source_of(name),
                    default_text(name)
                ),
            );
        }
    }
    if c.http.max_json_body_size > c.http.max_body_size {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            message: format!(
                "EF__MAX_JSON_BODY_SIZE ({} bytes) is above EF__MAX_BODY_SIZE ({} bytes), the ceiling of every request: JSON routes accept at most {} bytes; lower EF__MAX_JSON_BODY_SIZE (default {})",
                c.http.max_json_body_size,
                c.http.max_body_size,
                c.http.max_body_size,
                default_text("EF__MAX_JSON_BODY_SIZE")
            ),
        });
    }
    if !(0.0..=1.0).contains(&c.business.price_min_margin) {
        r.fail(
            "EF__PRICE_MIN_MARGIN",
            format!(
                "EF__PRICE_MIN_MARGIN={} ({}) must be between 0 and 1; fix: write a fraction such as 0.2",
                c.business.price_min_margin,
                r.source_of("EF__PRICE_MIN_MARGIN")
            ),
        );
    }
    if !matches!(
        c.db.sslmode.as_str(),
        "disable" | "prefer" | "require" | "verify-full"
    ) {
        r.fail(
            "EF__DB_SSLMODE",
            format!(
                "EF__DB_SSLMODE={} ({}) is not one of disable, prefer, require, verify-full",
                c.db.sslmode,
                r.source_of("EF__DB_SSLMODE")
            ),
        );
    }
    if c.db.sslrootcert.is_some() && c.db.sslmode != "verify-full" {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            message: format!(
                "EF__DB_SSLROOTCERT is set, but EF__DB_SSLMODE={} does not verify the server's certificate; set EF__DB_SSLMODE=verify-full to use it",
                c.db.sslmode
            ),
        });
    }
    for origin in &c.http.cors_origins {
        let valid = (origin.starts_with("https://") || origin.starts_with("http://"))
            && !origin.ends_with('/')
            && http::HeaderValue::from_str(origin).is_ok();
        if !valid {
            r.fail(
                "EF__CORS_ORIGINS",
                format!(
                    "EF__CORS_ORIGINS contains '{origin}' ({}), which is not an origin; fix: write scheme://host[:port] without a path, separated by commas",
                    r.source_of("EF__CORS_ORIGINS")
                ),
            );
        }
    }
    if !c.http.http_listen.ip().is_loopback() {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            message: format!(
                "EF__API_HOST={} ({}) exposes the plain-HTTP listener beyond this machine: it carries the API unencrypted; the server terminates TLS itself, so 127.0.0.1 is the safe value unless a proxy on another host must reach it",
                c.http.http_listen.ip(),
                r.source_of("EF__API_HOST")
            ),
        });
    }
    if c.worker.lease < Duration::from_secs(2) && !r.has_error("EF__JOB_LEASE_TIMEOUT") {
        r.fail(
            "EF__JOB_LEASE_TIMEOUT",
            format!(
                "EF__JOB_LEASE_TIMEOUT={:?} ({}) is too short to renew a lease reliably; fix: use 2s or more (default 60s)",
                c.worker.lease,
                r.source_of("EF__JOB_LEASE_TIMEOUT")
            ),
        );
    }
    if c.worker.poll_interval < Duration::from_millis(10)
        || c.worker.poll_interval > Duration::from_secs(60)
    {
        r.fail(
            "EF__WORKER_POLL_INTERVAL",
            format!(
                "EF__WORKER_POLL_INTERVAL={:?} ({}) must be between 10ms and 60s; fix: use 1s unless you have a reason",
                c.worker.poll_interval,
                r.source_of("EF__WORKER_POLL_INTERVAL")
            ),
        );
    }
    if c.http.shutdown_timeout < Duration::from_secs(1) {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            message:
                "EF__SHUTDOWN_TIMEOUT below 1s cuts off almost every in-flight request on stop"
                    .into(),
        });
    }
}

/// The placeholders of the original templates and guides, which must never sign tokens.
fn looks_like_placeholder(secret: &str) -> bool {
    let s = secret.trim().to_ascii_lowercase();
    (s.starts_with('<') && s.ends_with('>'))
        || s.contains("change-me")
        || s.contains("changeme")
        || s.contains("your-secret")
        || s.contains("your_secret")
        || s.contains("替换")
        || s.contains("更换")
        // The guide's printed example ("请勿使用此示例": do not use this example).
        || s.starts_with("ab3de5fg7hi9jk1lm3no5pq7rs9tu1vw3xy5za7bc9de1fg3hi5jk7lm9no1pq3rs5t")
}
