//! The access line, encoded by hand into its own buffer and handed to the access pipe.
//!
//! One line per request is nearly all of the log's volume. Through `tracing` it cost ~8 µs of CPU
//! per request (measured: the same load at `EF__LOG_LEVEL=INFO` and `WARNING`): the dispatch to
//! every layer, the fields visited through `Debug`, the formatter's escaping and its timestamp.
//! The access line has fixed fields, so it is written here directly in each of the log's three
//! forms, with the same field names and the same shape as the rest of the log:
//! - journald's native protocol: `PRIORITY`, `SYSLOG_IDENTIFIER`, `TARGET`, `MESSAGE` and each
//!   field upper-cased (`REQUEST_ID`, `HTTP_STATUS`, `LATENCY_MS`, ...);
//! - a text line as `tracing`'s formatter writes it (`<time>  INFO euraflow::access: GET /x 200
//!   1.5ms request_id=... listener="https" ...`);
//! - a JSON object as the JSON formatter writes it (`timestamp`, `level`, `message`, the fields,
//!   `target`).
//!
//! Without an installed writer (tests that set their own subscriber, or the writer thread could
//! not start) [`write`] says so and the caller logs through `tracing` as before.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::access_pipe::{ACCESS_TARGET, AccessPipe, put_field, put_named};
use crate::config::LogFormat;

/// One request as the access line reports it.
pub struct AccessRecord<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub latency_ms: f64,
    pub client_ip: &'a str,
    pub http_version: &'a str,
    pub listener: &'a str,
    pub user_agent: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Journal,
    Text,
    Json,
}

impl From<LogFormat> for Form {
    fn from(f: LogFormat) -> Form {
        match f {
            LogFormat::Text => Form::Text,
            LogFormat::Json => Form::Json,
        }
    }
}

struct Writer {
    pipe: AccessPipe,
    form: Form,
}

static WRITER: OnceLock<Writer> = OnceLock::new();

/// The syslog identifier of the journal form, as the journal layer's.
const IDENTIFIER: &str = "euraflow";

/// From now on access lines go to `pipe` in `form` (once per process; later calls are ignored).
pub fn install(pipe: AccessPipe, form: Form) {
    let _ = WRITER.set(Writer { pipe, form });
}

/// Log `r`. `false` when no writer is installed: then the caller logs it through `tracing`.
pub fn write(r: &AccessRecord<'_>) -> bool {
    let Some(w) = WRITER.get() else {
        return false;
    };
    // The log's own filter (`EF__LOG_LEVEL`) decides, as for every other event: INFO lines for
    // answers below 500, WARN lines for the rest. Each answer is cached per call site.
    let enabled = if r.status >= 500 {
        tracing::enabled!(target: "euraflow::access", tracing::Level::WARN)
    } else {
        tracing::enabled!(target: "euraflow::access", tracing::Level::INFO)
    };
    if !enabled {
        return true;
    }
    let mut buf = Vec::with_capacity(512);
    encode(&mut buf, w.form, r, SystemTime::now());
    w.pipe.send(buf);
    true
}

fn encode(buf: &mut Vec<u8>, form: Form, r: &AccessRecord<'_>, now: SystemTime) {
    let warn = r.status >= 500;
    match form {
        Form::Journal => {
            put_field(buf, "PRIORITY", if warn { b"4" } else { b"6" });
            put_field(buf, "SYSLOG_IDENTIFIER", IDENTIFIER.as_bytes());
            put_field(buf, "TARGET", ACCESS_TARGET.as_bytes());
            let text = |buf: &mut Vec<u8>, name: &str, v: &str| {
                put_named(buf, name, |b| b.extend_from_slice(v.as_bytes()))
            };
            text(buf, "request_id", r.request_id);
            text(buf, "http_method", r.method);
            text(buf, "http_path", r.path);
            put_named(buf, "http_status", |b| {
                let _ = write!(b, "{}", r.status);
            });
            put_named(buf, "latency_ms", |b| {
                let _ = write!(b, "{:?}", r.latency_ms);
            });
            text(buf, "client_ip", r.client_ip);
            text(buf, "http_version", r.http_version);
            text(buf, "listener", r.listener);
            text(buf, "user_agent", r.user_agent);
            put_named(buf, "message", |b| message(b, r));
        }
        Form::Text => {
            timestamp(buf, now);
            buf.extend_from_slice(if warn { b"  WARN " } else { b"  INFO " });
            buf.extend_from_slice(ACCESS_TARGET.as_bytes());
            buf.extend_from_slice(b": ");
            message(buf, r);
            let _ = write!(
                buf,
                " request_id={} http_method={} http_path={} http_status={} latency_ms={:?} \
                 client_ip={} http_version={} listener={:?} user_agent={}",
                r.request_id,
                r.method,
                r.path,
                r.status,
                r.latency_ms,
                r.client_ip,
                r.http_version,
                r.listener,
                r.user_agent,
            );
            buf.push(b'\n');
        }
        Form::Json => {
            buf.extend_from_slice(b"{\"timestamp\":\"");
            timestamp(buf, now);
            buf.extend_from_slice(if warn {
                b"\",\"level\":\"WARN\",\"message\":"
            } else {
                b"\",\"level\":\"INFO\",\"message\":"
            });
            let mut m = Vec::with_capacity(64);
            message(&mut m, r);
            json_string(buf, &String::from_utf8_lossy(&m));
            let text = |buf: &mut Vec<u8>, name: &str, v: &str| {
                let _ = write!(buf, ",\"{name}\":");
                json_string(buf, v);
            };
            text(buf, "request_id", r.request_id);
            text(buf, "http_method", r.method);
            text(buf, "http_path", r.path);
            let _ = write!(buf, ",\"http_status\":{}", r.status);
            buf.extend_from_slice(b",\"latency_ms\":");
            let _ = serde_json::to_writer(&mut *buf, &r.latency_ms);
            text(buf, "client_ip", r.client_ip);
            text(buf, "http_version", r.http_version);
            text(buf, "listener", r.listener);
            text(buf, "user_agent", r.user_agent);
            text(buf, "target", ACCESS_TARGET);
            buf.extend_from_slice(b"}\n");
        }
    }
}

/// `GET /index.html 200 0.4ms`
fn message(buf: &mut Vec<u8>, r: &AccessRecord<'_>) {
    let _ = write!(
        buf,
        "{} {} {} {}ms",
        r.method, r.path, r.status, r.latency_ms
    );
}

fn json_string(buf: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *buf, s);
}

/// `2026-12-08T01:29:50.546527Z`, UTC with microseconds, as the formatter writes it.
fn timestamp(buf: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let _ = write!(
        buf,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_micros()
    );
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record(status: u16, agent: &str) -> AccessRecord<'_> {
        AccessRecord {
            request_id: "3f1c9a4e-0b7d-4c2a-9e51-6d8f2a7b1c03",
            method: "GET",
            path: "/api/ef/v1/auth/me",
            status,
            latency_ms: 1.5,
            client_ip: "203.0.113.9",
            http_version: "HTTP/1.1",
            listener: "https",
            user_agent: agent,
        }
    }

    #[test]
    fn timestamps_match_chrono_across_the_calendar() {
        for secs in [
            0u64,
            951_782_400,   // 2000-02-29
            1_709_251_199, // 2024-02-29T23:59:59
            1_798_761_599, // 2026-12-31T23:59:59
            4_102_444_800, // 2100-01-01
        ] {
            let at = UNIX_EPOCH + Duration::from_micros(secs * 1_000_000 + 123_456);
            let mut ours = Vec::new();
            timestamp(&mut ours, at);
            let theirs = chrono::DateTime::<chrono::Utc>::from(at)
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            assert_eq!(String::from_utf8(ours).unwrap(), theirs);
        }
    }

    #[test]
    fn the_text_line_reads_like_the_rest_of_the_log() {
        let mut buf = Vec::new();
        let at = UNIX_EPOCH + Duration::from_secs(1_798_761_599);
        encode(&mut buf, Form::Text, &record(200, "curl/8.5.0"), at);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "2026-12-31T23:59:59.000000Z  INFO euraflow::access: GET /api/ef/v1/auth/me 200 1.5ms \
             request_id=3f1c9a4e-0b7d-4c2a-9e51-6d8f2a7b1c03 http_method=GET \
             http_path=/api/ef/v1/auth/me http_status=200 latency_ms=1.5 client_ip=203.0.113.9 \
             http_version=HTTP/1.1 listener=\"https\" user_agent=curl/8.5.0\n"
        );
        let mut buf = Vec::new();
        encode(&mut buf, Form::Text, &record(503, ""), at);
        assert!(
            String::from_utf8(buf)
                .unwrap()
                .contains("Z  WARN euraflow::access: GET /api/ef/v1/auth/me 503 1.5ms")
        );
    }

    #[test]
    fn the_json_line_is_one_object_with_typed_fields_and_escaped_strings() {
        let mut buf = Vec::new();
        let agent = "Mozilla/5.0 \"quoted\" \\ back";
        encode(&mut buf, Form::Json, &record(201, agent), SystemTime::now());
        assert_eq!(buf.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "euraflow::access");
        assert_eq!(v["message"], "GET /api/ef/v1/auth/me 201 1.5ms");
        assert_eq!(v["http_status"], 201);
        assert_eq!(v["latency_ms"], 1.5);
        assert_eq!(v["user_agent"], agent);
        assert_eq!(v["listener"], "https");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn the_journal_entry_has_the_journal_layers_fields() {
        let mut buf = Vec::new();
        encode(
            &mut buf,
            Form::Journal,
            &record(500, "x"),
            SystemTime::now(),
        );
        let fields = super::super::access_pipe::tests::parse(&buf);
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("PRIORITY"), Some("4"));
        assert_eq!(get("SYSLOG_IDENTIFIER"), Some("euraflow"));
        assert_eq!(get("TARGET"), Some("euraflow::access"));
        assert_eq!(get("HTTP_STATUS"), Some("500"));
        assert_eq!(get("LATENCY_MS"), Some("1.5"));
        assert_eq!(
            get("REQUEST_ID"),
            Some("3f1c9a4e-0b7d-4c2a-9e51-6d8f2a7b1c03")
        );
        assert_eq!(get("MESSAGE"), Some("GET /api/ef/v1/auth/me 500 1.5ms"));
        assert_eq!(get("USER_AGENT"), Some("x"));
    }
}
