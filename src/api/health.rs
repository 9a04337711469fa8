//! `GET /health` and the original's `GET /system/health`.
//!
//! Everyone gets the statuses (a stable-length answer: load tests count a changed length as a
//! failure). `?details=1` adds version, uptime, latencies and pool numbers for the local operator
//! (the loopback plain listener) — admins will be added with authentication.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;

use crate::health::Overall;
use crate::http::server::ConnInfo;
use crate::state::AppState;

#[derive(Debug, Deserialize, Default)]
pub struct HealthQuery {
    #[serde(default)]
    details: Option<String>,
}

pub async fn health(
    State(state): State<AppState>,
    conn: Option<axum::Extension<ConnInfo>>,
    Query(q): Query<HealthQuery>,
) -> Response {
    let report = state.health().report().await;
    let wants_details = q
        .details
        .as_deref()
        .is_some_and(|v| matches!(v, "1" | "true" | "yes"));
    let allowed = conn.is_some_and(|c| c.is_local_operator());
    let data = if wants_details && allowed {
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
