//! `/api-keys/`: a user's keys for scripts and the browser extension — an adapter over
//! `auth::api_keys`. The key is shown once, at creation or regeneration.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::json::{ApiJson, ApiPath};
use crate::auth::{CurrentUser, Origin, api_keys};
use crate::domain::Work;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct CreateBody {
    name: String,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    expires_in_days: Option<i64>,
}

/// `POST /api-keys/` → 201
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let k = api_keys::create(
        &mut work,
        &user.actor(&origin),
        &body.name,
        body.permissions,
        body.expires_in_days,
    )
    .await?;
    let _ = work.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "key_id": k.id,
            "key": k.key,
            "name": k.name,
            "permissions": k.permissions,
            "expires_at": k.expires_at,
            "created_at": k.at,
        })),
    )
        .into_response())
}

/// `GET /api-keys/`: the user's own keys, without secrets.
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    let keys = api_keys::list(&client, &user.actor(&origin)).await?;
    Ok(Json(Value::Array(keys)))
}

/// `DELETE /api-keys/{id}` → 204
pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    api_keys::delete(&mut work, &user.actor(&origin), id).await?;
    let _ = work.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api-keys/{id}/regenerate`: a new secret for the same key; the old one stops working.
pub async fn regenerate(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let k = api_keys::regenerate(&mut work, &user.actor(&origin), id).await?;
    let _ = work.commit().await?;
    Ok(Json(json!({
        "key_id": k.id,
        "key": k.key,
        "name": k.name,
        "permissions": k.permissions,
        "expires_at": k.expires_at,
        "updated_at": k.at,
    })))
}
