//! What the `/sync-services` and `/jobs` API routes (and operators) need, as plain functions on a
//! database client or transaction: list and edit schedules, trigger a run, read and delete run
//! logs, statistics; list jobs with cursor paging, show one, retry a dead one, cancel a queued
//! one; and the overview `euraflow status` prints. Role checks belong to the routes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;
use tokio_postgres::Row;

use super::cron::Timing;
use super::queue::{self, NewJob, QueueError};
use super::registry::Registry;
use super::run_log;
use super::{JobState, Queue};

/// Most rows one listing returns.
pub const MAX_PAGE: u32 = 200;
pub const DEFAULT_PAGE: u32 = 50;
/// Most run-log rows one request returns.
pub const MAX_LOGS: u32 = 500;
/// Largest `config_json` accepted for a service.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

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

/// A job type that can be scheduled or triggered (`GET /sync-services/handlers`).
#[derive(Debug, Clone, Serialize)]
pub struct Handler {
    pub service_key: String,
    pub name: String,
    pub description: String,
    pub plugin: String,
    pub queue: Queue,
    pub default_schedule: Option<String>,
    pub config_schema: serde_json::Value,
}

pub fn handlers(registry: &Registry) -> Vec<Handler> {
    registry
        .iter()
        .map(|s| Handler {
            service_key: s.name.to_owned(),
            name: s.name.to_owned(),
            description: s.description.to_owned(),
            plugin: s
                .name
                .rsplit_once('.')
                .map(|(p, _)| p.to_owned())
                .unwrap_or_default(),
            queue: s.queue,
            default_schedule: s.schedule.map(str::to_owned),
            config_schema: serde_json::json!({"type": "object"}),
        })
        .collect()
}

/// A `sync_services` row.
#[derive(Debug, Clone, Serialize)]
pub struct SyncService {
    pub id: i32,
    pub service_key: String,
    pub service_name: Option<String>,
    pub service_description: Option<String>,
    pub celery_task_name: Option<String>,
    pub plugin_name: Option<String>,
    pub source: Option<String>,
    pub is_deleted: bool,
    pub service_type: String,
    pub schedule_config: Option<String>,
    pub is_enabled: bool,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_run_status: Option<String>,
    pub last_run_message: Option<String>,
    pub run_count: i32,
    pub success_count: i32,
    pub error_count: i32,
    pub avg_execution_time_ms: Option<i32>,
    pub config_json: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub next_run_at: Option<DateTime<Utc>>,
}

const SERVICE_COLUMNS: &str =
    "id, service_key, service_name, service_description, celery_task_name,
    plugin_name, source, is_deleted, service_type, schedule_config, is_enabled, last_run_at,
    last_run_status, last_run_message, run_count, success_count, error_count,
    avg_execution_time_ms, config_json, created_at, updated_at, next_run_at";

fn service(r: &Row) -> SyncService {
    SyncService {
        id: r.get(0),
        service_key: r.get(1),
        service_name: r.get(2),
        service_description: r.get(3),
        celery_task_name: r.get(4),
        plugin_name: r.get(5),
        source: r.get(6),
        is_deleted: r.get(7),
        service_type: r.get(8),
        schedule_config: r.get(9),
        is_enabled: r.get(10),
        last_run_at: r.get(11),
        last_run_status: r.get(12),
        last_run_message: r.get(13),
        run_count: r.get(14),
        success_count: r.get(15),
        error_count: r.get(16),
        avg_execution_time_ms: r.get(17),
        config_json: r.get(18),
        created_at: r.get(19),
        updated_at: r.get(20),
        next_run_at: r.get(21),
    }
}

/// `GET /sync-services`: optionally only enabled (or disabled) ones; deleted ones on request.
pub async fn list_services(
    c: &impl GenericClient,
    is_enabled: Option<bool>,
    include_deleted: bool,
) -> Result<Vec<SyncService>, AdminError> {
    let rows = c
        .query(
            &format!(
                "SELECT {SERVICE_COLUMNS} FROM sync_services
                  WHERE ($1::bool IS NULL OR is_enabled = $1) AND ($2 OR NOT is_deleted)
                  ORDER BY id LIMIT 1000"
            ),
            &[&is_enabled, &include_deleted],
        )
        .await?;
    Ok(rows.iter().map(service).collect())
}

pub async fn get_service(c: &impl GenericClient, id: i32) -> Result<SyncService, AdminError> {
    c.query_opt(
        &format!("SELECT {SERVICE_COLUMNS} FROM sync_services WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|r| service(&r))
    .ok_or_else(|| no_such_service(id))
}

fn no_such_service(id: i32) -> AdminError {
    AdminError::NotFound(format!("there is no sync service {id}"))
}

/// `PUT /sync-services/{id}`: what may change.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ServiceUpdate {
    /// `cron` or `interval`.
    pub service_type: Option<String>,
    /// A 5-field cron expression (UTC), or the interval for `interval`.
    pub schedule_config: Option<String>,
    pub is_enabled: Option<bool>,
    /// Passed to the job as its payload (a JSON object).
    pub config_json: Option<serde_json::Value>,
}

/// Change a schedule. The schedule is validated (cron fields, ranges) and takes effect at the
/// scheduler's next pass, within about a second; a changed schedule or a re-enabled service starts
/// from now (ticks before the change are not caught up).
pub async fn update_service(
    c: &impl GenericClient,
    id: i32,
    update: &ServiceUpdate,
) -> Result<SyncService, AdminError> {
    let current = get_service(c, id).await?;
    if current.is_deleted {
        return Err(AdminError::Conflict(format!(
            "sync service {id} ({}) is deleted",
            current.service_key
        )));
    }
    let service_type = update
        .service_type
        .clone()
        .unwrap_or_else(|| current.service_type.clone());
    let schedule = update
        .schedule_config
        .as_ref()
        .map(|s| s.trim().to_owned())
        .or(current.schedule_config.clone());
    let next = match &schedule {
        Some(s) => {
            let timing = Timing::parse(&service_type, s).map_err(|e| {
                AdminError::Invalid(format!("schedule_config '{s}' is not valid: {e}"))
            })?;
            timing.next_after(Utc::now())
        }
        None => None,
    };
    if let Some(cfg) = &update.config_json {
        if !cfg.is_object() {
            return Err(AdminError::Invalid(
                "config_json must be a JSON object".into(),
            ));
        }
        if cfg.to_string().len() > MAX_CONFIG_BYTES {
            return Err(AdminError::Invalid(format!(
                "config_json is larger than {MAX_CONFIG_BYTES} bytes"
            )));
        }
    }
    let enabled = update.is_enabled.unwrap_or(current.is_enabled);
    let timing_changed = schedule != current.schedule_config
        || service_type != current.service_type
        || (enabled && !current.is_enabled);
    let row = c
        .query_one(
            &format!(
                "UPDATE sync_services
                    SET service_type = $2, schedule_config = $3, is_enabled = $4,
                        config_json = coalesce($5, config_json),
                        last_scheduled_at = CASE WHEN $6 THEN NULL ELSE last_scheduled_at END,
                        next_run_at = CASE WHEN $4 THEN $7::timestamptz ELSE NULL END,
                        updated_at = now()
                  WHERE id = $1
              RETURNING {SERVICE_COLUMNS}"
            ),
            &[
                &id,
                &service_type,
                &schedule,
                &enabled,
                &update.config_json,
                &timing_changed,
                &next,
            ],
        )
        .await?;
    Ok(service(&row))
}

/// The answer of `POST /sync-services/{id}/trigger`.
#[derive(Debug, Clone, Serialize)]
pub struct Triggered {
    pub job_id: i64,
    pub task_name: String,
}

/// Run a service now (also when it is disabled), with its `config_json` as payload.
pub async fn trigger_service(
    c: &impl GenericClient,
    registry: &Registry,
    id: i32,
) -> Result<Triggered, AdminError> {
    let s = get_service(c, id).await?;
    if s.is_deleted {
        return Err(AdminError::Conflict(format!(
            "sync service {id} ({}) is deleted",
            s.service_key
        )));
    }
    let task = s.celery_task_name.clone().unwrap_or_default();
    let spec = registry.get(&task).ok_or_else(|| {
        AdminError::Conflict(format!(
            "sync service {} runs job type '{task}', which this euraflow does not have",
            s.service_key
        ))
    })?;
    let payload = match s.config_json {
        Some(p @ serde_json::Value::Object(_)) => p,
        _ => serde_json::json!({}),
    };
    let job = NewJob::from_spec(spec, payload).service_key(s.service_key.clone());
    let enq = queue::enqueue(c, &job).await?;
    Ok(Triggered {
        job_id: enq.id(),
        task_name: task,
    })
}

/// A `sync_service_logs` row.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceLog {
    pub id: i64,
    pub service_key: String,
    pub run_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: String,
    pub records_processed: Option<i32>,
    pub records_updated: Option<i32>,
    pub execution_time_ms: Option<i32>,
    pub error_message: Option<String>,
    pub error_stack: Option<String>,
    pub extra_data: Option<serde_json::Value>,
}

const LOG_COLUMNS: &str = "id, service_key, run_id, started_at, finished_at, status,
    records_processed, records_updated, execution_time_ms, error_message, error_stack, extra_data";

fn log_row(r: &Row) -> ServiceLog {
    ServiceLog {
        id: r.get(0),
        service_key: r.get(1),
        run_id: r.get(2),
        started_at: r.get(3),
        finished_at: r.get(4),
        status: r.get(5),
        records_processed: r.get(6),
        records_updated: r.get(7),
        execution_time_ms: r.get(8),
        error_message: r.get(9),
        error_stack: r.get(10),
        extra_data: r.get(11),
    }
}

/// `GET /sync-services/{id}/logs`: the newest `limit` runs (default 50, at most 500).
pub async fn service_logs(
    c: &impl GenericClient,
    id: i32,
    limit: Option<u32>,
) -> Result<Vec<ServiceLog>, AdminError> {
    let s = get_service(c, id).await?;
    let limit = i64::from(limit.unwrap_or(50).clamp(1, MAX_LOGS));
    let rows = c
        .query(
            &format!(
                "SELECT {LOG_COLUMNS} FROM sync_service_logs WHERE service_key = $1
                  ORDER BY started_at DESC, id DESC LIMIT $2"
            ),
            &[&s.service_key, &limit],
        )
        .await?;
    Ok(rows.iter().map(log_row).collect())
}

/// `DELETE /sync-services/{id}/logs`: all runs, or those started before `before`. Returns how many
/// were deleted. Runs still in progress are kept.
pub async fn delete_service_logs(
    c: &impl GenericClient,
    id: i32,
    before: Option<DateTime<Utc>>,
) -> Result<u64, AdminError> {
    let s = get_service(c, id).await?;
    Ok(run_log::delete_runs(c, &s.service_key, before).await?)
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStats {
    pub total_runs: i32,
    pub success_count: i32,
    pub error_count: i32,
    /// Successful runs over all runs, 0..1 (0 without runs).
    pub success_rate: f64,
    pub avg_execution_time_ms: Option<i32>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_run_status: Option<String>,
    pub recent_errors: Vec<ServiceLog>,
}

/// `GET /sync-services/{id}/stats`.
pub async fn service_stats(c: &impl GenericClient, id: i32) -> Result<ServiceStats, AdminError> {
    let s = get_service(c, id).await?;
    let rows = c
        .query(
            &format!(
                "SELECT {LOG_COLUMNS} FROM sync_service_logs WHERE service_key = $1 AND status = 'failed'
                  ORDER BY started_at DESC, id DESC LIMIT 10"
            ),
            &[&s.service_key],
        )
        .await?;
    Ok(ServiceStats {
        total_runs: s.run_count,
        success_count: s.success_count,
        error_count: s.error_count,
        success_rate: if s.run_count > 0 {
            f64::from(s.success_count) / f64::from(s.run_count)
        } else {
            0.0
        },
        avg_execution_time_ms: s.avg_execution_time_ms,
        last_run_at: s.last_run_at,
        last_run_status: s.last_run_status,
        recent_errors: rows.iter().map(log_row).collect(),
    })
}

/// `POST /sync-services/{id}/reset-stats`: zero the counters (the run log is kept).
pub async fn reset_service_stats(
    c: &impl GenericClient,
    id: i32,
) -> Result<SyncService, AdminError> {
    if !run_log::reset_stats(c, id).await? {
        return Err(no_such_service(id));
    }
    get_service(c, id).await
}

/// A `jobs` row.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    pub id: i64,
    pub job_type: String,
    pub queue: String,
    pub priority: i16,
    pub payload: serde_json::Value,
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_after: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub unique_key: Option<String>,
    pub service_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub result: Option<serde_json::Value>,
}

const JOB_COLUMNS: &str = "id, job_type, queue, priority, payload, state, attempts, max_attempts,
    run_after, lease_owner, lease_expires_at, unique_key, service_key, created_at, started_at,
    finished_at, updated_at, last_error, result";

fn job_row(r: &Row) -> JobRow {
    JobRow {
        id: r.get(0),
        job_type: r.get(1),
        queue: r.get(2),
        priority: r.get(3),
        payload: r.get(4),
        state: r.get(5),
        attempts: r.get(6),
        max_attempts: r.get(7),
        run_after: r.get(8),
        lease_owner: r.get(9),
        lease_expires_at: r.get(10),
        unique_key: r.get(11),
        service_key: r.get(12),
        created_at: r.get(13),
        started_at: r.get(14),
        finished_at: r.get(15),
        updated_at: r.get(16),
        last_error: r.get(17),
        result: r.get(18),
    }
}

/// `GET /jobs` filters and paging. `cursor` is the `next_cursor` of the previous page.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct JobFilter {
    pub state: Option<String>,
    pub queue: Option<String>,
    pub job_type: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobPage {
    pub jobs: Vec<JobRow>,
    /// Pass it as `cursor` for the next (older) page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Jobs, newest first, filtered by state, queue and type.
pub async fn list_jobs(c: &impl GenericClient, f: &JobFilter) -> Result<JobPage, AdminError> {
    let state = match &f.state {
        Some(s) => Some(
            JobState::parse(s)
                .ok_or_else(|| {
                    AdminError::Invalid(format!(
                        "state '{s}' is not one of queued, running, succeeded, failed_retrying, dead, cancelled"
                    ))
                })?
                .as_str(),
        ),
        None => None,
    };
    let queue = match &f.queue {
        Some(q) => Some(
            Queue::parse(q)
                .ok_or_else(|| {
                    AdminError::Invalid(format!(
                        "queue '{q}' is not one of ef_core, ef_pull, ef_push, ef_sync, default, ef_low"
                    ))
                })?
                .as_str(),
        ),
        None => None,
    };
    if f.job_type.as_ref().is_some_and(|t| t.len() > 200) {
        return Err(AdminError::Invalid(
            "job_type is longer than 200 characters".into(),
        ));
    }
    let before: Option<i64> = match &f.cursor {
        Some(c) => Some(c.parse().ok().filter(|n: &i64| *n > 0).ok_or_else(|| {
            AdminError::Invalid("cursor is not one this API returned; start without it".into())
        })?),
        None => None,
    };
    let limit = f.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let rows = c
        .query(
            &format!(
                "SELECT {JOB_COLUMNS} FROM jobs
                  WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR queue = $2)
                    AND ($3::text IS NULL OR job_type = $3) AND ($4::bigint IS NULL OR id < $4)
                  ORDER BY id DESC LIMIT $5"
            ),
            &[
                &state,
                &queue,
                &f.job_type,
                &before,
                &(i64::from(limit) + 1),
            ],
        )
        .await?;
    let mut jobs: Vec<JobRow> = rows.iter().map(job_row).collect();
    let next_cursor = if jobs.len() > limit as usize {
        jobs.truncate(limit as usize);
        jobs.last().map(|j| j.id.to_string())
    } else {
        None
    };
    Ok(JobPage { jobs, next_cursor })
}

pub async fn get_job(c: &impl GenericClient, id: i64) -> Result<JobRow, AdminError> {
    c.query_opt(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|r| job_row(&r))
    .ok_or_else(|| AdminError::NotFound(format!("there is no job {id}")))
}

/// Bring a dead job back: queued now, with its attempts reset.
pub async fn retry_job(c: &impl GenericClient, id: i64) -> Result<JobRow, AdminError> {
    let update = format!(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_after = now(), finished_at = NULL,
                updated_at = now()
          WHERE id = $1 AND state = 'dead' RETURNING {JOB_COLUMNS}"
    );
    transition(c, id, &update, "only dead jobs can be retried").await
}

/// Cancel a job that has not started (queued, or waiting for its retry).
pub async fn cancel_job(c: &impl GenericClient, id: i64) -> Result<JobRow, AdminError> {
    let update = format!(
        "UPDATE jobs SET state = 'cancelled', finished_at = now(), updated_at = now()
          WHERE id = $1 AND state IN ('queued', 'failed_retrying') RETURNING {JOB_COLUMNS}"
    );
    transition(
        c,
        id,
        &update,
        "only queued or retrying jobs can be cancelled",
    )
    .await
}

/// Run `update` (on job `$1`, only from the states it allows, returning the row); when the job is
/// in another state, a conflict that names it and `refusal` (a missing job is not found).
async fn transition(
    c: &impl GenericClient,
    id: i64,
    update: &str,
    refusal: &str,
) -> Result<JobRow, AdminError> {
    match c.query_opt(update, &[&id]).await? {
        Some(r) => Ok(job_row(&r)),
        None => {
            let j = get_job(c, id).await?;
            Err(AdminError::Conflict(format!(
                "job {id} is {}; {refusal}",
                j.state
            )))
        }
    }
}

/// One queue's line in `euraflow status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct QueueLine {
    pub queue: String,
    pub queued: i64,
    pub running: i64,
    pub retrying: i64,
    /// Age of the oldest runnable job, in seconds.
    pub oldest_queued_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunningJob {
    pub id: i64,
    pub job_type: String,
    pub queue: String,
    pub attempt: i32,
    pub running_s: f64,
    pub lease_owner: Option<String>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NextRun {
    pub service_key: String,
    pub job_type: Option<String>,
    pub schedule: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_run_status: Option<String>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct WorkerLine {
    pub instance_id: String,
    pub hostname: String,
    pub pid: i32,
    pub last_seen_s: f64,
    pub details: serde_json::Value,
}

/// Queues, running jobs, next scheduled runs and workers, for `euraflow status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct JobsOverview {
    pub queues: Vec<QueueLine>,
    pub dead: i64,
    pub running: Vec<RunningJob>,
    pub next_runs: Vec<NextRun>,
    pub workers: Vec<WorkerLine>,
}

pub async fn overview(c: &impl GenericClient) -> Result<JobsOverview, AdminError> {
    let rows = c
        .query(
            "SELECT queue,
                    count(*) FILTER (WHERE state = 'queued'),
                    count(*) FILTER (WHERE state = 'running'),
                    count(*) FILTER (WHERE state = 'failed_retrying'),
                    extract(epoch FROM now() - min(run_after) FILTER (
                        WHERE state IN ('queued', 'failed_retrying') AND run_after <= now()))::float8
               FROM jobs WHERE state IN ('queued', 'running', 'failed_retrying')
              GROUP BY queue",
            &[],
        )
        .await?;
    let queues = Queue::ALL
        .iter()
        .map(|q| {
            let r = rows.iter().find(|r| r.get::<_, String>(0) == q.as_str());
            QueueLine {
                queue: q.as_str().to_owned(),
                queued: r.map(|r| r.get(1)).unwrap_or(0),
                running: r.map(|r| r.get(2)).unwrap_or(0),
                retrying: r.map(|r| r.get(3)).unwrap_or(0),
                oldest_queued_s: r.and_then(|r| r.get(4)),
            }
        })
        .collect();
    let dead: i64 = c
        .query_one("SELECT count(*) FROM jobs WHERE state = 'dead'", &[])
        .await?
        .get(0);
    let running = c
        .query(
            "SELECT id, job_type, queue, attempts,
                    extract(epoch FROM now() - started_at)::float8, lease_owner
               FROM jobs WHERE state = 'running' ORDER BY started_at LIMIT 20",
            &[],
        )
        .await?
        .iter()
        .map(|r| RunningJob {
            id: r.get(0),
            job_type: r.get(1),
            queue: r.get(2),
            attempt: r.get(3),
            running_s: r.get::<_, Option<f64>>(4).unwrap_or(0.0),
            lease_owner: r.get(5),
        })
        .collect();
    let next_runs = c
        .query(
            "SELECT service_key, celery_task_name, schedule_config, next_run_at, last_run_at, last_run_status
               FROM sync_services WHERE is_enabled AND NOT is_deleted
              ORDER BY next_run_at NULLS LAST, service_key LIMIT 30",
            &[],
        )
        .await?
        .iter()
        .map(|r| NextRun {
            service_key: r.get(0),
            job_type: r.get(1),
            schedule: r.get(2),
            next_run_at: r.get(3),
            last_run_at: r.get(4),
            last_run_status: r.get(5),
        })
        .collect();
    let workers = c
        .query(
            "SELECT instance_id, hostname, pid, extract(epoch FROM now() - last_seen_at)::float8, details
               FROM service_heartbeats
              WHERE kind = 'worker' AND last_seen_at > now() - interval '1 day'
              ORDER BY last_seen_at DESC LIMIT 20",
            &[],
        )
        .await?
        .iter()
        .map(|r| WorkerLine {
            instance_id: r.get(0),
            hostname: r.get(1),
            pid: r.get(2),
            last_seen_s: r.get::<_, Option<f64>>(3).unwrap_or(0.0),
            details: r.get(4),
        })
        .collect();
    Ok(JobsOverview {
        queues,
        dead,
        running,
        next_runs,
        workers,
    })
}
