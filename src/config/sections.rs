//! The typed configuration the rest of the program reads: `Config` and one struct per section
//! (`HttpConfig`, `DbConfig`, ...). These are plain values, already parsed and validated; how a
//! key's text becomes a field is in `resolve`, the rules between fields in `validate`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::secret::Secret;
use super::value::{
    ConfigValue, Environment, Invalid, ListenAddr, LogFormat, LogLevel, Networks, RateLimit,
};

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub state_dir: PathBuf,
    pub server_name: String,
    pub debug: bool,
    pub http: HttpConfig,
    pub tls: TlsConfig,
    pub web: WebConfig,
    pub security: SecurityConfig,
    pub db: DbConfig,
    pub redis: RedisConfig,
    pub worker: WorkerConfig,
    pub log: LogConfig,
    pub business: BusinessConfig,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub https_listen: ListenAddr,
    pub http_listen: SocketAddr,
    pub api_prefix: String,
    pub max_connections: usize,
    /// The ceiling of every request body, and the limit of routes that take uploads.
    pub max_body_size: u64,
    /// The limit of the API's JSON routes.
    pub max_json_body_size: u64,
    pub request_timeout: Duration,
    pub header_timeout: Duration,
    /// An open connection with no request in progress is closed after this long.
    pub keepalive_timeout: Duration,
    /// A connection whose output has made no progress for this long is closed.
    pub send_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub ws_idle_timeout: Duration,
    pub ws: WsConfig,
    pub shutdown_timeout: Duration,
    pub trusted_proxies: Networks,
    pub cors_origins: Vec<String>,
    pub hsts: Option<String>,
    pub metrics_enabled: bool,
}

/// Limits of the websocket (`realtime`); the idle timeout is `HttpConfig::ws_idle_timeout`.
#[derive(Debug, Clone, Copy)]
pub struct WsConfig {
    pub ping_interval: Duration,
    pub max_connections: usize,
    pub max_per_user: usize,
    pub max_per_ip: usize,
    pub max_message_size: usize,
    pub max_messages_per_second: u32,
    pub send_queue: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsConfig {
    /// Generated once into `<state dir>/tls/` and reused.
    SelfSigned {
        dir: PathBuf,
    },
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub struct WebConfig {
    pub web_root: PathBuf,
    pub downloads_root: PathBuf,
    pub web_cache_max_age: Duration,
    pub downloads_cache_max_age: Duration,
}

#[derive(Debug, Clone)]
pub struct SecurityConfig {
    pub secret_key: Secret,
    /// The data key ring (`crate::secrets`); empty when none is configured.
    pub data_key: Secret,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// `None` when `EF__RATE_LIMIT_ENABLED=false`.
    pub rate_limit: Option<RateLimit>,
    pub password_hash: PasswordHash,
    pub single_session: bool,
    pub redis_fail_open: bool,
    pub login_captcha: bool,
}

/// How new passwords are hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PasswordHash {
    #[default]
    Argon2id,
    Bcrypt,
}

impl ConfigValue for PasswordHash {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "argon2id" | "argon2" => Ok(PasswordHash::Argon2id),
            "bcrypt" => Ok(PasswordHash::Bcrypt),
            _ => Err(Invalid::new(
                "unknown password hash",
                "write argon2id or bcrypt",
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DbConfig {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    pub password: Secret,
    pub sslmode: String,
    /// CA bundle for `verify-full`; `None`: the public web roots.
    pub sslrootcert: Option<PathBuf>,
    pub pool_size: usize,
    pub max_overflow: usize,
    pub pool_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_recycle: Duration,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    pub auto_migrate: bool,
}

impl DbConfig {
    /// The pool's upper bound: base size plus overflow (the guide: 40 + 60 = 100).
    pub fn max_connections(&self) -> usize {
        self.pool_size + self.max_overflow
    }
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Option<Secret>,
    pub host: String,
    pub port: u16,
    pub db: u32,
    pub password: Secret,
    pub max_connections: usize,
    pub timeout: Duration,
    pub prefix: String,
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub concurrency: usize,
    /// Per-queue caps on running jobs (`EF__WORKER_QUEUES`); unlisted queues are capped only by
    /// `concurrency`.
    pub queue_limits: Vec<(crate::queues::Queue, usize)>,
    pub poll_interval: Duration,
    pub shutdown_timeout: Duration,
    pub lease: Duration,
    pub job_retention_days: u32,
    pub scheduler_enabled: bool,
    /// How often the worker ends the sessions of expired accounts.
    pub account_expiry_check: Duration,
    pub backup_dir: PathBuf,
    pub backup_retention_days: u32,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
}

#[derive(Debug, Clone)]
pub struct BusinessConfig {
    pub inventory_default_threshold: u32,
    pub price_min_margin: f64,
    pub ozon_api_base_url: String,
    pub ozon_timeout: Duration,
    pub ozon_rate_limit: u32,
    /// `EF__PUBLIC_URL` without a trailing slash; `None`: the push URL is built from the request.
    pub public_url: Option<String>,
    pub exchange_rate_api_base_url: String,
    pub exchange_rate_timeout: Duration,
}

impl Config {
    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }
}
