//! The claim loop: fill free slots from the queues, wait for a wake-up, a finished job, the poll
//! tick or the stop signal, and on stop drain within the shutdown bound (see `worker`'s header).
//! Expired leases of dead workers are taken back here too, every quarter of the lease.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::slots::Slots;
use super::{Worker, listener};
use crate::jobs::Queue;
use crate::jobs::queue::{self, QueueError};
use crate::jobs::run_log;

impl Worker {
    /// Run until `stop`, then drain (see the module header). Returns once every job has ended or
    /// was released.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let (notes_tx, mut notes) = tokio::sync::mpsc::channel::<Option<Queue>>(1024);
        let listener_stop = CancellationToken::new();
        let listener = tokio::spawn(listener::listen(
            self.env.config.db.clone(),
            notes_tx,
            listener_stop.clone(),
        ));
        let release = CancellationToken::new();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut slots = Slots::new(&self.opts);
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
            let eligible = slots.eligible(empty, *rr);
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
                let room = slots.room(q).min(free).min(per_queue);
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
                    slots.spawned(handle.id(), q, slot);
                }
            }
            *rr = (*rr + 1) % n;
            if !claimed_any {
                return Ok(());
            }
        }
    }
}

fn task_id(r: &Result<(tokio::task::Id, ()), tokio::task::JoinError>) -> tokio::task::Id {
    match r {
        Ok((id, ())) => *id,
        Err(e) => e.id(),
    }
}

/// A wake-up for `queue` (or for every queue) clears its "empty" mark.
fn mark(empty: &mut [bool; Queue::ALL.len()], queue: Option<Queue>) {
    match queue.and_then(|q| Queue::ALL.iter().position(|x| *x == q)) {
        Some(i) => empty[i] = false,
        None => *empty = [false; Queue::ALL.len()],
    }
}
