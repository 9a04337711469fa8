//! The current user of a request, as an extractor: `Authorization: Bearer <access JWT>` or
//! `X-API-Key: ef_live_...`. Handlers that take a [`CurrentUser`] are authenticated; handlers that
//! do not are public. Account state is enforced here, once: a deactivated, disabled or expired
//! account is refused, and a suspended one (or a sub-account of a suspended parent) may read but
//! not write (403 `ACCOUNT_WRITE_FORBIDDEN`, as the original's middleware).

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use http::request::Parts;
use http::{Method, StatusCode, header};

use super::roles::{AccountState, Blocked, Party, Role};
use super::sessions::{CheckError, Rejection};
use super::{api_keys, users};
use crate::api::error::ApiError;
use crate::auth::audit::Actor;
use crate::http::middleware::client_ip::ClientIp;
use crate::http::middleware::request_id::RequestId;
use crate::state::AppState;

#[derive(Debug, Clone)]
pub enum Via {
    Session {
        session_token: Option<String>,
        jti: String,
        exp: u64,
    },
    ApiKey {
        key_id: i64,
    },
}

#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub permissions: Vec<String>,
    pub shop_id: Option<i64>,
    /// `None` for admins: every shop.
    pub shop_ids: Option<Vec<i64>>,
    pub state: AccountState,
    pub via: Via,
}

/// Like [`CurrentUser`], but without the account-state checks: for logging out.
#[derive(Debug, Clone)]
pub struct AnyStateUser(pub CurrentUser);

fn unauthorized(code: &'static str, message: &str) -> ApiError {
    ApiError::coded(StatusCode::UNAUTHORIZED, code, message)
}

pub fn forbidden(code: &'static str, message: &str) -> ApiError {
    ApiError::coded(StatusCode::FORBIDDEN, code, message)
}

impl CurrentUser {
    pub fn party(&self) -> Party<'_> {
        Party {
            id: self.id,
            username: &self.username,
            role: self.role,
            parent_user_id: self.state.parent_user_id,
        }
    }

    pub fn require_role(&self, required: Role) -> Result<(), ApiError> {
        if Role::admits(required, self.role) {
            Ok(())
        } else {
            Err(forbidden(
                "INSUFFICIENT_PERMISSIONS",
                "Your role may not do this",
            ))
        }
    }

    /// Account management needs a logged-in person, not an API key.
    pub fn require_session(&self) -> Result<(), ApiError> {
        match self.via {
            Via::Session { .. } => Ok(()),
            Via::ApiKey { .. } => Err(forbidden(
                "API_KEY_NOT_ALLOWED",
                "API keys cannot manage accounts, keys or settings; log in instead",
            )),
        }
    }

    /// The original's `require_shops()`: at least one shop (admins see all).
    pub fn require_shops(&self) -> Result<(), ApiError> {
        match &self.shop_ids {
            None => Ok(()),
            Some(ids) if !ids.is_empty() => Ok(()),
            Some(_) => Err(forbidden(
                "NO_SHOPS",
                "No shop is associated with this account yet",
            )),
        }
    }

    pub fn actor(&self, meta: &RequestMeta) -> Actor {
        Actor {
            user_id: Some(self.id),
            username: Some(self.username.clone()),
            ip: meta.ip,
            user_agent: meta.user_agent.clone(),
            request_id: meta.request_id.clone(),
        }
    }
}

fn blocked_error(b: Blocked) -> ApiError {
    match b {
        Blocked::Inactive => unauthorized("USER_INACTIVE", b.message()),
        Blocked::Suspended => forbidden("ACCOUNT_WRITE_FORBIDDEN", b.message()),
        Blocked::Disabled | Blocked::Expired => forbidden("ACCOUNT_DISABLED", b.message()),
    }
}

impl FromRequestParts<AppState> for AnyStateUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(parts, state).await.map(AnyStateUser)
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = authenticate(parts, state).await?;
        let now = chrono::Utc::now();
        if let Some(b) = user.state.login_blocked(now) {
            return Err(blocked_error(b));
        }
        let writes = matches!(
            parts.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        if writes && let Some(b) = user.state.write_blocked(now) {
            return Err(forbidden("ACCOUNT_WRITE_FORBIDDEN", b.message()));
        }
        Ok(user)
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<CurrentUser, ApiError> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| {
            unauthorized("INVALID_AUTH_FORMAT", "Use Authorization: Bearer <token>")
        })?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                unauthorized("INVALID_AUTH_FORMAT", "Use Authorization: Bearer <token>")
            })?;
        return from_bearer(token, state).await;
    }
    if let Some(key) = parts.headers.get("x-api-key") {
        let key = key
            .to_str()
            .map_err(|_| unauthorized("INVALID_API_KEY", "The API key is not valid"))?;
        return from_api_key(key.trim(), state).await;
    }
    Err(unauthorized(
        "MISSING_AUTH_HEADER",
        "Log in first: send Authorization: Bearer <access token>",
    ))
}

async fn from_bearer(token: &str, state: &AppState) -> Result<CurrentUser, ApiError> {
    let auth = state.auth();
    let claims = auth
        .keys
        .verify_access(token)
        .map_err(|e| unauthorized("INVALID_TOKEN", &e.to_string()))?;
    let account = match auth.store.check(&claims).await {
        Ok(s) => s,
        Err(CheckError::Rejected(Rejection::SessionEnded)) => {
            return Err(unauthorized(
                "SESSION_EXPIRED",
                "This session has ended: you logged in elsewhere or logged out",
            ));
        }
        Err(CheckError::Rejected(Rejection::Revoked)) => {
            return Err(unauthorized("INVALID_TOKEN", "The token has been revoked"));
        }
        Err(CheckError::Rejected(Rejection::UnknownUser)) => {
            return Err(unauthorized(
                "INVALID_TOKEN",
                "The token's user no longer exists",
            ));
        }
        Err(CheckError::Db(e)) => return Err(e.into()),
    };
    Ok(CurrentUser {
        id: account.user_id,
        username: account.username.clone(),
        role: account.role,
        permissions: claims.permissions.clone(),
        shop_id: claims.shop_id,
        shop_ids: if account.role == Role::Admin {
            None
        } else {
            Some(claims.shop_ids.clone().unwrap_or_default())
        },
        state: account,
        via: Via::Session {
            session_token: claims.session_token.clone(),
            jti: claims.jti.clone(),
            exp: claims.exp,
        },
    })
}

async fn from_api_key(key: &str, state: &AppState) -> Result<CurrentUser, ApiError> {
    let invalid = || unauthorized("INVALID_API_KEY", "The API key is not valid");
    if !api_keys::looks_valid(key) {
        return Err(invalid());
    }
    let hash = api_keys::hash(key);
    let client = state.db().get().await?;
    // One round trip: find the key, note its use (at most once a minute), read its user's state.
    let row = client
        .query_opt(
            "WITH k AS (
                SELECT id, user_id, permissions FROM api_keys
                 WHERE key_hash = $1 AND is_active AND (expires_at IS NULL OR expires_at > now())
                 LIMIT 1
             ), used AS (
                UPDATE api_keys SET last_used_at = now()
                 WHERE id = (SELECT id FROM k)
                   AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
             )
             SELECT k.id, k.user_id, k.permissions FROM k",
            &[&hash],
        )
        .await
        .map_err(crate::db::DbError::from)?
        .ok_or_else(invalid)?;
    let key_id: i64 = row.get(0);
    let user_id: i64 = row.get(1);
    let permissions: serde_json::Value = row.get(2);
    let account = users::account_state(&**client, user_id)
        .await?
        .ok_or_else(invalid)?;
    let shop_ids = if account.role == Role::Admin {
        None
    } else {
        Some(users::shop_ids(&**client, user_id).await?)
    };
    Ok(CurrentUser {
        id: user_id,
        username: account.username.clone(),
        role: account.role,
        permissions: permissions
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        shop_id: shop_ids.as_ref().and_then(|s| s.first().copied()),
        shop_ids,
        state: account,
        via: Via::ApiKey { key_id },
    })
}

/// Where a request came from, for audit entries and sessions.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl RequestMeta {
    /// The client IP as text, for rate-limit keys and session rows.
    pub fn ip_text(&self) -> String {
        self.ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "unknown".into())
    }

    pub fn anonymous_actor(&self) -> Actor {
        Actor {
            user_id: None,
            username: None,
            ip: self.ip,
            user_agent: self.user_agent.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(500).collect());
        Ok(RequestMeta {
            ip: parts.extensions.get::<ClientIp>().map(|c| c.0),
            user_agent,
            request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
        })
    }
}
