//! `/sync-services`: the scheduled services (the original's names and shapes) — read by any
//! logged-in user, changed only by admins. The original let every sub-account edit and trigger
//! these global jobs; here that is an admin's decision.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::json::{self, ApiBytes, ApiJson, ApiPath, ApiQuery};
use crate::auth::{CurrentUser, Origin};
use crate::domain::{DomainError, Work};
use crate::jobs::admin::{self, AdminError, ServiceUpdate, actions};
use crate::state::AppState;

/// `AdminError` in the API's terms.
pub fn api_error(e: AdminError) -> ApiError {
    DomainError::from(e).into()
}

/// `GET /sync-services/handlers`
pub async fn handlers(State(state): State<AppState>, _user: CurrentUser) -> Json<Value> {
    Json(json!(admin::handlers(state.job_registry())))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    is_enabled: Option<bool>,
    #[serde(default)]
    include_deleted: bool,
}

/// `GET /sync-services`
pub async fn list(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    let rows = admin::list_services(&**client, q.is_enabled, q.include_deleted)
        .await
        .map_err(api_error)?;
    Ok(Json(json!(rows)))
}

/// `PUT /sync-services/{id}`: schedule, enable, config. Used by the scheduler within a second.
pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i32>,
    ApiJson(body): ApiJson<ServiceUpdate>,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let after = actions::update(&mut work, &user.actor(&origin), id, &body).await?;
    let _ = work.commit().await?;
    Ok(Json(json!(after)))
}

/// `POST /sync-services/{id}/trigger`: run now; answers with the job id.
pub async fn trigger(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i32>,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let t = actions::trigger(&mut work, &user.actor(&origin), state.job_registry(), id).await?;
    // Before the commit: the job may end before this handler runs again.
    state.realtime().remember_job_owner(t.job_id, user.id).await;
    let _ = work.commit().await?;
    Ok(Json(json!({
        "ok": true,
        "message": format!("queued {} as job {}", t.task_name, t.job_id),
        "task_id": t.job_id.to_string(),
        "job_id": t.job_id,
        "task_name": t.task_name,
    })))
}

#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    limit: Option<u32>,
}

/// `GET /sync-services/{id}/logs`
pub async fn logs(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath(id): ApiPath<i32>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    let rows = admin::service_logs(&**client, id, q.limit)
        .await
        .map_err(api_error)?;
    Ok(Json(json!(rows)))
}

#[derive(Debug, Deserialize, Default)]
pub struct DeleteLogsBody {
    before_date: Option<DateTime<Utc>>,
}

/// `DELETE /sync-services/{id}/logs` (optional body `{before_date}`)
pub async fn delete_logs(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i32>,
    ApiBytes(body): ApiBytes,
) -> Result<Json<Value>, ApiError> {
    let actor = user.actor(&origin);
    actions::require_admin(&actor)?;
    let body: DeleteLogsBody = if body.is_empty() {
        DeleteLogsBody::default()
    } else {
        json::parse(&body)?
    };
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let deleted = actions::delete_logs(&mut work, &actor, id, body.before_date).await?;
    let _ = work.commit().await?;
    Ok(Json(
        json!({"ok": true, "message": format!("deleted {deleted} log entries"), "deleted": deleted}),
    ))
}

/// `GET /sync-services/{id}/stats`
pub async fn stats(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath(id): ApiPath<i32>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    let s = admin::service_stats(&**client, id)
        .await
        .map_err(api_error)?;
    Ok(Json(json!(s)))
}

/// `POST /sync-services/{id}/reset-stats`
pub async fn reset_stats(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i32>,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let s = actions::reset_stats(&mut work, &user.actor(&origin), id).await?;
    let _ = work.commit().await?;
    Ok(Json(
        json!({"ok": true, "message": "statistics reset", "service": s}),
    ))
}
