//! Redis, for what may be lost: rate-limit counters, token revocations, websocket fan-out, caches.
//!
//! Commands share a few multiplexed connections (at most `EF__REDIS_MAX_CONNECTIONS`, see
//! [`Shared`]), with connect and command timeouts (`EF__REDIS_TIMEOUT`), and while Redis is down,
//! calls fail fast with backoff between attempts instead of each request waiting for a timeout.
//! The outage is logged when it starts and when it ends. Every key carries `EF__REDIS_PREFIX`.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use redis::aio::MultiplexedConnection;
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
    shared: Shared,
    prefix: String,
    timeout: Duration,
    outage: Outage,
    target: String,
    /// For connections outside the shared ones (the websocket fan-out's subscription).
    info: ConnectionInfo,
}

/// The connections every command shares. A `MultiplexedConnection` pipelines concurrent commands
/// over one socket, so no command waits for a free connection. Checking a connection out of a
/// pool for each command did: 600 concurrent logins (three scripts each) queued for the pool's
/// 50 connections, each checkout cost a PING round trip, and an unrelated request's session check
/// waited behind them for over a second.
///
/// One connection per core, at most `EF__REDIS_MAX_CONNECTIONS`: a connection's replies are read
/// by its own task, so more sockets than cores run no faster, and Redis executes commands one at
/// a time anyway. A connection is made at its first use and dropped after an I/O error or a
/// timeout; the next command through its slot connects again.
struct Shared {
    client: redis::Client,
    config: AsyncConnectionConfig,
    slots: Box<[tokio::sync::Mutex<Slot>]>,
    next: AtomicUsize,
}

#[derive(Default)]
struct Slot {
    conn: Option<MultiplexedConnection>,
    /// Bumped at each new connection, so a failure on an old one does not drop its successor.
    generation: u64,
}

/// A handle on one of the shared connections; commands through it run concurrently with others'.
pub struct Connection {
    inner: MultiplexedConnection,
    slot: usize,
    generation: u64,
}

impl Deref for Connection {
    type Target = MultiplexedConnection;
    fn deref(&self) -> &MultiplexedConnection {
        &self.inner
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut MultiplexedConnection {
        &mut self.inner
    }
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
        let client = redis::Client::open(info.clone()).context("configuring the Redis client")?;
        let conn_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let slots = (0..cores.min(config.max_connections).max(1))
            .map(|_| tokio::sync::Mutex::new(Slot::default()))
            .collect();
        Ok(Arc::new(Redis {
            shared: Shared {
                client,
                config: conn_config,
                slots,
                next: AtomicUsize::new(0),
            },
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

    /// A client for a dedicated connection (pub/sub), outside the shared ones.
    fn dedicated_client(&self) -> Result<redis::Client, RedisError> {
        Ok(redis::Client::open(self.info.clone())?)
    }

    /// A dedicated connection subscribed to `channel`, each step bounded by the command timeout.
    /// The error says what failed, for the caller's log line.
    pub async fn subscribe(&self, channel: &str) -> Result<redis::aio::PubSub, String> {
        let timeout = self.timeout;
        let late = || format!("Redis did not answer within {timeout:?}");
        let client = self.dedicated_client().map_err(|e| e.to_string())?;
        let mut pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
            .await
            .map_err(|_| late())?
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(timeout, pubsub.subscribe(channel))
            .await
            .map_err(|_| late())?
            .map_err(|e| e.to_string())?;
        Ok(pubsub)
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
        self.checkout(true).await
    }

    /// One of the shared connections, connecting its slot when it has none. `backoff`: give up
    /// at once when another caller's connect has just failed (callers queued on the slot would
    /// otherwise each wait for a connect timeout in turn).
    async fn checkout(&self, backoff: bool) -> Result<Connection, RedisError> {
        let index = self.shared.next.fetch_add(1, Ordering::Relaxed) % self.shared.slots.len();
        let mut slot = self.shared.slots[index].lock().await;
        if let Some(conn) = &slot.conn {
            return Ok(Connection {
                inner: conn.clone(),
                slot: index,
                generation: slot.generation,
            });
        }
        if backoff && let Some(last) = self.outage.should_skip() {
            return Err(RedisError::Unavailable(last));
        }
        let connect = self
            .shared
            .client
            .get_multiplexed_async_connection_with_config(&self.shared.config);
        let failure = match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(conn)) => {
                self.outage.succeeded();
                slot.generation += 1;
                slot.conn = Some(conn.clone());
                return Ok(Connection {
                    inner: conn,
                    slot: index,
                    generation: slot.generation,
                });
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("connecting took over {:?}", self.timeout),
        };
        let msg = format!("{failure} ({})", self.target);
        self.outage.failed(&msg);
        Err(RedisError::Unavailable(msg))
    }

    /// Forget a connection that failed, unless its slot has connected again since.
    async fn discard(&self, conn: &Connection) {
        let mut slot = self.shared.slots[conn.slot].lock().await;
        if slot.generation == conn.generation {
            slot.conn = None;
        }
    }

    /// Run one command (or pipeline) with the command timeout.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        let mut conn = self.conn().await?;
        let r = tokio::time::timeout(self.timeout, cmd.query_async(&mut *conn)).await;
        self.finish(&conn, self.timeout, r).await
    }

    pub async fn pipeline<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, RedisError> {
        let mut conn = self.conn().await?;
        let r = tokio::time::timeout(self.timeout, pipe.query_async(&mut *conn)).await;
        self.finish(&conn, self.timeout, r).await
    }

    /// Run a script, within `limit` (and the command timeout).
    pub async fn script<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
        limit: Duration,
    ) -> Result<T, RedisError> {
        let mut conn = self.conn().await?;
        let limit = limit.min(self.timeout);
        let r = tokio::time::timeout(limit, invocation.invoke_async(&mut *conn)).await;
        self.finish(&conn, limit, r).await
    }

    async fn finish<T>(
        &self,
        conn: &Connection,
        limit: Duration,
        r: Result<Result<T, redis::RedisError>, tokio::time::error::Elapsed>,
    ) -> Result<T, RedisError> {
        match r {
            Ok(Ok(v)) => {
                // A command through another slot may have marked an outage that is over.
                self.outage.succeeded();
                Ok(v)
            }
            Ok(Err(e)) if e.is_timeout() => {
                self.discard(conn).await;
                self.outage.failed(&e.to_string());
                Err(RedisError::Unavailable(e.to_string()))
            }
            Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() => {
                // The connection broke (Redis restarted, or closed it): this command fails, the
                // next one through the slot connects again, and only if that fails has an outage
                // begun (a pool did the same, unseen, when its check at checkout failed).
                self.discard(conn).await;
                Err(RedisError::Unavailable(e.to_string()))
            }
            Ok(Err(e)) => Err(RedisError::Command(e)),
            Err(_) => {
                self.discard(conn).await;
                self.outage.failed("command timed out");
                Err(RedisError::Timeout(limit))
            }
        }
    }

    /// Round trip for health: always tries (no backoff), returns the latency.
    pub async fn ping(&self) -> Result<Duration, RedisError> {
        let started = Instant::now();
        let mut conn = self.checkout(false).await?;
        let r =
            tokio::time::timeout(self.timeout, redis::cmd("PING").query_async(&mut *conn)).await;
        let pong: String = self.finish(&conn, self.timeout, r).await?;
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
