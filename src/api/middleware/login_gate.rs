//! Logins are refused at the door while the password-check queue is full (503 `LOGIN_BUSY`,
//! `Retry-After`), before the rate limiter counts them and before their body is read.
//!
//! In a login flood nearly every login is refused busy. Counting each first cost a Redis round
//! trip per request, and 600 of them at once queued ahead of every other request's own rate-limit
//! and session checks (an admin's `GET /auth/me` waited ~0.5 s). A refused login checks no
//! password, so leaving it uncounted gives an attacker nothing; one that gets in is counted by
//! the general limit and reserved by the login limiter as before.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::Method;

use crate::api::error::ApiError;
use crate::auth::login;
use crate::state::AppState;

/// The login route, below the API prefix.
const LOGIN: &str = "/auth/login";

/// The 503 answer for a login that arrives while the queue is full.
pub fn refusal(state: &AppState, req: &Request) -> Option<Response> {
    if req.method() == Method::POST && req.uri().path() == LOGIN && state.auth().passwords.is_full()
    {
        return Some(ApiError::from(login::busy()).into_response());
    }
    None
}
