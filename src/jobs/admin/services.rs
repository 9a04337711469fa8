//! The `sync_services` schedules and their run logs, for `/sync-services`: list, show and edit a
//! schedule (validated; it takes effect at the scheduler's next pass), trigger a run, read the
//! run log and statistics. Resetting the counters and deleting log rows go through `run_log`,
//! which owns every write a run makes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;
use tokio_postgres::Row;

use super::AdminError;
use crate::jobs::Queue;
use crate::jobs::cron::Timing;
use crate::jobs::queue::{self, NewJob};
use crate::jobs::registry::Registry;
use crate::jobs::run_log;

/// Most run-log rows one request returns.
pub const MAX_LOGS: u32 = 500;
/// Largest `config_json` accepted for a service.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

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
