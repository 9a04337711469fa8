//! The `jobs` table for `/jobs`: listing newest first with filters and cursor paging, one job,
//! retrying a dead job and cancelling one that has not started. Retry and cancel are guarded
//! transitions: one `UPDATE` that only matches the states it allows.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;
use tokio_postgres::Row;

use super::AdminError;
use crate::jobs::{JobState, Queue};

/// Most rows one listing returns.
pub const MAX_PAGE: u32 = 200;
pub const DEFAULT_PAGE: u32 = 50;

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
