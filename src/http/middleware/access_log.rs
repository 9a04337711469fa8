//! One log event per request, after the response is ready. Fields are named so journald shows them
//! as `REQUEST_ID`, `HTTP_STATUS`, `LATENCY_MS`, ... (`journalctl -u euraflow HTTP_STATUS=500`).
//! The query string is never logged: it can carry tokens (the websocket's `?token=`), and
//! neither are headers or bodies.
//!
//! Everything inside the request runs in a `request` span carrying `request_id` (and `user_id`
//! once the caller is known), so a warning a handler logs lands in the journal with the same
//! `REQUEST_ID` as its access line: `journalctl -u euraflow REQUEST_ID=<X-Trace-Id>` shows the
//! whole request. The access line itself is logged outside the span, so it carries each field
//! once.

use std::time::Instant;

use axum::extract::Request;
use http::header;

use super::client_ip::ClientIp;
use super::request_id::RequestId;
use crate::state::AppState;
use crate::telemetry::access_line::{self, AccessRecord};

const MAX_LOGGED_PATH: usize = 256;
const MAX_LOGGED_AGENT: usize = 200;

/// What the access line says about the request, taken before the request is handed on.
pub struct AccessLine {
    started: Instant,
    method: http::Method,
    path: String,
    version: &'static str,
    agent: String,
    client: String,
    request_id: String,
    listener: &'static str,
}

impl AccessLine {
    /// Read the request's facts; `client_ip` and `request_id` must have run.
    pub fn begin(req: &Request) -> AccessLine {
        AccessLine {
            started: Instant::now(),
            method: req.method().clone(),
            path: truncate(req.uri().path(), MAX_LOGGED_PATH).to_owned(),
            version: version_name(req.version()),
            agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|v| truncate(v, MAX_LOGGED_AGENT).to_owned())
                .unwrap_or_default(),
            client: req
                .extensions()
                .get::<ClientIp>()
                .map(|c| c.0.to_string())
                .unwrap_or_default(),
            request_id: req
                .extensions()
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            listener: req
                .extensions()
                .get::<crate::http::server::ConnInfo>()
                .map(|c| c.kind.as_str())
                .unwrap_or("internal"),
        }
    }

    /// The `request` span everything inside the request runs in.
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "request",
            request_id = %self.request_id,
            user_id = tracing::field::Empty
        )
    }

    /// Log the line, with the final status, once the response is ready.
    pub fn end(self, state: &AppState, status: http::StatusCode) {
        state.stats().count_request();
        let status = status.as_u16();
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let latency_ms = (latency_ms * 10.0).round() / 10.0;
        let AccessLine {
            method,
            path,
            version,
            agent,
            client,
            request_id,
            listener,
            ..
        } = self;
        let record = AccessRecord {
            request_id: &request_id,
            method: method.as_str(),
            path: &path,
            status,
            latency_ms,
            client_ip: &client,
            http_version: version,
            listener,
            user_agent: &agent,
        };
        if access_line::write(&record) {
            return;
        }
        macro_rules! event {
            ($level:ident) => {
                tracing::$level!(
                    target: "euraflow::access",
                    request_id = %request_id,
                    http_method = %method,
                    http_path = %path,
                    http_status = status,
                    latency_ms,
                    client_ip = %client,
                    http_version = %version,
                    listener,
                    user_agent = %agent,
                    "{method} {path} {status} {latency_ms}ms"
                )
            };
        }
        if status >= 500 {
            event!(warn);
        } else {
            event!(info);
        }
    }
}

/// As `http::Version`'s `Debug` prints it, without formatting a string per request.
fn version_name(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
