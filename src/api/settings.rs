//! `/settings`: the user's preferences — an adapter over `crate::settings`.

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde_json::Value;

use super::error::ApiError;
use super::json::ApiJson;
use crate::auth::{CurrentUser, Origin};
use crate::domain::Work;
use crate::settings::{self, Settings};
use crate::state::AppState;

/// `GET /settings`
pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(settings::get(&client, &user.actor(&origin)).await?))
}

/// `PUT /settings`: all four sections, stored as given.
pub async fn put(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiJson(s): ApiJson<Settings>,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let v = settings::put(&mut work, &user.actor(&origin), &s).await?;
    state.auth().apply(work.commit().await?).await;
    Ok(Json(v))
}

/// `DELETE /settings` → 204: back to the defaults.
pub async fn reset(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<StatusCode, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    settings::reset(&mut work, &user.actor(&origin)).await?;
    state.auth().apply(work.commit().await?).await;
    Ok(StatusCode::NO_CONTENT)
}
