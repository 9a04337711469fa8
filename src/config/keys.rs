//! Every configuration key the appliance knows, in one table: its default (the production
//! guide's values), whether it is a secret, and what it does. `config show`, the packaged
//! `/etc/euraflow/euraflow.env`, the operator guides' reference and the validation all read this table, so
//! a key is added in one place.

pub const HSTS_DEFAULT: &str = "max-age=31536000; includeSubDomains";

/// Where a key's default comes from.
#[derive(Debug, Clone, Copy)]
pub enum DefaultValue {
    /// The same in production and development.
    Value(&'static str),
    /// Production differs from `--dev`.
    ByMode {
        production: &'static str,
        development: &'static str,
    },
    /// A path below the effective `EF__STATE_DIR`.
    UnderStateDir(&'static str),
    /// The machine's host name.
    Hostname,
    /// `production` in production; in development the name of the user running the command (a
    /// local PostgreSQL lets it in over the unix socket with peer authentication).
    DevUser { production: &'static str },
    /// No default: the key is optional, or (for secrets) must be provided.
    Unset,
}

#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub section: &'static str,
    pub default: DefaultValue,
    /// Secrets are never printed, logged or echoed in error messages.
    pub secret: bool,
    /// The file name under `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`) for secrets.
    pub credential: Option<&'static str>,
    pub doc: &'static str,
}

const fn key(
    name: &'static str,
    section: &'static str,
    default: DefaultValue,
    doc: &'static str,
) -> Key {
    Key {
        name,
        section,
        default,
        secret: false,
        credential: None,
        doc,
    }
}

const fn secret(
    name: &'static str,
    section: &'static str,
    credential: &'static str,
    doc: &'static str,
) -> Key {
    Key {
        name,
        section,
        default: DefaultValue::Unset,
        secret: true,
        credential: Some(credential),
        doc,
    }
}

use DefaultValue::*;

pub static KEYS: &[Key] = &[
    // --- server -------------------------------------------------------------------------------
    key(
        "EF__ENV",
        "server",
        ByMode {
            production: "production",
            development: "development",
        },
        "production or development. Production refuses a weak secret and debug mode.",
    ),
    key(
        "EF__STATE_DIR",
        "server",
        ByMode {
            production: "/var/lib/euraflow",
            development: ".euraflow-dev",
        },
        "Writable state: generated TLS certificate, backups, initial admin password.",
    ),
    key(
        "EF__HTTPS_LISTEN",
        "server",
        ByMode {
            production: "[::]:443",
            development: "127.0.0.1:8443",
        },
        "HTTPS listener address, or off. Ignored when systemd passes the socket named https.",
    ),
    key(
        "EF__API_HOST",
        "server",
        Value("127.0.0.1"),
        "Plain-HTTP listener host (health checks, metrics, CDN origin behind nginx). Keep it on loopback.",
    ),
    key(
        "EF__API_PORT",
        "server",
        Value("8000"),
        "Plain-HTTP listener port. Ignored when systemd passes the socket named http.",
    ),
    key(
        "EF__API_PREFIX",
        "server",
        Value("/api/ef/v1"),
        "Path prefix of the API; must start with /api/ef/.",
    ),
    key(
        "EF__API_DEBUG",
        "server",
        Value("false"),
        "Development only: log at DEBUG unless EF__LOG_LEVEL is set. Refused in production.",
    ),
    key(
        "EF__SERVER_NAME",
        "server",
        Hostname,
        "The host name clients use; put into the self-signed certificate and checked against a real one.",
    ),
    key(
        "EF__MAX_CONNECTIONS",
        "server",
        Value("16384"),
        "Open connections at most (nginx: 4 workers x 4096); further clients wait in the listen backlog.",
    ),
    key(
        "EF__MAX_BODY_SIZE",
        "server",
        Value("50M"),
        "Largest request body of any route (nginx client_max_body_size): the limit of routes that take uploads (none yet); larger bodies get 413 before they are read.",
    ),
    key(
        "EF__MAX_JSON_BODY_SIZE",
        "server",
        Value("64K"),
        "Largest body of the API's JSON routes (login and every other route that takes no upload); larger ones get 413 from Content-Length, or as soon as that much arrived, before anything is buffered.",
    ),
    key(
        "EF__REQUEST_TIMEOUT",
        "server",
        Value("60s"),
        "Time an API request may take to produce its response (nginx proxy_read_timeout).",
    ),
    key(
        "EF__HTTP_HEADER_TIMEOUT",
        "server",
        Value("30s"),
        "Time a client has to send complete request headers (slowloris); an HTTP/1.1 keep-alive connection whose next request does not arrive in this time is closed too.",
    ),
    key(
        "EF__KEEPALIVE_TIMEOUT",
        "server",
        Value("30s"),
        "An idle connection (no request in progress, whatever the protocol, also one that never sent a request) is closed after this long; HTTP/2 with GOAWAY. An HTTP/2 connection carrying a websocket is not idle.",
    ),
    key(
        "EF__SEND_TIMEOUT",
        "server",
        Value("60s"),
        "A connection that could not send anything of a response for this long (the client stopped reading, or stopped granting HTTP/2 window) is closed and its slot freed; between two writes, not for the whole response (nginx send_timeout).",
    ),
    key(
        "EF__TLS_HANDSHAKE_TIMEOUT",
        "server",
        Value("10s"),
        "Time a client has to complete the TLS handshake.",
    ),
    key(
        "EF__WS_IDLE_TIMEOUT",
        "server",
        Value("3600s"),
        "A websocket with no traffic for this long is closed (nginx proxy_read_timeout 3600s).",
    ),
    key(
        "EF__WS_PING_INTERVAL",
        "server",
        Value("30s"),
        "The server sends each websocket client a ping message this often (the web app's own ping is answered too).",
    ),
    key(
        "EF__WS_MAX_CONNECTIONS",
        "server",
        Value("10000"),
        "Open websockets of this process at most; an HTTP/1.1 one holds a slot of EF__MAX_CONNECTIONS too (an HTTP/2 one is a stream of a connection that holds its own). Further upgrades are closed with 1013 (try again later).",
    ),
    key(
        "EF__WS_MAX_PER_USER",
        "server",
        Value("10"),
        "Open websockets of one user in this process at most (browser tabs); further ones are closed with 1013.",
    ),
    key(
        "EF__WS_MAX_PER_IP",
        "server",
        Value("1000"),
        "Open websockets from one client address in this process at most (an office behind NAT shares one); further ones are closed with 1013.",
    ),
    key(
        "EF__WS_MAX_MESSAGE_SIZE",
        "server",
        Value("64K"),
        "Largest message a websocket client may send; a larger one closes the socket with 1009.",
    ),
    key(
        "EF__WS_MAX_MESSAGES_PER_SECOND",
        "server",
        Value("10"),
        "Messages a websocket client may send per second; a client that sends more is closed with 1008.",
    ),
    key(
        "EF__WS_SEND_QUEUE",
        "server",
        Value("256"),
        "Messages waiting for one websocket client at most; a client that reads slower is closed with 1013 so that it delays nobody else.",
    ),
    key(
        "EF__SHUTDOWN_TIMEOUT",
        "server",
        Value("30s"),
        "On stop, in-flight requests get this long to finish; keep it below the unit's TimeoutStopSec.",
    ),
    key(
        "EF__TRUSTED_PROXIES",
        "server",
        Value("127.0.0.1/32, ::1/128"),
        "Peers whose X-Forwarded-For / X-Real-IP are believed (a local nginx). Others are the client.",
    ),
    key(
        "EF__CORS_ORIGINS",
        "server",
        Value("https://www.ozon.ru, https://ozon.ru, https://seller.ozon.ru"),
        "Origins allowed to call the API from a browser (the browser extension runs on Ozon's pages); empty for none.",
    ),
    key(
        "EF__HSTS",
        "server",
        ByMode {
            production: HSTS_DEFAULT,
            development: "off",
        },
        "Strict-Transport-Security sent on HTTPS responses, or off.",
    ),
    // --- TLS ----------------------------------------------------------------------------------
    key(
        "EF__TLS_CERT",
        "tls",
        Unset,
        "Certificate chain (PEM). Let's Encrypt: /etc/euraflow/tls/fullchain.pem, copied from /etc/letsencrypt/live/<domain>/ (which the service cannot read) by the certbot deploy hook /etc/letsencrypt/renewal-hooks/deploy/euraflow, which also reloads the server. Unset: a self-signed one is generated.",
    ),
    key(
        "EF__TLS_KEY",
        "tls",
        Unset,
        "Private key (PEM) of EF__TLS_CERT. Let's Encrypt: /etc/euraflow/tls/privkey.pem (0640 root:euraflow, kept up to date by the same hook).",
    ),
    // --- web ----------------------------------------------------------------------------------
    key(
        "EF__WEB_ROOT",
        "web",
        UnderStateDir("web"),
        "The web app build (dist/) served at /.",
    ),
    key(
        "EF__DOWNLOADS_ROOT",
        "web",
        UnderStateDir("downloads"),
        "Files served at /downloads.",
    ),
    key(
        "EF__WEB_CACHE_MAX_AGE",
        "web",
        Value("1d"),
        "Cache lifetime of web files other than index.html and hashed assets.",
    ),
    key(
        "EF__DOWNLOADS_CACHE_MAX_AGE",
        "web",
        Value("1h"),
        "Cache lifetime of /downloads.",
    ),
    // --- security -----------------------------------------------------------------------------
    secret(
        "EF__SECRET_KEY",
        "security",
        "secret_key",
        "JWT signing key, 64+ random characters (euraflow gen-secret). Required in production.",
    ),
    secret(
        "EF__DATA_KEY",
        "security",
        "data_key",
        "Key ring that encrypts stored third-party credentials (Ozon Api-Keys, the exchange-rate API key): base64url 32-byte keys (euraflow gen-data-key), the first encrypts. The package generates it; --dev keeps one in the state directory.",
    ),
    key(
        "EF__ALGORITHM",
        "security",
        Value("HS256"),
        "JWT algorithm; only HS256 is accepted.",
    ),
    key(
        "EF__ACCESS_TOKEN_EXPIRE_MINUTES",
        "security",
        Value("480"),
        "Access token lifetime in minutes.",
    ),
    key(
        "EF__REFRESH_TOKEN_EXPIRE_DAYS",
        "security",
        Value("7"),
        "Refresh token lifetime in days.",
    ),
    key(
        "EF__PASSWORD_HASH",
        "security",
        Value("argon2id"),
        "argon2id for new and changed passwords (bcrypt hashes are upgraded at login), or bcrypt to run side by side with the old system.",
    ),
    key(
        "EF__LOGIN_CAPTCHA",
        "security",
        ByMode {
            production: "true",
            development: "false",
        },
        "Require a solved slider captcha (/auth/captcha) to log in, as the original did; the web app always solves it. Off (the --dev default, for scripts and tests): its token is not checked. While Redis is down a required captcha answers 503 CAPTCHA_UNAVAILABLE.",
    ),
    key(
        "EF__SINGLE_SESSION",
        "security",
        Value("true"),
        "One web session per user: a new login ends the previous one (SESSION_EXPIRED).",
    ),
    key(
        "EF__AUTH_REDIS_FAIL_OPEN",
        "security",
        Value("false"),
        "While Redis is down: false checks sessions and revocations in PostgreSQL (correct, one query per request); true trusts tokens until they expire.",
    ),
    key(
        "EF__RATE_LIMIT_ENABLED",
        "security",
        Value("true"),
        "Apply the request rate limit.",
    ),
    key(
        "EF__RATE_LIMIT_DEFAULT",
        "security",
        Value("100/minute"),
        "Requests per client: N/second, N/minute, N/hour or N/day.",
    ),
    // --- database -----------------------------------------------------------------------------
    key(
        "EF__DB_HOST",
        "database",
        Value("/var/run/postgresql"),
        "PostgreSQL host name, or a unix-socket directory (peer authentication, no password).",
    ),
    key("EF__DB_PORT", "database", Value("5432"), "PostgreSQL port."),
    key(
        "EF__DB_NAME",
        "database",
        ByMode {
            production: "euraflow",
            development: "euraflow_dev",
        },
        "Database name.",
    ),
    key(
        "EF__DB_USER",
        "database",
        DevUser {
            production: "euraflow",
        },
        "Database role (with --dev: the user running the command).",
    ),
    secret(
        "EF__DB_PASSWORD",
        "database",
        "db_password",
        "Database password; not needed with a unix socket and peer authentication.",
    ),
    key(
        "EF__DB_SSLMODE",
        "database",
        Value("prefer"),
        "disable, prefer, require or verify-full (remote servers).",
    ),
    key(
        "EF__DB_SSLROOTCERT",
        "database",
        Unset,
        "CA certificates (PEM) that sign the PostgreSQL server's certificate, for EF__DB_SSLMODE=verify-full, e.g. a cloud provider's bundle. Unset: the public web roots.",
    ),
    key(
        "EF__DB_POOL_SIZE",
        "database",
        Value("40"),
        "Connections kept open.",
    ),
    key(
        "EF__DB_MAX_OVERFLOW",
        "database",
        Value("60"),
        "Extra connections under load (pool total = size + overflow).",
    ),
    key(
        "EF__DB_POOL_TIMEOUT",
        "database",
        Value("30s"),
        "Longest wait for a free connection; then 503 DB_POOL_EXHAUSTED with Retry-After.",
    ),
    key(
        "EF__DB_POOL_IDLE_TIMEOUT",
        "database",
        Value("60s"),
        "Connections above EF__DB_POOL_SIZE idle this long are closed.",
    ),
    key(
        "EF__DB_POOL_RECYCLE",
        "database",
        Value("3600s"),
        "Idle connections older than this are replaced (SQLAlchemy's pool_recycle).",
    ),
    key(
        "EF__DB_CONNECT_TIMEOUT",
        "database",
        Value("10s"),
        "Longest time to open a new database connection.",
    ),
    key(
        "EF__DB_STATEMENT_TIMEOUT",
        "database",
        Value("60s"),
        "statement_timeout of every connection.",
    ),
    key(
        "EF__DB_AUTO_MIGRATE",
        "database",
        Value("true"),
        "Apply pending migrations when the server starts.",
    ),
    // --- redis --------------------------------------------------------------------------------
    key(
        "EF__REDIS_URL",
        "redis",
        Unset,
        "redis://[:password@]host:port/db; overrides the EF__REDIS_HOST/PORT/DB keys.",
    ),
    key("EF__REDIS_HOST", "redis", Value("localhost"), "Redis host."),
    key("EF__REDIS_PORT", "redis", Value("6379"), "Redis port."),
    key(
        "EF__REDIS_DB",
        "redis",
        Value("0"),
        "Redis database number.",
    ),
    secret(
        "EF__REDIS_PASSWORD",
        "redis",
        "redis_password",
        "Redis password, if any.",
    ),
    key(
        "EF__REDIS_MAX_CONNECTIONS",
        "redis",
        Value("50"),
        "Redis connections at most.",
    ),
    key(
        "EF__REDIS_TIMEOUT",
        "redis",
        Value("5s"),
        "Redis connect and command timeout.",
    ),
    key(
        "EF__REDIS_PREFIX",
        "redis",
        Value("ef:"),
        "Prefix of every key this server writes, so several installations can share one Redis.",
    ),
    // --- jobs ---------------------------------------------------------------------------------
    key(
        "EF__WORKER_CONCURRENCY",
        "jobs",
        Value("12"),
        "Jobs run at once by euraflow worker (was EF__CELERY_CONCURRENCY).",
    ),
    key(
        "EF__WORKER_QUEUES",
        "jobs",
        Value("ef_pull=4,ef_push=4,ef_sync=4,default=4,ef_low=2"),
        "Most jobs of one queue running at once, as queue=N,...; queues not listed share EF__WORKER_CONCURRENCY. Queues: ef_core, ef_pull, ef_push, ef_sync, default, ef_low.",
    ),
    key(
        "EF__WORKER_POLL_INTERVAL",
        "jobs",
        Value("1s"),
        "How often an idle worker looks for due jobs without a wake-up (retries whose delay ended, missed notifications).",
    ),
    key(
        "EF__WORKER_SHUTDOWN_TIMEOUT",
        "jobs",
        Value("60s"),
        "On stop, running jobs get this long to finish; the rest go back to the queue. Keep it below the unit's TimeoutStopSec.",
    ),
    key(
        "EF__JOB_LEASE_TIMEOUT",
        "jobs",
        Value("60s"),
        "A running job's lease, renewed every third of it; a job whose worker died runs again once its lease expired.",
    ),
    key(
        "EF__JOB_RETENTION_DAYS",
        "jobs",
        Value("14"),
        "Finished jobs, run logs and health-check records older than this are deleted by ef.core.cleanup.",
    ),
    key(
        "EF__SCHEDULER_ENABLED",
        "jobs",
        Value("true"),
        "Run the cron scheduler inside euraflow worker (safe in several workers at once).",
    ),
    key(
        "EF__ACCOUNT_EXPIRY_CHECK_INTERVAL",
        "jobs",
        Value("60s"),
        "How often euraflow worker ends the sessions of accounts that have expired, so their open websockets get session_expired (account_expired) and close.",
    ),
    key(
        "EF__BACKUP_DIR",
        "jobs",
        UnderStateDir("backups"),
        "Where euraflow backup and ef.system.database_backup write pg_dump files.",
    ),
    key(
        "EF__BACKUP_RETENTION_DAYS",
        "jobs",
        Value("7"),
        "Backups older than this are deleted after each successful backup.",
    ),
    // --- logging and metrics ------------------------------------------------------------------
    key(
        "EF__LOG_LEVEL",
        "logging",
        Value("INFO"),
        "DEBUG, INFO, WARNING or ERROR.",
    ),
    key(
        "EF__LOG_FORMAT",
        "logging",
        Value("text"),
        "text or json on stderr (under systemd the journal is used).",
    ),
    key(
        "EF__METRICS_ENABLED",
        "logging",
        Value("true"),
        "Collect and serve Prometheus metrics.",
    ),
    // --- business -----------------------------------------------------------------------------
    key(
        "EF__INVENTORY_DEFAULT_THRESHOLD",
        "business",
        Value("5"),
        "Default low-stock threshold.",
    ),
    key(
        "EF__PRICE_MIN_MARGIN",
        "business",
        Value("0.2"),
        "Minimum price margin (0..1).",
    ),
    key(
        "EF__OZON_API_BASE_URL",
        "business",
        Value("https://api-seller.ozon.ru"),
        "Ozon Seller API base URL (tests and the demo point it at the fake Ozon).",
    ),
    key(
        "EF__OZON_TIMEOUT",
        "business",
        Value("30s"),
        "Timeout of one Ozon API call.",
    ),
    key(
        "EF__OZON_RATE_LIMIT",
        "business",
        Value("50"),
        "Ozon API calls per second per shop, shared by every process through Redis.",
    ),
    key(
        "EF__PUBLIC_URL",
        "business",
        Unset,
        "The https base URL sellers reach this server at (e.g. https://erp.example.com), used to build the shops' Ozon push URLs (<base>/api/ef/v1/ozon/webhook/<shop>/<secret>). Unset: built from the request's Host.",
    ),
    key(
        "EF__EXCHANGE_RATE_API_BASE_URL",
        "business",
        Value("https://v6.exchangerate-api.com"),
        "Exchange-rate provider (exchangerate-api.com v6) base URL; the key is configured in the web app (系统配置 → 第三方服务). Tests and the demo point it at a fake provider.",
    ),
    key(
        "EF__EXCHANGE_RATE_TIMEOUT",
        "business",
        Value("10s"),
        "Timeout of one exchange-rate provider call (connecting included).",
    ),
];

pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

pub use super::retired::{ALIASES, Alias, META_KEYS, RETIRED, Retired, alias_of, closest, retired};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prefixed() {
        let mut seen = std::collections::HashSet::new();
        for k in KEYS {
            assert!(k.name.starts_with("EF__"), "{}", k.name);
            assert!(seen.insert(k.name), "duplicate {}", k.name);
            assert_eq!(k.secret, k.credential.is_some(), "{}", k.name);
        }
    }

    #[test]
    fn every_key_of_the_original_production_template_is_known() {
        // The keys of the original .env.production.example, in its order.
        for name in [
            "EF__DB_HOST",
            "EF__DB_PORT",
            "EF__DB_NAME",
            "EF__DB_USER",
            "EF__DB_PASSWORD",
            "EF__DB_POOL_SIZE",
            "EF__DB_MAX_OVERFLOW",
            "EF__REDIS_HOST",
            "EF__REDIS_PORT",
            "EF__REDIS_DB",
            "EF__API_HOST",
            "EF__API_PORT",
            "EF__API_PREFIX",
            "EF__API_DEBUG",
            "EF__SECRET_KEY",
            "EF__ALGORITHM",
            "EF__ACCESS_TOKEN_EXPIRE_MINUTES",
            "EF__CELERY_BROKER_URL",
            "EF__CELERY_RESULT_BACKEND",
            "EF__CELERY_CONCURRENCY",
            "EF__USE_ARQ_DISPATCHER",
            "EF__LOG_LEVEL",
            "EF__LOG_FORMAT",
            "EF__METRICS_ENABLED",
            "EF__METRICS_PREFIX",
            "EF__TRACE_ENABLED",
            "EF__PLUGIN_DIR",
            "EF__PLUGIN_AUTO_LOAD",
            "EF__PLUGIN_CONFIG_FILE",
            "EF__RATE_LIMIT_ENABLED",
            "EF__RATE_LIMIT_DEFAULT",
            "EF__INVENTORY_DEFAULT_THRESHOLD",
            "EF__PRICE_MIN_MARGIN",
        ] {
            assert!(
                find(name).is_some() || retired(name).is_some() || alias_of(name).is_some(),
                "{name} is not accepted"
            );
        }
    }
}
