//! The changes an admin makes to schedules and jobs, as domain actions: only an admin with a
//! login session may make them, each writes its audit row in the same transaction as the change,
//! and refusals are `DomainError`s. A triggered job commits with its audit row; the worker is
//! woken by the commit. The plain functions beside this file do the work; the API only calls
//! these.

use serde_json::json;

use super::{AdminError, JobRow, ServiceUpdate, SyncService, Triggered};
use crate::auth::audit::{self, Entry};
use crate::auth::{Actor, Role};
use crate::domain::{DomainError, Work};
use crate::jobs::Registry;
use crate::jobs::queue::QueueError;

impl From<AdminError> for DomainError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::NotFound(m) => DomainError::not_found("NOT_FOUND", m),
            AdminError::Invalid(m) => DomainError::invalid("body", "value_error", m),
            AdminError::Conflict(m) => DomainError::conflict("CONFLICT", m),
            AdminError::Queue(QueueError::Db(e)) => e.into(),
            AdminError::Queue(QueueError::Query(e)) => e.into(),
            AdminError::Queue(QueueError::Invalid(m)) => {
                DomainError::invalid("body", "value_error", m)
            }
        }
    }
}

/// Schedules and jobs are the whole installation's: an admin's decision (the original let every
/// sub-account edit and trigger them).
pub fn require_admin(actor: &Actor) -> Result<(), DomainError> {
    actor.require_session()?;
    actor.require_role(Role::Admin)
}

/// Edit a service's schedule, enabled flag or config; the scheduler uses it within a second.
pub async fn update(
    work: &mut Work<'_>,
    actor: &Actor,
    id: i32,
    change: &ServiceUpdate,
) -> Result<SyncService, DomainError> {
    require_admin(actor)?;
    let tx = work.tx();
    let before = super::get_service(&**tx, id).await?;
    let after = super::update_service(&**tx, id, change).await?;
    audit::write(
        tx,
        actor,
        Entry::new("sync_service", "update", "更新同步服务")
            .record("sync_services", id)
            .changes(audit::diff(&[
                (
                    "schedule_config",
                    json!(before.schedule_config),
                    json!(after.schedule_config),
                ),
                (
                    "is_enabled",
                    json!(before.is_enabled),
                    json!(after.is_enabled),
                ),
                (
                    "service_type",
                    json!(before.service_type),
                    json!(after.service_type),
                ),
                (
                    "config_json",
                    json!(before.config_json),
                    json!(after.config_json),
                ),
            ])),
    )
    .await?;
    Ok(after)
}

/// Run a service now.
pub async fn trigger(
    work: &mut Work<'_>,
    actor: &Actor,
    registry: &Registry,
    id: i32,
) -> Result<Triggered, DomainError> {
    require_admin(actor)?;
    let tx = work.tx();
    let t = super::trigger_service(&**tx, registry, id).await?;
    audit::write(
        tx,
        actor,
        Entry::new("sync_service", "trigger", "手动触发同步服务")
            .record("sync_services", id)
            .changes(json!({"job_id": t.job_id, "task_name": t.task_name})),
    )
    .await?;
    Ok(t)
}

/// Delete a service's run log (all of it, or before a date); returns how many entries went.
pub async fn delete_logs(
    work: &mut Work<'_>,
    actor: &Actor,
    id: i32,
    before_date: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<u64, DomainError> {
    require_admin(actor)?;
    let tx = work.tx();
    let deleted = super::delete_service_logs(&**tx, id, before_date).await?;
    audit::write(
        tx,
        actor,
        Entry::new("sync_service", "delete_logs", "删除同步日志")
            .record("sync_services", id)
            .changes(json!({"deleted": deleted, "before_date": before_date})),
    )
    .await?;
    Ok(deleted)
}

/// Zero a service's counters.
pub async fn reset_stats(
    work: &mut Work<'_>,
    actor: &Actor,
    id: i32,
) -> Result<SyncService, DomainError> {
    require_admin(actor)?;
    let tx = work.tx();
    let s = super::reset_service_stats(&**tx, id).await?;
    audit::write(
        tx,
        actor,
        Entry::new("sync_service", "reset_stats", "重置同步统计").record("sync_services", id),
    )
    .await?;
    Ok(s)
}

/// What an admin does to one job.
#[derive(Debug, Clone, Copy)]
pub enum JobChange {
    /// A dead job runs again with a fresh attempt count.
    Retry,
    /// Only jobs that have not started.
    Cancel,
}

pub async fn change_job(
    work: &mut Work<'_>,
    actor: &Actor,
    id: i64,
    what: JobChange,
) -> Result<JobRow, DomainError> {
    require_admin(actor)?;
    let tx = work.tx();
    let (job, entry) = match what {
        JobChange::Retry => (
            super::retry_job(&**tx, id).await?,
            Entry::new("job", "retry", "重试任务"),
        ),
        JobChange::Cancel => (
            super::cancel_job(&**tx, id).await?,
            Entry::new("job", "cancel", "取消任务"),
        ),
    };
    audit::write(tx, actor, entry.record("jobs", id)).await?;
    Ok(job)
}
