//! `/auth/captcha` and `/auth/captcha/verify`: the slider captcha of the web app's login page
//! (see `auth::captcha`). Challenges and tokens live in Redis with short lifetimes.

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::json::ApiJson;
use super::validate::Checks;
use crate::auth::captcha::{
    self, CAPTCHA_TTL_S, MAX_ATTEMPTS, MIN_DURATION_MS, TOKEN_TTL_S, TOLERANCE_PX,
};
use crate::state::AppState;

fn unavailable() -> ApiError {
    ApiError::coded(
        StatusCode::SERVICE_UNAVAILABLE,
        "CAPTCHA_UNAVAILABLE",
        "The captcha is unavailable right now; try again shortly",
    )
    .with_retry_after(5)
}

/// `GET /auth/captcha` → `{captcha_id, bg_url, puzzle_url, y}`
pub async fn challenge(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let c = tokio::task::spawn_blocking(captcha::generate)
        .await
        .map_err(|e| anyhow::anyhow!("captcha task: {e}"))??;
    let id = captcha::new_id();
    let redis = state.redis();
    redis
        .query::<()>(
            redis::cmd("SET")
                .arg(redis.key(&format!("captcha:{id}")))
                .arg(c.x)
                .arg("EX")
                .arg(CAPTCHA_TTL_S),
        )
        .await
        .map_err(|_| unavailable())?;
    Ok(Json(json!({
        "captcha_id": id,
        "bg_url": captcha::data_url(&c.background_png),
        "puzzle_url": captcha::data_url(&c.piece_png),
        "y": c.y,
    })))
}

#[derive(Debug, Deserialize)]
pub struct VerifyBody {
    captcha_id: String,
    x: f64,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    trail: Option<Vec<Vec<f64>>>,
}

/// `POST /auth/captcha/verify` → `{success, token?, message}`
pub async fn verify(
    State(state): State<AppState>,
    ApiJson(b): ApiJson<VerifyBody>,
) -> Result<Json<Value>, ApiError> {
    Checks::new()
        .len_between(&b.captcha_id, "captcha_id", 1, 64)
        .check(
            b.x.is_finite() && (0.0..=1000.0).contains(&b.x),
            "x",
            "value_error",
            "must be 0 to 1000",
        )
        .check(
            b.trail.as_ref().is_none_or(|t| t.len() <= 2000),
            "trail",
            "too_long",
            "at most 2000 points",
        )
        .finish()?;
    let redis = state.redis();
    let key = redis.key(&format!("captcha:{}", b.captcha_id));
    let attempts_key = redis.key(&format!("captcha_attempts:{}", b.captcha_id));
    let stored: Option<i64> = redis
        .query(redis::cmd("GET").arg(&key))
        .await
        .map_err(|_| unavailable())?;
    let Some(expected) = stored else {
        return Ok(Json(
            json!({"success": false, "message": "The captcha expired; get a new one"}),
        ));
    };
    let attempts: u32 = redis
        .pipeline::<(u32,)>(
            redis::pipe()
                .cmd("INCR")
                .arg(&attempts_key)
                .cmd("EXPIRE")
                .arg(&attempts_key)
                .arg(CAPTCHA_TTL_S)
                .ignore(),
        )
        .await
        .map(|(n,)| n)
        .map_err(|_| unavailable())?;
    let close = (b.x.round() as i64 - expected).abs() <= TOLERANCE_PX;
    let human_speed = b.duration.is_none_or(|d| d >= MIN_DURATION_MS as f64);
    if close && human_speed && attempts <= MAX_ATTEMPTS {
        // DEL answers 1 only once: a solved captcha yields exactly one token.
        let deleted: i64 = redis
            .query(redis::cmd("DEL").arg(&key).arg(&attempts_key))
            .await
            .map_err(|_| unavailable())?;
        if deleted > 0 {
            let token = captcha::new_token();
            redis
                .query::<()>(
                    redis::cmd("SET")
                        .arg(redis.key(&format!("captcha_token:{token}")))
                        .arg("1")
                        .arg("EX")
                        .arg(TOKEN_TTL_S),
                )
                .await
                .map_err(|_| unavailable())?;
            return Ok(Json(
                json!({"success": true, "token": token, "message": "ok"}),
            ));
        }
    }
    if attempts >= MAX_ATTEMPTS {
        let _: Result<(), _> = redis
            .query(redis::cmd("DEL").arg(&key).arg(&attempts_key))
            .await;
        return Ok(Json(
            json!({"success": false, "message": "Too many attempts; get a new captcha"}),
        ));
    }
    let message = if !human_speed {
        "Too fast; try again"
    } else {
        "Not quite; try again"
    };
    Ok(Json(json!({"success": false, "message": message})))
}

/// For login when `EF__LOGIN_CAPTCHA=true`: consume a token. `Ok(None)` when Redis cannot be
/// asked (login then proceeds: the failure limits still protect it).
pub async fn consume_token(state: &AppState, token: &str) -> Option<bool> {
    if token.is_empty() || token.len() > 128 {
        return Some(false);
    }
    let redis = state.redis();
    match redis
        .query::<i64>(redis::cmd("DEL").arg(redis.key(&format!("captcha_token:{token}"))))
        .await
    {
        Ok(n) => Some(n > 0),
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the captcha token; allowing the login attempt");
            None
        }
    }
}
