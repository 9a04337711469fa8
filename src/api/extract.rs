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
use axum::extract::MatchedPath;

use crate::auth::{CurrentUser, Origin, Via, clone, current_user, permissions};
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
    guard(parts, state, &user).await?;
    tracing::Span::current().record("user_id", user.id);
    parts.extensions.insert(user.clone());
    Ok(user)
}

/// The route's path pattern below the API prefix (`/auth/users/{user_id}`).
fn route_path(parts: &Parts, state: &AppState) -> String {
    let full = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let prefix = state.config().http.api_prefix.trim_end_matches('/');
    match full.strip_prefix(prefix) {
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        _ => full,
    }
}

/// What every authenticated request passes before its handler: the permission gate
/// (`auth::permissions`) and the audit row of a clone's write. (The clone restrictions are
/// checked earlier, in `middleware::authenticate`, for every route.)
async fn guard(parts: &mut Parts, state: &AppState, user: &CurrentUser) -> Result<(), ApiError> {
    let path = route_path(parts, state);
    if !permissions::never_gated(&path) {
        let snapshot = state.auth().permissions.snapshot().await?;
        let code = permissions::code_for(parts.method.as_str(), &path);
        if snapshot.gated(&code) {
            let role = user.role.as_str();
            let in_token = match user.via {
                Via::Session { .. } => user
                    .permissions
                    .iter()
                    .any(|g| permissions::covers(g, &code)),
                // A key has no token: its owner's role decides.
                Via::ApiKey { .. } => true,
            };
            if !(in_token && snapshot.role_holds(role, &code)) {
                return Err(permissions::denied(&code).into());
            }
        }
    }
    if user.clone.is_some() && is_write(&parts.method) {
        let origin = match Origin::from_request_parts(parts, state).await {
            Ok(o) => o,
            Err(never) => match never {},
        };
        let client = state.db().get().await?;
        clone::audit_request(
            &client,
            &user.actor(&origin),
            &parts.method,
            parts.uri.path(),
        )
        .await?;
    }
    Ok(())
}

fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
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
        user.admit(is_write(&parts.method))?;
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
