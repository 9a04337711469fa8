//! `/sync-services`: the scheduled services (the original's names and shapes) — read by any
//! logged-in user, changed only by admins. The original let every sub-account edit and trigger
//! these global jobs; here that is an admin's decision.

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::json::ApiJson;
use crate::auth::audit::{self, Entry};
use crate::auth::{CurrentUser, Origin, Role};
use crate::db::DbError;
use crate::jobs::admin::{self, AdminError, ServiceUpdate};
use crate::state::AppState;

/// `AdminError` in the API's terms.
pub fn api_error(e: AdminError) -> ApiError {
    match e {
        AdminError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", m),
        AdminError::Invalid(m) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", m)
        }
        AdminError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "CONFLICT", m),
        AdminError::Queue(crate::jobs::queue::QueueError::Db(e)) => e.into(),
        AdminError::Queue(crate::jobs::queue::QueueError::Query(e)) => DbError::from(e).into(),
        AdminError::Queue(crate::jobs::queue::QueueError::Invalid(m)) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", m)
        }
    }
}

fn admin_only(user: &CurrentUser) -> Result<(), ApiError> {
    let actor = user.actor(&Origin::default());
    actor.require_session()?;
    Ok(actor.require_role(Role::Admin)?)
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
    Query(q): Query<ListQuery>,
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
    meta: Origin,
    Path(id): Path<i32>,
    ApiJson(body): ApiJson<ServiceUpdate>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&user)?;
    let mut client = state.db().get().await?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    let before = admin::get_service(&*tx, id).await.map_err(api_error)?;
    let after = admin::update_service(&*tx, id, &body)
        .await
        .map_err(api_error)?;
    audit::write(
        &tx,
        &user.actor(&meta),
        Entry::new("sync_service", "update", "更新同步服务")
            .record("sync_services", id)
            .changes(audit::diff(&[
                (
                    "schedule_config",
                    json!(before.schedule_config),
                    json!(after.schedule_config),
                ),
                (
                    "is_enabled",
                    json!(before.is_enabled),
                    json!(after.is_enabled),
                ),
                (
                    "service_type",
                    json!(before.service_type),
                    json!(after.service_type),
                ),
                (
                    "config_json",
                    json!(before.config_json),
                    json!(after.config_json),
                ),
            ])),
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(Json(json!(after)))
}

/// `POST /sync-services/{id}/trigger`: run now; answers with the job id.
pub async fn trigger(
    State(state): State<AppState>,
    user: CurrentUser,
    meta: Origin,
    Path(id): Path<i32>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&user)?;
    let mut client = state.db().get().await?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    let t = admin::trigger_service(&*tx, state.job_registry(), id)
        .await
        .map_err(api_error)?;
    audit::write(
        &tx,
        &user.actor(&meta),
        Entry::new("sync_service", "trigger", "手动触发同步服务")
            .record("sync_services", id)
            .changes(json!({"job_id": t.job_id, "task_name": t.task_name})),
    )
    .await?;
    // The job and its audit entry commit together; the worker is woken by the commit.
    tx.commit().await.map_err(DbError::from)?;
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
    Path(id): Path<i32>,
    Query(q): Query<LogsQuery>,
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
    meta: Origin,
    Path(id): Path<i32>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    admin_only(&user)?;
    let body: DeleteLogsBody = if body.is_empty() {
        DeleteLogsBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_ERROR",
                "before_date must be an RFC 3339 date-time",
            )
        })?
    };
    let client = state.db().get().await?;
    let deleted = admin::delete_service_logs(&**client, id, body.before_date)
        .await
        .map_err(api_error)?;
    audit::write(
        &client,
        &user.actor(&meta),
        Entry::new("sync_service", "delete_logs", "删除同步日志")
            .record("sync_services", id)
            .changes(json!({"deleted": deleted, "before_date": body.before_date})),
    )
    .await?;
    Ok(Json(
        json!({"ok": true, "message": format!("deleted {deleted} log entries"), "deleted": deleted}),
    ))
}

/// `GET /sync-services/{id}/stats`
pub async fn stats(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(id): Path<i32>,
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
    meta: Origin,
    Path(id): Path<i32>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&user)?;
    let client = state.db().get().await?;
    let s = admin::reset_service_stats(&**client, id)
        .await
        .map_err(api_error)?;
    audit::write(
        &client,
        &user.actor(&meta),
        Entry::new("sync_service", "reset_stats", "重置同步统计").record("sync_services", id),
    )
    .await?;
    Ok(Json(
        json!({"ok": true, "message": "statistics reset", "service": s}),
    ))
}
