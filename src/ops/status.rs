//! `euraflow status`: the four manual commands of the guide's health-check section in one —
//! the server's health, PostgreSQL connections (ours and in total) against `max_connections`,
//! Redis clients against `maxclients`. Asks the running server over the loopback listener; when it
//! does not answer, asks PostgreSQL and Redis directly and says the server is unreachable.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;
use crate::db::{self, DbError};
use crate::jobs::admin::{self, JobsOverview};
use crate::redis::Redis;
use crate::state::AppState;

const ASK_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ANSWER: usize = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PgCounts {
    pub server_version: String,
    pub database: String,
    pub database_connections: i64,
    pub total_connections: i64,
    pub max_connections: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedisCounts {
    pub connected_clients: u64,
    pub maxclients: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerInfo {
    pub version: String,
    pub uptime_s: u64,
    pub open_connections: u64,
    pub requests_total: u64,
}

/// The server's own view, served at `/system/status` and printed by `euraflow status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerView {
    pub server: Option<ServerInfo>,
    pub server_error: Option<String>,
    pub health: serde_json::Value,
    pub postgres: Option<PgCounts>,
    pub postgres_error: Option<String>,
    pub redis: Option<RedisCounts>,
    pub redis_error: Option<String>,
    /// Queues, running jobs, next scheduled runs and workers.
    #[serde(default)]
    pub jobs: Option<JobsOverview>,
    #[serde(default)]
    pub jobs_error: Option<String>,
    /// This process's websockets.
    #[serde(default)]
    pub websockets: Option<WebsocketCounts>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebsocketCounts {
    pub connections: usize,
    pub users: usize,
    /// `ok`, or `degraded` while messages do not reach other processes (Redis).
    pub fanout: String,
}

pub async fn pg_counts(client: &tokio_postgres::Client) -> Result<PgCounts, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'),
                    current_database(),
                    (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()),
                    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
                    current_setting('max_connections')::bigint",
            &[],
        )
        .await?;
    Ok(PgCounts {
        server_version: row.get(0),
        database: row.get(1),
        database_connections: row.get(2),
        total_connections: row.get(3),
        max_connections: row.get(4),
    })
}

async fn redis_counts(redis: &Redis) -> (Option<RedisCounts>, Option<String>) {
    match redis.client_counts().await {
        Ok((connected_clients, maxclients)) => (
            Some(RedisCounts {
                connected_clients,
                maxclients,
            }),
            None,
        ),
        Err(e) => (None, Some(e.to_string())),
    }
}

/// Inside the server. A pool with no free connection is answered 503 (`DB_POOL_EXHAUSTED`), as
/// any request needing the database; a database that is down is reported, not an error.
pub async fn server_view(state: &AppState) -> Result<ServerView, DbError> {
    let report = state.health().report().await;
    let (postgres, postgres_error, jobs, jobs_error) = match state.db().get().await {
        Ok(client) => {
            let (jobs, jobs_error) = jobs_overview(&client).await;
            match pg_counts(&client).await {
                Ok(c) => (Some(c), None, jobs, jobs_error),
                Err(e) => (None, Some(e.to_string()), jobs, jobs_error),
            }
        }
        Err(e @ DbError::PoolExhausted { .. }) => return Err(e),
        Err(e) => (None, Some(e.to_string()), None, None),
    };
    let (redis, redis_error) = redis_counts(state.redis()).await;
    Ok(ServerView {
        server: Some(ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_s: state.uptime().as_secs(),
            open_connections: state.stats().open_connections(),
            requests_total: state.stats().requests(),
        }),
        server_error: None,
        health: report.detailed(state.uptime()),
        postgres,
        postgres_error,
        redis,
        redis_error,
        jobs,
        jobs_error,
        websockets: Some({
            let rt = state.realtime();
            let hub = rt.hub().stats();
            WebsocketCounts {
                connections: hub.connections,
                users: hub.users,
                fanout: if rt.fanout_ok() { "ok" } else { "degraded" }.to_owned(),
            }
        }),
    })
}

async fn jobs_overview(client: &tokio_postgres::Client) -> (Option<JobsOverview>, Option<String>) {
    match admin::overview(client).await {
        Ok(o) => (Some(o), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

/// The loopback address of the plain listener, as a client on this machine reaches it.
pub(crate) fn local_address(config: &Config) -> SocketAddr {
    let addr = config.http.http_listen;
    if addr.ip().is_unspecified() {
        let ip: IpAddr = if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}

/// A minimal HTTP/1.1 GET over the loopback listener (no TLS, no redirects).
async fn ask_server(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: euraflow-status\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        (&mut s)
            .take(MAX_ANSWER as u64)
            .read_to_end(&mut buf)
            .await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(ASK_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {ASK_TIMEOUT:?}"))??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("malformed HTTP answer"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("malformed status line"))?;
    Ok((code, body.to_owned()))
}

pub async fn run(config: &Config, json: bool) -> ExitCode {
    let addr = local_address(config);
    let path = format!("{}/system/status", config.http.api_prefix);
    let (view, healthy) = match ask_server(addr, &path).await {
        Ok((200, body)) => match serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| serde_json::from_value::<ServerView>(v["data"].clone()).ok())
        {
            Some(view) => {
                let ok = view.health["status"] != "unhealthy";
                (view, ok)
            }
            None => (
                direct(
                    config,
                    format!("http://{addr}{path} answered something unexpected"),
                )
                .await,
                false,
            ),
        },
        Ok((code, body)) => {
            let why = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"]["detail"].as_str().map(str::to_owned))
                .unwrap_or_default();
            (
                direct(config, format!("http://{addr}{path} answered {code} {why}")).await,
                false,
            )
        }
        Err(e) => (
            direct(config, format!("not reachable at http://{addr}: {e:#}")).await,
            false,
        ),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&view).unwrap_or_else(|_| "{}".into())
        );
    } else {
        print!("{}", render(&view, addr));
    }
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Without the server: ask PostgreSQL and Redis ourselves.
async fn direct(config: &Config, server_error: String) -> ServerView {
    let (postgres, postgres_error, jobs, jobs_error) =
        match db::connect_one(&config.db, &config.db.name).await {
            Ok(client) => {
                let (jobs, jobs_error) = jobs_overview(&client).await;
                match pg_counts(&client).await {
                    Ok(c) => (Some(c), None, jobs, jobs_error),
                    Err(e) => (None, Some(e.to_string()), jobs, jobs_error),
                }
            }
            Err(e) => (None, Some(e.to_string()), None, None),
        };
    let (redis, redis_error) = match Redis::new(&config.redis) {
        Ok(r) => redis_counts(&r).await,
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    ServerView {
        server: None,
        server_error: Some(server_error),
        health: serde_json::json!({"status": "unknown"}),
        postgres,
        postgres_error,
        redis,
        redis_error,
        jobs,
        jobs_error,
        websockets: None,
    }
}

fn render(view: &ServerView, addr: SocketAddr) -> String {
    let mut out = String::new();
    let status = view.health["status"].as_str().unwrap_or("unknown");
    out.push_str(&format!(
        "euraflow {} — {status}\n",
        env!("CARGO_PKG_VERSION")
    ));
    match (&view.server, &view.server_error) {
        (Some(s), _) => out.push_str(&format!(
            "server      http://{addr}  version {}, up {}, {} open connections, {} requests served\n",
            s.version,
            human_duration(s.uptime_s),
            s.open_connections,
            s.requests_total
        )),
        (None, Some(e)) => out.push_str(&format!("server      {e}\n")),
        (None, None) => {}
    }
    if let Some(w) = &view.websockets {
        out.push_str(&format!(
            "websockets  {} open, {} users, fan-out {}\n",
            w.connections, w.users, w.fanout
        ));
    }
    let check = |name: &str| -> String {
        let c = &view.health["checks"][name];
        let mut s = c["status"].as_str().unwrap_or("unknown").to_owned();
        if let Some(ms) = c["latency_ms"].as_f64() {
            s.push_str(&format!(" ({ms} ms)"));
        }
        if let Some(m) = c["message"].as_str() {
            s.push_str(&format!(" — {m}"));
        }
        s
    };
    if view.server.is_some() {
        out.push_str(&format!("database    {}\n", check("database")));
        let pool = &view.health["checks"]["database"]["pool"];
        if pool.is_object() {
            out.push_str(&format!(
                "            pool: {} of {} open, {} idle, {} waiting\n",
                pool["size"], pool["max"], pool["idle"], pool["waiting"]
            ));
        }
    }
    match (&view.postgres, &view.postgres_error) {
        (Some(p), _) => out.push_str(&format!(
            "postgresql  {}: {} connections to {}, {} in total of max_connections {}\n",
            p.server_version,
            p.database_connections,
            p.database,
            p.total_connections,
            p.max_connections
        )),
        (None, Some(e)) => out.push_str(&format!("postgresql  unreachable: {e}\n")),
        (None, None) => {}
    }
    if view.server.is_some() {
        out.push_str(&format!("redis       {}\n", check("redis")));
    }
    match (&view.redis, &view.redis_error) {
        (Some(r), _) => out.push_str(&format!(
            "            {} clients connected, maxclients {}\n",
            r.connected_clients,
            r.maxclients
                .map(|m| m.to_string())
                .unwrap_or_else(|| "unknown".into())
        )),
        (None, Some(e)) => out.push_str(&format!("redis       unreachable: {e}\n")),
        (None, None) => {}
    }
    if view.server.is_some() {
        out.push_str(&format!("migrations  {}\n", check("migrations")));
        out.push_str(&format!("worker      {}\n", check("worker")));
    }
    render_jobs(&mut out, view);
    out
}

fn render_jobs(out: &mut String, view: &ServerView) {
    let Some(j) = &view.jobs else {
        if let Some(e) = &view.jobs_error {
            out.push_str(&format!("jobs        unreadable: {e}\n"));
        }
        return;
    };
    for w in &j.workers {
        out.push_str(&format!(
            "worker      {} (pid {} on {}), last seen {:.0}s ago, {} running\n",
            w.instance_id, w.pid, w.hostname, w.last_seen_s, w.details["running"]
        ));
    }
    out.push_str("queues      queue      queued  running  retrying  oldest\n");
    for q in &j.queues {
        let oldest = q
            .oldest_queued_s
            .map(|s| human_duration(s.max(0.0) as u64))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "            {:<9} {:>7} {:>8} {:>9}  {oldest}\n",
            q.queue, q.queued, q.running, q.retrying
        ));
    }
    out.push_str(&format!("dead jobs   {}\n", j.dead));
    if j.running.is_empty() {
        out.push_str("running     none\n");
    }
    for r in &j.running {
        out.push_str(&format!(
            "running     job {} {} ({}), attempt {}, for {}, on {}\n",
            r.id,
            r.job_type,
            r.queue,
            r.attempt,
            human_duration(r.running_s.max(0.0) as u64),
            r.lease_owner.as_deref().unwrap_or("?")
        ));
    }
    for n in &j.next_runs {
        let when = n
            .next_run_at
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|| "not yet planned".into());
        let last = match (&n.last_run_at, &n.last_run_status) {
            (Some(t), Some(s)) => format!(", last {} {s}", t.format("%Y-%m-%d %H:%M")),
            _ => String::new(),
        };
        out.push_str(&format!(
            "next run    {when}  {} ({}){last}\n",
            n.service_key,
            n.schedule.as_deref().unwrap_or("-")
        ));
    }
}

fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}
