//! `euraflow serve`: the server's life from start to exit.
//!
//! start → READY=1 → (SIGHUP → RELOADING=1 → READY=1)* → SIGTERM/SIGINT → STOPPING=1 → stop
//! accepting → in-flight requests finish within EF__SHUTDOWN_TIMEOUT → exit 0.

use std::time::{Duration, Instant};

use crate::config::Loaded;
use crate::lifecycle::{Lifecycle, Signal, Signals};
use crate::process::ProcessError;
use crate::startup::{Application, Running};
use crate::systemd::{self, InheritedSockets};

/// How often the STATUS= line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(10);
/// Tasks other than connections get this long after the drain.
const TASK_STOP_BOUND: Duration = Duration::from_secs(3);

pub async fn run(
    loaded: Loaded,
    inherited: InheritedSockets,
    dev: bool,
    with_jobs: bool,
    demo: bool,
) -> Result<(), ProcessError> {
    let mut config = loaded.config.clone();
    // Before anything is built from the configuration: the demo points the Ozon client at its
    // fake Ozon.
    let demo = if demo {
        Some(crate::ozon::demo::Demo::start(&mut config).await?)
    } else {
        None
    };
    let shutdown_timeout = config.http.shutdown_timeout;
    let lifecycle = Lifecycle::new();
    let mut signals = Signals::install()?;

    crate::db::prepare::prepare(&config, &lifecycle, dev, move |config| async move {
        if dev {
            crate::auth::bootstrap::ensure_admin_in_dev(config).await;
        }
    })
    .await
    .map_err(ProcessError::Migration)?;
    // Development only (`serve --dev`): the worker and scheduler beside the server, so that
    // sync buttons and scheduled jobs work in the one-command setup. In production they are the
    // `euraflow-worker` unit, which scales and restarts on its own.
    let jobs = if with_jobs {
        let jobs = crate::worker::Jobs::start(
            std::sync::Arc::new(config.clone()),
            crate::jobs::builtin_registry(),
            &lifecycle,
        )?;
        tracing::info!(
            "development: the job worker and scheduler run in this process (--no-worker leaves them out)"
        );
        Some(jobs)
    } else {
        None
    };
    let app = Application::build(config, inherited).await?;
    if let Some(cert) = app.certificate() {
        log_certificate(&cert, "serving certificate");
    }
    let socket_activated = app.socket_activated();
    let running = app.start(&lifecycle);
    if let Some(demo) = &demo {
        demo.seed(running.state(), &lifecycle, running.http_addr)
            .await;
    }
    let where_ = listeners_text(&running);
    tracing::info!(
        https = running.https_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        http = %running.http_addr,
        socket_activated,
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    systemd::ready(&format!("serving {where_}"));

    systemd::spawn_watchdog(&lifecycle);
    {
        let state = running.state().clone();
        let where_ = where_.clone();
        let mut last = (Instant::now(), state.stats().requests());
        lifecycle.spawn_status_reporter(STATUS_EVERY, STATUS_EVERY, move || {
            let now = (Instant::now(), state.stats().requests());
            let rate = (now.1 - last.1) as f64 / now.0.duration_since(last.0).as_secs_f64();
            last = now;
            let line = format!(
                "serving {where_}: {} connections, {rate:.1} req/s",
                state.stats().open_connections()
            );
            async move { line }
        });
    }

    let reason = loop {
        match signals.next().await {
            Signal::Stop(name) => break name,
            Signal::Reload => reload(&running, &where_),
        }
    };

    tracing::info!(
        signal = reason,
        drain_timeout_s = shutdown_timeout.as_secs_f64(),
        "stopping: no new connections, finishing in-flight requests"
    );
    systemd::stopping("stopping: finishing in-flight requests");
    lifecycle.begin_shutdown();
    let cut = running.drain(shutdown_timeout).await;
    running.state().db().close();
    let task_bound = match &jobs {
        Some(jobs) => {
            jobs.stop_taking_jobs();
            TASK_STOP_BOUND.max(jobs.shutdown_timeout() + Duration::from_secs(1))
        }
        None => TASK_STOP_BOUND,
    };
    lifecycle.stop(task_bound).await;
    if let Some(jobs) = &jobs {
        jobs.close();
    }
    tracing::info!(connections_cut = cut, "stopped");
    Ok(())
}

fn reload(running: &Running, where_: &str) {
    systemd::reloading();
    tracing::info!("SIGHUP: reloading the TLS certificate");
    match running.reload_tls() {
        Ok(Some(cert)) => log_certificate(&cert, "reloaded certificate"),
        Ok(None) => tracing::info!("HTTPS is off; nothing to reload"),
        Err(e) => tracing::error!(
            error = format!("{e:#}"),
            "the new TLS certificate was refused; still serving the previous one"
        ),
    }
    systemd::ready(&format!("serving {where_}"));
}

fn log_certificate(cert: &crate::http::tls::LoadedCertificate, what: &str) {
    let days_left = cert
        .not_after
        .duration_since(std::time::SystemTime::now())
        .map(|d| (d.as_secs() / 86400) as i64)
        .unwrap_or(-1);
    tracing::info!(
        subject = %cert.subject,
        origin = %cert.origin,
        sha256 = %cert.fingerprint,
        expires = %httpdate::fmt_http_date(cert.not_after),
        days_left,
        // In the text too: `journalctl -u euraflow` shows the message, not the fields.
        "{what}: {}, expires {} ({days_left} days left), from {}",
        cert.subject,
        httpdate::fmt_http_date(cert.not_after),
        cert.origin
    );
    if days_left < 0 {
        tracing::error!(subject = %cert.subject, "the TLS certificate has expired; browsers will refuse it");
    } else if days_left < 14 {
        tracing::warn!(subject = %cert.subject, days_left, "the TLS certificate expires soon; check certbot renewal");
    }
    if cert.origin.starts_with("self-signed") {
        tracing::warn!(
            "serving a self-signed certificate; set EF__TLS_CERT and EF__TLS_KEY (e.g. Let's Encrypt) for production"
        );
    }
}

fn listeners_text(running: &Running) -> String {
    match running.https_addr {
        Some(a) => format!("https {a}, http {}", running.http_addr),
        None => format!("http {}", running.http_addr),
    }
}
