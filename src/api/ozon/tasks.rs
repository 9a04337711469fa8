//! `GET /ozon/sync/status/{task_id}`: a sync's state for the page polling it — an adapter over
//! `ozon::tasks`. Always `{ok: true, data: {...}}`; an unknown task is a terminal `failed`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::json::ApiPath;
use crate::auth::{CurrentUser, Origin};
use crate::ozon::tasks;
use crate::state::AppState;

pub async fn status(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(task_id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    let data = tasks::status(&client, &user.actor(&origin), &task_id).await?;
    Ok(Json(json!({"ok": true, "data": data})))
}
