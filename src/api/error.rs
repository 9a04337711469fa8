//! The API's error: the original's problem-style object inside the `{ok, data, error}` envelope.
//!
//! ```json
//! {"ok": false, "data": null,
//!  "error": {"type": "about:blank", "title": "Not Found", "status": 404,
//!            "detail": "...", "code": "NOT_FOUND"}}
//! ```
//! Routes the original answered with `detail: {code, message}` (authentication and users: the web
//! app reads `error.detail.code` there) use [`ApiError::coded`]; `error.code` then carries the
//! same business code instead of the original's `HTTP_4xx`, so either way of reading it works.

use std::borrow::Cow;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use serde_json::json;

use crate::db::DbError;
use crate::domain::DomainError;

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Detail {
    Text(String),
    Coded { code: String, message: String },
}

/// One invalid field of a request, as the original's 422 `validation_errors` (without echoing the
/// submitted value, which could be a password).
#[derive(Debug, Clone, Serialize)]
pub struct FieldError {
    #[serde(rename = "type")]
    pub kind: String,
    pub loc: Vec<String>,
    pub msg: String,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub detail: Detail,
    pub retry_after: Option<u64>,
    pub validation_errors: Option<Vec<FieldError>>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code: code.into(),
            detail: Detail::Text(detail.into()),
            retry_after: None,
            validation_errors: None,
        }
    }

    /// The `detail: {code, message}` form of the original's auth and user routes.
    pub fn coded(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: Cow::Borrowed(code),
            detail: Detail::Coded {
                code: code.to_owned(),
                message: message.into(),
            },
            retry_after: None,
            validation_errors: None,
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", detail)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            "An internal server error occurred",
        )
    }

    pub fn unavailable(code: &'static str, detail: impl Into<String>, retry_after_s: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail).with_retry_after(retry_after_s)
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        ApiError {
            validation_errors: Some(errors),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_ERROR",
                "Request validation failed",
            )
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    fn title(&self) -> &'static str {
        if self.status == StatusCode::UNPROCESSABLE_ENTITY {
            return "Validation Error";
        }
        self.status.canonical_reason().unwrap_or("Error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({
            "type": "about:blank",
            "title": self.title(),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        });
        if let (Some(v), Some(obj)) = (&self.validation_errors, error.as_object_mut()) {
            obj.insert("validation_errors".into(), json!(v));
        }
        let body = json!({"ok": false, "data": null, "error": error});
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

/// A domain service's refusal in HTTP terms: the kind chooses the status, the code and message
/// pass through as `detail: {code, message}`.
impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let coded = |status, code, message: std::borrow::Cow<'static, str>| {
            ApiError::coded(status, code, message.into_owned())
        };
        match e {
            DomainError::Invalid(problems) => ApiError::validation(
                problems
                    .into_iter()
                    .map(|p| {
                        // Fields are in the body unless the service named the query or path.
                        let in_body =
                            !matches!(p.loc.first().map(String::as_str), Some("query" | "path"));
                        FieldError {
                            kind: p.kind,
                            loc: in_body
                                .then(|| "body".to_owned())
                                .into_iter()
                                .chain(p.loc)
                                .collect(),
                            msg: p.msg,
                        }
                    })
                    .collect(),
            ),
            DomainError::Rejected { code, message } => {
                coded(StatusCode::BAD_REQUEST, code, message)
            }
            DomainError::Unauthenticated { code, message } => {
                coded(StatusCode::UNAUTHORIZED, code, message)
            }
            DomainError::Denied { code, message } => coded(StatusCode::FORBIDDEN, code, message),
            DomainError::NotFound { code, message } => coded(StatusCode::NOT_FOUND, code, message),
            DomainError::Conflict { code, message } => coded(StatusCode::CONFLICT, code, message),
            DomainError::Throttled {
                code,
                message,
                retry_after_s,
            } => {
                coded(StatusCode::TOO_MANY_REQUESTS, code, message).with_retry_after(retry_after_s)
            }
            DomainError::Unavailable {
                code,
                message,
                retry_after_s,
            } => coded(StatusCode::SERVICE_UNAVAILABLE, code, message)
                .with_retry_after(retry_after_s),
            DomainError::Db(e) => e.into(),
            DomainError::Internal(e) => e.into(),
        }
    }
}

/// Database failures: exhaustion and outages are 503 with `Retry-After` (the client may retry),
/// a failed query is a 500 whose cause goes to the log, not to the client.
impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::PoolExhausted { max, waited } => ApiError::unavailable(
                "DB_POOL_EXHAUSTED",
                format!(
                    "All {max} database connections are busy; waited {:.1}s. Try again shortly.",
                    waited.as_secs_f64()
                ),
                1,
            ),
            DbError::Unavailable(_) => ApiError::unavailable(
                "DB_UNAVAILABLE",
                "The database is unavailable. Try again shortly.",
                5,
            ),
            DbError::Query(err) if err.is_closed() || err.code().is_none() => {
                tracing::warn!(error = %err, "database connection failed during a request");
                ApiError::unavailable(
                    "DB_UNAVAILABLE",
                    "The database connection was lost. Try again shortly.",
                    2,
                )
            }
            DbError::Query(err) => {
                tracing::error!(error = %err, "database query failed");
                ApiError::internal()
            }
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!(error = format!("{e:#}"), "request failed");
        ApiError::internal()
    }
}
