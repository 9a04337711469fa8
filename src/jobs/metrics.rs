//! The job metrics, read from PostgreSQL when the server's metrics endpoint is scraped.
//!
//! Why the server and not each worker: any number of worker processes share the queue, and the
//! database already holds the truth — queue depths, and monotonic per-type counters written in
//! the same transaction that finishes a job (`job_metrics`). One scrape target (the server's
//! loopback listener, already scraped) then reports all workers exactly, including jobs counted
//! by a worker that has since died; the worker process serves nothing.

use std::fmt::Write as _;

use tokio_postgres::GenericClient;

use super::Queue;
use super::queue::{DURATION_BUCKETS, QueueError};

#[derive(Debug, Clone, Default)]
pub struct JobTypeCounters {
    pub job_type: String,
    pub succeeded: i64,
    pub failed: i64,
    pub dead: i64,
    pub duration_sum: f64,
    pub duration_count: i64,
    /// Per-bucket counts (not cumulative), `DURATION_BUCKETS` then +Inf.
    pub buckets: Vec<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// (queue, waiting jobs, age of the oldest runnable one in seconds)
    pub queues: Vec<(Queue, i64, f64)>,
    pub types: Vec<JobTypeCounters>,
    /// How late the most overdue enabled schedule is, in seconds (0 when none is).
    pub scheduler_lag: f64,
}

pub async fn snapshot(c: &impl GenericClient) -> Result<Snapshot, QueueError> {
    let rows = c
        .query(
            "SELECT queue, count(*),
                    coalesce(extract(epoch FROM now() - min(run_after) FILTER (WHERE run_after <= now())), 0)::float8
               FROM jobs WHERE state IN ('queued', 'failed_retrying') GROUP BY queue",
            &[],
        )
        .await?;
    let queues = Queue::ALL
        .iter()
        .map(|q| {
            let r = rows.iter().find(|r| r.get::<_, String>(0) == q.as_str());
            (
                *q,
                r.map(|r| r.get(1)).unwrap_or(0),
                r.map(|r| r.get::<_, f64>(2).max(0.0)).unwrap_or(0.0),
            )
        })
        .collect();
    let rows = c
        .query(
            "SELECT job_type, sum(succeeded)::int8, sum(failed)::int8, sum(dead)::int8,
                    sum(duration_sum)::float8, sum(duration_count)::int8
               FROM job_metrics GROUP BY job_type ORDER BY job_type",
            &[],
        )
        .await?;
    let bucket_rows = c
        .query(
            "SELECT job_type, i::int4, sum(v)::int8
               FROM job_metrics, unnest(duration_buckets) WITH ORDINALITY AS u(v, i)
              GROUP BY job_type, i",
            &[],
        )
        .await?;
    let types = rows
        .iter()
        .map(|r| {
            let job_type: String = r.get(0);
            let mut buckets = vec![0i64; DURATION_BUCKETS.len() + 1];
            for b in bucket_rows
                .iter()
                .filter(|b| b.get::<_, String>(0) == job_type)
            {
                let i = b.get::<_, i32>(1) as usize;
                if let Some(slot) = i.checked_sub(1).and_then(|i| buckets.get_mut(i)) {
                    *slot = b.get(2);
                }
            }
            JobTypeCounters {
                job_type,
                succeeded: r.get(1),
                failed: r.get(2),
                dead: r.get(3),
                duration_sum: r.get(4),
                duration_count: r.get(5),
                buckets,
            }
        })
        .collect();
    let lag: f64 = c
        .query_one(
            "SELECT coalesce(max(extract(epoch FROM now() - next_run_at)), 0)::float8
               FROM sync_services
              WHERE is_enabled AND NOT is_deleted AND next_run_at < now()",
            &[],
        )
        .await?
        .get(0);
    Ok(Snapshot {
        queues,
        types,
        scheduler_lag: lag.max(0.0),
    })
}

/// Label values are job type names (`ef.core.cleanup`), but escape anyway.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Snapshot {
    /// Prometheus text exposition of the job metrics.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP ef_job_queue_depth Jobs waiting in the queue (queued or waiting for a retry)\n# TYPE ef_job_queue_depth gauge"
        );
        for (q, depth, _) in &self.queues {
            let _ = writeln!(out, "ef_job_queue_depth{{queue=\"{q}\"}} {depth}");
        }
        let _ = writeln!(
            out,
            "# HELP ef_job_oldest_queued_seconds Age of the oldest runnable job in the queue\n# TYPE ef_job_oldest_queued_seconds gauge"
        );
        for (q, _, oldest) in &self.queues {
            let _ = writeln!(
                out,
                "ef_job_oldest_queued_seconds{{queue=\"{q}\"}} {oldest}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP ef_job_duration_seconds Run time of finished job runs, by job type\n# TYPE ef_job_duration_seconds histogram"
        );
        for t in &self.types {
            let name = label(&t.job_type);
            let mut cumulative = 0i64;
            for (i, le) in DURATION_BUCKETS.iter().enumerate() {
                cumulative += t.buckets.get(i).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "ef_job_duration_seconds_bucket{{job=\"{name}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "ef_job_duration_seconds_bucket{{job=\"{name}\",le=\"+Inf\"}} {}",
                t.duration_count
            );
            let _ = writeln!(
                out,
                "ef_job_duration_seconds_sum{{job=\"{name}\"}} {}",
                t.duration_sum
            );
            let _ = writeln!(
                out,
                "ef_job_duration_seconds_count{{job=\"{name}\"}} {}",
                t.duration_count
            );
        }
        let _ = writeln!(
            out,
            "# HELP ef_job_failures_total Failed job runs (each failed attempt), by job type\n# TYPE ef_job_failures_total counter"
        );
        for t in &self.types {
            let _ = writeln!(
                out,
                "ef_job_failures_total{{job=\"{}\"}} {}",
                label(&t.job_type),
                t.failed
            );
        }
        let _ = writeln!(
            out,
            "# HELP ef_job_succeeded_total Successful job runs, by job type\n# TYPE ef_job_succeeded_total counter"
        );
        for t in &self.types {
            let _ = writeln!(
                out,
                "ef_job_succeeded_total{{job=\"{}\"}} {}",
                label(&t.job_type),
                t.succeeded
            );
        }
        let dead: i64 = self.types.iter().map(|t| t.dead).sum();
        let _ = writeln!(
            out,
            "# HELP ef_job_dead_total Jobs that used all their attempts (or failed permanently)\n# TYPE ef_job_dead_total counter\nef_job_dead_total {dead}"
        );
        let _ = writeln!(
            out,
            "# HELP ef_scheduler_lag_seconds How late the most overdue enabled schedule is (0 when all are on time)\n# TYPE ef_scheduler_lag_seconds gauge\nef_scheduler_lag_seconds {}",
            self.scheduler_lag
        );
        out
    }
}
