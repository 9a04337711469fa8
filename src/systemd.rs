//! systemd integration: sockets passed by socket activation (by name), readiness and status
//! notifications, and the watchdog.
//!
//! Socket activation is read in `main` before the runtime starts any thread, because taking the
//! descriptors unsets `LISTEN_*` from the environment (children must not inherit them) and that is
//! only sound while the process has one thread. `NOTIFY_SOCKET` is never unset: every later
//! STATUS, RELOADING and STOPPING needs it.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use anyhow::{Context, bail};
use sd_notify::NotifyState;

use crate::lifecycle::{Lifecycle, TaskName};

/// Listening sockets handed over by systemd, by `FileDescriptorName=`.
#[derive(Debug, Default)]
pub struct InheritedSockets {
    pub https: Option<std::net::TcpListener>,
    pub http: Option<std::net::TcpListener>,
}

impl InheritedSockets {
    pub fn is_empty(&self) -> bool {
        self.https.is_none() && self.http.is_none()
    }
}

/// Take the sockets passed with `LISTEN_FDS`/`LISTEN_FDNAMES`.
///
/// # Safety
/// Must be called while the process is single-threaded (before the tokio runtime is built): it
/// removes variables from the environment.
pub unsafe fn take_listen_fds() -> anyhow::Result<InheritedSockets> {
    // SAFETY: the caller guarantees no other thread exists.
    let fds: Vec<(RawFd, String)> = unsafe { sd_notify::listen_fds_with_names_and_unset_env() }
        .context("reading the sockets passed by systemd (LISTEN_FDS)")?
        .collect();
    let mut sockets = InheritedSockets::default();
    for (fd, name) in fds {
        // SAFETY: systemd passed this descriptor to us; nothing else in the process owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        check_listening_tcp(&owned, &name)?;
        let listener = std::net::TcpListener::from(owned);
        listener
            .set_nonblocking(true)
            .with_context(|| format!("socket '{name}': cannot make it non-blocking"))?;
        let slot = match name.as_str() {
            "https" => &mut sockets.https,
            "http" => &mut sockets.http,
            other => bail!(
                "systemd passed a socket named '{other}'; expected 'https' or 'http' (set FileDescriptorName= in the .socket unit)"
            ),
        };
        if slot.is_some() {
            bail!("systemd passed two sockets named '{name}'; each name may be used once");
        }
        *slot = Some(listener);
    }
    Ok(sockets)
}

fn check_listening_tcp(fd: &OwnedFd, name: &str) -> anyhow::Result<()> {
    use rustix::net::sockopt;
    let ty = sockopt::socket_type(fd)
        .with_context(|| format!("socket '{name}' passed by systemd is not a socket"))?;
    if ty != rustix::net::SocketType::STREAM {
        bail!("socket '{name}' passed by systemd is not a stream socket (use ListenStream=)");
    }
    let listening = sockopt::socket_acceptconn(fd)
        .with_context(|| format!("socket '{name}': cannot query it"))?;
    if !listening {
        bail!("socket '{name}' passed by systemd is not listening (Accept=no is required)");
    }
    Ok(())
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// `RELOADING=1` and `MONOTONIC_USEC=` must travel in one datagram for systemd to match them.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading TLS certificate"),
        ]),
        Err(e) => tracing::warn!(error = %e, "cannot read the monotonic clock for RELOADING"),
    }
}

/// How much longer systemd should wait for READY=1 each time a slow startup step checks in.
const STARTUP_EXTENSION: Duration = Duration::from_secs(30);
/// A step quicker than this sends nothing (the common case: no migration pending).
const STARTUP_EXTENSION_AFTER: Duration = Duration::from_secs(2);
/// How often a slow step checks in: well inside [`STARTUP_EXTENSION`].
const STARTUP_EXTENSION_EVERY: Duration = Duration::from_secs(10);

/// Run a startup step that may legitimately take longer than the unit's `TimeoutStartSec=`
/// (a large migration, or waiting for another process's), telling systemd it is alive:
/// `EXTEND_TIMEOUT_USEC=` with a `STATUS=` saying what it waits for and how long it has taken.
/// Without this, systemd would kill the process mid-migration and the restart would start over.
pub async fn extending_startup<T>(what: &str, step: impl Future<Output = T>) -> T {
    let started = tokio::time::Instant::now();
    let mut tick =
        tokio::time::interval_at(started + STARTUP_EXTENSION_AFTER, STARTUP_EXTENSION_EVERY);
    tokio::pin!(step);
    loop {
        tokio::select! {
            out = &mut step => return out,
            _ = tick.tick() => {
                let status = format!("{what} ({} s so far)", started.elapsed().as_secs());
                tracing::info!(step = what, elapsed_s = started.elapsed().as_secs(), "startup step still running; extending systemd's start timeout");
                send(&[
                    NotifyState::ExtendTimeoutUsec(STARTUP_EXTENSION.as_micros() as u32),
                    NotifyState::Status(&status),
                ]);
            }
        }
    }
}

pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

fn watchdog_ping() {
    send(&[NotifyState::Watchdog]);
}

/// When systemd watches this process (`WatchdogSec=`), ping it at half the interval from a task
/// on the runtime until shutdown: a ping proves the runtime still schedules work.
pub fn spawn_watchdog(lifecycle: &Lifecycle) {
    let Some(every) = watchdog_interval() else {
        return;
    };
    let token = lifecycle.shutdown_token();
    lifecycle.spawn(TaskName::Watchdog, async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => watchdog_ping(),
                _ = token.cancelled() => break,
            }
        }
    });
}

/// Half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3) advises, when the watchdog is on for us.
fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
