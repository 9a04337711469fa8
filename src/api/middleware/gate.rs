//! The API's concerns around every route under the prefix, composed in one middleware (one
//! boxed future and one clone of the routes below per request, instead of one per concern: see
//! `http::middleware::edge`). Each concern keeps its file; this one decides their order:
//!
//! request timeout → login gate (logins refused at once while the password-check queue is full)
//! → authenticate (credentials parsed and verified once) → rate limit (counted per user, key or
//! IP) → the route → `Cache-Control: no-store` unless the route said otherwise → the rate-limit
//! headers.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::CACHE_CONTROL;

use super::rate_limit::{self, Admission};
use super::{authenticate, login_gate};
use crate::http::middleware::timeout;
use crate::state::AppState;

pub async fn api(State(state): State<AppState>, req: Request, next: Next) -> Response {
    timeout::bound(&state, admit_and_answer(&state, req, next)).await
}

async fn admit_and_answer(state: &AppState, mut req: Request, next: Next) -> Response {
    if let Some(refused) = login_gate::refusal(state, &req) {
        return refused;
    }
    if let Err(refused) = authenticate::attach(state, &mut req) {
        return refused.into_response();
    }
    // The subject is read before the wait: a request (its body) may not be shared across it.
    let subject = rate_limit::subject_of(state, &req);
    let decision = match rate_limit::admit(state, subject).await {
        Admission::Exempt => None,
        Admission::Allowed(d) => Some(d),
        Admission::Refused(refused) => return refused,
    };
    let mut resp = next.run(req).await;
    // API answers are per user and per moment: no browser or proxy may cache them (the
    // original's nginx cached authenticated GETs). Handlers that may be cached say so.
    resp.headers_mut()
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    if let Some(d) = decision {
        rate_limit::add_headers(&mut resp, &d);
    }
    resp
}
