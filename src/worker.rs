//! `euraflow worker`: the job worker and the scheduler in one process.
//!
//! start → migrations (as `serve`) → READY=1 → STATUS= every 10 s (running, queued, dead) and
//! WATCHDOG=1 → SIGTERM/SIGINT → STOPPING=1 → no new jobs; running ones finish within
//! `EF__WORKER_SHUTDOWN_TIMEOUT`, the rest are released to the queue → exit 0.
//!
//! The worker needs PostgreSQL only: Redis being down does not stop jobs (only the health check
//! job reports it). A heartbeat row in `service_heartbeats` (kind `worker`) is refreshed every
//! 15 s for the server's health check and `euraflow status`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Loaded;
use crate::db::Database;
use crate::jobs::Registry;
use crate::jobs::registry::JobEnv;
use crate::jobs::scheduler::{Scheduler, SystemClock};
use crate::jobs::worker::{Worker, WorkerOptions};
use crate::lifecycle::{Lifecycle, Signal, Signals, TaskName};
use crate::process::ProcessError;
use crate::redis::Redis;
use crate::systemd;

const STATUS_EVERY: Duration = Duration::from_secs(10);
/// Well under the 90 s after which health calls a worker gone.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);
const SCHEDULER_EVERY: Duration = Duration::from_secs(1);

/// The job worker, the scheduler and the heartbeat, running as tasks of a lifecycle: what
/// `euraflow worker` runs, and what `serve --dev` runs beside the server so that the one-command
/// development setup runs jobs too.
pub struct Jobs {
    worker: Arc<Worker>,
    /// Cancelled to stop taking jobs; running ones then finish within the shutdown timeout.
    worker_stop: CancellationToken,
    opts: WorkerOptions,
    db: Arc<Database>,
}

impl Jobs {
    /// Spawn the worker, the scheduler (when enabled) and the heartbeat on `lifecycle`, with a
    /// pool of their own.
    pub fn start(
        config: Arc<crate::config::Config>,
        registry: Registry,
        lifecycle: &Lifecycle,
    ) -> Result<Jobs, ProcessError> {
        let db = Database::new(&config.db)?;
        let redis = Redis::new(&config.redis)?;
        let env = JobEnv::new(config.clone(), db.clone(), redis.clone());
        let registry = Arc::new(registry);
        let opts = WorkerOptions::from_config(&config.worker);
        let worker = Worker::new(
            registry.clone(),
            env,
            opts.clone(),
            Worker::new_instance_id(),
        );
        lifecycle.spawn(
            TaskName::DatabaseMaintenance,
            db.clone().maintain(lifecycle.shutdown_token()),
        );
        // The worker drains after its own token, cancelled by `stop_taking_jobs`.
        let worker_stop = CancellationToken::new();
        {
            let worker = worker.clone();
            let stop = worker_stop.clone();
            lifecycle.spawn(TaskName::Worker, async move { worker.run(stop).await });
        }
        if config.worker.scheduler_enabled {
            let scheduler = Scheduler::new(db.clone(), registry.clone(), Arc::new(SystemClock));
            lifecycle.spawn(
                TaskName::Scheduler,
                scheduler.run(SCHEDULER_EVERY, lifecycle.shutdown_token()),
            );
        }
        {
            let db = db.clone();
            let worker = worker.clone();
            let stop = lifecycle.shutdown_token();
            let scheduler = config.worker.scheduler_enabled;
            lifecycle.spawn(TaskName::Heartbeat, async move {
                let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop.cancelled() => break,
                    }
                    if let Err(e) = heartbeat(&db, &worker, scheduler).await {
                        tracing::debug!(error = %e, "cannot write the worker heartbeat");
                    }
                }
                // No last beat: a stopped worker's heartbeat ages, and health reports it gone.
            });
        }
        lifecycle.spawn(
            TaskName::AccountExpiry,
            end_expired_sessions(
                config.clone(),
                db.clone(),
                redis,
                lifecycle.shutdown_token(),
            ),
        );
        Ok(Jobs {
            worker,
            worker_stop,
            opts,
            db,
        })
    }

    /// Take no new jobs; running ones finish within `shutdown_timeout()` (the lifecycle's stop
    /// waits for them).
    pub fn stop_taking_jobs(&self) {
        self.worker_stop.cancel();
    }

    pub fn shutdown_timeout(&self) -> Duration {
        self.opts.shutdown_timeout
    }

    pub fn close(&self) {
        self.db.close();
    }
}

/// Every `EF__ACCOUNT_EXPIRY_CHECK_INTERVAL`: end the sessions of accounts that expired, so
/// their tokens stop at once and their websockets (on any server) get `session_expired`.
/// Several workers may run it at once: a session is ended (and announced) by one of them.
async fn end_expired_sessions(
    config: Arc<crate::config::Config>,
    db: Arc<Database>,
    redis: Arc<Redis>,
    stop: CancellationToken,
) {
    let realtime = match crate::realtime::Realtime::publisher(&config, redis.clone()) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "account expiry check not started");
            return;
        }
    };
    let store = crate::auth::sessions::AuthStore::new(
        db.clone(),
        redis,
        config.security.redis_fail_open,
        config.security.refresh_token_ttl.as_secs(),
    );
    let mut tick = tokio::time::interval(config.worker.account_expiry_check);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let ended = match db.get().await {
            Ok(c) => crate::auth::sessions::end_expired(&c).await,
            Err(e) => Err(e),
        };
        let ended = match ended {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "account expiry check skipped");
                continue;
            }
        };
        if ended.is_empty() {
            continue;
        }
        tracing::info!(
            sessions = ended.len(),
            "ended the sessions of expired accounts"
        );
        let mut effects = crate::domain::Effects::default();
        for (user, token) in ended {
            effects.end_sessions(user, vec![token], "account_expired");
            effects.stale([user]);
        }
        store.apply(&effects).await;
        realtime.end_sessions(&effects.ended_sessions).await;
    }
}

/// Run the worker with `registry` until SIGTERM/SIGINT. The shipped binary passes
/// `jobs::builtin_registry()`; a program linking the library may add its own job types.
pub async fn run(loaded: Loaded, registry: Registry, dev: bool) -> Result<(), ProcessError> {
    let config = Arc::new(loaded.config.clone());
    let lifecycle = Lifecycle::new();
    let mut signals = Signals::install()?;

    crate::db::prepare::prepare(&config, &lifecycle, dev, move |config| async move {
        if dev {
            crate::auth::bootstrap::ensure_admin_in_dev(config).await;
        }
    })
    .await
    .map_err(ProcessError::Migration)?;
    let jobs = Jobs::start(config.clone(), registry, &lifecycle)?;
    let (worker, opts, db) = (jobs.worker.clone(), jobs.opts.clone(), jobs.db.clone());
    let instance = worker.instance_id().to_owned();

    let summary = format!(
        "worker: {} slots over 6 queues, scheduler {}",
        opts.concurrency,
        if config.worker.scheduler_enabled {
            "on"
        } else {
            "off"
        }
    );
    tracing::info!(
        instance = %instance,
        concurrency = opts.concurrency,
        scheduler = config.worker.scheduler_enabled,
        version = env!("CARGO_PKG_VERSION"),
        "worker ready"
    );
    systemd::ready(&summary);

    systemd::spawn_watchdog(&lifecycle);
    {
        let db = db.clone();
        let worker = worker.clone();
        lifecycle.spawn_status_reporter(Duration::ZERO, STATUS_EVERY, move || {
            let db = db.clone();
            let running = worker.running();
            async move {
                match status_line(&db).await {
                    Ok(counts) => format!("{running} running here; {counts}"),
                    Err(e) => format!("{running} running here; queue unreadable: {e}"),
                }
            }
        });
    }

    // The worker has nothing to reload: SIGHUP is noted and otherwise ignored.
    let reason = loop {
        match signals.next().await {
            Signal::Stop(name) => break name,
            Signal::Reload => tracing::info!("SIGHUP: the worker has nothing to reload"),
        }
    };
    tracing::info!(
        signal = reason,
        running = worker.running(),
        bound_s = opts.shutdown_timeout.as_secs_f64(),
        "stopping: taking no new jobs, letting running ones finish"
    );
    systemd::stopping(&format!(
        "stopping: {} jobs finishing (at most {}s)",
        worker.running(),
        opts.shutdown_timeout.as_secs()
    ));
    jobs.stop_taking_jobs();
    lifecycle
        .stop(opts.shutdown_timeout + Duration::from_secs(15))
        .await;
    jobs.close();
    tracing::info!("worker stopped");
    Ok(())
}

async fn status_line(db: &Database) -> Result<String, crate::jobs::queue::QueueError> {
    let client = db.get().await?;
    let c = crate::jobs::queue::counts(&**client).await?;
    Ok(format!(
        "{} running, {} queued, {} retrying, {} dead",
        c.running, c.queued, c.retrying, c.dead
    ))
}

async fn heartbeat(
    db: &Database,
    worker: &Worker,
    scheduler: bool,
) -> Result<(), crate::jobs::queue::QueueError> {
    let client = db.get().await?;
    let details = serde_json::json!({
        "running": worker.running(),
        "concurrency": worker.options().concurrency,
        "scheduler": scheduler,
    });
    let pid = std::process::id() as i32;
    client
        .execute(
            "INSERT INTO service_heartbeats (instance_id, kind, hostname, pid, version, details)
             VALUES ($1, 'worker', $2, $3, $4, $5)
             ON CONFLICT (instance_id) DO UPDATE
                SET last_seen_at = now(), details = excluded.details",
            &[
                &worker.instance_id(),
                &crate::config::system_hostname(),
                &pid,
                &env!("CARGO_PKG_VERSION"),
                &details,
            ],
        )
        .await?;
    Ok(())
}
