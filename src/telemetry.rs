//! Logging, set up once per process. Under systemd (`JOURNAL_STREAM` names our stderr) events go
//! straight to the journal with real priorities (INFO → info, WARN → warning, ERROR → err) and
//! structured fields (`REQUEST_ID`, `HTTP_STATUS`, `LATENCY_MS`); otherwise text or JSON lines
//! on stderr (`EF__LOG_FORMAT`).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, LogFormat};

/// Libraries that are chatty at INFO; their warnings and errors still come through. hyper's own
/// "read header from client timeout" warnings are per-client noise, not operator news.
const QUIET: &str = "hyper=error,hyper_util=error,h2=error,rustls=warn,tokio_postgres=warn,tower_http=warn,reqwest=warn";

pub fn init(log: &LogConfig) {
    let filter = EnvFilter::new(format!("{},{QUIET}", log.level.as_filter()));
    if journal_is_stderr()
        && let Ok(layer) = tracing_journald::layer()
    {
        let layer = layer
            .with_syslog_identifier("euraflow".to_owned())
            .with_field_prefix(None)
            .with_priority_mappings(tracing_journald::PriorityMappings {
                info: tracing_journald::Priority::Informational,
                debug: tracing_journald::Priority::Debug,
                ..tracing_journald::PriorityMappings::new()
            });
        if tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .try_init()
            .is_ok()
        {
            return;
        }
        // A subscriber was set already (tests): keep it, and never log twice.
        return;
    }
    let _ = match log.format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            // `span` carries the request's `request_id` (and `user_id`) on every event logged
            // inside a request; the access line itself is logged outside the span.
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .try_init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_env_filter(filter)
            .try_init(),
    };
}

/// systemd sets `JOURNAL_STREAM=<dev>:<inode>` for a service whose stderr is the journal; if our
/// stderr is that same stream we may log natively. A redirected stderr (`2>file`) keeps text.
fn journal_is_stderr() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // dev_t and ino_t differ in width between architectures.
    #[allow(clippy::unnecessary_cast)]
    match rustix::fs::fstat(std::io::stderr()) {
        Ok(st) => st.st_dev as u64 == dev && st.st_ino as u64 == ino,
        Err(_) => false,
    }
}
