//! What the `/sync-services` and `/jobs` API routes (and operators) need, as plain functions on a
//! database client or transaction, each returning an `AdminError`.
//!
//! - `actions`: the changes an admin makes (edit, trigger, delete logs, reset, retry, cancel) as
//!   domain actions: the admin check, the change and its audit row in one transaction.
//! - `services`: the `sync_services` schedules (list, show, edit, trigger a run) and their run
//!   logs and statistics; what a run writes is `run_log`'s, and so are the resets and deletions
//!   asked for here.
//! - `jobs`: job listing with cursor paging, one job, retrying a dead one, cancelling a queued one.
//! - `overview`: queues, running jobs, next runs and workers, as `euraflow status` prints them.
//!
//! Everything is re-exported here, so callers use `jobs::admin::<name>`.

pub mod actions;
mod jobs;
mod overview;
mod services;

pub use jobs::{
    DEFAULT_PAGE, JobFilter, JobPage, JobRow, MAX_PAGE, cancel_job, get_job, list_jobs, retry_job,
};
pub use overview::{JobsOverview, NextRun, QueueLine, RunningJob, WorkerLine, overview};
pub use services::{
    Handler, MAX_CONFIG_BYTES, MAX_LOGS, ServiceLog, ServiceStats, ServiceUpdate, SyncService,
    Triggered, delete_service_logs, get_service, handlers, list_services, reset_service_stats,
    service_logs, service_stats, trigger_service, update_service,
};

use super::queue::QueueError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 422: the input is wrong; the message says how.
    #[error("{0}")]
    Invalid(String),
    /// 409: the object is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Queue(#[from] QueueError),
}

impl From<tokio_postgres::Error> for AdminError {
    fn from(e: tokio_postgres::Error) -> Self {
        AdminError::Queue(QueueError::Query(e))
    }
}
