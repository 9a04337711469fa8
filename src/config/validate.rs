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
    match crate::secrets::KeyRing::from_config(&c.security.data_key) {
        Ok(Some(_)) => {}
        Ok(None) if prod => diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            message: "EF__DATA_KEY is not set: Ozon shops cannot be added or synced (their API keys are stored encrypted with it); fix: `euraflow gen-data-key > /etc/euraflow/credentials/data_key`, chmod 0640, chgrp euraflow, restart".into(),
        }),
        Ok(None) => {}
        Err(e) => r.fail(
            "EF__DATA_KEY",
            format!("EF__DATA_KEY ({}): {e}", r.source_of("EF__DATA_KEY")),
        ),
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
        ("EF__WS_MAX_CONNECTIONS", c.http.ws.max_connections as u64),
        ("EF__WS_MAX_PER_USER", c.http.ws.max_per_user as u64),
        ("EF__WS_MAX_PER_IP", c.http.ws.max_per_ip as u64),
        ("EF__WS_MAX_MESSAGE_SIZE", c.http.ws.max_message_size as u64),
        (
            "EF__WS_MAX_MESSAGES_PER_SECOND",
            u64::from(c.http.ws.max_messages_per_second),
        ),
        ("EF__WS_SEND_QUEUE", c.http.ws.send_queue as u64),
        (
            "EF__WS_PING_INTERVAL",
            c.http.ws.ping_interval.as_millis() as u64,
        ),
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
    if !(c.business.ozon_api_base_url.starts_with("https://")
        || c.business.ozon_api_base_url.starts_with("http://"))
    {
        r.fail(
            "EF__OZON_API_BASE_URL",
            format!(
                "EF__OZON_API_BASE_URL={} ({}) is not an http(s) URL; fix: leave it unset for Ozon's https://api-seller.ozon.ru",
                c.business.ozon_api_base_url,
                r.source_of("EF__OZON_API_BASE_URL")
            ),
        );
    } else if prod && !c.business.ozon_api_base_url.starts_with("https://") {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            message: format!(
                "EF__OZON_API_BASE_URL={} is plain HTTP: shops' API keys would cross the network unencrypted",
                c.business.ozon_api_base_url
            ),
        });
    }
    if let Some(url) = &c.business.public_url {
        let origin_only = url.split_once("://").is_some_and(|(scheme, rest)| {
            (scheme == "https" || scheme == "http")
                && !rest.is_empty()
                && !rest.contains(['?', '#'])
        });
        if !origin_only {
            r.fail(
                "EF__PUBLIC_URL",
                format!(
                    "EF__PUBLIC_URL={url} ({}) is not an http(s) URL; fix: write the address sellers open, e.g. https://erp.example.com, or leave it unset",
                    r.source_of("EF__PUBLIC_URL")
                ),
            );
        } else if prod && !url.starts_with("https://") {
            diagnostics.push(Diagnostic {
                severity: Severity::Warning,
                message: format!(
                    "EF__PUBLIC_URL={url} is plain HTTP: Ozon's push URLs carry a secret and should be https"
                ),
            });
        }
    }
    let rates_url = &c.business.exchange_rate_api_base_url;
    if !(rates_url.starts_with("https://") || rates_url.starts_with("http://")) {
        r.fail(
            "EF__EXCHANGE_RATE_API_BASE_URL",
            format!(
                "EF__EXCHANGE_RATE_API_BASE_URL={rates_url} ({}) is not an http(s) URL; fix: leave it unset for https://v6.exchangerate-api.com",
                r.source_of("EF__EXCHANGE_RATE_API_BASE_URL")
            ),
        );
    } else if prod && !rates_url.starts_with("https://") {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            message: format!(
                "EF__EXCHANGE_RATE_API_BASE_URL={rates_url} is plain HTTP: the provider key would cross the network unencrypted"
            ),
        });
    }
    let rates_timeout = c.business.exchange_rate_timeout;
    if rates_timeout.is_zero() || rates_timeout > std::time::Duration::from_secs(120) {
        r.fail(
            "EF__EXCHANGE_RATE_TIMEOUT",
            format!(
                "EF__EXCHANGE_RATE_TIMEOUT={rates_timeout:?} ({}) must be between 1s and 120s",
                r.source_of("EF__EXCHANGE_RATE_TIMEOUT")
            ),
        );
    }
    if !(1..=1000).contains(&c.business.ozon_rate_limit) {
        r.fail(
            "EF__OZON_RATE_LIMIT",
            format!(
                "EF__OZON_RATE_LIMIT={} ({}) must be 1 to 1000 calls per second",
                c.business.ozon_rate_limit,
                r.source_of("EF__OZON_RATE_LIMIT")
            ),
        );
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
    security_warnings(c, r, diagnostics);
    if c.http.shutdown_timeout < Duration::from_secs(1) {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            message:
                "EF__SHUTDOWN_TIMEOUT below 1s cuts off almost every in-flight request on stop"
                    .into(),
        });
    }
}

/// Settings the server runs with but an operator should not: `config check` (the unit's
/// `ExecStartPre`) and the start-up log list them as warnings, each with its fix.
fn security_warnings(c: &Config, r: &Resolver<'_>, diagnostics: &mut Vec<Diagnostic>) {
    let mut warn = |message: String| {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            message,
        })
    };
    for everyone in trusts_everyone(&c.http.trusted_proxies) {
        warn(format!(
            "EF__TRUSTED_PROXIES ({}) trusts every {everyone} peer: any client can send X-Forwarded-For / X-Real-IP and choose its own address, dodging the rate limit and the login lockout and forging audit entries; fix: list only your proxies (a local nginx: 127.0.0.1/32, ::1/128, the default)",
            r.source_of("EF__TRUSTED_PROXIES")
        ));
    }
    if !c.is_production() {
        return;
    }
    if c.http.hsts.is_none() && !matches!(c.http.https_listen, super::value::ListenAddr::Off) {
        warn(format!(
            "EF__HSTS=off ({}) in production: browsers are not told to insist on HTTPS, so a visit typed as http:// can be intercepted; fix: remove the line (default {}) or set your own max-age",
            r.source_of("EF__HSTS"),
            super::keys::HSTS_DEFAULT
        ));
    }
    if c.security.rate_limit.is_none() {
        warn(format!(
            "the request rate limit is off in production (EF__RATE_LIMIT_ENABLED {}, EF__RATE_LIMIT_DEFAULT {}): one client may flood the API; fix: set EF__RATE_LIMIT_ENABLED=true and EF__RATE_LIMIT_DEFAULT=100/minute (the defaults)",
            r.source_of("EF__RATE_LIMIT_ENABLED"),
            r.source_of("EF__RATE_LIMIT_DEFAULT")
        ));
    }
    if !c.db.password.is_empty() && is_placeholder_password(c.db.password.expose()) {
        // The value itself is a secret and is never printed, even when it is a placeholder.
        warn(format!(
            "EF__DB_PASSWORD ({}) is a template placeholder or a well-known default, not a password; fix: give the role a random one (ALTER ROLE {} PASSWORD '<output of openssl rand -base64 24>') and put it in /etc/euraflow/credentials/db_password, or leave it unset and use the local unix socket with peer authentication (EF__DB_HOST=/var/run/postgresql)",
            r.source_of("EF__DB_PASSWORD"),
            c.db.user
        ));
    }
}

/// The address families every one of whose peers `trusted` contains.
fn trusts_everyone(trusted: &super::value::Networks) -> Vec<&'static str> {
    let v4: Vec<ipnet::Ipv4Net> = trusted
        .0
        .iter()
        .filter_map(|n| match n {
            ipnet::IpNet::V4(n) => Some(*n),
            ipnet::IpNet::V6(_) => None,
        })
        .collect();
    let v6: Vec<ipnet::Ipv6Net> = trusted
        .0
        .iter()
        .filter_map(|n| match n {
            ipnet::IpNet::V6(n) => Some(*n),
            ipnet::IpNet::V4(_) => None,
        })
        .collect();
    let mut out = Vec::new();
    if ipnet::Ipv4Net::aggregate(&v4)
        .iter()
        .any(|n| n.prefix_len() == 0)
    {
        out.push("IPv4");
    }
    if ipnet::Ipv6Net::aggregate(&v6)
        .iter()
        .any(|n| n.prefix_len() == 0)
    {
        out.push("IPv6");
    }
    out
}

/// Template placeholders and the defaults everyone tries first.
fn is_placeholder_password(password: &str) -> bool {
    const WELL_KNOWN: [&str; 16] = [
        "password",
        "passwd",
        "pass",
        "postgres",
        "postgresql",
        "euraflow",
        "admin",
        "admin123",
        "root",
        "secret",
        "test",
        "123456",
        "12345678",
        "qwerty",
        "your_password",
        "db_password",
    ];
    let p = password.trim().to_ascii_lowercase();
    looks_like_placeholder(&p)
        || WELL_KNOWN.contains(&p.as_str())
        || p.contains("your-password")
        || p.contains("yourpassword")
        || p.contains("placeholder")
        || p.contains("example")
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
