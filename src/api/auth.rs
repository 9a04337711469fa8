//! `/auth`: login, token refresh, logout, and the current user's own account — adapters over
//! `auth::login` and `auth::accounts`. Bare JSON bodies and `detail: {code, message}` errors, as
//! the original web app expects.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use super::extract::AnyStateUser;
use super::json::{ApiBytes, ApiJson, lenient_json};
use crate::auth::login::{self, Credentials};
use crate::auth::values::{NewPassword, Username};
use crate::auth::{CurrentUser, Origin, accounts};
use crate::domain::{Checks, Work, field};
use crate::state::AppState;

/// `POST /auth/login` → `{access_token, refresh_token, token_type, expires_in, user}`
pub async fn login(
    State(state): State<AppState>,
    origin: Origin,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Json<Value>, ApiError> {
    let (tokens, user) = login::login(state.auth(), &origin, &body).await?;
    let mut out = tokens.to_json();
    out["user"] = user.response();
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
pub struct RefreshBody {
    refresh_token: String,
}

/// `POST /auth/refresh` → a new pair.
pub async fn refresh(
    State(state): State<AppState>,
    origin: Origin,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Json<Value>, ApiError> {
    let tokens = login::refresh(state.auth(), &origin, &body.refresh_token).await?;
    Ok(Json(tokens.to_json()))
}

#[derive(Debug, Deserialize, Default)]
pub struct LogoutBody {
    #[serde(default)]
    refresh_token: Option<String>,
}

/// `POST /auth/logout` → 204.
pub async fn logout(
    State(state): State<AppState>,
    AnyStateUser(user): AnyStateUser,
    origin: Origin,
    ApiBytes(body): ApiBytes,
) -> Result<StatusCode, ApiError> {
    // The body is optional (the original read it only when it was JSON): anything unreadable is
    // simply no refresh token; a NUL is refused as everywhere.
    let body: LogoutBody = lenient_json(&body)?;
    login::logout(state.auth(), &user, &origin, body.refresh_token.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The user with their settings, as `GET /auth/me` answers.
async fn me_response(state: &AppState, user_id: i64) -> Result<Value, ApiError> {
    let client = state.db().get().await?;
    // Both statements go out together (tokio-postgres pipelines concurrent queries on one
    // connection): one round trip, which under load is one wait fewer for a busy server.
    let (view, settings) = tokio::join!(
        accounts::me(&client, user_id),
        crate::settings::load(&client, user_id)
    );
    let mut v = view?.response();
    v["settings"] = settings?;
    Ok(v)
}

/// `GET /auth/me`: the web app asks on every page, so the answer is kept for a few seconds
/// (`auth::cache`; any change to the user, their settings, shops or level drops it at once).
pub async fn me(State(state): State<AppState>, user: CurrentUser) -> Result<Response, ApiError> {
    let cache = state.auth().store.cache();
    if let Some(body) = cache.profile(user.id) {
        return Ok(json_response(body));
    }
    let seen = cache.generation();
    let value = me_response(&state, user.id).await?;
    let body = Bytes::from(serde_json::to_vec(&value).map_err(|e| {
        tracing::error!(error = %e, "the /auth/me answer could not be serialised");
        ApiError::internal()
    })?);
    cache.offer_profile(seen, user.id, body.clone());
    Ok(json_response(body))
}

fn json_response(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct UpdateMeBody {
    username: String,
}

/// `PUT /auth/me`: change one's own username.
pub async fn update_me(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiJson(body): ApiJson<UpdateMeBody>,
) -> Result<Json<Value>, ApiError> {
    let actor = user.actor(&origin);
    actor.require_session()?;
    let name = field("username", Username::parse(&body.username))?;
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    accounts::rename_self(&mut work, &actor, &name).await?;
    let effects = work.commit().await?;
    state.auth().apply(effects).await;
    Ok(Json(me_response(&state, user.id).await?))
}

#[derive(Debug, Deserialize)]
pub struct ChangePasswordBody {
    current_password: String,
    new_password: String,
}

/// `PUT /auth/me/password` → 204.
pub async fn change_my_password(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiJson(body): ApiJson<ChangePasswordBody>,
) -> Result<StatusCode, ApiError> {
    let actor = user.actor(&origin);
    actor.require_session()?;
    let mut checks = Checks::new();
    checks.check(
        body.current_password.len() <= crate::auth::password::MAX_BYTES,
        "current_password",
        "string_too_long",
        "may be at most 1024 bytes",
    );
    let new = checks.parsed("new_password", NewPassword::parse(&body.new_password));
    checks.finish()?;
    let new = new.ok_or_else(ApiError::internal)?;
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    accounts::change_own_password(
        &mut work,
        &actor,
        &state.auth().passwords,
        &body.current_password,
        &new,
    )
    .await?;
    let effects = work.commit().await?;
    state.auth().apply(effects).await;
    Ok(StatusCode::NO_CONTENT)
}
