//! Read the request's credentials once — the `Authorization` header or `X-API-Key`, a JWT's
//! signature and expiry verified, a key hashed — and put the result into the request's
//! extensions. The rate limiter takes its subject from it, the `CurrentUser` extractor its
//! identity; nothing parses or verifies the credentials a second time.
//!
//! A clone token (`auth::clone`) is stopped here on the paths a clone may not use (403
//! `CLONE_RESTRICTED`), whether or not the route asks who the caller is (`/system/info` does not).

use axum::extract::Request;

use crate::api::error::ApiError;
use crate::auth::clone;
use crate::auth::credentials::Presented;
use crate::domain::DomainError;
use crate::state::AppState;

/// The request's credentials, as the layer found them.
#[derive(Debug, Clone)]
pub struct Authentication {
    pub presented: Presented,
}

/// Attach the request's [`Authentication`]; `Err` with the 403 answer for a clone token on a path
/// a clone may not use.
pub fn attach(state: &AppState, req: &mut Request) -> Result<(), ApiError> {
    let presented = Presented::from_headers(req.headers(), &state.auth().keys);
    if let Presented::Bearer(Ok(claims)) = &presented
        && claims.is_cloned == Some(true)
    {
        // Inside the API router the path is relative to the prefix already.
        let prefix = state.config().http.api_prefix.trim_end_matches('/');
        let path = req.uri().path();
        let path = match path.strip_prefix(prefix) {
            Some(rest) if !prefix.is_empty() && rest.starts_with('/') => rest,
            _ => path,
        };
        if clone::restricted(req.method(), path) {
            return Err(ApiError::from(DomainError::denied(
                "CLONE_RESTRICTED",
                "Not while acting as another account: restore your own identity first",
            )));
        }
    }
    req.extensions_mut().insert(Authentication { presented });
    Ok(())
}
