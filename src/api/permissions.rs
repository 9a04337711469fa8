//! `/permissions`: roles, API permissions and their assignment, for admins — an adapter over
//! `auth::permissions`. Bare JSON bodies and `{ok, message}` acknowledgements, as the original's
//! permission page reads them. Every change re-reads the in-memory grants at once.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::json::{ApiJson, ApiPath, ApiQuery};
use crate::auth::permissions::{self, PermissionInput, RoleInput};
use crate::auth::{CurrentUser, Origin};
use crate::domain::{DomainError, Effects, Work};
use crate::state::AppState;

#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    include_inactive: Option<bool>,
    #[serde(default)]
    module: Option<String>,
}

/// After a committed change: caches, then the grants.
async fn changed(state: &AppState, effects: Effects) {
    state.auth().apply(effects).await;
    state.auth().permissions.invalidate();
}

pub async fn list_roles(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    let roles = permissions::list_roles(
        &client,
        &user.actor(&origin),
        q.include_inactive.unwrap_or(false),
    )
    .await?;
    Ok(Json(Value::Array(roles)))
}

pub async fn get_role(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(
        permissions::get_role(&client, &user.actor(&origin), id).await?,
    ))
}

/// `POST /permissions/roles` → 201.
pub async fn create_role(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiJson(b): ApiJson<RoleInput>,
) -> Result<Response, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let v = permissions::create_role(&mut work, &user.actor(&origin), &b).await?;
    changed(&state, work.commit().await?).await;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

pub async fn update_role(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<RoleInput>,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let v = permissions::update_role(&mut work, &user.actor(&origin), id, &b).await?;
    changed(&state, work.commit().await?).await;
    Ok(Json(v))
}

pub async fn delete_role(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    permissions::delete_role(&mut work, &user.actor(&origin), id).await?;
    changed(&state, work.commit().await?).await;
    Ok(Json(json!({"ok": true, "message": "角色已删除"})))
}

pub async fn list_permissions(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    let module = q.module.as_deref().map(str::trim).filter(|m| !m.is_empty());
    let v = permissions::list_permissions(
        &client,
        &user.actor(&origin),
        module,
        q.include_inactive.unwrap_or(false),
    )
    .await?;
    Ok(Json(Value::Array(v)))
}

pub async fn modules(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    let m = permissions::modules(&client, &user.actor(&origin)).await?;
    Ok(Json(json!({"modules": m})))
}

pub async fn tree(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    let t = permissions::tree(&client, &user.actor(&origin)).await?;
    Ok(Json(json!({"tree": t})))
}

/// `POST /permissions/apis` → 201.
pub async fn create_permission(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiJson(b): ApiJson<PermissionInput>,
) -> Result<Response, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let v = permissions::create_permission(&mut work, &user.actor(&origin), &b).await?;
    changed(&state, work.commit().await?).await;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

pub async fn update_permission(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<PermissionInput>,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let v = permissions::update_permission(&mut work, &user.actor(&origin), id, &b).await?;
    changed(&state, work.commit().await?).await;
    Ok(Json(v))
}

pub async fn delete_permission(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    permissions::delete_permission(&mut work, &user.actor(&origin), id).await?;
    changed(&state, work.commit().await?).await;
    Ok(Json(json!({"ok": true, "message": "权限已删除"})))
}

pub async fn role_codes(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    let codes = permissions::role_codes(&client, &user.actor(&origin), id).await?;
    Ok(Json(json!({"permission_codes": codes})))
}

#[derive(Debug, Deserialize)]
pub struct SetCodes {
    permission_codes: Vec<String>,
}

pub async fn set_role_codes(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<SetCodes>,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let count =
        permissions::set_role_codes(&mut work, &user.actor(&origin), id, &b.permission_codes)
            .await?;
    changed(&state, work.commit().await?).await;
    Ok(Json(
        json!({"ok": true, "message": format!("已分配 {count} 个权限"), "count": count}),
    ))
}

fn check_code(code: &str) -> Result<(), ApiError> {
    if code.is_empty() || code.len() > 100 {
        return Err(DomainError::invalid(
            "path.permission_code",
            "value_error",
            "must have 1 to 100 characters",
        )
        .into());
    }
    Ok(())
}

pub async fn add_role_code(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath((id, code)): ApiPath<(i64, String)>,
) -> Result<Json<Value>, ApiError> {
    check_code(&code)?;
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let added = permissions::add_role_code(&mut work, &user.actor(&origin), id, &code).await?;
    changed(&state, work.commit().await?).await;
    let message = if added {
        "权限已添加"
    } else {
        "权限已存在"
    };
    Ok(Json(json!({"ok": true, "message": message})))
}

pub async fn remove_role_code(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath((id, code)): ApiPath<(i64, String)>,
) -> Result<Json<Value>, ApiError> {
    check_code(&code)?;
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let removed = permissions::remove_role_code(&mut work, &user.actor(&origin), id, &code).await?;
    changed(&state, work.commit().await?).await;
    Ok(Json(if removed {
        json!({"ok": true, "message": "权限已移除"})
    } else {
        json!({"ok": false, "message": "权限不存在"})
    }))
}

/// `POST /permissions/scan`: reports the catalogue (kept by migrations here).
pub async fn scan(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(
        permissions::scan(&client, &user.actor(&origin)).await?,
    ))
}
