//! `GET /health` and the original's `GET /system/health`.
//!
//! Everyone gets the statuses (a stable-length answer: load tests count a changed length as a
//! failure). `?details=1` adds version, uptime, latencies and pool numbers for operators: the local
//! operator (the loopback plain listener) and admins. A caller who is neither gets the statuses:
//! health never fails because of credentials.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;

use super::json::ApiQuery;
use super::operator::Operator;
use crate::health::Overall;
use crate::state::AppState;

#[derive(Debug, Deserialize, Default)]
pub struct HealthQuery {
    #[serde(default)]
    details: Option<String>,
}

pub async fn health(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<HealthQuery>,
    mut parts: Parts,
) -> Response {
    let report = state.health().report().await;
    let wants_details = q
        .details
        .as_deref()
        .is_some_and(|v| matches!(v, "1" | "true" | "yes"));
    // Only a request for details pays for checking credentials: the guide's load test sends a
    // bearer token to every health request.
    let operator = wants_details
        && Operator::from_request_parts(&mut parts, &state)
            .await
            .is_ok();
    let data = if operator {
        report.detailed(state.uptime())
    } else {
        report.summary()
    };
    let status = match report.status {
        Overall::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
        Overall::Healthy | Overall::Degraded => StatusCode::OK,
    };
    let mut resp = (
        status,
        Json(serde_json::json!({"ok": status == StatusCode::OK, "data": data, "error": null})),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
