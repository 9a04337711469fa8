//! Realtime: the websocket the web app keeps open, and notifications that reach it from any
//! process and any server.
//!
//! [`Realtime::notify`] publishes a message for a [`Target`] (a user, the sockets following a
//! shop, one login session, everyone) on the Redis channel `<EF__REDIS_PREFIX>realtime`. Every
//! server process subscribes ([`Realtime::run_subscriber`]) and hands what arrives to its own
//! [`hub::Hub`], which queues it for the matching sockets. The worker and the CLI publish with the
//! same call ([`Realtime::publisher`]); they hold no sockets. While Redis is down (or this process
//! has lost its subscription) a message is delivered to this process's own sockets directly, and
//! the loss of cross-process delivery is logged once per outage and shown by health.
//!
//! The original kept the sockets in a dictionary inside one API process, so the worker, a second
//! API process or a second server never reached anyone (euraflow-original.md §4).
//!
//! Every server process also publishes its hub's numbers to Redis
//! ([`Realtime::run_stats_publisher`]), so `GET /notifications/stats` on any of them lists all
//! ([`Realtime::cluster_stats`], `stats`).
//!
//! Files: `protocol` (the messages), `hub` (this process's sockets), `socket` (one socket's task),
//! `stats` (the numbers of every process), `metrics`; the HTTP side (upgrade, authentication) is
//! `api::realtime`.

pub mod hub;
pub mod metrics;
pub mod protocol;
pub(crate) mod socket;
pub mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::EndedSession;
use crate::outage::Outage;
use crate::redis::{Redis, RedisError};
use hub::Hub;
use metrics::WsMetrics;
use stats::{ClusterStats, ProcessStats};

/// Whom a message is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Every socket of a user.
    User(i64),
    /// Every socket subscribed to a shop.
    Shop(i64),
    /// The sockets of one login session (by [`session_key`], never the token itself).
    Session { user_id: i64, session: String },
    /// Everyone.
    All,
}

/// What travels on the Redis channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub target: Target,
    pub message: serde_json::Value,
    /// Close the matched sockets with this code after the message (4001 after
    /// `session_expired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close: Option<u16>,
}

/// A published message is at most this large (larger ones are refused, not truncated).
const MAX_ENVELOPE: usize = 256 * 1024;
/// Between attempts to (re)subscribe.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_secs(1);

/// Who triggered a job is kept this long (the job should have ended by then).
const JOB_OWNER_TTL_S: u64 = 86_400;

fn job_owner_key(redis: &Redis, job_id: i64) -> String {
    redis.key(&format!("realtime:job:{job_id}"))
}

/// The worker's side of `job.finished` / `job.failed`: the user who triggered the job (if one
/// did, see [`Realtime::remember_job_owner`]) is told how it ended. The jobs table records no
/// user; the owner is a short-lived Redis key, taken once (a retried job reports its end).
pub async fn job_ended(
    config: &Config,
    redis: &Arc<Redis>,
    job_id: i64,
    job_type: &str,
    error: Option<&str>,
) {
    let owner: Result<Option<i64>, _> = redis
        .query(redis::cmd("GETDEL").arg(job_owner_key(redis, job_id)))
        .await;
    let Ok(Some(owner)) = owner else { return };
    let Ok(rt) = Realtime::publisher(config, redis.clone()) else {
        return;
    };
    let (kind, data) = match error {
        None => (
            "job.finished",
            serde_json::json!({"job_id": job_id, "job_type": job_type}),
        ),
        Some(e) => (
            "job.failed",
            serde_json::json!({"job_id": job_id, "job_type": job_type, "error": e.chars().take(500).collect::<String>()}),
        ),
    };
    rt.notify(
        Target::User(owner),
        serde_json::json!({"type": kind, "data": data, "timestamp": protocol::now()}),
    )
    .await;
}

/// The session's name on the wire and in the hub: sha256 of its token, so the secret token
/// never travels through Redis or sits in memory next to the socket.
pub fn session_key(session_token: &str) -> String {
    let d = sha2::Sha256::digest(session_token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone)]
pub struct Realtime(Arc<Inner>);

struct Inner {
    redis: Arc<Redis>,
    channel: String,
    hub: Arc<Hub>,
    /// Cross-process delivery: down while publishing fails or the subscription is lost.
    fanout: Outage,
    subscribed: AtomicBool,
    /// This process's name in the shared stats (`stats`): random per start.
    instance: String,
    host: String,
    /// Set once the stats entry is removed at shutdown, so that no late request puts it back.
    withdrawn: AtomicBool,
}

impl Realtime {
    /// The realtime side of a server process: its hub (with the configured limits) and the
    /// publisher. `run_subscriber` must be spawned for other processes' messages to arrive.
    pub fn new(config: &Config, redis: Arc<Redis>) -> anyhow::Result<Self> {
        let hub = Arc::new(Hub::new(config.http.ws, WsMetrics::new()?));
        Ok(Self::with_hub(redis, hub))
    }

    /// For processes without sockets (worker, CLI): publishes only.
    pub fn publisher(config: &Config, redis: Arc<Redis>) -> anyhow::Result<Self> {
        Self::new(config, redis)
    }

    fn with_hub(redis: Arc<Redis>, hub: Arc<Hub>) -> Self {
        let channel = redis.key("realtime");
        Realtime(Arc::new(Inner {
            redis,
            channel,
            hub,
            fanout: Outage::new("Redis (websocket fan-out)"),
            subscribed: AtomicBool::new(false),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            host: crate::config::system_hostname(),
            withdrawn: AtomicBool::new(false),
        }))
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.0.hub
    }

    pub fn metrics(&self) -> &WsMetrics {
        &self.0.hub.metrics
    }

    /// Whether messages currently reach other processes.
    pub fn fanout_ok(&self) -> bool {
        !self.0.fanout.is_down()
    }

    /// Send `message` to `target` in every process. Never fails: when Redis cannot take it, this
    /// process's own sockets still get it.
    pub async fn notify(&self, target: Target, message: serde_json::Value) {
        self.send(Envelope {
            target,
            message,
            close: None,
        })
        .await;
    }

    pub async fn send(&self, env: Envelope) {
        let Ok(payload) = serde_json::to_string(&env) else {
            return;
        };
        if payload.len() > MAX_ENVELOPE {
            tracing::warn!(
                bytes = payload.len(),
                "realtime message too large to publish; not sent"
            );
            return;
        }
        let published: Result<i64, _> = self
            .0
            .redis
            .query(redis::cmd("PUBLISH").arg(&self.0.channel).arg(&payload))
            .await;
        match published {
            Ok(_) => {
                if self.0.subscribed.load(Ordering::Relaxed) {
                    self.0.fanout.succeeded();
                    return;
                }
                // Published, but this process does not hear the channel right now.
                self.0.hub.deliver(&env);
            }
            Err(e) => {
                self.0.fanout.failed(&format!(
                    "{e}; websocket messages reach only this process's clients"
                ));
                self.0.hub.deliver(&env);
            }
        }
    }

    /// Remember who triggered a job, so the worker can tell them how it ended (`job_ended`).
    pub async fn remember_job_owner(&self, job_id: i64, user_id: i64) {
        let key = job_owner_key(&self.0.redis, job_id);
        let r: Result<(), _> = self
            .0
            .redis
            .query(
                redis::cmd("SET")
                    .arg(&key)
                    .arg(user_id)
                    .arg("EX")
                    .arg(JOB_OWNER_TTL_S),
            )
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, job_id, "the job's end will not be announced");
        }
    }

    /// Tell the sockets of ended login sessions, then close them with 4001.
    pub async fn end_sessions(&self, ended: &[EndedSession]) {
        for s in ended {
            let reason = protocol::session_reason(s.reason);
            self.send(Envelope {
                target: Target::Session {
                    user_id: s.user_id,
                    session: session_key(&s.token),
                },
                message: protocol::session_expired(reason),
                close: Some(protocol::close::UNAUTHENTICATED),
            })
            .await;
        }
    }

    /// End every socket of `user_id` with `session_expired` (an account disabled or expired,
    /// whatever session its sockets belong to).
    pub async fn end_user(&self, user_id: i64, reason: &'static str) {
        self.send(Envelope {
            target: Target::User(user_id),
            message: protocol::session_expired(protocol::session_reason(reason)),
            close: Some(protocol::close::UNAUTHENTICATED),
        })
        .await;
    }

    /// This process's numbers as the shared stats list them.
    pub fn process_stats(&self) -> ProcessStats {
        ProcessStats::new(self.0.host.clone(), self.0.hub.stats(), protocol::now())
    }

    async fn publish_stats(&self) -> Result<(), RedisError> {
        if self.0.withdrawn.load(Ordering::Relaxed) {
            return Ok(());
        }
        let me = self.process_stats();
        let users = self.0.hub.user_ids();
        stats::publish(&self.0.redis, &self.0.instance, &me, &users).await
    }

    /// The sockets of every server process sharing Redis, this one's fresh (published first);
    /// `Err` when Redis cannot answer (the caller then has only this process's numbers).
    pub async fn cluster_stats(&self) -> Result<ClusterStats, RedisError> {
        self.publish_stats().await?;
        stats::read(&self.0.redis, &self.0.instance).await
    }

    /// Publish this process's numbers for the others' stats until `stop`: every
    /// `stats::PUBLISH_EVERY`, and shortly after sockets come or go; then remove them, so a
    /// stopped process leaves the list at once (a killed one leaves it when its entry expires).
    pub async fn run_stats_publisher(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(stats::PUBLISH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
                () = self.0.hub.changed() => {
                    tokio::select! {
                        () = tokio::time::sleep(stats::COALESCE) => {}
                        () = stop.cancelled() => break,
                    }
                }
            }
            // Redis being down is logged (once) by the fan-out; here only the first failure.
            match self.publish_stats().await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::debug!(error = %e, "this process's websocket stats did not reach Redis");
                }
                Err(_) => {}
            }
        }
        self.0.withdrawn.store(true, Ordering::Relaxed);
        // Bounded below the Redis timeout: a hanging Redis must not hold up the stop (the
        // entry expires by itself).
        let withdrawn = tokio::time::timeout(
            stats::WITHDRAW_BOUND,
            stats::withdraw(&self.0.redis, &self.0.instance),
        )
        .await;
        if !matches!(withdrawn, Ok(Ok(()))) {
            tracing::debug!(
                "could not remove this process's websocket stats; they expire by themselves"
            );
        }
    }

    /// Hear the channel until `stop`, handing every message to this process's hub; resubscribes
    /// after a lost connection.
    pub async fn run_subscriber(self, stop: CancellationToken) {
        loop {
            let result = tokio::select! {
                r = self.subscribe_once(&stop) => r,
                () = stop.cancelled() => return,
            };
            self.0.subscribed.store(false, Ordering::Relaxed);
            if stop.is_cancelled() {
                return;
            }
            let why = match result {
                Ok(()) => "the subscription ended".to_owned(),
                Err(e) => e,
            };
            self.0.fanout.failed(&format!(
                "{why}; websocket messages from other processes do not arrive"
            ));
            tokio::select! {
                () = tokio::time::sleep(RESUBSCRIBE_PAUSE) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    async fn subscribe_once(&self, stop: &CancellationToken) -> Result<(), String> {
        let mut pubsub = self.0.redis.subscribe(&self.0.channel).await?;
        self.0.subscribed.store(true, Ordering::Relaxed);
        self.0.fanout.succeeded();
        let mut messages = pubsub.on_message();
        loop {
            let msg = tokio::select! {
                m = messages.next() => m,
                () = stop.cancelled() => return Ok(()),
            };
            let Some(msg) = msg else { return Ok(()) };
            let payload: Vec<u8> = match msg.get_payload() {
                Ok(p) => p,
                Err(_) => continue,
            };
            match serde_json::from_slice::<Envelope>(&payload) {
                Ok(env) => {
                    self.0.hub.deliver(&env);
                }
                Err(e) => tracing::debug!(error = %e, "ignoring a malformed realtime message"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_name_sessions_by_hash() {
        let env = Envelope {
            target: Target::Session {
                user_id: 3,
                session: session_key("secret-token"),
            },
            message: serde_json::json!({"type": "x"}),
            close: Some(4001),
        };
        let text = serde_json::to_string(&env).unwrap();
        assert!(!text.contains("secret-token"), "{text}");
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back.target, env.target);
        assert_eq!(back.close, Some(4001));
        let all: Envelope =
            serde_json::from_str(r#"{"target":"all","message":{"type":"y"}}"#).unwrap();
        assert_eq!(all.target, Target::All);
    }
}
