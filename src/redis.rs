//! Redis, for what may be lost: rate-limit counters, token revocations, websocket fan-out, caches.
//!
//! A bounded set of connections (`EF__REDIS_MAX_CONNECTIONS`, the guide's 50), connect and
//! command timeouts (`EF__REDIS_TIMEOUT`), and while Redis is down, calls fail fast with backoff
//! between attempts instead of each request waiting for a timeout. The outage is logged when it
//! starts and when it ends. Every key carries `EF__REDIS_PREFIX`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use deadpool_redis::{Connection, Manager, Pool, Runtime};
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use crate::config::RedisConfig;
use crate::outage::Outage;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("Redis is unavailable: {0}")]
    Unavailable(String),
    #[error("Redis command failed: {0}")]
    Command(#[from] redis::RedisError),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
}

pub struct Redis {
    pool: Pool,
    prefix: String,
    timeout: Duration,
    outage: Outage,
    target: String,
    /// For connections outside the pool (the websocket fan-out's subscription).
    info: ConnectionInfo,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Build the client; nothing connects until the first use.
    pub fn new(config: &RedisConfig) -> anyhow::Result<Arc<Self>> {
        let info = connection_info(config)?;
        let target = describe(&info);
        let conn_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout));
        let manager = Manager::new_with_config(info.clone(), conn_config)
            .context("configuring the Redis client")?;
        let pool = Pool::builder(manager)
            .max_size(config.max_connections)
            .wait_timeout(Some(config.timeout))
            .create_timeout(Some(config.timeout))
            .recycle_timeout(Some(config.timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .context("building the Redis pool")?;
        Ok(Arc::new(Redis {
            pool,
            prefix: config.prefix.clone(),
            timeout: config.timeout,
            outage: Outage::new("Redis"),
            target,
            info,
        }))
    }

    /// The full key for `name`, with this installation's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A client for a dedicated connection (pub/sub), outside the pool.
    pub fn dedicated_client(&self) -> Result<redis::Client, RedisError> {
        Ok(redis::Client::open(self.info.clone())?)
    }

    /// The command timeout (`EF__REDIS_TIMEOUT`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn is_down(&self) -> bool {
        self.outage.is_down()
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// A connection, or a fast failure while Redis is known to be down.
    pub async fn conn(&self) -> Result<Connection, RedisError> {
        if let Some(last) = self.outage.should_skip() {
            return Err(RedisError::Unavailable(last));
        }
        self.checkout().await
    }

    async fn checkout(&self) -> Result<Connection, RedisError> {
        match self.pool.get().await {
            Ok(c) => {
                self.outage.succeeded();
                Ok(c)
            }
            Err(e) => {
                let msg = format!("{} ({})", e, self.target);
                self.outage.failed(&msg);
                Err(RedisError::Unavailable(msg))
            }
        }
    }

    /// Run one command (or pipeline) with the command timeout.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        let mut conn = self.conn().await?;
        self.finish(tokio::time::timeout(self.timeout, cmd.query_async(&mut *conn)).await)
    }

    pub async fn pipeline<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, RedisError> {
        let mut conn = self.conn().await?;
        self.finish(tokio::time::timeout(self.timeout, pipe.query_async(&mut *conn)).await)
    }

    fn finish<T>(
        &self,
        r: Result<Result<T, redis::RedisError>, tokio::time::error::Elapsed>,
    ) -> Result<T, RedisError> {
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                self.outage.failed(&e.to_string());
                Err(RedisError::Unavailable(e.to_string()))
            }
            Ok(Err(e)) => Err(RedisError::Command(e)),
            Err(_) => {
                self.outage.failed("command timed out");
                Err(RedisError::Timeout(self.timeout))
            }
        }
    }

    /// Round trip for health: always tries (no backoff), returns the latency.
    pub async fn ping(&self) -> Result<Duration, RedisError> {
        let started = Instant::now();
        let mut conn = self.checkout().await?;
        let pong: String = self.finish(
            tokio::time::timeout(self.timeout, redis::cmd("PING").query_async(&mut *conn)).await,
        )?;
        if pong != "PONG" {
            return Err(RedisError::Unavailable(format!(
                "unexpected PING answer {pong:?}"
            )));
        }
        Ok(started.elapsed())
    }

    /// `connected_clients` and `maxclients` of the server (maxclients is `None` when CONFIG is
    /// disabled, as on some managed services).
    pub async fn client_counts(&self) -> Result<(u64, Option<u64>), RedisError> {
        let info: String = self.query(redis::cmd("INFO").arg("clients")).await?;
        let connected = info
            .lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let max = self
            .query::<Vec<String>>(redis::cmd("CONFIG").arg("GET").arg("maxclients"))
            .await
            .ok()
            .and_then(|v| v.get(1).and_then(|n| n.parse().ok()));
        Ok((connected, max))
    }

    pub fn pool_size(&self) -> usize {
        self.pool.status().size
    }
}

fn connection_info(config: &RedisConfig) -> anyhow::Result<ConnectionInfo> {
    if let Some(url) = &config.url {
        return url
            .expose()
            .into_connection_info()
            .map_err(|e| anyhow::anyhow!("EF__REDIS_URL is not a valid redis:// URL: {e}"));
    }
    let mut info = ConnectionAddr::Tcp(config.host.clone(), config.port)
        .into_connection_info()
        .context("Redis address")?;
    let mut redis_info = info.redis_settings().clone().set_db(i64::from(config.db));
    if !config.password.is_empty() {
        redis_info = redis_info.set_password(config.password.expose());
    }
    info = info.set_redis_settings(redis_info);
    Ok(info)
}

/// Host and port for messages; never the password.
fn describe(info: &ConnectionInfo) -> String {
    match info.addr() {
        ConnectionAddr::Tcp(h, p) => format!("{h}:{p}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port} (TLS)"),
        ConnectionAddr::Unix(path) => path.display().to_string(),
        _ => "redis".to_owned(),
    }
}
