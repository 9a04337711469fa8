//! The jobs part of `euraflow status`: per-queue counts and the age of the oldest runnable job,
//! dead jobs, what runs now, the next scheduled runs and the workers seen in the last day. The
//! types deserialize too: `euraflow status` reads them back from the server's `/system/status`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

use super::AdminError;
use crate::jobs::Queue;

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
