//! PostgreSQL: a bounded pool whose every wait is bounded, so exhaustion is an answer (503 with
//! `Retry-After`) and never a hang — the guide's "QueuePool limit reached" failure.
//!
//! - `max_size = EF__DB_POOL_SIZE + EF__DB_MAX_OVERFLOW` (40 + 60 = 100);
//! - wait, create and recycle timeouts are always set (`EF__DB_POOL_TIMEOUT`);
//! - connections above `EF__DB_POOL_SIZE` idle for `EF__DB_POOL_IDLE_TIMEOUT` are closed, and idle
//!   connections older than `EF__DB_POOL_RECYCLE` are replaced (SQLAlchemy's pool_recycle);
//! - each connection has `application_name=euraflow` and `statement_timeout`;
//! - a broken connection (PostgreSQL restarted, `pg_terminate_backend`) is noticed at checkout and
//!   replaced.

pub(crate) mod filter;
pub mod migrate;
pub mod prepare;
pub(crate) mod sql;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_util::sync::CancellationToken;

use crate::config::DbConfig;
use crate::outage::Outage;

pub use deadpool_postgres::{Client, Transaction};

/// How long a checkout may wait for a pooled connection to be checked and handed over.
const RECYCLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often idle connections are reviewed.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("all {max} database connections are busy (waited {waited:?})")]
    PoolExhausted { max: usize, waited: Duration },
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
}

impl DbError {
    /// Errors that mean "the database is not there", as opposed to a bad query.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Unavailable(_) => true,
            DbError::Query(e) => e.is_closed() || e.code().is_none(),
            DbError::PoolExhausted { .. } => false,
        }
    }
}

/// Pool gauges for health, metrics and `euraflow status`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PoolStatus {
    /// Connections open now.
    pub size: usize,
    /// Upper bound (pool size + overflow).
    pub max: usize,
    /// Open and idle.
    pub idle: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
}

pub struct Database {
    pool: Pool,
    config: DbConfig,
    outage: Outage,
    pool_timeouts: AtomicU64,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("host", &self.config.host)
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Build the pool. No connection is made until one is needed, so the server starts (and
    /// serves what does not need the database) while PostgreSQL is still coming up.
    pub fn new(config: &DbConfig) -> anyhow::Result<Arc<Self>> {
        let pg = pg_config(config, &config.name);
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls_mode(config) {
            TlsMode::None => Manager::from_config(pg, tokio_postgres::NoTls, manager_config),
            TlsMode::EncryptOnly => {
                Manager::from_config(pg, tls::encrypting_only()?, manager_config)
            }
            TlsMode::Verify => Manager::from_config(
                pg,
                tls::verifying(config.sslrootcert.as_deref())?,
                manager_config,
            ),
        };
        let pool = Pool::builder(manager)
            .max_size(config.max_connections())
            .wait_timeout(Some(config.pool_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(RECYCLE_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .context("building the database pool")?;
        Ok(Arc::new(Database {
            pool,
            config: config.clone(),
            outage: Outage::new("PostgreSQL"),
            pool_timeouts: AtomicU64::new(0),
        }))
    }

    pub fn config(&self) -> &DbConfig {
        &self.config
    }

    /// A pooled connection, within the configured bounds.
    pub async fn get(&self) -> Result<Client, DbError> {
        match self.pool.get().await {
            Ok(c) => {
                self.outage.succeeded();
                Ok(c)
            }
            Err(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)) => {
                self.pool_timeouts.fetch_add(1, Ordering::Relaxed);
                Err(DbError::PoolExhausted {
                    max: self.pool.status().max_size,
                    waited: self.config.pool_timeout,
                })
            }
            Err(PoolError::Timeout(_)) => {
                let msg = format!(
                    "no connection within {:?} (EF__DB_CONNECT_TIMEOUT)",
                    self.config.connect_timeout
                );
                self.outage.failed(&msg);
                Err(DbError::Unavailable(msg))
            }
            Err(PoolError::Backend(e)) => {
                let msg = describe_connect_error(&e, &self.config);
                self.outage.failed(&msg);
                Err(DbError::Unavailable(msg))
            }
            Err(e) => {
                let msg = e.to_string();
                self.outage.failed(&msg);
                Err(DbError::Unavailable(msg))
            }
        }
    }

    pub fn status(&self) -> PoolStatus {
        let s = self.pool.status();
        PoolStatus {
            size: s.size,
            max: s.max_size,
            idle: s.available,
            waiting: s.waiting,
        }
    }

    pub fn pool_timeouts(&self) -> u64 {
        self.pool_timeouts.load(Ordering::Relaxed)
    }

    pub fn is_down(&self) -> bool {
        self.outage.is_down()
    }

    /// Close idle overflow connections and replace old ones; runs until `stop`.
    pub async fn maintain(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            self.trim_idle();
        }
    }

    /// One maintenance pass; returns how many connections were closed.
    pub fn trim_idle(&self) -> usize {
        let base = self.config.pool_size;
        let idle_limit = self.config.pool_idle_timeout;
        let max_age = self.config.pool_recycle;
        let mut excess = self.pool.status().size.saturating_sub(base);
        let result = self.pool.retain(|_, m| {
            if m.age() > max_age {
                return false;
            }
            if excess > 0 && m.last_used() > idle_limit {
                excess -= 1;
                return false;
            }
            true
        });
        let closed = result.removed.len();
        if closed > 0 {
            tracing::debug!(closed, "closed idle database connections");
        }
        closed
    }

    /// Stop handing out connections and close the idle ones (shutdown).
    pub fn close(&self) {
        self.pool.close();
    }
}

enum TlsMode {
    None,
    EncryptOnly,
    Verify,
}

fn is_unix_socket(host: &str) -> bool {
    host.starts_with('/')
}

fn tls_mode(config: &DbConfig) -> TlsMode {
    if is_unix_socket(&config.host) {
        return TlsMode::None;
    }
    match config.sslmode.as_str() {
        "disable" => TlsMode::None,
        "verify-full" => TlsMode::Verify,
        _ => TlsMode::EncryptOnly,
    }
}

/// The connection settings for `dbname` (the maintenance database `postgres` when creating ours).
pub fn pg_config(config: &DbConfig, dbname: &str) -> tokio_postgres::Config {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host)
        .port(config.port)
        .user(&config.user)
        .dbname(dbname)
        .application_name("euraflow")
        .connect_timeout(config.connect_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(60))
        .options(format!(
            "-c statement_timeout={}",
            config.statement_timeout.as_millis()
        ));
    if !config.password.is_empty() {
        pg.password(config.password.expose());
    }
    let mode = if is_unix_socket(&config.host) {
        tokio_postgres::config::SslMode::Disable
    } else {
        match config.sslmode.as_str() {
            "disable" => tokio_postgres::config::SslMode::Disable,
            "prefer" => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    };
    pg.ssl_mode(mode);
    pg
}

/// Open a single connection outside the pool (migrations, `status`, creating the database).
pub async fn connect_one(
    config: &DbConfig,
    dbname: &str,
) -> Result<tokio_postgres::Client, DbError> {
    open(config, dbname, None).await
}

/// A dedicated connection whose asynchronous notifications (LISTEN/NOTIFY) are forwarded to the
/// returned channel. The channel closes when the connection does.
pub async fn connect_listener(
    config: &DbConfig,
) -> Result<
    (
        tokio_postgres::Client,
        tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
    ),
    DbError,
> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = open(config, &config.name, Some(tx)).await?;
    Ok((client, rx))
}

type NotificationSender = tokio::sync::mpsc::UnboundedSender<tokio_postgres::Notification>;

/// Connect with the TLS mode the configuration asks for, and drive the connection on a task.
async fn open(
    config: &DbConfig,
    dbname: &str,
    notifications: Option<NotificationSender>,
) -> Result<tokio_postgres::Client, DbError> {
    let pg = pg_config(config, dbname);
    let failed =
        |e: tokio_postgres::Error| DbError::Unavailable(describe_connect_error(&e, config));
    let tls_error = |e: anyhow::Error| DbError::Unavailable(format!("{e:#}"));
    let client = match tls_mode(config) {
        TlsMode::None => drive(
            pg.connect(tokio_postgres::NoTls).await.map_err(failed)?,
            notifications,
        ),
        TlsMode::EncryptOnly => {
            let tls = tls::encrypting_only().map_err(tls_error)?;
            drive(pg.connect(tls).await.map_err(failed)?, notifications)
        }
        TlsMode::Verify => {
            let tls = tls::verifying(config.sslrootcert.as_deref()).map_err(tls_error)?;
            drive(pg.connect(tls).await.map_err(failed)?, notifications)
        }
    };
    Ok(client)
}

/// Run the connection until it closes, forwarding notifications when someone listens (the
/// connection ends when that listener goes away).
fn drive<S, T>(
    (client, mut connection): (tokio_postgres::Client, tokio_postgres::Connection<S, T>),
    notifications: Option<NotificationSender>,
) -> tokio_postgres::Client
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if let Some(tx) = &notifications
                        && tx.send(n).is_err()
                    {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "database connection closed");
                    break;
                }
            }
        }
    });
    client
}

/// A connection error in terms an operator can act on.
pub fn describe_connect_error(e: &tokio_postgres::Error, config: &DbConfig) -> String {
    let target = if is_unix_socket(&config.host) {
        format!("socket {}/.s.PGSQL.{}", config.host, config.port)
    } else {
        format!("{}:{}", config.host, config.port)
    };
    let base = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    };
    let hint = match e.as_db_error().map(|d| d.code().code()) {
        Some("3D000") => format!(
            "; the database does not exist: run `euraflow migrate --create-database` or `createdb -O {} {}`",
            config.user, config.name
        ),
        Some("28000") | Some("28P01") if is_unix_socket(&config.host) => {
            let me = crate::config::current_username();
            if me != config.user {
                format!(
                    "; peer authentication lets the operating-system user {me} in only as role {me}: run the command as the service user (runuser -u {} -- euraflow ...) or set EF__DB_USER",
                    config.user
                )
            } else {
                format!(
                    "; authentication failed for role {}: does the role exist (createuser {})?",
                    config.user, config.user
                )
            }
        }
        Some("28000") | Some("28P01") => format!(
            "; authentication failed for role {}: check EF__DB_USER and EF__DB_PASSWORD",
            config.user
        ),
        _ => String::new(),
    };
    format!("{target} as {}: {base}{hint}", config.user)
}

/// Quote an identifier for the few statements that cannot take parameters (CREATE DATABASE).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Create the configured database when it is missing and the role may (`--dev`,
/// `migrate --create-database`). Returns whether it was created.
pub async fn create_database_if_missing(config: &DbConfig) -> anyhow::Result<bool> {
    let client = connect_one(config, "postgres")
        .await
        .context("connecting to the maintenance database 'postgres' to create ours")?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&config.name],
        )
        .await
        .context("checking whether the database exists")?
        .is_some();
    if exists {
        return Ok(false);
    }
    client
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&config.name)))
        .await
        .map_err(|e| {
            let reason = e
                .as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_else(|| e.to_string());
            anyhow::anyhow!(
                "cannot create database {}: {reason}; ask an administrator to run `createdb -O {} {}`",
                config.name,
                config.user,
                config.name
            )
        })?;
    tracing::info!(database = %config.name, "created the database");
    Ok(true)
}
