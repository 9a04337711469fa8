//! Logging, set up once per process. Under systemd (`JOURNAL_STREAM` names our stderr) events go
//! straight to the journal with real priorities (INFO → info, WARN → warning, ERROR → err) and
//! structured fields (`REQUEST_ID`, `HTTP_STATUS`, `LATENCY_MS`); otherwise text or JSON lines
//! on stderr (`EF__LOG_FORMAT`).

pub mod access_line;
pub mod access_pipe;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, LogFormat};
use access_line::Form;
use access_pipe::{AccessPipe, Sink};

/// Libraries that are chatty at INFO; their warnings and errors still come through. hyper's own
/// "read header from client timeout" warnings are per-client noise, not operator news.
const QUIET: &str = "hyper=error,hyper_util=error,h2=error,rustls=warn,tokio_postgres=warn,tower_http=warn,reqwest=warn";

/// How long the end of a process waits for the access lines still queued.
const FLUSH_BOUND: std::time::Duration = std::time::Duration::from_secs(1);

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
        // A subscriber set already (tests) is kept, and so is its access log: never log twice.
        let set = tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .try_init();
        // The access lines take the pipe (`access_line`); without it (its thread could not
        // start) they are ordinary events, written at once, rather than not at all.
        if set.is_ok()
            && let Ok(pipe) = Sink::journal().and_then(AccessPipe::spawn)
        {
            access_line::install(pipe, Form::Journal);
        }
        return;
    }
    let set = match log.format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(json_layer(std::io::stderr))
            .try_init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(text_layer(std::io::stderr))
            .try_init(),
    };
    if set.is_ok()
        && let Ok(pipe) = AccessPipe::spawn(Sink::stderr())
    {
        access_line::install(pipe, log.format.into());
    }
}

/// JSON lines. `span` carries the request's `request_id` (and `user_id`) on every event logged
/// inside a request; the access line itself is logged outside the span.
fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(writer)
}

/// Plain text lines, without colour codes.
fn text_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false)
}

/// At the end of a process: let the writer take the access lines still queued (at most
/// [`FLUSH_BOUND`]), so the last requests of a drain are in the log too.
pub fn flush() {
    access_pipe::wait_written(FLUSH_BOUND);
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
