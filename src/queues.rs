//! The names of the job queues (`ef_core`, `ef_pull`, ...).
//!
//! A vocabulary, not the queue itself (that is `jobs::queue`, in PostgreSQL): it sits on the
//! infrastructure floor so that `config` can check `EF__WORKER_QUEUES` against it without
//! importing `jobs`, which is a floor above. `jobs` re-exports it as `jobs::Queue`.

use std::fmt;

/// The queues, as the original routed its tasks. A job type names its queue; the worker caps how
/// many jobs of each queue run at once (`EF__WORKER_QUEUES`) so a flood in one cannot starve the
/// others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Queue {
    #[serde(rename = "ef_core")]
    Core,
    #[serde(rename = "ef_pull")]
    Pull,
    #[serde(rename = "ef_push")]
    Push,
    #[serde(rename = "ef_sync")]
    Sync,
    Default,
    #[serde(rename = "ef_low")]
    Low,
}

impl Queue {
    pub const ALL: [Queue; 6] = [
        Queue::Core,
        Queue::Pull,
        Queue::Push,
        Queue::Sync,
        Queue::Default,
        Queue::Low,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Queue::Core => "ef_core",
            Queue::Pull => "ef_pull",
            Queue::Push => "ef_push",
            Queue::Sync => "ef_sync",
            Queue::Default => "default",
            Queue::Low => "ef_low",
        }
    }

    pub fn parse(s: &str) -> Option<Queue> {
        Queue::ALL.into_iter().find(|q| q.as_str() == s)
    }
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
