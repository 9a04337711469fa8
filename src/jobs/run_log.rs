//! The run log of sync services: the one module that writes `sync_service_logs` and the run
//! statistics of `sync_services` (`last_run_at`, `last_run_status`, `last_run_message`,
//! `run_count`, `success_count`, `error_count`, `avg_execution_time_ms`).
//!
//! A job enqueued with a `service_key` is a run of that service (`run_id` is the job id):
//! - its start adds a `running` log row and marks the service as running;
//! - its end closes the row and counts the run in the same transaction as the job's outcome, so
//!   the counters and the log never disagree with the `jobs` row (a run whose outcome was no
//!   longer this worker's to write is not counted either);
//! - a run whose worker died is closed as failed in the transaction that expires its lease.
//!
//! Operators reset the counters and delete old log rows through `admin`, and the cleanup job
//! prunes past the retention, all through here. The schedule columns (`schedule_config`,
//! `is_enabled`, `config_json`, `last_scheduled_at`, `next_run_at`) belong to the scheduler and
//! `admin`; reading the log belongs to `admin`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use super::queue::{self, Claimed, Expired, Outcome, QueueError};
use super::truncate;
use crate::db::{Client, Transaction};

/// Longest `last_run_message` written for a failed run.
const MAX_MESSAGE_BYTES: usize = 2000;

/// One batch of the retention cleanup: finished log rows started more than `$1` days ago, at most
/// `$2` of them. The cleanup job runs it in its batched loop beside the other tables.
pub(crate) const PRUNE_BATCH: &str = "DELETE FROM sync_service_logs WHERE id IN (
    SELECT id FROM sync_service_logs WHERE status <> 'running'
       AND started_at < now() - make_interval(days => $1) LIMIT $2)";

/// A run of service `key` started: its `running` log row, and the service shows it as running.
pub(crate) async fn run_started(
    client: &impl GenericClient,
    job: &Claimed,
    key: &str,
) -> Result<(), QueueError> {
    client
        .execute(
            "WITH l AS (
                INSERT INTO sync_service_logs (service_key, run_id, started_at, status, extra_data)
                VALUES ($1, $2, now(), 'running', jsonb_build_object('attempt', $3::int, 'job_type', $4::text)))
             UPDATE sync_services SET last_run_at = now(), last_run_status = 'running', updated_at = now()
              WHERE service_key = $1",
            &[&key, &job.id.to_string(), &(job.attempt as i32), &job.job_type],
        )
        .await?;
    Ok(())
}

/// Write a run's outcome (see `queue::finish`) and, when the job is a service run, close its log
/// row and count it, in one transaction. `false` when the job was no longer `owner`'s: nothing
/// is written then.
pub(crate) async fn record_outcome(
    client: &mut Client,
    job: &Claimed,
    owner: &str,
    outcome: &Outcome,
    duration: Duration,
    shard: i16,
) -> Result<bool, QueueError> {
    let Some(key) = &job.service_key else {
        // Nothing else to keep consistent with: one statement, no transaction.
        return queue::finish(&*client, job, owner, outcome, duration, shard).await;
    };
    let tx = client.transaction().await?;
    let ours = queue::finish(&tx, job, owner, outcome, duration, shard).await?;
    if ours {
        run_finished(&tx, job, key, outcome, duration).await?;
    }
    // Dropping `tx` on an error above rolls it back.
    tx.commit().await?;
    Ok(ours)
}

async fn run_finished(
    tx: &Transaction<'_>,
    job: &Claimed,
    key: &str,
    outcome: &Outcome,
    duration: Duration,
) -> Result<(), QueueError> {
    let ms = duration.as_millis().min(i32::MAX as u128) as i32;
    let (status, error, result, message) = match outcome {
        Outcome::Succeeded(v) => (
            "success",
            None,
            Some(v),
            format!("succeeded in {ms} ms (job {})", job.id),
        ),
        Outcome::Failed { error, retry_in } => {
            let next = match retry_in {
                Some(d) => format!("; retry in {:.0}s", d.as_secs_f64()),
                None => "; dead".to_owned(),
            };
            (
                "failed",
                Some(truncate(error, queue::MAX_ERROR_BYTES)),
                None,
                truncate(&format!("{error}{next}"), MAX_MESSAGE_BYTES),
            )
        }
    };
    // The job's summary may carry these counts (see `JobResult`); they go into the log row.
    let count = |name: &str| -> Option<i32> {
        result
            .and_then(|v| v.get(name))
            .and_then(|v| v.as_i64())
            .map(|n| n.clamp(0, i32::MAX as i64) as i32)
    };
    let (processed, updated) = (count("records_processed"), count("records_updated"));
    tx.execute(
        "WITH l AS (
            UPDATE sync_service_logs
               SET finished_at = now(), status = $3, execution_time_ms = $4, error_message = $5,
                   records_processed = $6, records_updated = $7,
                   extra_data = coalesce(extra_data, '{}'::jsonb) || jsonb_build_object('result', $8::jsonb)
             WHERE run_id = $1 AND service_key = $2 AND status = 'running')
         UPDATE sync_services
            SET last_run_status = $3, last_run_message = $9,
                run_count = run_count + 1,
                success_count = success_count + ($3 = 'success')::int,
                error_count = error_count + ($3 = 'failed')::int,
                avg_execution_time_ms =
                    ((coalesce(avg_execution_time_ms, 0)::bigint * run_count + $4) / (run_count + 1))::int,
                updated_at = now()
          WHERE service_key = $2",
        &[
            &job.id.to_string(),
            &key,
            &status,
            &ms,
            &error,
            &processed,
            &updated,
            &result,
            &message,
        ],
    )
    .await?;
    Ok(())
}

/// Expire the leases of jobs whose worker died (see `queue::expire_leases`) and close their
/// service runs as failed, in one transaction: a run's log row never stays `running` after its
/// job was taken back.
pub(crate) async fn expire_leases(client: &mut Client) -> Result<Vec<Expired>, QueueError> {
    let tx = client.transaction().await?;
    let expired = queue::expire_leases(&*tx).await?;
    if !expired.is_empty() {
        let run_ids: Vec<String> = expired.iter().map(|e| e.id.to_string()).collect();
        tx.execute(
            "UPDATE sync_service_logs
                SET status = 'failed', finished_at = now(),
                    error_message = 'the worker running it died before it finished'
              WHERE run_id = ANY($1) AND status = 'running'",
            &[&run_ids],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(expired)
}

/// Zero the run counters of service `id` (the log is kept). `false` when there is no such
/// service.
pub(crate) async fn reset_stats(c: &impl GenericClient, id: i32) -> Result<bool, QueueError> {
    let n = c
        .execute(
            "UPDATE sync_services
                SET run_count = 0, success_count = 0, error_count = 0,
                    avg_execution_time_ms = NULL, updated_at = now()
              WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(n == 1)
}

/// Delete the finished runs of service `key`, all of them or those started before `before`.
/// Returns how many were deleted; runs still in progress are kept.
pub(crate) async fn delete_runs(
    c: &impl GenericClient,
    key: &str,
    before: Option<DateTime<Utc>>,
) -> Result<u64, QueueError> {
    Ok(c.execute(
        "DELETE FROM sync_service_logs
          WHERE service_key = $1 AND status <> 'running' AND ($2::timestamptz IS NULL OR started_at < $2)",
        &[&key, &before],
    )
    .await?)
}
