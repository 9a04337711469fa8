//! The job registry: a typed `Job` trait and the table of job types a worker can run.
//!
//! A job type is a struct holding its payload. It names itself, its queue, its time limits and
//! retry policy, and optionally a default schedule (seeded into `sync_services`):
//!
//! ```ignore
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct PullOrders { shop_id: i64 }
//! impl Job for PullOrders {
//!     const NAME: &'static str = "ef.ozon.orders.pull";
//!     const QUEUE: Queue = Queue::Pull;
//!     async fn run(self, ctx: JobContext) -> JobResult { ... }
//! }
//! registry.register::<PullOrders>();
//! queue::enqueue(&tx, &NewJob::of(&PullOrders { shop_id: 7 })?).await?;
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::Queue;
use crate::config::Config;
use crate::db::Database;
use crate::health::Health;
use crate::redis::Redis;

/// Soft and hard time limits of one run. At the soft limit the job is asked to stop (its
/// `JobContext` is cancelled); at the hard limit it is aborted and the run counts as failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeLimits {
    pub soft: Duration,
    pub hard: Duration,
}

impl Default for TimeLimits {
    /// The original's Celery limits: 300 s soft, 360 s hard.
    fn default() -> Self {
        TimeLimits {
            soft: Duration::from_secs(300),
            hard: Duration::from_secs(360),
        }
    }
}

/// How failed runs are retried: up to `max_attempts` runs in all, the n-th retry after
/// `base * 2^(n-1)` capped at `cap`, with jitter (a random delay between half and all of it, so
/// jobs that failed together do not retry together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    /// The original's BaseTask: 5 retries (6 runs), exponential backoff capped at 300 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base: Duration::from_secs(10),
            cap: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The delay before the run after failed run number `attempt` (1-based), before jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        self.base
            .checked_mul(1u32 << exp)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// `backoff` with jitter: uniformly between half of it and all of it.
    pub fn delay_with_jitter(&self, attempt: u32) -> Duration {
        let full = self.backoff(attempt);
        let half = full / 2;
        let spread = full.saturating_sub(half).as_secs_f64();
        half + Duration::from_secs_f64(spread * rand::random::<f64>())
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Retried per the job's policy.
    #[error("{0}")]
    Failed(String),
    /// Not retried: the job is dead at once (bad payload, a condition no retry can fix).
    #[error("{0}")]
    Permanent(String),
}

impl JobError {
    pub fn failed(e: impl std::fmt::Display) -> Self {
        JobError::Failed(e.to_string())
    }

    pub fn permanent(e: impl std::fmt::Display) -> Self {
        JobError::Permanent(e.to_string())
    }
}

impl From<anyhow::Error> for JobError {
    fn from(e: anyhow::Error) -> Self {
        JobError::Failed(format!("{e:#}"))
    }
}

impl From<crate::db::DbError> for JobError {
    fn from(e: crate::db::DbError) -> Self {
        JobError::Failed(e.to_string())
    }
}

impl From<tokio_postgres::Error> for JobError {
    fn from(e: tokio_postgres::Error) -> Self {
        JobError::Failed(crate::jobs::queue::describe_pg(&e))
    }
}

/// What a run returns: a JSON summary kept in `jobs.result` (`records_processed` and
/// `records_updated`, when present, go into the service's run log).
pub type JobResult = Result<serde_json::Value, JobError>;

/// What every job can reach: configuration, the database pool, Redis and the health probe.
pub struct JobEnv {
    pub config: Arc<Config>,
    pub db: Arc<Database>,
    pub redis: Arc<Redis>,
    pub health: Arc<Health>,
    /// The Ozon services, or why they could not be built (then Ozon jobs fail with the reason).
    ozon: Result<Arc<crate::ozon::Ozon>, String>,
}

impl JobEnv {
    pub fn new(config: Arc<Config>, db: Arc<Database>, redis: Arc<Redis>) -> Arc<Self> {
        let health = Arc::new(Health::new(db.clone(), redis.clone(), None));
        let ozon = crate::ozon::client::OzonMetrics::new()
            .map_err(anyhow::Error::from)
            .and_then(|metrics| crate::ozon::Ozon::new(&config, redis.clone(), metrics))
            .map(Arc::new)
            .map_err(|e| format!("{e:#}"));
        Arc::new(JobEnv {
            config,
            db,
            redis,
            health,
            ozon,
        })
    }
}

/// One run's view: which job and attempt, the soft-limit/shutdown signal, and the environment.
#[derive(Clone)]
pub struct JobContext {
    pub job_id: i64,
    pub attempt: u32,
    pub max_attempts: u32,
    stop: CancellationToken,
    env: Arc<JobEnv>,
    last_progress: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// Progress is written at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

impl JobContext {
    pub fn new(
        job_id: i64,
        attempt: u32,
        max_attempts: u32,
        stop: CancellationToken,
        env: Arc<JobEnv>,
    ) -> Self {
        JobContext {
            job_id,
            attempt,
            max_attempts,
            stop,
            env,
            last_progress: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// True once the job should stop: its soft time limit passed, or the worker lost its lease.
    pub fn is_cancelled(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Completes when the job should stop; `select!` on it around long steps.
    pub async fn cancelled(&self) {
        self.stop.cancelled().await
    }

    /// Report how far the run is (0–100) and what it is doing, for the page that started it
    /// (`GET /ozon/sync/status/{task_id}`). Written at most once a second unless it is 100;
    /// a failed write is only logged (progress is advice, not state).
    pub async fn progress(&self, percent: u8, message: &str) {
        let percent = percent.min(100);
        {
            let Ok(mut last) = self.last_progress.lock() else {
                return;
            };
            let now = std::time::Instant::now();
            if percent < 100 && last.is_some_and(|t| now.duration_since(t) < PROGRESS_EVERY) {
                return;
            }
            *last = Some(now);
        }
        let message = super::truncate(message, 480);
        let written = async {
            let client = self.env.db.get().await?;
            client
                .execute(
                    "UPDATE jobs SET progress = $2, progress_message = $3, updated_at = now()
                      WHERE id = $1 AND state = 'running'",
                    &[&self.job_id, &(percent as i16), &message],
                )
                .await
                .map_err(crate::db::DbError::from)
        };
        if let Err(e) = written.await {
            tracing::debug!(job_id = self.job_id, error = %e, "job progress not recorded");
        }
    }

    /// The stop signal as a token, for code that takes one (child processes, helpers).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub fn config(&self) -> &Config {
        &self.env.config
    }

    pub fn db(&self) -> &Arc<Database> {
        &self.env.db
    }

    pub fn redis(&self) -> &Arc<Redis> {
        &self.env.redis
    }

    pub fn health(&self) -> &Health {
        &self.env.health
    }

    /// The Ozon services (client, data key).
    pub fn ozon(&self) -> Result<&Arc<crate::ozon::Ozon>, JobError> {
        self.env
            .ozon
            .as_ref()
            .map_err(|e| JobError::Permanent(format!("the Ozon client cannot be built: {e}")))
    }
}

/// A job type.
pub trait Job: Serialize + DeserializeOwned + Send + 'static {
    /// The type's name, stored in `jobs.job_type` and `sync_services.celery_task_name`
    /// (`ef.<area>.<what>`, as the original's task names).
    const NAME: &'static str;
    const QUEUE: Queue = Queue::Default;
    const DESCRIPTION: &'static str = "";
    /// A default schedule (5-field cron, UTC) seeded into `sync_services` when the row is missing.
    const SCHEDULE: Option<&'static str> = None;

    fn limits() -> TimeLimits {
        TimeLimits::default()
    }

    fn retry() -> RetryPolicy {
        RetryPolicy::default()
    }

    fn run(self, ctx: JobContext) -> impl Future<Output = JobResult> + Send;
}

pub type BoxedRun = Pin<Box<dyn Future<Output = JobResult> + Send>>;
type Runner = Arc<dyn Fn(serde_json::Value, JobContext) -> BoxedRun + Send + Sync>;

/// One registered job type, with its payload type erased.
#[derive(Clone)]
pub struct JobSpec {
    pub name: &'static str,
    pub queue: Queue,
    pub description: &'static str,
    pub schedule: Option<&'static str>,
    pub limits: TimeLimits,
    pub retry: RetryPolicy,
    runner: Runner,
}

impl std::fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSpec")
            .field("name", &self.name)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl JobSpec {
    /// Start a run: decode the payload and call the job. A payload that does not decode is a
    /// permanent failure (retrying cannot fix it).
    pub fn start(&self, payload: serde_json::Value, ctx: JobContext) -> BoxedRun {
        (self.runner)(payload, ctx)
    }
}

/// The job types a worker knows.
#[derive(Clone, Default, Debug)]
pub struct Registry {
    specs: BTreeMap<&'static str, JobSpec>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `J`. Registering a name twice replaces the earlier type.
    ///
    /// # Panics
    /// When `J`'s limits are inconsistent (hard below soft, zero attempts): a programming error
    /// caught the first time the registry is built.
    pub fn register<J: Job>(&mut self) -> &mut Self {
        let limits = J::limits();
        let retry = J::retry();
        assert!(
            limits.hard >= limits.soft && !limits.soft.is_zero(),
            "job {}: the hard time limit must be at least the soft one",
            J::NAME
        );
        assert!(
            (1..=100).contains(&retry.max_attempts),
            "job {}: max_attempts must be 1..=100",
            J::NAME
        );
        let runner: Runner = Arc::new(|payload, ctx| {
            Box::pin(async move {
                let job: J = serde_json::from_value(payload).map_err(|e| {
                    JobError::Permanent(format!(
                        "the payload does not fit job type {}: {e}",
                        J::NAME
                    ))
                })?;
                job.run(ctx).await
            })
        });
        self.specs.insert(
            J::NAME,
            JobSpec {
                name: J::NAME,
                queue: J::QUEUE,
                description: J::DESCRIPTION,
                schedule: J::SCHEDULE,
                limits,
                retry,
                runner,
            },
        );
        self
    }

    pub fn get(&self, name: &str) -> Option<&JobSpec> {
        self.specs.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &JobSpec> {
        self.specs.values()
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_within_half() {
        let p = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_secs(10),
            cap: Duration::from_secs(300),
        };
        let secs: Vec<u64> = (1..=7).map(|a| p.backoff(a).as_secs()).collect();
        assert_eq!(secs, vec![10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(p.backoff(1000).as_secs(), 300);
        for attempt in 1..=7 {
            for _ in 0..50 {
                let d = p.delay_with_jitter(attempt);
                assert!(
                    d >= p.backoff(attempt) / 2 && d <= p.backoff(attempt),
                    "{d:?}"
                );
            }
        }
    }
}
