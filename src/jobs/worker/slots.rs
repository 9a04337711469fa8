//! The worker's slots: `EF__WORKER_CONCURRENCY` numbered slots shared by all queues, and the
//! per-queue caps (`EF__WORKER_QUEUES`) within them. A slot's number picks the job's
//! `job_metrics` shard, so it is reused rather than counted up.

use std::collections::HashMap;

use super::WorkerOptions;
use crate::jobs::Queue;

pub(super) struct Slots {
    used: Vec<bool>,
    /// Each queue's cap, in the order of `Queue::ALL`.
    limits: [usize; Queue::ALL.len()],
    per_queue: HashMap<Queue, usize>,
    by_task: HashMap<tokio::task::Id, (Queue, usize)>,
}

impl Slots {
    pub(super) fn new(opts: &WorkerOptions) -> Self {
        Slots {
            used: vec![false; opts.concurrency],
            limits: Queue::ALL.map(|q| opts.limit(q)),
            per_queue: HashMap::new(),
            by_task: HashMap::new(),
        }
    }

    /// Take the lowest free slot for a job of `q`; `spawned` then ties it to the job's task.
    pub(super) fn take(&mut self, q: Queue) -> usize {
        let slot = self.used.iter().position(|u| !*u).unwrap_or(0);
        if let Some(u) = self.used.get_mut(slot) {
            *u = true;
        }
        *self.per_queue.entry(q).or_insert(0) += 1;
        slot
    }

    pub(super) fn spawned(&mut self, task: tokio::task::Id, q: Queue, slot: usize) {
        self.by_task.insert(task, (q, slot));
    }

    /// The task ended: its slot and its queue's count are free again.
    pub(super) fn give_back(&mut self, task: tokio::task::Id) {
        if let Some((q, slot)) = self.by_task.remove(&task) {
            if let Some(u) = self.used.get_mut(slot) {
                *u = false;
            }
            if let Some(n) = self.per_queue.get_mut(&q) {
                *n = n.saturating_sub(1);
            }
        }
    }

    pub(super) fn running(&self, q: Queue) -> usize {
        self.per_queue.get(&q).copied().unwrap_or(0)
    }

    /// How many more jobs of `q` its cap admits now (the global slots left are the caller's).
    pub(super) fn room(&self, q: Queue) -> usize {
        self.limit(q).saturating_sub(self.running(q))
    }

    /// The queues (indexes into `Queue::ALL`) that may start a job now: not found `empty` and
    /// under their cap. The queue with the fewest running jobs goes first, ties in turn from
    /// `start`, so a free slot goes to a queue that is waiting rather than to the one flooding.
    pub(super) fn eligible(&self, empty: &[bool; Queue::ALL.len()], start: usize) -> Vec<usize> {
        let n = Queue::ALL.len();
        let mut eligible: Vec<usize> = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| !empty[i] && self.running(Queue::ALL[i]) < self.limits[i])
            .collect();
        eligible.sort_by_key(|&i| self.running(Queue::ALL[i]));
        eligible
    }

    fn limit(&self, q: Queue) -> usize {
        // Every queue has its entry; the fallback is `WorkerOptions::limit`'s (the concurrency).
        Queue::ALL
            .iter()
            .position(|x| *x == q)
            .and_then(|i| self.limits.get(i).copied())
            .unwrap_or(self.used.len())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn options(concurrency: usize, queue_limits: Vec<(Queue, usize)>) -> WorkerOptions {
        WorkerOptions {
            concurrency,
            queue_limits,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn the_queue_with_fewest_running_goes_first_and_ties_go_in_turn() {
        let mut slots = Slots::new(&options(8, vec![]));
        let none_empty = [false; Queue::ALL.len()];
        assert_eq!(slots.eligible(&none_empty, 2), vec![2, 3, 4, 5, 0, 1]);
        assert_eq!(slots.take(Queue::Sync), 0);
        assert_eq!(slots.take(Queue::Sync), 1);
        assert_eq!(slots.take(Queue::Core), 2);
        let mut empty = none_empty;
        empty[5] = true;
        // Sync (index 3) runs two, Core (index 0) one, the others none.
        assert_eq!(slots.eligible(&empty, 0), vec![1, 2, 4, 0, 3]);
    }

    #[test]
    fn a_capped_queue_is_not_eligible_at_its_cap() {
        let mut slots = Slots::new(&options(4, vec![(Queue::Pull, 1)]));
        assert_eq!(slots.room(Queue::Pull), 1);
        assert_eq!(slots.room(Queue::Push), 4);
        slots.take(Queue::Pull);
        assert_eq!(slots.room(Queue::Pull), 0);
        assert!(!slots.eligible(&[false; Queue::ALL.len()], 0).contains(&1));
    }
}
