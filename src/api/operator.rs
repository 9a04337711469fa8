//! Who may see operator data (health details, metrics, the server's status): the local operator
//! on the loopback listener, or an admin from anywhere (HTTPS, with a token or an API key).

use axum::extract::FromRequestParts;
use http::StatusCode;
use http::request::Parts;

use super::error::ApiError;
use super::middleware::authenticate::Authentication;
use crate::auth::CurrentUser;
use crate::auth::credentials::API_KEY_HEADER;
use crate::auth::roles::Role;
use crate::http::server::ConnInfo;
use crate::state::AppState;

/// Proof that the caller is an operator; extracting it fails with 403 (or the authentication
/// error of a bad token) for everyone else.
#[derive(Debug, Clone)]
pub enum Operator {
    /// On this machine, on the plain loopback listener, not through a proxy.
    Local,
    /// An authenticated admin.
    Admin,
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let local = parts
            .extensions
            .get::<ConnInfo>()
            .is_some_and(|c| c.is_local_operator(&parts.headers));
        if local {
            return Ok(Operator::Local);
        }
        let has_credentials = match parts.extensions.get::<Authentication>() {
            Some(a) => a.presented.is_present(),
            None => {
                parts.headers.contains_key(http::header::AUTHORIZATION)
                    || parts.headers.contains_key(API_KEY_HEADER)
            }
        };
        if !has_credentials {
            return Err(ApiError::coded(
                StatusCode::FORBIDDEN,
                "OPERATOR_ONLY",
                "This is served on the loopback listener (127.0.0.1:8000) and to admins: log in as an admin",
            ));
        }
        let user = CurrentUser::from_request_parts(parts, state).await?;
        if user.role != Role::Admin {
            return Err(ApiError::coded(
                StatusCode::FORBIDDEN,
                "INSUFFICIENT_PERMISSIONS",
                "Only admins may see this",
            ));
        }
        Ok(Operator::Admin)
    }
}
