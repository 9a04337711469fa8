//! Job test support: a job environment on a test database, an in-process worker, and test-only
//! job types registered through the ordinary registry API (the shipped binary has none of them).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use euraflow::config::{self, Config, LoadOptions};
use euraflow::db::Database;
use euraflow::jobs::registry::{JobEnv, TimeLimits};
use euraflow::jobs::worker::{Worker, WorkerOptions};
use euraflow::jobs::{Job, JobContext, JobError, JobResult, Queue, Registry, RetryPolicy};
use euraflow::redis::Redis;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::TestDb;

/// Configuration, pool and job environment for one test database.
pub struct Harness {
    /// The configuration's working directory, removed when the harness is dropped.
    _dir: tempfile::TempDir,
    pub config: Arc<Config>,
    pub db: Arc<Database>,
    pub env: Arc<JobEnv>,
}

impl Harness {
    pub fn new(db: &TestDb, extra: &[(&str, &str)]) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env = db.env();
        env.push((
            "EF__REDIS_PREFIX".into(),
            format!("test:{}:", uuid::Uuid::new_v4().simple()),
        ));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let opts = LoadOptions {
            dev: true,
            config_file: None,
            env,
            cwd: dir.path().to_path_buf(),
            hostname: "localhost".into(),
            username: config::current_username(),
        };
        let config = Arc::new(config::load(&opts).expect("config").config);
        let pool = Database::new(&config.db).expect("pool");
        let redis = Redis::new(&config.redis).expect("redis");
        let env = JobEnv::new(config.clone(), pool.clone(), redis);
        Harness {
            _dir: dir,
            config,
            db: pool,
            env,
        }
    }

    pub fn options(&self) -> WorkerOptions {
        WorkerOptions::from_config(&self.config.worker)
    }

    /// Start an in-process worker.
    pub fn start(&self, registry: Registry, opts: WorkerOptions) -> RunningWorker {
        let worker = Worker::new(
            Arc::new(registry),
            self.env.clone(),
            opts,
            Worker::new_instance_id(),
        );
        let stop = CancellationToken::new();
        let handle = tokio::spawn(worker.clone().run(stop.clone()));
        RunningWorker {
            worker,
            stop,
            handle,
        }
    }

    pub async fn client(&self) -> deadpool_postgres::Client {
        self.db.get().await.expect("pooled connection")
    }

    /// (state, attempts, last_error)
    pub async fn job(&self, id: i64) -> (String, i32, Option<String>) {
        let c = self.client().await;
        let r = c
            .query_one(
                "SELECT state, attempts, last_error FROM jobs WHERE id = $1",
                &[&id],
            )
            .await
            .expect("job row");
        (r.get(0), r.get(1), r.get(2))
    }

    pub async fn wait_state(
        &self,
        id: i64,
        state: &str,
        timeout: Duration,
    ) -> (String, i32, Option<String>) {
        let deadline = Instant::now() + timeout;
        loop {
            let j = self.job(id).await;
            if j.0 == state {
                return j;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not reach {state} in {timeout:?}: {j:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub struct RunningWorker {
    pub worker: Arc<Worker>,
    pub stop: CancellationToken,
    pub handle: tokio::task::JoinHandle<()>,
}

impl RunningWorker {
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("the worker stops")
            .expect("the worker task");
    }
}

pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// --- test job types ---------------------------------------------------------------------------

fn counters() -> &'static Mutex<HashMap<String, u32>> {
    static C: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Bump the counter `key`, returning its new value.
pub fn bump(key: &str) -> u32 {
    let mut c = counters().lock().unwrap();
    let v = c.entry(key.to_owned()).or_insert(0);
    *v += 1;
    *v
}

pub fn count(key: &str) -> u32 {
    counters().lock().unwrap().get(key).copied().unwrap_or(0)
}

fn add(key: &str, delta: i64) -> u32 {
    let mut c = counters().lock().unwrap();
    let v = c.entry(key.to_owned()).or_insert(0);
    *v = (*v as i64 + delta).max(0) as u32;
    *v
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Noop {}

impl Job for Noop {
    const NAME: &'static str = "test.noop";
    async fn run(self, _ctx: JobContext) -> JobResult {
        Ok(serde_json::json!({}))
    }
}

/// Sleeps `ms` in the default queue; counts its runs under `key`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Sleep {
    pub ms: u64,
    pub key: String,
}

impl Job for Sleep {
    const NAME: &'static str = "test.sleep";
    async fn run(self, ctx: JobContext) -> JobResult {
        bump(&format!("{}:runs", self.key));
        let active = add(&format!("{}:active", self.key), 1);
        let max_key = format!("{}:max", self.key);
        if active > count(&max_key) {
            add(&max_key, i64::from(active) - i64::from(count(&max_key)));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(self.ms)) => {}
            _ = ctx.cancelled() => {}
        }
        add(&format!("{}:active", self.key), -1);
        Ok(serde_json::json!({"slept_ms": self.ms}))
    }
}

/// Returns at once, in the core queue.
#[derive(Debug, Serialize, Deserialize)]
pub struct CoreProbe {}

impl Job for CoreProbe {
    const NAME: &'static str = "test.core_probe";
    const QUEUE: Queue = Queue::Core;
    async fn run(self, _ctx: JobContext) -> JobResult {
        Ok(serde_json::json!({"probe": true}))
    }
}

/// Fails its first `times` runs (counted under `key`), then succeeds.
#[derive(Debug, Serialize, Deserialize)]
pub struct FailTimes {
    pub key: String,
    pub times: u32,
}

pub const FAIL_POLICY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base: Duration::from_millis(400),
    cap: Duration::from_millis(1000),
};

impl Job for FailTimes {
    const NAME: &'static str = "test.fail_times";
    fn retry() -> RetryPolicy {
        FAIL_POLICY
    }
    async fn run(self, _ctx: JobContext) -> JobResult {
        let n = bump(&self.key);
        if n <= self.times {
            Err(JobError::failed(format!(
                "planned failure {n} of {}",
                self.times
            )))
        } else {
            Ok(serde_json::json!({"records_processed": 3, "records_updated": 1}))
        }
    }
}

/// Ignores the soft limit (never looks at its context).
#[derive(Debug, Serialize, Deserialize)]
pub struct Stubborn {
    pub key: String,
}

impl Job for Stubborn {
    const NAME: &'static str = "test.stubborn";
    fn limits() -> TimeLimits {
        TimeLimits {
            soft: Duration::from_millis(300),
            hard: Duration::from_millis(900),
        }
    }
    fn retry() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }
    async fn run(self, _ctx: JobContext) -> JobResult {
        loop {
            bump(&self.key);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Stops when asked at its soft limit.
#[derive(Debug, Serialize, Deserialize)]
pub struct Polite {}

impl Job for Polite {
    const NAME: &'static str = "test.polite";
    fn limits() -> TimeLimits {
        TimeLimits {
            soft: Duration::from_millis(300),
            hard: Duration::from_secs(10),
        }
    }
    fn retry() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }
    async fn run(self, ctx: JobContext) -> JobResult {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(30)) => Ok(serde_json::json!({})),
            _ = ctx.cancelled() => Err(JobError::failed("stopped at the soft limit as asked")),
        }
    }
}

/// A registry with every test job type (and the built-in ones).
pub fn test_registry() -> Registry {
    let mut r = euraflow::jobs::builtin_registry();
    r.register::<Noop>()
        .register::<Sleep>()
        .register::<CoreProbe>()
        .register::<FailTimes>()
        .register::<Stubborn>()
        .register::<Polite>();
    r
}
