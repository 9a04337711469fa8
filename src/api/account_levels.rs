//! `/account-levels`: quotas for main accounts — an adapter over `auth::levels` (admins only).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::Value;

use super::error::ApiError;
use super::json::{ApiJson, ApiPath};
use crate::auth::levels::{self, LevelInput};
use crate::auth::{CurrentUser, Origin};
use crate::domain::Work;
use crate::state::AppState;

pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(Value::Array(
        levels::list(&client, &user.actor(&origin)).await?,
    )))
}

pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(levels::get(&client, &user.actor(&origin), id).await?))
}

/// `POST /account-levels` → 201. Making a level the default clears the previous default.
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiJson(b): ApiJson<LevelInput>,
) -> Result<Response, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let v = levels::create(&mut work, &user.actor(&origin), &b).await?;
    state.auth().apply(work.commit().await?).await;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `PUT /account-levels/{id}`: partial update.
pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<LevelInput>,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let v = levels::update(&mut work, &user.actor(&origin), id, &b).await?;
    state.auth().apply(work.commit().await?).await;
    Ok(Json(v))
}

/// `DELETE /account-levels/{id}` → 204; 400 while users have it.
pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    levels::delete(&mut work, &user.actor(&origin), id).await?;
    state.auth().apply(work.commit().await?).await;
    Ok(StatusCode::NO_CONTENT)
}
