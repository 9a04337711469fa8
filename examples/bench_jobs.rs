//! Job queue benchmark (run by `scripts/bench-jobs`): a temporary database on the local
//! PostgreSQL, an in-process worker with 12 slots, and three measurements:
//!
//! 1. throughput: N no-op jobs enqueued up front, time until the last one succeeded;
//! 2. enqueue-to-start latency at a steady rate, one job per committed transaction (woken by
//!    NOTIFY), as PostgreSQL timestamps `started_at - created_at`;
//! 3. the same latency while a backlog of no-op jobs is being worked off.
//!
//! It prints figures and asserts nothing. Options: `--jobs N` (20000), `--rate R` jobs/s (200),
//! `--seconds S` (10), `--concurrency C` (12), and `--async-commit`, a diagnostic that sets
//! `synchronous_commit = off` on the benchmark database to show how much of the cost is waiting
//! for the WAL to reach the disk (the worker never does this itself).

// A development tool: a failed setup step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use euraflow::config::{self, LoadOptions};
use euraflow::db::Database;
use euraflow::jobs::queue::{self, NewJob};
use euraflow::jobs::registry::JobEnv;
use euraflow::jobs::worker::{Worker, WorkerOptions};
use euraflow::jobs::{Job, JobContext, JobResult, Registry};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

#[derive(Serialize, Deserialize)]
struct Noop {}

impl Job for Noop {
    const NAME: &'static str = "bench.noop";
    async fn run(self, _ctx: JobContext) -> JobResult {
        Ok(serde_json::Value::Null)
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn admin() -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::Config::new()
        .host("/var/run/postgresql")
        .user(config::current_username())
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the local PostgreSQL as the current user");
    tokio::spawn(conn);
    c
}

async fn wait_done(db: &Database, total: i64) {
    loop {
        let c = db.get().await.expect("connection");
        let done: i64 = c
            .query_one("SELECT count(*) FROM jobs WHERE state = 'succeeded'", &[])
            .await
            .expect("count")
            .get(0);
        if done >= total {
            return;
        }
        drop(c);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn latencies(db: &Database, since_id: i64) -> Vec<f64> {
    let c = db.get().await.expect("connection");
    let mut v: Vec<f64> = c
        .query(
            "SELECT extract(epoch FROM started_at - created_at)::float8 * 1000 FROM jobs
              WHERE id > $1 AND job_type = 'bench.noop' AND started_at IS NOT NULL",
            &[&since_id],
        )
        .await
        .expect("latencies")
        .iter()
        .map(|r| r.get(0))
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Enqueue at `rate` per second for `seconds`, one committed transaction each; returns the id
/// before the first.
async fn steady(db: &Database, rate: u64, seconds: u64) -> i64 {
    let c = db.get().await.expect("connection");
    let before: i64 = c
        .query_one("SELECT coalesce(max(id), 0) FROM jobs", &[])
        .await
        .expect("max id")
        .get(0);
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(every);
    for _ in 0..rate * seconds {
        tick.tick().await;
        queue::enqueue(&**c, &NewJob::of(&Noop {}).expect("job"))
            .await
            .expect("enqueue");
    }
    before
}

fn main() {
    let jobs = arg("--jobs", 20_000) as usize;
    let rate = arg("--rate", 200);
    let seconds = arg("--seconds", 10);
    let concurrency = arg("--concurrency", 12) as usize;
    let async_commit = std::env::args().any(|a| a == "--async-commit");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let name = format!("ef_bench_{}", uuid::Uuid::new_v4().simple());
        admin()
            .await
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create the benchmark database");
        if async_commit {
            // Diagnostic only: how much of the cost is waiting for WAL flushes. The worker itself
            // always commits synchronously (a lost claim could let two workers run one job).
            admin()
                .await
                .batch_execute(&format!(
                    "ALTER DATABASE \"{name}\" SET synchronous_commit = off"
                ))
                .await
                .expect("set synchronous_commit for the benchmark database");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = LoadOptions {
            dev: true,
            config_file: None,
            env: vec![
                ("EF__DB_HOST".into(), "/var/run/postgresql".into()),
                ("EF__DB_NAME".into(), name.clone()),
                ("EF__DB_USER".into(), config::current_username()),
                ("EF__WORKER_CONCURRENCY".into(), concurrency.to_string()),
                ("EF__WORKER_QUEUES".into(), String::new()),
            ],
            cwd: dir.path().to_path_buf(),
            hostname: "localhost".into(),
            username: config::current_username(),
        };
        let cfg = Arc::new(config::load(&opts).expect("configuration").config);
        euraflow::db::prepare::run_migrations(&cfg.db).await.expect("migrations");
        let db = Database::new(&cfg.db).expect("pool");
        let redis = euraflow::redis::Redis::new(&cfg.redis).expect("redis client");
        let env = JobEnv::new(cfg.clone(), db.clone(), redis);
        let mut registry = Registry::new();
        registry.register::<Noop>();
        let registry = Arc::new(registry);
        let start_worker = || {
            let w = Worker::new(
                registry.clone(),
                env.clone(),
                WorkerOptions::from_config(&cfg.worker),
                Worker::new_instance_id(),
            );
            let stop = CancellationToken::new();
            (tokio::spawn(w.run(stop.clone())), stop)
        };

        println!(
            "euraflow job benchmark: {concurrency} worker slots, PostgreSQL at /var/run/postgresql, database {name}{}",
            if async_commit { ", synchronous_commit=off (diagnostic)" } else { "" }
        );
        // 1. Throughput.
        {
            let c = db.get().await.expect("connection");
            let batch: Vec<NewJob> = (0..jobs).map(|_| NewJob::of(&Noop {}).expect("job")).collect();
            for chunk in batch.chunks(10_000) {
                queue::enqueue_many(&**c, chunk).await.expect("enqueue");
            }
        }
        let started = Instant::now();
        let (handle, stop) = start_worker();
        wait_done(&db, jobs as i64).await;
        let took = started.elapsed().as_secs_f64();
        println!(
            "throughput: {jobs} no-op jobs in {took:.2} s = {:.0} jobs/s",
            jobs as f64 / took
        );

        // 2. Latency, idle worker, steady arrivals.
        let before = steady(&db, rate, seconds).await;
        wait_done(&db, jobs as i64 + (rate * seconds) as i64).await;
        let lat = latencies(&db, before).await;
        println!(
            "enqueue-to-start, {rate} jobs/s for {seconds} s ({} jobs, one commit each): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN)
        );

        // 3. Latency while a backlog is worked off: the new jobs wait behind it (same queue).
        stop.cancel();
        let _ = handle.await;
        {
            let c = db.get().await.expect("connection");
            let batch: Vec<NewJob> = (0..jobs / 2).map(|_| NewJob::of(&Noop {}).expect("job")).collect();
            queue::enqueue_many(&**c, &batch).await.expect("enqueue");
        }
        let (handle, stop) = start_worker();
        let t0 = Instant::now();
        let c = db.get().await.expect("connection");
        let mut samples = Vec::new();
        for _ in 0..50 {
            let id = queue::enqueue(&**c, &NewJob::of(&Noop {}).expect("job").priority(10))
                .await
                .expect("enqueue")
                .id();
            samples.push(id);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let total = jobs as i64 + (rate * seconds) as i64 + (jobs / 2) as i64 + 50;
        wait_done(&db, total).await;
        let mut lat: Vec<f64> = c
            .query(
                "SELECT extract(epoch FROM started_at - created_at)::float8 * 1000 FROM jobs WHERE id = ANY($1)",
                &[&samples],
            )
            .await
            .expect("latencies")
            .iter()
            .map(|r| r.get(0))
            .collect();
        lat.sort_by(f64::total_cmp);
        println!(
            "enqueue-to-start of priority jobs during a {}-job backlog (worked off in {:.2} s): p50 {:.2} ms, p99 {:.2} ms",
            jobs / 2,
            t0.elapsed().as_secs_f64(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
        drop(c);
        stop.cancel();
        let _ = handle.await;
        db.close();
        drop(db);
        let _ = admin()
            .await
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
    });
}
