//! The worker: takes jobs from the queues and runs them, each in its own task, under the global
//! concurrency and the per-queue caps.
//!
//! - A free slot goes to the queue with runnable jobs that has the fewest jobs running (ties in
//!   turn), one job per queue per round: a flood in one queue delays another queue's job by at
//!   most one job's run time (until the next slot frees), and not at all when the flooded queue
//!   is capped below `EF__WORKER_CONCURRENCY`.
//! - Idle workers wake on `NOTIFY ef_jobs` (sent by the database when a job becomes runnable, on
//!   commit) and otherwise look every `EF__WORKER_POLL_INTERVAL` (retry delays, missed wake-ups).
//! - While a job runs its lease is renewed every third of `EF__JOB_LEASE_TIMEOUT`. A worker that
//!   cannot renew it (the database is unreachable for too long, or another worker took the job
//!   after the lease expired) stops the job at once: a job never runs twice at the same time.
//! - At the soft time limit the job's context is cancelled; at the hard limit its task is aborted
//!   and the run counts as failed.
//! - On stop: no new jobs; running ones get `EF__WORKER_SHUTDOWN_TIMEOUT`, then they are aborted
//!   and released back to the queue without counting the attempt.
//!
//! This file holds the options and the `Worker` handle; `runner` the claim loop and the drain,
//! `slots` the global and per-queue limits, `listener` the `LISTEN ef_jobs` wake-ups, `execute`
//! one job's run (time limits, lease renewal, outcome). What a service run writes is `run_log`'s.

mod execute;
mod listener;
mod runner;
mod slots;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::Queue;
use super::registry::{JobEnv, Registry};
use crate::config::WorkerConfig;

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub concurrency: usize,
    pub queue_limits: Vec<(Queue, usize)>,
    pub poll_interval: Duration,
    pub lease: Duration,
    pub shutdown_timeout: Duration,
}

impl WorkerOptions {
    pub fn from_config(c: &WorkerConfig) -> Self {
        WorkerOptions {
            concurrency: c.concurrency.max(1),
            queue_limits: c.queue_limits.clone(),
            poll_interval: c.poll_interval,
            lease: c.lease,
            shutdown_timeout: c.shutdown_timeout,
        }
    }

    pub fn limit(&self, q: Queue) -> usize {
        self.queue_limits
            .iter()
            .find(|(x, _)| *x == q)
            .map(|(_, n)| *n)
            .unwrap_or(self.concurrency)
    }
}

pub struct Worker {
    instance_id: String,
    registry: Arc<Registry>,
    env: Arc<JobEnv>,
    opts: WorkerOptions,
    running: AtomicUsize,
}

impl Worker {
    pub fn new(
        registry: Arc<Registry>,
        env: Arc<JobEnv>,
        opts: WorkerOptions,
        instance_id: String,
    ) -> Arc<Self> {
        Arc::new(Worker {
            instance_id,
            registry,
            env,
            opts,
            running: AtomicUsize::new(0),
        })
    }

    /// A fresh id for a worker process: host, pid and a random suffix.
    pub fn new_instance_id() -> String {
        format!(
            "{}:{}:{}",
            crate::config::system_hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Jobs running in this worker now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    pub fn options(&self) -> &WorkerOptions {
        &self.opts
    }

    fn describe_limits(&self) -> String {
        Queue::ALL
            .iter()
            .map(|q| format!("{q}={}", self.opts.limit(*q).min(self.opts.concurrency)))
            .collect::<Vec<_>>()
            .join(",")
    }
}
