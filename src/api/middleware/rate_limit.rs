//! `EF__RATE_LIMIT_DEFAULT` applied for real (the original configured slowapi and never attached
//! it): every API request counts against its user (when the bearer token's signature is good) or
//! its client IP, shared by all server processes through Redis. Health checks and the local
//! operator's loopback requests (metrics, status) are exempt; static files never reach this.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};

use super::authenticate::Authentication;
use crate::api::error::ApiError;
use crate::auth::rate_limit::Decision;
use crate::http::middleware::client_ip::ClientIp;
use crate::http::server::ConnInfo;
use crate::state::AppState;

/// Paths below the API prefix that load balancers and monitors poll.
const EXEMPT: &[&str] = &["/health", "/system/health"];

/// What the limiter said about a request.
pub enum Admission {
    /// Not counted: no limit configured, the local operator, or a health check.
    Exempt,
    /// Counted and allowed; the decision goes into the response's headers ([`add_headers`]).
    Allowed(Decision),
    /// Over the limit: the 429 answer.
    Refused(Response),
}

/// Whom the request counts against (after `authenticate`); `None` when it is not counted: no
/// limit configured, the local operator, or a health check.
pub fn subject_of(state: &AppState, req: &Request) -> Option<String> {
    state.auth().rate_limiter.as_ref()?;
    let local = req
        .extensions()
        .get::<ConnInfo>()
        .is_some_and(|c| c.is_local_operator(req.headers()));
    if local || EXEMPT.contains(&req.uri().path()) {
        return None;
    }
    Some(subject(req))
}

/// Count one request against `subject` (from [`subject_of`]).
pub async fn admit(state: &AppState, subject: Option<String>) -> Admission {
    let (Some(limiter), Some(subject)) = (state.auth().rate_limiter.as_ref(), subject) else {
        return Admission::Exempt;
    };
    let d = limiter.check(&subject).await;
    if !d.allowed {
        let wait = d.retry_after.as_secs().max(1);
        let mut resp = ApiError::coded(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMIT_EXCEEDED",
            format!(
                "Too many requests: at most {} per {}s. Try again in {wait}s.",
                d.limit,
                limiter.rule().per.as_secs()
            ),
        )
        .with_retry_after(wait)
        .into_response();
        add_headers(&mut resp, &d);
        return Admission::Refused(resp);
    }
    Admission::Allowed(d)
}

/// The user of a valid token, the API key, or else the client IP (from the `authenticate`
/// layer, which verified the credentials once).
fn subject(req: &Request) -> String {
    if let Some(s) = req
        .extensions()
        .get::<Authentication>()
        .and_then(|a| a.presented.rate_subject())
    {
        return s;
    }
    match req.extensions().get::<ClientIp>() {
        Some(ip) => format!("ip:{}", ip.0),
        None => "ip:unknown".to_owned(),
    }
}

/// `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
pub fn add_headers(resp: &mut Response, d: &Decision) {
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", d.limit.to_string()),
        ("x-ratelimit-remaining", d.remaining.to_string()),
        (
            "x-ratelimit-reset",
            d.reset
                .as_secs()
                .max(if d.reset.is_zero() { 0 } else { 1 })
                .to_string(),
        ),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
}
