//! `/auth/captcha` and `/auth/captcha/verify`: the slider captcha of the web app's login page —
//! an adapter over `auth::captcha`.

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use super::error::ApiError;
use super::json::ApiJson;
use crate::auth::Origin;
use crate::auth::captcha::{self, Answer};
use crate::state::AppState;

/// `GET /auth/captcha` → `{captcha_id, bg_url, puzzle_url, y}`; 429 beyond its per-IP limit.
pub async fn challenge(
    State(state): State<AppState>,
    origin: Origin,
) -> Result<Json<Value>, ApiError> {
    let auth = state.auth();
    Ok(Json(
        captcha::challenge(state.redis(), &auth.captcha_limiter, &origin.ip_text()).await?,
    ))
}

/// `POST /auth/captcha/verify` → `{success, token?, message}`
pub async fn verify(
    State(state): State<AppState>,
    ApiJson(b): ApiJson<Answer>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(captcha::verify(state.redis(), &b).await?))
}
