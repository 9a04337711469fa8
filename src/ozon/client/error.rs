//! What can go wrong talking to Ozon, typed so callers decide per kind (stop a sync on
//! `AuthFailed`, retry the job later on `RateLimited`/`OzonUnavailable`, keep the old values on any
//! of them), with a sentence a seller can act on for the task status.
//!
//! Unlike the original (§7 C5, C17), an HTTP error status is never a success: every 4xx/5xx ends
//! in one of these errors, and so does a 2xx whose body is not the shape we expect.

use std::time::Duration;

use super::endpoint::Endpoint;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OzonError {
    /// 401/403: the Client-Id/Api-Key pair is wrong, revoked, or lacks access to this method.
    #[error("Ozon refused the credentials (HTTP {status}): {message}")]
    AuthFailed { status: u16, message: String },
    /// 429 on every attempt; `retry_after` is Ozon's last requested wait.
    #[error("Ozon kept rate limiting {endpoint} (last Retry-After {retry_after:?})")]
    RateLimited {
        endpoint: Endpoint,
        retry_after: Duration,
    },
    /// 5xx, network errors or timeouts on every attempt.
    #[error("Ozon is unavailable for {endpoint} after {attempts} attempts: {reason}")]
    OzonUnavailable {
        endpoint: Endpoint,
        attempts: u32,
        reason: String,
    },
    /// 404: the object asked for does not exist (e.g. an unknown posting number).
    #[error("Ozon has no such object at {endpoint}: {message}")]
    NotFound { endpoint: Endpoint, message: String },
    /// Any other 4xx, with Ozon's `{code, message, details}` body. Not retried: the same request
    /// would fail the same way.
    #[error("Ozon rejected the request to {endpoint} (HTTP {status}, code {code}): {message}")]
    BadRequest {
        endpoint: Endpoint,
        status: u16,
        code: i64,
        message: String,
    },
    /// A 2xx whose body is not JSON of the documented shape, or is larger than we accept.
    #[error("Ozon answered {endpoint} with a body we cannot read: {reason}")]
    BadResponse { endpoint: Endpoint, reason: String },
}

impl OzonError {
    /// One sentence for the seller (task status, shop connection test). Plain neutral English
    /// that survives machine translation; no internals, never a credential.
    pub fn user_message(&self) -> String {
        match self {
            OzonError::AuthFailed { .. } => {
                "Ozon rejected the Client-Id/Api-Key: check them in the \
                 shop settings (the key may have been revoked or may lack access)."
                    .to_owned()
            }
            OzonError::RateLimited { retry_after, .. } => format!(
                "Ozon is limiting the number of requests for this shop. The sync will continue \
                 later; try again in about {} seconds.",
                retry_after.as_secs().max(1)
            ),
            OzonError::OzonUnavailable { .. } => "Ozon did not answer (server error or network \
                 problem). Nothing was changed; the sync can be run again later."
                .to_owned(),
            OzonError::NotFound { .. } => {
                "Ozon does not know this item any more (it may have been removed).".to_owned()
            }
            OzonError::BadRequest { message, code, .. } => {
                format!("Ozon rejected the request: {message} (code {code}).")
            }
            OzonError::BadResponse { .. } => "Ozon sent an answer that could not be read. Nothing \
                 was changed; if this repeats, contact support."
                .to_owned(),
        }
    }

    /// Whether trying the same call again later may succeed (a job may be rescheduled).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OzonError::RateLimited { .. } | OzonError::OzonUnavailable { .. }
        )
    }
}

/// Ozon's error body `{code, message, details}`; lenient, since it is only read for messages.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub code: serde_json::Value,
    #[serde(default)]
    pub message: String,
}

impl ErrorBody {
    /// Parse `body`; a non-JSON body still yields a message (a short, printable excerpt).
    pub(crate) fn parse(status: u16, body: &[u8]) -> (i64, String) {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => {
                let code = match &b.code {
                    serde_json::Value::Number(n) => n.as_i64().unwrap_or(0),
                    serde_json::Value::String(s) => s.parse().unwrap_or(0),
                    _ => 0,
                };
                let message = if b.message.trim().is_empty() {
                    format!("HTTP {status}")
                } else {
                    excerpt(&b.message)
                };
                (code, message)
            }
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = excerpt(&text);
                if text.is_empty() {
                    (0, format!("HTTP {status}"))
                } else {
                    (0, format!("HTTP {status}: {text}"))
                }
            }
        }
    }
}

/// At most 200 characters of `s` with control characters removed: error texts go into logs and
/// task statuses, which must stay one readable line.
fn excerpt(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_read_leniently() {
        assert_eq!(
            ErrorBody::parse(400, br#"{"code":3,"message":"limit too big","details":[]}"#),
            (3, "limit too big".to_owned())
        );
        assert_eq!(
            ErrorBody::parse(400, br#"{"code":"7","message":""}"#),
            (7, "HTTP 400".to_owned())
        );
        assert_eq!(
            ErrorBody::parse(502, b"<html>\nBad gateway</html>"),
            (0, "HTTP 502: <html>Bad gateway</html>".to_owned())
        );
        assert_eq!(ErrorBody::parse(500, b""), (0, "HTTP 500".to_owned()));
        let long = "x".repeat(5000);
        assert_eq!(ErrorBody::parse(400, long.as_bytes()).1.len(), 200 + 10);
    }

    #[test]
    fn user_messages_name_the_fix_and_never_internals() {
        let auth = OzonError::AuthFailed {
            status: 401,
            message: "Invalid Api-Key".into(),
        };
        assert!(auth.user_message().contains("Client-Id/Api-Key"));
        assert!(!auth.is_transient());
        let rl = OzonError::RateLimited {
            endpoint: Endpoint::ProductList,
            retry_after: Duration::from_secs(30),
        };
        assert!(rl.user_message().contains("30 seconds"));
        assert!(rl.is_transient());
        let bad = OzonError::BadResponse {
            endpoint: Endpoint::ProductList,
            reason: "expected value at line 1 column 9".into(),
        };
        assert!(!bad.user_message().contains("line 1"));
    }
}
