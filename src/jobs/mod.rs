//! Background jobs: a durable queue in PostgreSQL, the worker that runs it, the cron scheduler
//! that feeds it, the job registry and the core jobs. Replaces Celery worker + beat + ARQ.
//!
//! - `queue`: enqueue (inside the caller's transaction), claim with `FOR UPDATE SKIP LOCKED`,
//!   leases, finish, retry with backoff, release.
//! - `registry`: the typed `Job` trait and the table of job types a worker knows. It knows no
//!   job type itself: `builtin_registry` (here) lists the shipped ones, so the arrows run from
//!   job modules to the registry, never back.
//! - `worker`: runs jobs with global and per-queue limits, time limits, lease renewal, and a
//!   bounded drain on shutdown (`worker/`: `runner`, `slots`, `listener`, `execute`).
//! - `run_log`: the one writer of `sync_service_logs` and the run statistics of `sync_services`;
//!   a service run's end is written in the transaction of its job's outcome.
//! - `scheduler` + `cron`: `sync_services` schedules, enqueued once per tick across schedulers.
//! - `core_jobs`: health check, cleanup, database backup.
//! - `admin`: what the API (and operators) need: services, logs, stats, job listing, retry, cancel,
//!   the status overview (`admin/`: `services`, `jobs`, `overview`).
//! - `metrics`: the job metrics, read from PostgreSQL at scrape time.
//!
//! Delivery is at-least-once: a job whose worker dies mid-run (crash, `kill -9`, power loss) runs
//! again once its lease expired. A job is never run by two workers at once: the lease is renewed
//! while it runs, and a worker that cannot renew it stops the job.

pub mod admin;
pub mod core_jobs;
pub(crate) mod cron;
pub(crate) mod metrics;
pub mod queue;
pub mod registry;
pub(crate) mod run_log;
pub mod scheduler;
pub mod worker;

use std::fmt;

pub use crate::queues::Queue;
pub use queue::{Enqueued, NewJob, enqueue};
pub use registry::{
    Job, JobContext, JobEnv, JobError, JobResult, Registry, RetryPolicy, TimeLimits,
};

/// The job types the shipped `euraflow worker` runs (and the API can list and trigger). The
/// registry itself knows no job type: job modules register with it, and this is the one place
/// that lists the shipped ones.
pub fn builtin_registry() -> Registry {
    let mut registry = Registry::new();
    core_jobs::register(&mut registry);
    crate::ozon::product_sync::register(&mut registry);
    crate::ozon::posting_sync::register(&mut registry);
    crate::ozon::webhook::register(&mut registry);
    crate::exchange_rates::register(&mut registry);
    registry
}

/// A job's state, as stored in `jobs.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    FailedRetrying,
    Dead,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::FailedRetrying,
        JobState::Dead,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::FailedRetrying => "failed_retrying",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|q| q.as_str() == s)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cut `text` to at most `max` bytes on a character boundary (error messages stored in rows).
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
