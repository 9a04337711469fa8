//! `/auth`: login, token refresh, logout, and the current user's own account. Bare JSON bodies
//! and `detail: {code, message}` errors, as the original web app expects.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::json::ApiJson;
use super::validate::{Checks, username_problem};
use crate::auth::audit::{self, Entry};
use crate::auth::current_user::forbidden;
use crate::auth::password::{self, needs_upgrade};
use crate::auth::roles::{Blocked, Role};
use crate::auth::sessions::{self, Rotation};
use crate::auth::tokens::{AccessClaims, RefreshClaims, new_jti, now_s};
use crate::auth::users::{self, User};
use crate::auth::{AnyStateUser, CurrentUser, RequestMeta, Via};
use crate::db::DbError;
use crate::state::AppState;

const MAX_IDENTIFIER: usize = 50;

fn coded(status: StatusCode, code: &'static str, msg: &str) -> ApiError {
    ApiError::coded(status, code, msg)
}

fn invalid_credentials() -> ApiError {
    coded(
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
        "Wrong username or password",
    )
}

#[derive(Debug, Deserialize)]
pub struct LoginBody {
    username: String,
    password: String,
    /// Checked only with `EF__LOGIN_CAPTCHA=true`; the web app always sends it.
    #[serde(default)]
    captcha_token: Option<String>,
}

/// Mint an access token and a refresh token for a session.
pub fn issue(
    state: &AppState,
    user: &User,
    shop_ids: &[i64],
    session_token: &str,
    refresh_jti: &str,
) -> Result<(String, String), ApiError> {
    let keys = &state.auth().keys;
    let now = now_s();
    let admin = user.role == Role::Admin;
    let access = AccessClaims {
        sub: user.id.to_string(),
        username: user.username.clone(),
        role: user.role.as_str().to_owned(),
        permissions: user.permission_list(),
        shop_id: user.primary_shop_id.or_else(|| shop_ids.first().copied()),
        shop_ids: if admin { None } else { Some(shop_ids.to_vec()) },
        session_token: Some(session_token.to_owned()),
        kind: "access".into(),
        jti: new_jti(),
        exp: now + keys.access_ttl.as_secs(),
        iat: now,
    };
    let refresh = RefreshClaims {
        sub: user.id.to_string(),
        session_token: session_token.to_owned(),
        kind: "refresh".into(),
        jti: refresh_jti.to_owned(),
        exp: now + keys.refresh_ttl.as_secs(),
        iat: now,
    };
    Ok((keys.sign(&access)?, keys.sign(&refresh)?))
}

fn login_blocked_error(b: Blocked) -> ApiError {
    let status = match b {
        Blocked::Inactive => StatusCode::UNAUTHORIZED,
        _ => StatusCode::FORBIDDEN,
    };
    let code = match b {
        Blocked::Inactive => "USER_INACTIVE",
        _ => "ACCOUNT_DISABLED",
    };
    coded(status, code, b.message())
}

/// `POST /auth/login`
pub async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, ApiError> {
    Checks::new()
        .len_between(&body.username, "username", 1, MAX_IDENTIFIER)
        .check(
            body.password.len() <= password::MAX_BYTES,
            "password",
            "string_too_long",
            "may be at most 1024 bytes",
        )
        .finish()?;
    if state.config().security.login_captcha {
        let token = body.captcha_token.as_deref().unwrap_or_default();
        if token.is_empty() {
            return Err(coded(
                StatusCode::BAD_REQUEST,
                "CAPTCHA_REQUIRED",
                "Solve the captcha first",
            ));
        }
        if super::captcha::consume_token(&state, token).await == Some(false) {
            return Err(coded(
                StatusCode::BAD_REQUEST,
                "CAPTCHA_INVALID",
                "The captcha has expired or was used; solve a new one",
            ));
        }
    }
    let identifier = body.username.trim();
    let ip = meta.ip_text();
    let auth = state.auth();
    if let Some(wait) = auth.login_limiter.locked_for(&ip, identifier).await {
        return Err(locked(wait));
    }

    let db = state.db();
    let mut client = db.get().await?;
    let user = users::by_login(&**client, identifier).await?;
    let ok = auth
        .passwords
        .verify(
            &body.password,
            user.as_ref().map(|u| u.password_hash.as_str()),
        )
        .await?;
    let Some(user) = user.filter(|_| ok) else {
        let lock = auth.login_limiter.failed(&ip, identifier).await;
        let actor = meta.anonymous_actor();
        audit::write(
            &**client,
            &actor,
            Entry::new("user", "login_failed", "登录失败").notes(format!(
                "identifier {:?}",
                identifier.chars().take(MAX_IDENTIFIER).collect::<String>()
            )),
        )
        .await?;
        return Err(match lock {
            Some(wait) => locked(wait),
            None => invalid_credentials(),
        });
    };

    let account = users::account_state(&**client, user.id)
        .await?
        .ok_or_else(invalid_credentials)?;
    if let Some(b) = account.login_blocked(Utc::now()) {
        return Err(login_blocked_error(b));
    }
    auth.login_limiter.succeeded(&ip, identifier).await;

    // A bcrypt hash from the original is replaced by argon2id now that we know the password.
    if needs_upgrade(&user.password_hash, auth.passwords.scheme()) {
        let new_hash = auth.passwords.hash(&body.password).await?;
        client
            .execute(
                "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1 AND password_hash = $3",
                &[&user.id, &new_hash, &user.password_hash],
            )
            .await
            .map_err(DbError::from)?;
        tracing::info!(
            user_id = user.id,
            "upgraded a bcrypt password hash to argon2id"
        );
    }

    let refresh_jti = new_jti();
    let expires_at = Utc::now()
        + chrono::Duration::from_std(auth.keys.refresh_ttl).unwrap_or(chrono::Duration::days(7));
    let tx = client.transaction().await.map_err(DbError::from)?;
    let (session_token, ended) = sessions::start(
        &*tx,
        user.id,
        meta.ip.map(|i| i.to_string()).as_deref(),
        meta.user_agent.as_deref(),
        &refresh_jti,
        expires_at,
        auth.single_session,
    )
    .await?;
    let actor = audit::Actor {
        user_id: Some(user.id),
        username: Some(user.username.clone()),
        ..meta.anonymous_actor()
    };
    let note = if ended.is_empty() {
        "new session".to_owned()
    } else {
        format!("new session; ended {} previous", ended.len())
    };
    audit::write(
        &*tx,
        &actor,
        Entry::new("user", "login", "登录")
            .record("users", user.id)
            .notes(note),
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;

    for old in &ended {
        auth.store.mark_session(old, false).await;
    }
    auth.store.mark_session(&session_token, true).await;
    auth.store.invalidate_states(&[user.id]).await;

    let user = users::by_id(&**client, user.id).await?.unwrap_or(user);
    let shops = users::shop_ids(&**client, user.id).await?;
    let (access_token, refresh_token) = issue(&state, &user, &shops, &session_token, &refresh_jti)?;
    let user_json = users::response(&**client, &user).await?;
    Ok(Json(json!({
        "access_token": access_token,
        "refresh_token": refresh_token,
        "token_type": "bearer",
        "expires_in": auth.keys.access_ttl.as_secs(),
        "user": user_json,
    }))
    .into_response())
}

fn locked(wait: Duration) -> ApiError {
    let secs = wait.as_secs().max(1);
    coded(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMIT_EXCEEDED",
        &format!("Too many failed logins; try again in {secs} seconds"),
    )
    .with_retry_after(secs)
}

#[derive(Debug, Deserialize)]
pub struct RefreshBody {
    refresh_token: String,
}

/// `POST /auth/refresh`: a new pair for a current refresh token. Presenting an already-used
/// refresh token ends the whole session (someone replayed a stolen token, or raced).
pub async fn refresh(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Response, ApiError> {
    let auth = state.auth();
    let claims = auth
        .keys
        .verify_refresh(&body.refresh_token)
        .map_err(|e| coded(StatusCode::UNAUTHORIZED, e.code(), &e.to_string()))?;
    // No early exit on the revocation list: a revoked (already rotated) refresh token must reach
    // the rotation below, which recognises the replay and ends the session.
    let user_id: i64 = claims.sub.parse().map_err(|_| {
        coded(
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
            "The token is invalid",
        )
    })?;
    let mut client = state.db().get().await?;
    let new_jti = new_jti();
    let tx = client.transaction().await.map_err(DbError::from)?;
    let rotation =
        sessions::rotate_refresh(&*tx, &claims.session_token, user_id, &claims.jti, &new_jti)
            .await?;
    match rotation {
        Rotation::Rotated => {}
        Rotation::Inactive => {
            return Err(coded(
                StatusCode::UNAUTHORIZED,
                "SESSION_EXPIRED",
                "This session has ended: you logged in elsewhere or logged out",
            ));
        }
        Rotation::Reused => {
            let actor = audit::Actor {
                user_id: Some(user_id),
                ..meta.anonymous_actor()
            };
            audit::write(
                &*tx,
                &actor,
                Entry::new("user", "refresh_reuse", "刷新令牌重复使用")
                    .record(
                        "user_login_sessions",
                        claims.session_token.chars().take(8).collect::<String>(),
                    )
                    .notes("an already-used refresh token was presented; the session was ended"),
            )
            .await?;
            tx.commit().await.map_err(DbError::from)?;
            auth.store.mark_session(&claims.session_token, false).await;
            tracing::warn!(user_id, "refresh token reuse: session ended");
            return Err(coded(
                StatusCode::UNAUTHORIZED,
                "SESSION_EXPIRED",
                "This refresh token was already used; the session has been ended for safety. Log in again.",
            ));
        }
    }
    let Some(user) = users::by_id(&*tx, user_id).await? else {
        return Err(coded(
            StatusCode::UNAUTHORIZED,
            "USER_NOT_FOUND",
            "The user no longer exists",
        ));
    };
    // The original never re-checked the account on refresh; a disabled user kept minting tokens.
    if let Some(account) = users::account_state(&*tx, user_id).await?
        && let Some(b) = account.login_blocked(Utc::now())
    {
        sessions::end(&*tx, &claims.session_token, "account_blocked").await?;
        tx.commit().await.map_err(DbError::from)?;
        auth.store.mark_session(&claims.session_token, false).await;
        return Err(login_blocked_error(b));
    }
    tx.commit().await.map_err(DbError::from)?;
    auth.store.revoke(&claims.jti, claims.exp).await;
    let shops = users::shop_ids(&**client, user.id).await?;
    let (access_token, refresh_token) =
        issue(&state, &user, &shops, &claims.session_token, &new_jti)?;
    Ok(Json(json!({
        "access_token": access_token,
        "refresh_token": refresh_token,
        "token_type": "bearer",
        "expires_in": auth.keys.access_ttl.as_secs(),
    }))
    .into_response())
}

#[derive(Debug, Deserialize, Default)]
pub struct LogoutBody {
    #[serde(default)]
    refresh_token: Option<String>,
}

/// `POST /auth/logout`: revokes the access token (and the refresh token when sent) and ends the
/// session — the original only blacklisted the tokens and left the session alive. 204.
pub async fn logout(
    State(state): State<AppState>,
    AnyStateUser(user): AnyStateUser,
    meta: RequestMeta,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    // The body is optional (the original read it only when it was JSON): anything unreadable is
    // simply no refresh token.
    let body: LogoutBody = serde_json::from_slice(&body).unwrap_or_default();
    let auth = state.auth();
    let Via::Session {
        session_token,
        jti,
        exp,
    } = &user.via
    else {
        return Err(forbidden(
            "API_KEY_NOT_ALLOWED",
            "API keys do not log in or out",
        ));
    };
    auth.store.revoke(jti, *exp).await;
    if let Some(rt) = body.refresh_token.as_deref()
        && let Ok(rc) = auth.keys.verify_refresh(rt)
        && Some(&rc.session_token) == session_token.as_ref()
    {
        auth.store.revoke(&rc.jti, rc.exp).await;
    }
    if let Some(token) = session_token {
        let client = state.db().get().await?;
        sessions::end(&**client, token, "logout").await?;
        audit::write(
            &**client,
            &user.actor(&meta),
            Entry::new("user", "logout", "退出登录").record("users", user.id),
        )
        .await?;
        auth.store.mark_session(token, false).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The user with their settings, as `GET /auth/me` answers.
async fn me_response(client: &tokio_postgres::Client, user: &User) -> Result<Value, ApiError> {
    let mut v = users::response(client, user).await?;
    let settings = super::settings::load(client, user.id).await?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("settings".into(), settings);
    }
    Ok(v)
}

/// `GET /auth/me`
pub async fn me(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    let record = users::by_id(&**client, user.id).await?.ok_or_else(|| {
        coded(
            StatusCode::UNAUTHORIZED,
            "AUTH_FAILED",
            "The user no longer exists",
        )
    })?;
    Ok(Json(me_response(&client, &record).await?))
}

#[derive(Debug, Deserialize)]
pub struct UpdateMeBody {
    username: String,
}

/// `PUT /auth/me`: change one's own username.
pub async fn update_me(
    State(state): State<AppState>,
    user: CurrentUser,
    meta: RequestMeta,
    ApiJson(body): ApiJson<UpdateMeBody>,
) -> Result<Json<Value>, ApiError> {
    user.require_session()?;
    let name = body.username.trim().to_owned();
    let mut checks = Checks::new();
    if let Some(p) = username_problem(&name) {
        checks.check(false, "username", "value_error", p);
    }
    checks.finish()?;
    let mut client = state.db().get().await?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    let taken = users::by_username(&*tx, &name)
        .await?
        .is_some_and(|u| u.id != user.id);
    if taken {
        return Err(coded(
            StatusCode::CONFLICT,
            "USERNAME_EXISTS",
            "This username is taken",
        ));
    }
    tx.execute(
        "UPDATE users SET username = $2, updated_at = now() WHERE id = $1",
        &[&user.id, &name],
    )
    .await
    .map_err(|e| unique_violation(e, "USERNAME_EXISTS", "This username is taken"))?;
    audit::write(
        &*tx,
        &user.actor(&meta),
        Entry::new("user", "update", "修改用户名")
            .record("users", user.id)
            .changes(audit::diff(&[(
                "username",
                json!(user.username),
                json!(name),
            )])),
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    state.auth().store.invalidate_states(&[user.id]).await;
    let record = users::by_id(&**client, user.id).await?.ok_or_else(|| {
        coded(
            StatusCode::UNAUTHORIZED,
            "AUTH_FAILED",
            "The user no longer exists",
        )
    })?;
    Ok(Json(me_response(&client, &record).await?))
}

/// A unique-constraint violation as a 409 with the given code; anything else as a database error.
pub fn unique_violation(e: tokio_postgres::Error, code: &'static str, msg: &str) -> ApiError {
    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
        coded(StatusCode::CONFLICT, code, msg)
    } else {
        DbError::from(e).into()
    }
}

#[derive(Debug, Deserialize)]
pub struct ChangePasswordBody {
    current_password: String,
    new_password: String,
}

/// `PUT /auth/me/password`
pub async fn change_my_password(
    State(state): State<AppState>,
    user: CurrentUser,
    meta: RequestMeta,
    ApiJson(body): ApiJson<ChangePasswordBody>,
) -> Result<StatusCode, ApiError> {
    user.require_session()?;
    let mut checks = Checks::new();
    checks.check(
        body.current_password.len() <= password::MAX_BYTES,
        "current_password",
        "string_too_long",
        "may be at most 1024 bytes",
    );
    if let Some(p) = password::policy_violation(&body.new_password) {
        checks.check(false, "new_password", "value_error", p);
    }
    checks.finish()?;
    let auth = state.auth();
    let client = state.db().get().await?;
    let record = users::by_id(&**client, user.id).await?.ok_or_else(|| {
        coded(
            StatusCode::UNAUTHORIZED,
            "AUTH_FAILED",
            "The user no longer exists",
        )
    })?;
    if !auth
        .passwords
        .verify(&body.current_password, Some(&record.password_hash))
        .await?
    {
        return Err(coded(
            StatusCode::BAD_REQUEST,
            "INVALID_PASSWORD",
            "The current password is wrong",
        ));
    }
    let hash = auth.passwords.hash(&body.new_password).await?;
    client
        .execute(
            "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
            &[&user.id, &hash],
        )
        .await
        .map_err(DbError::from)?;
    audit::write(
        &**client,
        &user.actor(&meta),
        Entry::new("user", "change_password", "修改密码").record("users", user.id),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
