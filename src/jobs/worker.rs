//! The worker: takes jobs from the queues and runs them, each in its own task, under the global
//! concurrency and the per-queue caps.
//!
//! - A free slot goes to the queue with runnable jobs that has the fewest jobs running (ties in
//!   turn), one job per queue per round: a flood in one queue delays another queue's job by at
//!   most one job's run time (until the next slot frees), and not at all when the flooded queue
//!   is capped below `EF__WORKER_CONCURRENCY`.
//! - Idle workers wake on `NOTIFY ef_jobs` (sent by the database when a job becomes runnable, on
//!   commit) and otherwise look every `EF__WORKER_POLL_INTERVAL` (retry delays, missed wake-ups).
//! - While a job runs its lease is renewed every third of `EF__JOB_LEASE_TIMEOUT`. A worker that
//!   cannot renew it (the database is unreachable for too long, or another worker took the job
//!   after the lease expired) stops the job at once: a job never runs twice at the same time.
//! - At the soft time limit the job's context is cancelled; at the hard limit its task is aborted
//!   and the run counts as failed.
//! - On stop: no new jobs; running ones get `EF__WORKER_SHUTDOWN_TIMEOUT`, then they are aborted
//!   and released back to the queue without counting the attempt.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Queue;
use super::queue::{self, Claimed, Outcome, QueueError};
use super::registry::{JobContext, JobEnv, JobError, JobResult, JobSpec, Registry, RetryPolicy};
use super::run_log;
use crate::config::WorkerConfig;

/// Shards of `job_metrics` rows (by worker slot), so concurrent finishes rarely share a row.
const METRIC_SHARDS: usize = 16;
/// How long the write of a job's outcome is retried while the database is unreachable.
const FINISH_RETRIES: u32 = 6;

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub concurrency: usize,
    pub queue_limits: Vec<(Queue, usize)>,
    pub poll_interval: Duration,
    pub lease: Duration,
    pub shutdown_timeout: Duration,
}

impl WorkerOptions {
    pub fn from_config(c: &WorkerConfig) -> Self {
        WorkerOptions {
            concurrency: c.concurrency.max(1),
            queue_limits: c.queue_limits.clone(),
            poll_interval: c.poll_interval,
            lease: c.lease,
            shutdown_timeout: c.shutdown_timeout,
        }
    }

    pub fn limit(&self, q: Queue) -> usize {
        self.queue_limits
            .iter()
            .find(|(x, _)| *x == q)
            .map(|(_, n)| *n)
            .unwrap_or(self.concurrency)
    }
}

pub struct Worker {
    instance_id: String,
    registry: Arc<Registry>,
    env: Arc<JobEnv>,
    opts: WorkerOptions,
    running: AtomicUsize,
}

/// How a supervised run ended.
enum End {
    Done(JobResult),
    HardLimit(Duration),
    LeaseLost(String),
    Released,
}

struct Slots {
    used: Vec<bool>,
    per_queue: HashMap<Queue, usize>,
    by_task: HashMap<tokio::task::Id, (Queue, usize)>,
}

impl Slots {
    fn take(&mut self, q: Queue) -> usize {
        let slot = self.used.iter().position(|u| !*u).unwrap_or(0);
        if let Some(u) = self.used.get_mut(slot) {
            *u = true;
        }
        *self.per_queue.entry(q).or_insert(0) += 1;
        slot
    }

    fn give_back(&mut self, id: tokio::task::Id) {
        if let Some((q, slot)) = self.by_task.remove(&id) {
            if let Some(u) = self.used.get_mut(slot) {
                *u = false;
            }
            if let Some(n) = self.per_queue.get_mut(&q) {
                *n = n.saturating_sub(1);
            }
        }
    }

    fn running(&self, q: Queue) -> usize {
        self.per_queue.get(&q).copied().unwrap_or(0)
    }
}

impl Worker {
    pub fn new(
        registry: Arc<Registry>,
        env: Arc<JobEnv>,
        opts: WorkerOptions,
        instance_id: String,
    ) -> Arc<Self> {
        Arc::new(Worker {
            instance_id,
            registry,
            env,
            opts,
            running: AtomicUsize::new(0),
        })
    }

    /// A fresh id for a worker process: host, pid and a random suffix.
    pub fn new_instance_id() -> String {
        format!(
            "{}:{}:{}",
            crate::config::system_hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Jobs running in this worker now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    pub fn options(&self) -> &WorkerOptions {
        &self.opts
    }

    /// Run until `stop`, then drain (see the module header). Returns once every job has ended or
    /// was released.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let (notes_tx, mut notes) = tokio::sync::mpsc::channel::<Option<Queue>>(1024);
        let listener_stop = CancellationToken::new();
        let listener = tokio::spawn(listen(
            self.env.config.db.clone(),
            notes_tx,
            listener_stop.clone(),
        ));
        let release = CancellationToken::new();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut slots = Slots {
            used: vec![false; self.opts.concurrency],
            per_queue: HashMap::new(),
            by_task: HashMap::new(),
        };
        // Queues found without runnable jobs; probed again after a wake-up for them or at the
        // next poll tick (retry delays end without a wake-up).
        let mut empty = [false; Queue::ALL.len()];
        let mut rr = 0usize;
        let mut notes_closed = false;
        let mut backoff: Option<Duration> = None;
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut poll = tokio::time::interval(self.opts.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reap_every = (self.opts.lease / 4).max(Duration::from_millis(500));
        let mut last_reap: Option<Instant> = None;
        tracing::info!(
            instance = %self.instance_id,
            concurrency = self.opts.concurrency,
            queues = %self.describe_limits(),
            "worker started"
        );
        loop {
            if stop.is_cancelled() {
                break;
            }
            if last_reap.is_none_or(|t| t.elapsed() >= reap_every) {
                last_reap = Some(Instant::now());
                self.expire_leases().await;
            }
            if retry_at.is_none_or(|t| tokio::time::Instant::now() >= t) {
                retry_at = None;
                match self
                    .fill(&mut tasks, &mut slots, &mut empty, &mut rr, &release)
                    .await
                {
                    Ok(()) => backoff = None,
                    Err(e) => {
                        let next = backoff
                            .map(|d| (d * 2).min(Duration::from_secs(30)))
                            .unwrap_or(Duration::from_secs(1));
                        tracing::warn!(error = %e, retry_in_s = next.as_secs_f64(), "cannot take jobs from the queue");
                        backoff = Some(next);
                        retry_at = Some(tokio::time::Instant::now() + next);
                    }
                }
            }
            self.running.store(tasks.len(), Ordering::Relaxed);
            let retry_sleep = tokio::time::sleep_until(
                retry_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                n = notes.recv(), if !notes_closed => match n {
                    Some(q) => {
                        mark(&mut empty, q);
                        while let Ok(q) = notes.try_recv() {
                            mark(&mut empty, q);
                        }
                    }
                    None => notes_closed = true,
                },
                Some(r) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    slots.give_back(task_id(&r));
                }
                _ = poll.tick() => empty = [false; Queue::ALL.len()],
                _ = retry_sleep, if retry_at.is_some() => {}
                _ = stop.cancelled() => break,
            }
            while let Some(r) = tasks.try_join_next_with_id() {
                slots.give_back(task_id(&r));
            }
            self.running.store(tasks.len(), Ordering::Relaxed);
        }

        if !tasks.is_empty() {
            tracing::info!(
                running = tasks.len(),
                bound_s = self.opts.shutdown_timeout.as_secs_f64(),
                "worker stopping: taking no new jobs; waiting for running ones"
            );
        }
        let deadline = tokio::time::Instant::now() + self.opts.shutdown_timeout;
        while !tasks.is_empty() {
            match tokio::time::timeout_at(deadline, tasks.join_next_with_id()).await {
                Ok(Some(r)) => slots.give_back(task_id(&r)),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        running = tasks.len(),
                        "jobs still running at the shutdown bound; stopping them and releasing them to the queue"
                    );
                    release.cancel();
                    break;
                }
            }
        }
        while let Ok(Some(r)) =
            tokio::time::timeout(Duration::from_secs(10), tasks.join_next_with_id()).await
        {
            slots.give_back(task_id(&r));
        }
        tasks.abort_all();
        self.running.store(0, Ordering::Relaxed);
        listener_stop.cancel();
        let _ = listener.await;
        tracing::info!(instance = %self.instance_id, "worker stopped");
    }

    fn describe_limits(&self) -> String {
        Queue::ALL
            .iter()
            .map(|q| format!("{q}={}", self.opts.limit(*q).min(self.opts.concurrency)))
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn expire_leases(&self) {
        let mut client = match self.env.db.get().await {
            Ok(c) => c,
            Err(_) => return,
        };
        match run_log::expire_leases(&mut client).await {
            Ok(expired) => {
                for e in expired {
                    tracing::warn!(
                        job_id = e.id,
                        job_type = %e.job_type,
                        owner = e.owner.as_deref().unwrap_or("?"),
                        state = %e.state,
                        "a job's lease expired before it finished (its worker died); it runs again"
                    );
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot check for expired leases"),
        }
    }

    /// Fill free slots: in rounds over the queues that may have runnable jobs, one job per queue
    /// per round (several at once when only one queue has work), until the slots are full or no
    /// queue has a runnable job.
    async fn fill(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        slots: &mut Slots,
        empty: &mut [bool; Queue::ALL.len()],
        rr: &mut usize,
        release: &CancellationToken,
    ) -> Result<(), QueueError> {
        let n = Queue::ALL.len();
        let mut client = None;
        loop {
            let free = self.opts.concurrency.saturating_sub(tasks.len());
            if free == 0 {
                return Ok(());
            }
            // The queue with the fewest running jobs goes first (ties in turn), so a free slot
            // goes to a queue that is waiting rather than to the one flooding.
            let mut eligible: Vec<usize> = (0..n)
                .map(|k| (*rr + k) % n)
                .filter(|&i| {
                    !empty[i] && slots.running(Queue::ALL[i]) < self.opts.limit(Queue::ALL[i])
                })
                .collect();
            eligible.sort_by_key(|&i| slots.running(Queue::ALL[i]));
            if eligible.is_empty() {
                return Ok(());
            }
            let per_queue = if eligible.len() == 1 { free } else { 1 };
            let client = match &client {
                Some(c) => c,
                None => client.insert(self.env.db.get().await?),
            };
            let mut claimed_any = false;
            for i in eligible {
                let q = Queue::ALL[i];
                let free = self.opts.concurrency.saturating_sub(tasks.len());
                let room = self
                    .opts
                    .limit(q)
                    .saturating_sub(slots.running(q))
                    .min(free)
                    .min(per_queue);
                if room == 0 {
                    continue;
                }
                let jobs = queue::claim(client, q, room as i64, &self.instance_id, self.opts.lease)
                    .await?;
                if jobs.len() < room {
                    // Drained for now.
                    empty[i] = true;
                }
                for job in jobs {
                    claimed_any = true;
                    let slot = slots.take(q);
                    let handle = tasks.spawn(self.clone().execute(job, slot, release.clone()));
                    slots.by_task.insert(handle.id(), (q, slot));
                }
            }
            *rr = (*rr + 1) % n;
            if !claimed_any {
                return Ok(());
            }
        }
    }

    async fn execute(self: Arc<Self>, job: Claimed, slot: usize, release: CancellationToken) {
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

fn task_id(r: &Result<(tokio::task::Id, ()), tokio::task::JoinError>) -> tokio::task::Id {
    match r {
        Ok((id, ())) => *id,
        Err(e) => e.id(),
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

/// A wake-up for `queue` (or for every queue) clears its "empty" mark.
fn mark(empty: &mut [bool; Queue::ALL.len()], queue: Option<Queue>) {
    match queue.and_then(|q| Queue::ALL.iter().position(|x| *x == q)) {
        Some(i) => empty[i] = false,
        None => *empty = [false; Queue::ALL.len()],
    }
}

/// Forward `NOTIFY ef_jobs` (payload: the queue) to the worker loop, reconnecting with backoff;
/// polling covers the gaps. A full channel drops wake-ups: the poll tick catches up.
async fn listen(
    db: crate::config::DbConfig,
    notes: tokio::sync::mpsc::Sender<Option<Queue>>,
    stop: CancellationToken,
) {
    let mut wait = Duration::from_secs(1);
    loop {
        match crate::db::connect_listener(&db).await {
            Ok((client, mut rx)) => match client.batch_execute("LISTEN ef_jobs").await {
                Ok(()) => {
                    wait = Duration::from_secs(1);
                    // Jobs enqueued while we were not listening.
                    let _ = notes.try_send(None);
                    loop {
                        tokio::select! {
                            n = rx.recv() => match n {
                                Some(n) => {
                                    let _ = notes.try_send(Queue::parse(n.payload()));
                                }
                                None => break,
                            },
                            _ = stop.cancelled() => return,
                        }
                    }
                    tracing::debug!("job wake-up connection lost; polling until it is back");
                }
                Err(e) => tracing::debug!(error = %e, "LISTEN failed"),
            },
            Err(e) => tracing::debug!(error = %e, "cannot open the job wake-up connection"),
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}
