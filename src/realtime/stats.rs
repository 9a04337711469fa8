//! The websocket numbers of every server process sharing Redis, for
//! `GET /notifications/stats`: each `serve` process publishes its hub's numbers
//! ([`Realtime::run_stats_publisher`](super::Realtime::run_stats_publisher)) and any of them
//! reads them all.
//!
//! In Redis, under `EF__REDIS_PREFIX`:
//! - `realtime:processes`: a sorted set of the processes, scored by the unix time of their last
//!   publication; members older than [`ENTRY_TTL_S`] are dead and ignored (and removed by the
//!   next publication of anyone);
//! - `realtime:process:<instance>`: the process's [`ProcessStats`] as JSON;
//! - `realtime:process:<instance>:users`: the set of its users' ids, so that the total of unique
//!   users is exact (`SUNIONSTORE` counts a user with sockets on two servers once).
//!
//! Every key expires [`ENTRY_TTL_S`] after its last refresh, so a process that was killed
//! disappears by itself; one that stops removes its entry at once. `<instance>` is a random id
//! per process start (two servers may run the same pid; a restarted process is a new one).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::hub::HubStats;
use crate::redis::{Redis, RedisError};

/// A live process refreshes its entry this often (and soon after a change, see [`COALESCE`]).
pub const PUBLISH_EVERY: Duration = Duration::from_secs(10);
/// An entry not refreshed for this long is gone: a killed process leaves the list within it.
pub const ENTRY_TTL_S: i64 = 30;
/// After a change (a socket opened or closed), wait this long before publishing, so that a burst
/// (the reconnect storm after a restart) costs one write, not thousands.
pub const COALESCE: Duration = Duration::from_secs(1);
/// At shutdown, removing the entry may take this long at most (the stop's own bound is 3 s).
pub const WITHDRAW_BOUND: Duration = Duration::from_secs(1);

/// One process's sockets, as the stats endpoint lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStats {
    pub host: String,
    pub process_id: u32,
    pub connections: usize,
    pub users: usize,
    /// Subscribed sockets per shop.
    pub shops: BTreeMap<i64, usize>,
    /// When the process published these numbers (RFC 3339).
    pub updated_at: String,
}

impl ProcessStats {
    // Not `#[serde(flatten)]` of `HubStats`: flattening reads the map's keys back as strings,
    // and the shops' integer ids would no longer parse.
    pub fn new(host: String, hub: HubStats, updated_at: String) -> ProcessStats {
        ProcessStats {
            host,
            process_id: std::process::id(),
            connections: hub.connections,
            users: hub.users,
            shops: hub.shops,
            updated_at,
        }
    }
}

/// Every live process and the totals across them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterStats {
    /// By host, then process id.
    pub processes: Vec<ProcessStats>,
    pub total: Totals,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub processes: usize,
    pub connections: usize,
    /// Unique users across all processes: a user with sockets on two servers counts once.
    pub users: usize,
    /// Subscribed sockets per shop, summed over the processes.
    pub shops: BTreeMap<i64, usize>,
}

impl ClusterStats {
    /// Just `me`: what the endpoint answers when Redis cannot tell about the others.
    pub fn only(me: ProcessStats) -> ClusterStats {
        let users = me.users;
        Self::from_processes(vec![me], users)
    }

    fn from_processes(mut processes: Vec<ProcessStats>, unique_users: usize) -> ClusterStats {
        processes.sort_by(|a, b| (&a.host, a.process_id).cmp(&(&b.host, b.process_id)));
        let mut total = Totals {
            processes: processes.len(),
            users: unique_users,
            ..Totals::default()
        };
        for p in &processes {
            total.connections += p.connections;
            for (shop, n) in &p.shops {
                *total.shops.entry(*shop).or_insert(0) += n;
            }
        }
        ClusterStats { processes, total }
    }
}

fn index_key(redis: &Redis) -> String {
    redis.key("realtime:processes")
}

fn entry_key(redis: &Redis, instance: &str) -> String {
    redis.key(&format!("realtime:process:{instance}"))
}

fn users_key(redis: &Redis, instance: &str) -> String {
    redis.key(&format!("realtime:process:{instance}:users"))
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Write (or refresh) this process's entry, in one transaction so a reader never sees its
/// numbers without its users or the other way round.
pub async fn publish(
    redis: &Redis,
    instance: &str,
    me: &ProcessStats,
    user_ids: &[i64],
) -> Result<(), RedisError> {
    let json = serde_json::to_string(me).map_err(|e| {
        RedisError::Unavailable(format!("cannot encode this process's websocket stats: {e}"))
    })?;
    let now = unix_now();
    let (index, users) = (index_key(redis), users_key(redis, instance));
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("SET")
        .arg(entry_key(redis, instance))
        .arg(json)
        .arg("EX")
        .arg(ENTRY_TTL_S)
        .ignore()
        .cmd("DEL")
        .arg(&users)
        .ignore();
    if !user_ids.is_empty() {
        pipe.cmd("SADD")
            .arg(&users)
            .arg(user_ids)
            .ignore()
            .cmd("EXPIRE")
            .arg(&users)
            .arg(ENTRY_TTL_S)
            .ignore();
    }
    pipe.cmd("ZADD")
        .arg(&index)
        .arg(now)
        .arg(instance)
        .ignore()
        // Processes that were killed: their keys have expired; their index members go here.
        .cmd("ZREMRANGEBYSCORE")
        .arg(&index)
        .arg("-inf")
        .arg(format!("({}", now - ENTRY_TTL_S))
        .ignore()
        .cmd("EXPIRE")
        .arg(&index)
        .arg(ENTRY_TTL_S)
        .ignore();
    redis.pipeline::<()>(&pipe).await
}

/// Remove this process's entry (at shutdown).
pub async fn withdraw(redis: &Redis, instance: &str) -> Result<(), RedisError> {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("DEL")
        .arg(entry_key(redis, instance))
        .arg(users_key(redis, instance))
        .ignore()
        .cmd("ZREM")
        .arg(index_key(redis))
        .arg(instance)
        .ignore();
    redis.pipeline::<()>(&pipe).await
}

/// Every live process's entry and the exact number of unique users across them. `scratch`
/// names the reader (the union is stored under it for a moment, inside one transaction).
pub async fn read(redis: &Redis, scratch: &str) -> Result<ClusterStats, RedisError> {
    let live_since = unix_now() - ENTRY_TTL_S;
    let instances: Vec<String> = redis
        .query(
            redis::cmd("ZRANGEBYSCORE")
                .arg(index_key(redis))
                .arg(live_since)
                .arg("+inf"),
        )
        .await?;
    if instances.is_empty() {
        return Ok(ClusterStats::default());
    }
    let mut entries = redis::cmd("MGET");
    let union_key = redis.key(&format!("realtime:users-union:{scratch}"));
    let mut union = redis::cmd("SUNIONSTORE");
    union.arg(&union_key);
    for i in &instances {
        entries.arg(entry_key(redis, i));
        union.arg(users_key(redis, i));
    }
    let mut pipe = redis::pipe();
    pipe.atomic()
        .add_command(entries)
        .add_command(union)
        .cmd("DEL")
        .arg(&union_key)
        .ignore();
    let (entries, unique_users): (Vec<Option<String>>, usize) = redis.pipeline(&pipe).await?;
    let processes = entries
        .into_iter()
        .flatten()
        .filter_map(|json| match serde_json::from_str::<ProcessStats>(&json) {
            Ok(p) => Some(p),
            Err(e) => {
                // Another version's entry during a rolling upgrade, say: left out, not fatal.
                tracing::debug!(error = %e, "ignoring an unreadable websocket stats entry");
                None
            }
        })
        .collect();
    Ok(ClusterStats::from_processes(processes, unique_users))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(host: &str, pid: u32, connections: usize, shops: &[(i64, usize)]) -> ProcessStats {
        ProcessStats {
            process_id: pid,
            ..ProcessStats::new(
                host.into(),
                HubStats {
                    connections,
                    users: 1,
                    shops: shops.iter().copied().collect(),
                },
                "2026-01-01T00:00:00.000Z".into(),
            )
        }
    }

    #[test]
    fn totals_sum_connections_and_shops_and_keep_the_exact_user_count() {
        let c = ClusterStats::from_processes(
            vec![
                process("b", 7, 3, &[(1, 2), (2, 1)]),
                process("a", 9, 2, &[(1, 1)]),
            ],
            4,
        );
        assert_eq!(c.processes[0].host, "a");
        assert_eq!(
            c.total,
            Totals {
                processes: 2,
                connections: 5,
                users: 4,
                shops: [(1, 3), (2, 1)].into_iter().collect(),
            }
        );
        // The shops' ids survive the JSON round trip (object keys are strings there).
        let json = serde_json::to_string(&c.processes[1]).unwrap();
        let back: ProcessStats = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c.processes[1]);
    }
}
