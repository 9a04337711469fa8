//! `/auth/clone`: an admin acting as a main account — an adapter over `auth::clone`. Bare JSON
//! bodies, as the original.

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use super::error::ApiError;
use super::json::ApiPath;
use crate::auth::clone::{self, Restored};
use crate::auth::{CurrentUser, Origin, Via};
use crate::domain::{DomainError, Work};
use crate::state::AppState;

/// `POST /auth/clone/{user_id}` → `{access_token, refresh_token, token_type, expires_in,
/// clone_session}`.
pub async fn start(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(target): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let Via::Session {
        session_token: Some(admin_session),
        ..
    } = &user.via
    else {
        return Err(DomainError::denied(
            "API_KEY_NOT_ALLOWED",
            "Cloning needs a login session, not an API key",
        )
        .into());
    };
    let auth = state.auth();
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let (tokens, session) =
        clone::start(auth, &mut work, &user.actor(&origin), admin_session, target).await?;
    let effects = work.commit().await?;
    auth.apply(effects).await;
    let mut out = tokens.to_json();
    out["clone_session"] = session;
    Ok(Json(out))
}

/// `GET /auth/clone/status` → `{is_cloned, ...}`.
pub async fn status(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(clone::status(&client, &user).await?))
}

/// `POST /auth/clone/restore` → `{access_token, refresh_token, token_type, expires_in, user}`.
pub async fn restore(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Json<Value>, ApiError> {
    let auth = state.auth();
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let restored = clone::restore(auth, &mut work, &user, &user.actor(&origin)).await?;
    let effects = work.commit().await?;
    auth.apply(effects).await;
    if let Via::Session { jti, exp, .. } = &user.via {
        auth.store.revoke(jti, *exp).await;
    }
    match restored {
        Restored::Back(tokens, admin) => {
            let mut out = tokens.to_json();
            out["user"] = admin.response();
            Ok(Json(out))
        }
        Restored::Ended(e) => Err(e.into()),
    }
}
