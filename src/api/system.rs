//! `/system/*`: what this server is, its metrics, and its view of its dependencies.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use serde_json::json;

use super::envelope::Envelope;
use super::error::ApiError;
use super::operator::Operator;
use crate::ops::status;
use crate::state::AppState;

/// `GET /system/info` — the original's shape (`name, version, api_version, plugins`); features
/// are built in, so there are no plugins to count.
pub async fn info() -> Envelope<serde_json::Value> {
    Envelope(json!({
        "name": "EuraFlow",
        "version": env!("CARGO_PKG_VERSION"),
        "api_version": "v1",
        "plugins": {"total": 0, "enabled": 0},
    }))
}

/// `GET /system/metrics` — Prometheus text, for a scraper on this machine without credentials
/// (the original required a JWT, so Prometheus could not scrape it), and for admins.
pub async fn metrics(State(state): State<AppState>, _: Operator) -> Result<Response, ApiError> {
    if !state.config().http.metrics_enabled {
        return Err(ApiError::not_found(
            "metrics are disabled (EF__METRICS_ENABLED=false)",
        ));
    }
    let mut body = state.metrics().render(state.db(), state.redis());
    // The health report is shared and cached for a second, so scrapes add no probe load.
    let report = state.health().report().await;
    let dir = state.config().worker.backup_dir.clone();
    let newest_backup = tokio::task::spawn_blocking(move || {
        crate::ops::backup::newest_backup_age(&dir).map(|age| std::time::SystemTime::now() - age)
    })
    .await
    .ok()
    .flatten();
    body.push_str(&crate::metrics::Metrics::render_appliance(
        &report,
        state.stats().tls_not_after(),
        newest_backup,
    ));
    // The job metrics come from PostgreSQL (every worker's jobs); bounded so a slow database
    // cannot hang the scrape, and left out (the rest still served) when it cannot answer.
    let jobs = async {
        let client = state.db().get().await?;
        crate::jobs::metrics::snapshot(&**client).await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), jobs).await {
        Ok(Ok(snapshot)) => body.push_str(&snapshot.render()),
        Ok(Err(e)) => tracing::debug!(error = %e, "job metrics unavailable"),
        Err(_) => tracing::debug!("job metrics: the database did not answer in time"),
    }
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}

/// `GET /system/status` — what `euraflow status` prints: health details, pool, and the
/// PostgreSQL and Redis connection counts against their limits.
pub async fn server_status(
    State(state): State<AppState>,
    _: Operator,
) -> Result<Envelope<status::ServerView>, ApiError> {
    Ok(Envelope(status::server_view(&state).await?))
}
