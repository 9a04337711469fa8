//! One handle owns every long-lived task by name, and one token tells them all to stop. Shutdown
//! waits for each task under a bound and names the ones that did not stop, so a hang at stop time
//! points at its culprit instead of at systemd's SIGKILL.
//!
//! The process's signals are read here too ([`Signals`]: TERM and INT stop, HUP reloads), and the
//! one STATUS reporter runs here ([`Lifecycle::spawn_status_reporter`]), for `serve` and `worker`
//! alike.

use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{self, SignalKind};
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
    Realtime,
    /// This process's websocket numbers for the stats of every server (`realtime::stats`).
    RealtimeStats,
    /// Hears the invalidations of the sign-in cache (`auth::cache`).
    AuthCache,
    AccountExpiry,
    /// `serve --dev --demo`: new orders in the demo shops.
    Demo,
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
            TaskName::Realtime => "realtime",
            TaskName::RealtimeStats => "realtime-stats",
            TaskName::AuthCache => "auth-cache",
            TaskName::AccountExpiry => "account-expiry",
            TaskName::Demo => "demo",
        })
    }
}

/// What the process was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM (systemd's stop) or SIGINT (Ctrl-C): the name of the signal.
    Stop(&'static str),
    /// SIGHUP (`systemctl reload`).
    Reload,
}

/// The process's TERM, INT and HUP. Install them before READY=1, so a stop request can never be
/// lost between the two.
pub struct Signals {
    term: unix::Signal,
    int: unix::Signal,
    hup: unix::Signal,
}

impl Signals {
    pub fn install() -> anyhow::Result<Self> {
        Ok(Signals {
            term: unix::signal(SignalKind::terminate())
                .context("installing the SIGTERM handler")?,
            int: unix::signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hup: unix::signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    /// The next signal.
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop("SIGTERM"),
            _ = self.int.recv() => Signal::Stop("SIGINT"),
            _ = self.hup.recv() => Signal::Reload,
        }
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

    /// Refresh systemd's `STATUS=` line with what `line` reports, first after `first`, then
    /// every `every`, until shutdown.
    pub fn spawn_status_reporter<F, Fut>(&self, first: Duration, every: Duration, mut line: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = String> + Send,
    {
        let stop = self.shutdown_token();
        self.spawn(TaskName::StatusReporter, async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => break,
                }
                let text = line().await;
                crate::systemd::status(&text);
            }
        });
    }

    /// Shut down: cancel every task's token, then wait for them (at most `bound`), naming the
    /// ones that had to be aborted in the log.
    pub async fn stop(&self, bound: Duration) {
        self.begin_shutdown();
        let stuck = self.join(bound).await;
        if !stuck.is_empty() {
            let names: Vec<String> = stuck.iter().map(ToString::to_string).collect();
            tracing::warn!(tasks = %names.join(", "), "tasks were aborted at shutdown");
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
