//! From layered text to typed values: `build` reads every key through the `Resolver`, which
//! parses it with the key's `ConfigValue` type. A malformed value becomes an error naming the key,
//! the value (redacted if secret), its source and the fix, and is replaced by the type's default
//! so that every other key is still read and checked; `load` reports all of them together.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keys::{self, DefaultValue as KeyDefault};
use super::loaded::{ConfigError, Diagnostic, Loaded, Setting, Severity, Source, source_phrase};
use super::loader::Loader;
use super::render::display_value;
use super::secret::Secret;
use super::sections::{
    BusinessConfig, Config, DbConfig, HttpConfig, LogConfig, RedisConfig, SecurityConfig,
    TlsConfig, WebConfig, WorkerConfig, WsConfig,
};
use super::validate::validate;
use super::value::{
    self, ByteSize, ConfigValue, Dur, Environment, Hsts, List, LogLevel, QueueLimits, RateLimit,
    Timeout,
};

/// Read every key into the typed `Config`, then apply the cross-key rules. Returns the result
/// and every problem found on the way.
pub(super) fn build(loader: Loader<'_>) -> (Loaded, Vec<ConfigError>) {
    let Loader {
        settings,
        mut diagnostics,
        config_file,
        opts,
        ..
    } = loader;
    let mut r = Resolver {
        settings: &settings,
        errors: Vec::new(),
    };
    let environment: Environment = r.get("EF__ENV");
    let state_dir = PathBuf::from(r.get::<String>("EF__STATE_DIR"));
    let api_host = r.get::<value::Ip>("EF__API_HOST").0;
    let api_port: u16 = r.get("EF__API_PORT");
    let tls_cert: Option<PathBuf> = r.get("EF__TLS_CERT");
    let tls_key: Option<PathBuf> = r.get("EF__TLS_KEY");
    let tls = match (tls_cert, tls_key) {
        (None, None) => TlsConfig::SelfSigned {
            dir: state_dir.join("tls"),
        },
        (Some(cert), Some(key)) => TlsConfig::Files {
            cert: absolute(&opts.cwd, &cert),
            key: absolute(&opts.cwd, &key),
        },
        (Some(_), None) | (None, Some(_)) => {
            r.fail(
                "EF__TLS_KEY",
                "EF__TLS_CERT and EF__TLS_KEY must be set together; fix: set both (fullchain.pem and privkey.pem), or neither for a self-signed certificate".into(),
            );
            TlsConfig::SelfSigned {
                dir: state_dir.join("tls"),
            }
        }
    };
    let debug: bool = r.get("EF__API_DEBUG");
    let rate_limit_enabled: bool = r.get("EF__RATE_LIMIT_ENABLED");
    let rate_limit: Option<RateLimit> = r.get("EF__RATE_LIMIT_DEFAULT");
    let config = Config {
        environment,
        server_name: r.get("EF__SERVER_NAME"),
        debug,
        http: HttpConfig {
            https_listen: r.get("EF__HTTPS_LISTEN"),
            http_listen: SocketAddr::new(api_host, api_port),
            api_prefix: r.get("EF__API_PREFIX"),
            max_connections: r.get("EF__MAX_CONNECTIONS"),
            max_body_size: r.get::<ByteSize>("EF__MAX_BODY_SIZE").0,
            max_json_body_size: r.get::<ByteSize>("EF__MAX_JSON_BODY_SIZE").0,
            request_timeout: r.get::<Timeout>("EF__REQUEST_TIMEOUT").0,
            header_timeout: r.get::<Timeout>("EF__HTTP_HEADER_TIMEOUT").0,
            keepalive_timeout: r.get::<Timeout>("EF__KEEPALIVE_TIMEOUT").0,
            send_timeout: r.get::<Timeout>("EF__SEND_TIMEOUT").0,
            tls_handshake_timeout: r.get::<Timeout>("EF__TLS_HANDSHAKE_TIMEOUT").0,
            ws_idle_timeout: r.get::<Timeout>("EF__WS_IDLE_TIMEOUT").0,
            ws: WsConfig {
                ping_interval: r.get::<Timeout>("EF__WS_PING_INTERVAL").0,
                max_connections: r.get("EF__WS_MAX_CONNECTIONS"),
                max_per_user: r.get("EF__WS_MAX_PER_USER"),
                max_per_ip: r.get("EF__WS_MAX_PER_IP"),
                max_message_size: usize::try_from(r.get::<ByteSize>("EF__WS_MAX_MESSAGE_SIZE").0)
                    .unwrap_or(usize::MAX),
                max_messages_per_second: r.get("EF__WS_MAX_MESSAGES_PER_SECOND"),
                send_queue: r.get("EF__WS_SEND_QUEUE"),
            },
            shutdown_timeout: r.get::<Timeout>("EF__SHUTDOWN_TIMEOUT").0,
            trusted_proxies: r.get("EF__TRUSTED_PROXIES"),
            cors_origins: r.get::<List>("EF__CORS_ORIGINS").0,
            hsts: r.get::<Hsts>("EF__HSTS").0,
            metrics_enabled: r.get("EF__METRICS_ENABLED"),
        },
        tls,
        web: WebConfig {
            web_root: absolute(&opts.cwd, &r.get::<PathBuf>("EF__WEB_ROOT")),
            downloads_root: absolute(&opts.cwd, &r.get::<PathBuf>("EF__DOWNLOADS_ROOT")),
            web_cache_max_age: r.get::<Dur>("EF__WEB_CACHE_MAX_AGE").0,
            downloads_cache_max_age: r.get::<Dur>("EF__DOWNLOADS_CACHE_MAX_AGE").0,
        },
        security: SecurityConfig {
            secret_key: r.get("EF__SECRET_KEY"),
            data_key: r.get("EF__DATA_KEY"),
            access_token_ttl: Duration::from_secs(
                60 * r.get::<u64>("EF__ACCESS_TOKEN_EXPIRE_MINUTES"),
            ),
            refresh_token_ttl: Duration::from_secs(
                86400 * r.get::<u64>("EF__REFRESH_TOKEN_EXPIRE_DAYS"),
            ),
            rate_limit: rate_limit.filter(|_| rate_limit_enabled),
            password_hash: r.get("EF__PASSWORD_HASH"),
            single_session: r.get("EF__SINGLE_SESSION"),
            redis_fail_open: r.get("EF__AUTH_REDIS_FAIL_OPEN"),
            login_captcha: r.get("EF__LOGIN_CAPTCHA"),
        },
        db: DbConfig {
            host: r.get("EF__DB_HOST"),
            port: r.get("EF__DB_PORT"),
            name: r.get("EF__DB_NAME"),
            user: r.get("EF__DB_USER"),
            password: r.get("EF__DB_PASSWORD"),
            sslmode: r.get("EF__DB_SSLMODE"),
            sslrootcert: r
                .get::<Option<PathBuf>>("EF__DB_SSLROOTCERT")
                .map(|p| absolute(&opts.cwd, &p)),
            pool_size: r.get("EF__DB_POOL_SIZE"),
            max_overflow: r.get("EF__DB_MAX_OVERFLOW"),
            pool_timeout: r.get::<Timeout>("EF__DB_POOL_TIMEOUT").0,
            pool_idle_timeout: r.get::<Timeout>("EF__DB_POOL_IDLE_TIMEOUT").0,
            pool_recycle: r.get::<Timeout>("EF__DB_POOL_RECYCLE").0,
            connect_timeout: r.get::<Timeout>("EF__DB_CONNECT_TIMEOUT").0,
            statement_timeout: r.get::<Timeout>("EF__DB_STATEMENT_TIMEOUT").0,
            auto_migrate: r.get("EF__DB_AUTO_MIGRATE"),
        },
        redis: RedisConfig {
            url: r.get::<Option<Secret>>("EF__REDIS_URL"),
            host: r.get("EF__REDIS_HOST"),
            port: r.get("EF__REDIS_PORT"),
            db: r.get("EF__REDIS_DB"),
            password: r.get("EF__REDIS_PASSWORD"),
            max_connections: r.get("EF__REDIS_MAX_CONNECTIONS"),
            timeout: r.get::<Timeout>("EF__REDIS_TIMEOUT").0,
            prefix: r.get("EF__REDIS_PREFIX"),
        },
        worker: WorkerConfig {
            concurrency: r.get("EF__WORKER_CONCURRENCY"),
            queue_limits: r.get::<QueueLimits>("EF__WORKER_QUEUES").0,
            poll_interval: r.get::<Timeout>("EF__WORKER_POLL_INTERVAL").0,
            shutdown_timeout: r.get::<Timeout>("EF__WORKER_SHUTDOWN_TIMEOUT").0,
            lease: r.get::<Timeout>("EF__JOB_LEASE_TIMEOUT").0,
            job_retention_days: r.get("EF__JOB_RETENTION_DAYS"),
            scheduler_enabled: r.get("EF__SCHEDULER_ENABLED"),
            account_expiry_check: r.get::<Timeout>("EF__ACCOUNT_EXPIRY_CHECK_INTERVAL").0,
            backup_dir: absolute(&opts.cwd, &r.get::<PathBuf>("EF__BACKUP_DIR")),
            backup_retention_days: r.get("EF__BACKUP_RETENTION_DAYS"),
        },
        log: LogConfig {
            level: if debug && !r.is_set("EF__LOG_LEVEL") {
                LogLevel::Debug
            } else {
                r.get("EF__LOG_LEVEL")
            },
            format: r.get("EF__LOG_FORMAT"),
        },
        business: BusinessConfig {
            inventory_default_threshold: r.get("EF__INVENTORY_DEFAULT_THRESHOLD"),
            price_min_margin: r.get("EF__PRICE_MIN_MARGIN"),
            ozon_api_base_url: r.get("EF__OZON_API_BASE_URL"),
            ozon_timeout: r.get::<Dur>("EF__OZON_TIMEOUT").0,
            ozon_rate_limit: r.get("EF__OZON_RATE_LIMIT"),
            public_url: r
                .get::<Option<String>>("EF__PUBLIC_URL")
                .map(|u| u.trim().trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty()),
            exchange_rate_api_base_url: r.get("EF__EXCHANGE_RATE_API_BASE_URL"),
            exchange_rate_timeout: r.get::<Dur>("EF__EXCHANGE_RATE_TIMEOUT").0,
        },
        state_dir,
    };
    let mut config = config;
    if !r.is_set("EF__DB_PORT")
        && let Some((port, note)) = local_postgresql_port(&config.db.host, config.db.port)
    {
        config.db.port = port;
        diagnostics.push(Diagnostic {
            severity: Severity::Notice,
            message: note,
        });
    }
    validate(&config, &mut r, &mut diagnostics);
    let problems = r.errors;
    (
        Loaded {
            config,
            settings,
            diagnostics,
            config_file,
        },
        problems,
    )
}

/// A local PostgreSQL reached through its socket directory announces its port in the socket's
/// name (`.s.PGSQL.<port>`). When the port was not configured and nothing listens on the default
/// one but exactly one other cluster does (Debian numbers a second cluster 5433), use that one:
/// the package created the database there.
fn local_postgresql_port(host: &str, port: u16) -> Option<(u16, String)> {
    if !host.starts_with('/') {
        return None;
    }
    let dir = Path::new(host);
    if dir.join(format!(".s.PGSQL.{port}")).exists() {
        return None;
    }
    let ports: Vec<u16> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix(".s.PGSQL.")?
                .parse::<u16>()
                .ok()
        })
        .collect();
    match ports.as_slice() {
        [only] => Some((
            *only,
            format!(
                "no PostgreSQL socket for port {port} in {host}; using the local cluster on port {only} (set EF__DB_PORT to choose)"
            ),
        )),
        _ => None,
    }
}

/// Typed reads out of the layered settings; every failed read or broken rule is collected in
/// `errors` rather than returned, so one run reports all of them.
pub(super) struct Resolver<'a> {
    pub(super) settings: &'a BTreeMap<&'static str, Setting>,
    errors: Vec<ConfigError>,
}

impl Resolver<'_> {
    /// The typed value of `name`. A malformed value is recorded as an error (with key, value,
    /// source and fix) and replaced by the type's default so that the remaining keys are still
    /// checked; `build` then returns every error at once.
    fn get<T: ConfigValue + std::default::Default>(&mut self, name: &'static str) -> T {
        let Some(key) = keys::find(name) else {
            self.fail(
                name,
                format!("internal error: {name} is not in the key table"),
            );
            return T::default();
        };
        let Some(setting) = self.settings.get(name) else {
            return T::default();
        };
        match T::parse_value(&setting.value) {
            Ok(v) => v,
            Err(invalid) => {
                let shown = display_value(key, &setting.value);
                self.fail(
                    name,
                    format!(
                        "{name}={shown} ({}): {}; fix: {} (default: {})",
                        source_phrase(&setting.source),
                        invalid.problem,
                        invalid.fix,
                        default_text(name)
                    ),
                );
                T::default()
            }
        }
    }

    pub(super) fn fail(&mut self, key: &str, message: String) {
        self.errors.push(ConfigError {
            key: Some(key.to_owned()),
            message,
        });
    }

    /// Whether the key was set anywhere, rather than left at its default.
    fn is_set(&self, name: &str) -> bool {
        self.settings
            .get(name)
            .is_some_and(|s| !matches!(s.source, Source::Default | Source::DevDefault))
    }

    pub(super) fn has_error(&self, key: &str) -> bool {
        self.errors.iter().any(|e| e.key.as_deref() == Some(key))
    }

    pub(super) fn source_of(&self, name: &str) -> String {
        self.settings
            .get(name)
            .map(|s| source_phrase(&s.source))
            .unwrap_or_else(|| "default".into())
    }
}

/// A key's default as shown in error messages (the production value).
pub(super) fn default_text(name: &str) -> String {
    match keys::find(name).map(|k| k.default) {
        Some(KeyDefault::Value(v)) => v.to_owned(),
        Some(KeyDefault::ByMode { production, .. }) => production.to_owned(),
        Some(KeyDefault::UnderStateDir(sub)) => format!("<state dir>/{sub}"),
        Some(KeyDefault::Hostname) => "the host name".into(),
        Some(KeyDefault::DevUser { production }) => production.to_owned(),
        _ => "unset".into(),
    }
}

fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    if p.as_os_str().is_empty() || p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}
