//! One claimed job, from start to its recorded outcome: the service run's start, the run under
//! the soft and hard time limits with the lease renewed every third of it, the outcome (retry
//! delay from the job's policy, or dead), and writing it, retried briefly while the database is
//! unreachable. A job released at shutdown goes back to the queue without counting the attempt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::jobs::queue::{self, Claimed, Outcome, QueueError};
use crate::jobs::registry::{JobContext, JobError, JobResult, JobSpec, RetryPolicy};
use crate::jobs::run_log;

/// Shards of `job_metrics` rows (by worker slot), so concurrent finishes rarely share a row.
const METRIC_SHARDS: usize = 16;
/// How long the write of a job's outcome is retried while the database is unreachable.
const FINISH_RETRIES: u32 = 6;

/// How a supervised run ended.
enum End {
    Done(JobResult),
    HardLimit(Duration),
    LeaseLost(String),
    Released,
}

impl Worker {
    /// Run `job` (claimed into `slot`) to its end and record the outcome; `release` asks it to
    /// stop and go back to the queue (the shutdown bound passed).
    pub(super) async fn execute(
        self: Arc<Self>,
        job: Claimed,
        slot: usize,
        release: CancellationToken,
    ) {
        let started = Instant::now();
        let waited_ms = (job.started_at - job.ready_at).num_milliseconds().max(0);
        tracing::info!(
            job_id = job.id,
            job_type = %job.job_type,
            queue = %job.queue,
            attempt = job.attempt,
            max_attempts = job.max_attempts,
            waited_ms,
            "job started"
        );
        if let Some(key) = &job.service_key {
            self.service_started(&job, key).await;
        }
        let spec = self.registry.get(&job.job_type).cloned();
        let (end, policy) = match &spec {
            Some(spec) => (self.supervise(spec, &job, &release).await, spec.retry),
            None => (
                End::Done(Err(JobError::Failed(format!(
                    "this worker does not know the job type {}; it is retried in case a worker of a newer release takes it",
                    job.job_type
                )))),
                RetryPolicy::default(),
            ),
        };
        let duration = started.elapsed();
        let duration_ms = duration.as_millis() as u64;
        let outcome = match end {
            End::Done(Ok(v)) => Outcome::Succeeded(v),
            End::Done(Err(JobError::Permanent(e))) => Outcome::Failed {
                error: e,
                retry_in: None,
            },
            End::Done(Err(JobError::Failed(e))) => Outcome::Failed {
                error: e,
                retry_in: self.retry_in(&job, &policy),
            },
            End::HardLimit(limit) => Outcome::Failed {
                error: format!(
                    "hard time limit of {}s exceeded: the job did not stop at its soft limit and was aborted",
                    limit.as_secs_f64()
                ),
                retry_in: self.retry_in(&job, &policy),
            },
            End::LeaseLost(why) => {
                tracing::error!(
                    job_id = job.id,
                    job_type = %job.job_type,
                    attempt = job.attempt,
                    duration_ms,
                    "job stopped: {why}; its outcome is not recorded here (another worker may run it)"
                );
                return;
            }
            End::Released => {
                let why = "released back to the queue: the worker stopped before the job finished";
                match self.env.db.get().await {
                    Ok(client) => {
                        if let Err(e) = queue::release(&client, &job, &self.instance_id, why).await
                        {
                            tracing::warn!(job_id = job.id, error = %e, "cannot release the job; it runs again when its lease expires");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(job_id = job.id, error = %e, "cannot release the job; it runs again when its lease expires")
                    }
                }
                tracing::info!(
                    job_id = job.id,
                    job_type = %job.job_type,
                    attempt = job.attempt,
                    duration_ms,
                    "job released"
                );
                return;
            }
        };
        let recorded = self
            .record(&job, &outcome, duration, (slot % METRIC_SHARDS) as i16)
            .await;
        if recorded {
            let error = match &outcome {
                Outcome::Succeeded(_) => Some(None),
                Outcome::Failed {
                    error,
                    retry_in: None,
                } => Some(Some(error.as_str())),
                Outcome::Failed { .. } => None,
            };
            if let Some(error) = error {
                crate::realtime::job_ended(
                    &self.env.config,
                    &self.env.redis,
                    job.id,
                    &job.job_type,
                    error,
                )
                .await;
            }
        }
        match (&outcome, recorded) {
            (_, false) => {}
            (Outcome::Succeeded(_), true) => tracing::info!(
                job_id = job.id,
                job_type = %job.job_type,
                attempt = job.attempt,
                duration_ms,
                "job succeeded"
            ),
            (
                Outcome::Failed {
                    error,
                    retry_in: Some(d),
                },
                true,
            ) => tracing::warn!(
                job_id = job.id,
                job_type = %job.job_type,
                attempt = job.attempt,
                max_attempts = job.max_attempts,
                duration_ms,
                retry_in_s = d.as_secs_f64(),
                error = %error,
                "job failed; it will be retried"
            ),
            (
                Outcome::Failed {
                    error,
                    retry_in: None,
                },
                true,
            ) => tracing::error!(
                job_id = job.id,
                job_type = %job.job_type,
                attempt = job.attempt,
                max_attempts = job.max_attempts,
                duration_ms,
                error = %error,
                "job failed and is dead: `euraflow` admin retry brings it back"
            ),
        }
    }

    fn retry_in(&self, job: &Claimed, policy: &RetryPolicy) -> Option<Duration> {
        if job.attempt >= job.max_attempts {
            None
        } else {
            Some(policy.delay_with_jitter(job.attempt))
        }
    }

    /// Run the job under its time limits, renewing the lease, until it ends.
    async fn supervise(&self, spec: &JobSpec, job: &Claimed, release: &CancellationToken) -> End {
        let cancel = CancellationToken::new();
        let ctx = JobContext::new(
            job.id,
            job.attempt,
            job.max_attempts,
            cancel.clone(),
            self.env.clone(),
        );
        let mut handle = tokio::spawn(spec.start(job.payload.clone(), ctx));
        let soft = tokio::time::sleep(spec.limits.soft);
        let hard = tokio::time::sleep(spec.limits.hard);
        tokio::pin!(soft, hard);
        let mut soft_fired = false;
        let renew_every = self.opts.lease / 3;
        let mut renew =
            tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_renewed = Instant::now();
        let end = loop {
            tokio::select! {
                r = &mut handle => break match r {
                    Ok(result) => End::Done(result),
                    Err(e) if e.is_panic() => End::Done(Err(JobError::Failed(format!("the job panicked: {}", panic_text(e))))),
                    Err(_) => End::Done(Err(JobError::Failed("the job's task was cancelled".into()))),
                },
                _ = &mut soft, if !soft_fired => {
                    soft_fired = true;
                    tracing::warn!(job_id = job.id, job_type = %job.job_type, soft_limit_s = spec.limits.soft.as_secs_f64(), "soft time limit reached; asking the job to stop");
                    cancel.cancel();
                }
                _ = &mut hard => {
                    handle.abort();
                    break End::HardLimit(spec.limits.hard);
                }
                _ = renew.tick() => {
                    match self.renew(job).await {
                        Ok(true) => last_renewed = Instant::now(),
                        Ok(false) => {
                            handle.abort();
                            break End::LeaseLost("the job's lease was taken over (this worker was stalled past EF__JOB_LEASE_TIMEOUT)".into());
                        }
                        Err(e) => {
                            // Stop before the lease can expire, so no other worker starts it while this one runs.
                            if last_renewed.elapsed() + renew_every >= self.opts.lease {
                                handle.abort();
                                break End::LeaseLost(format!("the lease could not be renewed in time ({e})"));
                            }
                            tracing::warn!(job_id = job.id, error = %e, "cannot renew the job's lease; trying again");
                        }
                    }
                }
                _ = release.cancelled() => {
                    cancel.cancel();
                    handle.abort();
                    break End::Released;
                }
            }
        };
        cancel.cancel();
        if !handle.is_finished() {
            // Wait for the aborted task to be gone before anything else can start the job again.
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut handle).await;
        }
        end
    }

    async fn renew(&self, job: &Claimed) -> Result<bool, QueueError> {
        let client = self.env.db.get().await?;
        queue::renew(&client, job, &self.instance_id, self.opts.lease).await
    }

    /// Write the outcome (and the service's run log), retrying briefly while the database is
    /// unreachable. `false` when it could not be written or the job was no longer ours.
    async fn record(
        &self,
        job: &Claimed,
        outcome: &Outcome,
        duration: Duration,
        shard: i16,
    ) -> bool {
        let mut wait = Duration::from_millis(250);
        for attempt in 1..=FINISH_RETRIES {
            match self.try_record(job, outcome, duration, shard).await {
                Ok(true) => return true,
                Ok(false) => {
                    tracing::error!(
                        job_id = job.id,
                        job_type = %job.job_type,
                        "the job's lease was taken over before its outcome was written; the outcome is dropped"
                    );
                    return false;
                }
                Err(e) if attempt < FINISH_RETRIES => {
                    tracing::warn!(job_id = job.id, error = %e, "cannot record the job's outcome; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.opts.lease / 4);
                }
                Err(e) => {
                    tracing::error!(job_id = job.id, error = %e, "cannot record the job's outcome; it runs again when its lease expires");
                }
            }
        }
        false
    }

    async fn try_record(
        &self,
        job: &Claimed,
        outcome: &Outcome,
        duration: Duration,
        shard: i16,
    ) -> Result<bool, QueueError> {
        let mut client = self.env.db.get().await?;
        run_log::record_outcome(
            &mut client,
            job,
            &self.instance_id,
            outcome,
            duration,
            shard,
        )
        .await
    }

    async fn service_started(&self, job: &Claimed, key: &str) {
        let run = async {
            let client = self.env.db.get().await?;
            run_log::run_started(&**client, job, key).await
        };
        if let Err(e) = run.await {
            tracing::warn!(job_id = job.id, service_key = key, error = %e, "cannot record the run's start in sync_service_logs");
        }
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into()),
        Err(_) => "(no message)".into(),
    }
}
