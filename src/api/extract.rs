//! Request extractors of the API: the current user ([`CurrentUser`], or [`AnyStateUser`] without
//! the account-state checks, for logging out), where the request came from ([`Origin`]), and the
//! operator proof lives in `operator`. They read what the `authenticate` layer put into the
//! request — credentials parsed and verified once — and never parse headers themselves.

use axum::extract::FromRequestParts;
use http::Method;
use http::header;
use http::request::Parts;

use super::error::ApiError;
use super::middleware::authenticate::Authentication;
use crate::auth::{CurrentUser, Origin, current_user};
use crate::http::middleware::client_ip::ClientIp;
use crate::http::middleware::request_id::RequestId;
use crate::state::AppState;

/// Like [`CurrentUser`], but without the account-state checks: for logging out.
#[derive(Debug, Clone)]
pub struct AnyStateUser(pub CurrentUser);

/// The user behind the request's credentials, resolved at most once per request (the
/// `Operator` extractor and a handler may both ask).
async fn resolve(parts: &mut Parts, state: &AppState) -> Result<CurrentUser, ApiError> {
    if let Some(user) = parts.extensions.get::<CurrentUser>() {
        return Ok(user.clone());
    }
    let presented = match parts.extensions.get::<Authentication>() {
        Some(a) => a.presented.clone(),
        // A route outside the API layer (not expected): parse here rather than fail open.
        None => {
            crate::auth::credentials::Presented::from_headers(&parts.headers, &state.auth().keys)
        }
    };
    let user = current_user::resolve(state.auth(), &presented).await?;
    tracing::Span::current().record("user_id", user.id);
    parts.extensions.insert(user.clone());
    Ok(user)
}

impl FromRequestParts<AppState> for AnyStateUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        resolve(parts, state).await.map(AnyStateUser)
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = resolve(parts, state).await?;
        let writes = matches!(
            parts.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        user.admit(writes)?;
        Ok(user)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(500).collect());
        Ok(Origin {
            ip: parts.extensions.get::<ClientIp>().map(|c| c.0),
            user_agent,
            request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
        })
    }
}
