//! The queue's SQL: enqueue, claim, lease renewal, finish, retry, release and lease expiry.
//!
//! Every state change of a claimed job checks `(id, lease_owner, attempts)`, so a worker that lost
//! its lease (it was paused past the lease, and another worker took the job) can never overwrite
//! the newer run's outcome.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::ClientWrapper;
use serde::Serialize;
use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use super::registry::{Job, JobSpec};
use super::{Queue, truncate};

/// Largest accepted payload (serialized JSON).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Most jobs accepted by one `enqueue_many`.
pub const MAX_BATCH: usize = 50_000;
/// Longest stored error text.
pub const MAX_ERROR_BYTES: usize = 8 * 1024;
/// Longest unique key.
pub const MAX_UNIQUE_KEY: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Db(#[from] crate::db::DbError),
    #[error("database error: {}", describe_pg(.0))]
    Query(#[from] tokio_postgres::Error),
}

/// A PostgreSQL error with its message, detail and SQLSTATE.
pub fn describe_pg(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!("; {d}"));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            if let Some(src) = std::error::Error::source(e) {
                s.push_str(&format!(": {src}"));
            }
            s
        }
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub job_type: String,
    pub queue: Queue,
    pub payload: serde_json::Value,
    pub priority: i16,
    pub max_attempts: u32,
    pub delay: Option<Duration>,
    pub unique_key: Option<String>,
    pub service_key: Option<String>,
    /// At most one job with this key is queued or running at a time (see [`NewJob::exclusive`]).
    pub exclusive_key: Option<String>,
    /// The user who asked for the run (their task page; the `job.finished` notification).
    pub requested_by: Option<i64>,
}

impl NewJob {
    /// A job of a typed job type, with its queue and retry policy.
    pub fn of<J: Job + Serialize>(job: &J) -> Result<NewJob, QueueError> {
        let payload = serde_json::to_value(job)
            .map_err(|e| QueueError::Invalid(format!("cannot encode {}: {e}", J::NAME)))?;
        Ok(NewJob {
            job_type: J::NAME.to_owned(),
            queue: J::QUEUE,
            payload,
            priority: 0,
            max_attempts: J::retry().max_attempts,
            delay: None,
            unique_key: None,
            service_key: None,
            exclusive_key: None,
            requested_by: None,
        })
    }

    /// A job of a registered type with a JSON payload (triggers from the API, schedules).
    pub fn from_spec(spec: &JobSpec, payload: serde_json::Value) -> NewJob {
        NewJob {
            job_type: spec.name.to_owned(),
            queue: spec.queue,
            payload,
            priority: 0,
            max_attempts: spec.retry.max_attempts,
            delay: None,
            unique_key: None,
            service_key: None,
            exclusive_key: None,
            requested_by: None,
        }
    }

    /// At most one job with this key exists (until cleanup removes the row): enqueueing it again
    /// returns the existing job.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// At most one job with this key is queued or running at a time: enqueueing another while one
    /// is in flight returns that one (a second "sync this shop" click gets the running sync). Once
    /// it has finished, the key is free again.
    pub fn exclusive(mut self, key: impl Into<String>) -> Self {
        self.exclusive_key = Some(key.into());
        self
    }

    pub fn requested_by(mut self, user_id: i64) -> Self {
        self.requested_by = Some(user_id);
        self
    }

    /// Higher runs first within its queue.
    pub fn priority(mut self, p: i16) -> Self {
        self.priority = p;
        self
    }

    /// Not before this long from now.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }

    pub fn service_key(mut self, key: impl Into<String>) -> Self {
        self.service_key = Some(key.into());
        self
    }

    fn check(&self) -> Result<(), QueueError> {
        if self.job_type.is_empty() || self.job_type.len() > 200 {
            return Err(QueueError::Invalid(
                "a job type name has 1 to 200 characters".into(),
            ));
        }
        let size = self.payload.to_string().len();
        if size > MAX_PAYLOAD_BYTES {
            return Err(QueueError::Invalid(format!(
                "the payload of {} is {size} bytes, more than the {MAX_PAYLOAD_BYTES} accepted; store large data in a table and pass its id",
                self.job_type
            )));
        }
        if !(1..=100).contains(&self.max_attempts) {
            return Err(QueueError::Invalid("max_attempts must be 1..=100".into()));
        }
        if self
            .unique_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > MAX_UNIQUE_KEY)
        {
            return Err(QueueError::Invalid(format!(
                "a unique key has 1 to {MAX_UNIQUE_KEY} characters"
            )));
        }
        if self
            .exclusive_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > MAX_UNIQUE_KEY)
        {
            return Err(QueueError::Invalid(format!(
                "an exclusive key has 1 to {MAX_UNIQUE_KEY} characters"
            )));
        }
        if self.exclusive_key.is_some() && self.unique_key.is_some() {
            return Err(QueueError::Invalid(
                "a job has a unique key or an exclusive key, not both".into(),
            ));
        }
        if self
            .delay
            .is_some_and(|d| d > Duration::from_secs(366 * 86400))
        {
            return Err(QueueError::Invalid(
                "a job cannot be delayed by more than a year".into(),
            ));
        }
        Ok(())
    }
}

/// The outcome of an enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Enqueued {
    /// A new job with this id.
    New(i64),
    /// A job with the same unique key already existed.
    Existing(i64),
}

impl Enqueued {
    pub fn id(self) -> i64 {
        match self {
            Enqueued::New(id) | Enqueued::Existing(id) => id,
        }
    }
}

/// Enqueue on `client`, which may be the caller's transaction: the job then commits or rolls back
/// with the caller's data, and idle workers are woken on commit only.
pub async fn enqueue(client: &impl GenericClient, job: &NewJob) -> Result<Enqueued, QueueError> {
    job.check()?;
    let delay_s = job.delay.map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let max_attempts = job.max_attempts as i32;
    let params: [&(dyn ToSql + Sync); 10] = [
        &job.job_type,
        &job.queue.as_str(),
        &job.priority,
        &job.payload,
        &max_attempts,
        &delay_s,
        &job.unique_key,
        &job.service_key,
        &job.exclusive_key,
        &job.requested_by,
    ];
    // A job holding a key may finish between our insert's conflict and the look-up: then the key
    // is free and the insert is tried again.
    for _ in 0..3 {
        let row = if job.exclusive_key.is_some() {
            client
                .query_opt(
                    "INSERT INTO jobs (job_type, queue, priority, payload, max_attempts, run_after,
                                       unique_key, service_key, exclusive_key, requested_by)
                     VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6), $7, $8, $9, $10)
                     ON CONFLICT (exclusive_key)
                        WHERE exclusive_key IS NOT NULL AND state IN ('queued', 'running', 'failed_retrying')
                        DO NOTHING
                     RETURNING id",
                    &params,
                )
                .await?
        } else {
            client
                .query_opt(
                    "INSERT INTO jobs (job_type, queue, priority, payload, max_attempts, run_after,
                                       unique_key, service_key, exclusive_key, requested_by)
                     VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6), $7, $8, $9, $10)
                     ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
                     RETURNING id",
                    &params,
                )
                .await?
        };
        if let Some(row) = row {
            return Ok(Enqueued::New(row.get(0)));
        }
        let existing = match &job.exclusive_key {
            Some(key) => {
                client
                    .query_opt(
                        "SELECT id FROM jobs WHERE exclusive_key = $1
                            AND state IN ('queued', 'running', 'failed_retrying')",
                        &[key],
                    )
                    .await?
            }
            None => {
                client
                    .query_opt(
                        "SELECT id FROM jobs WHERE unique_key = $1",
                        &[&job.unique_key],
                    )
                    .await?
            }
        };
        if let Some(existing) = existing {
            return Ok(Enqueued::Existing(existing.get(0)));
        }
    }
    Err(QueueError::Invalid(
        "the job holding the same key kept changing; enqueue again".into(),
    ))
}

/// Enqueue many jobs in one statement (imports, fan-out per shop). Jobs whose unique key is taken
/// are skipped; returns the ids of the new jobs.
pub async fn enqueue_many(
    client: &impl GenericClient,
    jobs: &[NewJob],
) -> Result<Vec<i64>, QueueError> {
    if jobs.len() > MAX_BATCH {
        return Err(QueueError::Invalid(format!(
            "{} jobs in one batch; at most {MAX_BATCH}",
            jobs.len()
        )));
    }
    for j in jobs {
        j.check()?;
    }
    let types: Vec<&str> = jobs.iter().map(|j| j.job_type.as_str()).collect();
    let queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
    let priorities: Vec<i16> = jobs.iter().map(|j| j.priority).collect();
    let payloads: Vec<&serde_json::Value> = jobs.iter().map(|j| &j.payload).collect();
    let attempts: Vec<i32> = jobs.iter().map(|j| j.max_attempts as i32).collect();
    let delays: Vec<f64> = jobs
        .iter()
        .map(|j| j.delay.map(|d| d.as_secs_f64()).unwrap_or(0.0))
        .collect();
    let keys: Vec<Option<&str>> = jobs.iter().map(|j| j.unique_key.as_deref()).collect();
    let services: Vec<Option<&str>> = jobs.iter().map(|j| j.service_key.as_deref()).collect();
    let params: [&(dyn ToSql + Sync); 8] = [
        &types,
        &queues,
        &priorities,
        &payloads,
        &attempts,
        &delays,
        &keys,
        &services,
    ];
    let rows = client
        .query(
            "INSERT INTO jobs (job_type, queue, priority, payload, max_attempts, run_after, unique_key, service_key)
             SELECT t, q, p, d, a, now() + make_interval(secs => s), k, sk
               FROM unnest($1::text[], $2::text[], $3::int2[], $4::jsonb[], $5::int4[], $6::float8[], $7::text[], $8::text[])
                    AS u(t, q, p, d, a, s, k, sk)
             ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
             RETURNING id",
            &params,
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A job taken by a worker.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub job_type: String,
    pub queue: Queue,
    pub payload: serde_json::Value,
    pub attempt: u32,
    pub max_attempts: u32,
    pub service_key: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the job became runnable (enqueue time, or the end of its retry delay).
    pub ready_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
}

/// Take up to `limit` runnable jobs of `queue` for `owner`, with a lease of `lease`.
pub async fn claim(
    client: &ClientWrapper,
    queue: Queue,
    limit: i64,
    owner: &str,
    lease: Duration,
) -> Result<Vec<Claimed>, QueueError> {
    let stmt = client
        .prepare_cached(
            "WITH next AS (
                SELECT id, run_after FROM jobs
                 WHERE queue = $1 AND state IN ('queued', 'failed_retrying') AND run_after <= now()
                 ORDER BY priority DESC, run_after, id
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED)
             UPDATE jobs j
                SET state = 'running', attempts = j.attempts + 1, lease_owner = $3,
                    lease_expires_at = now() + make_interval(secs => $4),
                    started_at = now(), finished_at = NULL, updated_at = now()
               FROM next
              WHERE j.id = next.id
          RETURNING j.id, j.job_type, j.payload, j.attempts, j.max_attempts, j.service_key,
                    j.created_at, next.run_after, j.started_at",
        )
        .await?;
    let lease_s = lease.as_secs_f64();
    let rows = client
        .query(&stmt, &[&queue.as_str(), &limit, &owner, &lease_s])
        .await?;
    Ok(rows
        .iter()
        .map(|r| Claimed {
            id: r.get(0),
            job_type: r.get(1),
            queue,
            payload: r.get(2),
            attempt: r.get::<_, i32>(3).max(0) as u32,
            max_attempts: r.get::<_, i32>(4).max(1) as u32,
            service_key: r.get(5),
            created_at: r.get(6),
            ready_at: r.get(7),
            started_at: r.get(8),
        })
        .collect())
}

/// Extend the lease; `false` when the job is no longer ours.
pub async fn renew(
    client: &ClientWrapper,
    job: &Claimed,
    owner: &str,
    lease: Duration,
) -> Result<bool, QueueError> {
    let stmt = client
        .prepare_cached(
            "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $4)
              WHERE id = $1 AND lease_owner = $2 AND attempts = $3 AND state = 'running'",
        )
        .await?;
    let n = client
        .execute(
            &stmt,
            &[&job.id, &owner, &(job.attempt as i32), &lease.as_secs_f64()],
        )
        .await?;
    Ok(n == 1)
}

/// How a run ended, for `finish`.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded(serde_json::Value),
    /// Failed; retried after the delay, or dead when `retry_in` is `None`.
    Failed {
        error: String,
        retry_in: Option<Duration>,
    },
}

/// Duration buckets of `ef_job_duration_seconds`.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

fn bucket_of(seconds: f64) -> usize {
    DURATION_BUCKETS
        .iter()
        .position(|b| seconds <= *b)
        .unwrap_or(DURATION_BUCKETS.len())
}

/// Record a run's end and count it in `job_metrics`, in one statement. `false` when the job was
/// no longer ours (lease lost): nothing is written. `client` may be a transaction: a service run's
/// log is closed in the same one (`run_log::record_outcome`).
pub async fn finish(
    client: &impl deadpool_postgres::GenericClient,
    job: &Claimed,
    owner: &str,
    outcome: &Outcome,
    duration: Duration,
    shard: i16,
) -> Result<bool, QueueError> {
    let secs = duration.as_secs_f64();
    // Postgres arrays are 1-based; one slot per bucket plus +Inf.
    let bucket = bucket_of(secs) as i32 + 1;
    let mut buckets = vec![0i64; DURATION_BUCKETS.len() + 1];
    buckets[bucket as usize - 1] = 1;
    let (state, result, error, retry_s): (&str, Option<&serde_json::Value>, Option<String>, f64) =
        match outcome {
            Outcome::Succeeded(v) => ("succeeded", Some(v), None, 0.0),
            Outcome::Failed {
                error,
                retry_in: Some(d),
            } => (
                "failed_retrying",
                None,
                Some(truncate(error, MAX_ERROR_BYTES)),
                d.as_secs_f64(),
            ),
            Outcome::Failed {
                error,
                retry_in: None,
            } => ("dead", None, Some(truncate(error, MAX_ERROR_BYTES)), 0.0),
        };
    let stmt = client
        .prepare_cached(
            "WITH done AS (
                UPDATE jobs
                   SET state = $4,
                       result = coalesce($5, result),
                       last_error = coalesce($6, last_error),
                       run_after = CASE WHEN $4 = 'failed_retrying'
                                        THEN now() + make_interval(secs => $7) ELSE run_after END,
                       finished_at = CASE WHEN $4 = 'failed_retrying' THEN NULL ELSE now() END,
                       lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
                 WHERE id = $1 AND lease_owner = $2 AND attempts = $3 AND state = 'running'
             RETURNING job_type)
             INSERT INTO job_metrics AS m
                    (job_type, shard, succeeded, failed, dead, duration_sum, duration_count, duration_buckets)
             SELECT job_type, $8, ($4 = 'succeeded')::int, ($4 <> 'succeeded')::int, ($4 = 'dead')::int,
                    $9, 1, $10 FROM done
             ON CONFLICT (job_type, shard) DO UPDATE
                SET succeeded = m.succeeded + excluded.succeeded,
                    failed = m.failed + excluded.failed,
                    dead = m.dead + excluded.dead,
                    duration_sum = m.duration_sum + excluded.duration_sum,
                    duration_count = m.duration_count + 1,
                    duration_buckets[$11] = m.duration_buckets[$11] + 1",
        )
        .await?;
    let n = client
        .execute(
            &stmt,
            &[
                &job.id,
                &owner,
                &(job.attempt as i32),
                &state,
                &result,
                &error,
                &retry_s,
                &shard,
                &secs,
                &buckets,
                &bucket,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Give a running job back to the queue without counting the attempt (worker shutdown).
pub async fn release(
    client: &ClientWrapper,
    job: &Claimed,
    owner: &str,
    why: &str,
) -> Result<bool, QueueError> {
    let n = client
        .execute(
            "UPDATE jobs
                SET state = 'queued', attempts = greatest(attempts - 1, 0), lease_owner = NULL,
                    lease_expires_at = NULL, run_after = now(), last_error = $4, updated_at = now()
              WHERE id = $1 AND lease_owner = $2 AND attempts = $3 AND state = 'running'",
            &[&job.id, &owner, &(job.attempt as i32), &why],
        )
        .await?;
    Ok(n == 1)
}

/// A job whose lease expired, as found by `expire_leases`.
#[derive(Debug, Clone)]
pub struct Expired {
    pub id: i64,
    pub job_type: String,
    pub state: String,
    pub owner: Option<String>,
}

/// Make jobs whose lease expired (their worker died) runnable again, or dead when they used
/// their attempts. Any worker may call it; `SKIP LOCKED` keeps callers from colliding. The
/// expired jobs stay locked until `client`'s transaction ends, so `run_log::expire_leases` closes
/// their service runs in the same one before any worker can claim them again.
pub(crate) async fn expire_leases(client: &impl GenericClient) -> Result<Vec<Expired>, QueueError> {
    let rows = client
        .query(
            "WITH gone AS (
                SELECT id, lease_owner FROM jobs
                 WHERE state = 'running' AND lease_expires_at < now()
                 ORDER BY lease_expires_at
                 LIMIT 1000
                 FOR UPDATE SKIP LOCKED),
             upd AS (
                UPDATE jobs j
                   SET state = CASE WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'failed_retrying' END,
                       finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
                       last_error = 'the lease of worker ' || coalesce(gone.lease_owner, '?')
                                    || ' expired before the job finished (the worker died or lost the database)',
                       lease_owner = NULL, lease_expires_at = NULL, run_after = now(), updated_at = now()
                  FROM gone WHERE j.id = gone.id
              RETURNING j.id, j.job_type, j.state, gone.lease_owner),
             counted AS (
                INSERT INTO job_metrics AS m (job_type, shard, failed, dead, duration_buckets)
                SELECT job_type, -1, count(*), count(*) FILTER (WHERE state = 'dead'),
                       array_fill(0::bigint, ARRAY[$1::int])
                  FROM upd GROUP BY job_type
                ON CONFLICT (job_type, shard) DO UPDATE
                   SET failed = m.failed + excluded.failed, dead = m.dead + excluded.dead)
             SELECT id, job_type, state, lease_owner FROM upd",
            &[&((DURATION_BUCKETS.len() + 1) as i32)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Expired {
            id: r.get(0),
            job_type: r.get(1),
            state: r.get(2),
            owner: r.get(3),
        })
        .collect())
}

/// Jobs per queue and state, for status lines and `euraflow status`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Counts {
    pub queued: i64,
    pub running: i64,
    pub retrying: i64,
    pub dead: i64,
}

pub async fn counts(client: &impl GenericClient) -> Result<Counts, QueueError> {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'queued'),
                    count(*) FILTER (WHERE state = 'running'),
                    count(*) FILTER (WHERE state = 'failed_retrying'),
                    count(*) FILTER (WHERE state = 'dead')
               FROM jobs WHERE state IN ('queued', 'running', 'failed_retrying', 'dead')",
            &[],
        )
        .await?;
    Ok(Counts {
        queued: row.get(0),
        running: row.get(1),
        retrying: row.get(2),
        dead: row.get(3),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_into_their_bucket() {
        assert_eq!(bucket_of(0.001), 0);
        assert_eq!(bucket_of(0.005), 0);
        assert_eq!(bucket_of(0.006), 1);
        assert_eq!(bucket_of(7200.0), DURATION_BUCKETS.len());
    }
}
