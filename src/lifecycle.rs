//! One handle owns every long-lived task by name, and one token tells them all to stop. Shutdown
//! waits for each task under a bound and names the ones that did not stop, so a hang at stop time
//! points at its culprit instead of at systemd's SIGKILL.

use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskName {
    HttpsAcceptor,
    HttpAcceptor,
    Watchdog,
    StatusReporter,
    DatabaseMaintenance,
    Migrations,
    Worker,
    Scheduler,
    Heartbeat,
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskName::HttpsAcceptor => "https-acceptor",
            TaskName::HttpAcceptor => "http-acceptor",
            TaskName::Watchdog => "watchdog",
            TaskName::StatusReporter => "status-reporter",
            TaskName::DatabaseMaintenance => "database-maintenance",
            TaskName::Migrations => "migrations",
            TaskName::Worker => "worker",
            TaskName::Scheduler => "scheduler",
            TaskName::Heartbeat => "heartbeat",
        })
    }
}

#[derive(Default)]
pub struct Lifecycle {
    shutdown: CancellationToken,
    tasks: Mutex<Vec<(TaskName, JoinHandle<()>)>>,
}

impl Lifecycle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancelled when shutdown begins; every task selects on it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Run `fut` as the task `name`. A task that ends before shutdown is logged as an error: every
    /// registered task is meant to live as long as the process.
    pub fn spawn<F>(&self, name: TaskName, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.shutdown.clone();
        let handle = tokio::spawn(async move {
            fut.await;
            if !token.is_cancelled() {
                tracing::error!(task = %name, "task ended unexpectedly");
            }
        });
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push((name, handle));
        }
    }

    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Wait for every task, at most `bound` in total; abort and return the ones still running.
    pub async fn join(&self, bound: Duration) -> Vec<TaskName> {
        let tasks = match self.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => Vec::new(),
        };
        let deadline = tokio::time::Instant::now() + bound;
        let mut stuck = Vec::new();
        for (name, mut handle) in tasks {
            match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(_) => tracing::debug!(task = %name, "task stopped"),
                Err(_) => {
                    tracing::warn!(task = %name, "task did not stop in time; aborting it");
                    handle.abort();
                    stuck.push(name);
                }
            }
        }
        stuck
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn join_names_tasks_that_ignore_shutdown() {
        let lc = Lifecycle::new();
        let token = lc.shutdown_token();
        lc.spawn(
            TaskName::HttpAcceptor,
            async move { token.cancelled().await },
        );
        lc.spawn(TaskName::Watchdog, async {
            std::future::pending::<()>().await
        });
        lc.begin_shutdown();
        let stuck = lc.join(Duration::from_millis(100)).await;
        assert_eq!(stuck, vec![TaskName::Watchdog]);
    }
}
