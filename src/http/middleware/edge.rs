//! The concerns every request passes through, composed in two middleware functions instead of one
//! layer each. A `tower` layer costs per request: each one clones the whole stack below it (and
//! `Next` boxes it), so with one layer per concern the clones grew with the square of their
//! number; in a profile of `index.html` under keep-alive load those clones and their drops were
//! the largest share of the server's own work after TLS. Each concern keeps its own file; this one
//! only decides their order:
//!
//! [`outer`]: client IP → request id → access log → metrics → security headers, then (as layers)
//! CORS → panic guard, then [`limits`]: header lines → body ceiling, then compression.
//!
//! The order matters: the access log and the metrics see the final status of everything inside
//! them, security headers go on every response including errors and CORS preflights, and CORS
//! answers preflights (and puts its headers on the limits' refusals) before any route or
//! authentication runs.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::access_log::AccessLine;
use super::body_limit::{self, BodyLimit};
use super::metrics::Measured;
use super::security_headers::Policy;
use super::{client_ip, header_limit, request_id};
use crate::state::AppState;

/// Outermost: who the client is, the request's id, and what is recorded about it.
pub async fn outer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    client_ip::resolve(&state, &mut req);
    let id = request_id::assign(&mut req);
    let line = AccessLine::begin(&req);
    let measured = Measured::begin(&state, &req);
    let policy = Policy::for_request(&req);

    let span = line.span();
    let mut resp = next.run(req).instrument(span).await;

    policy.apply(&state, &mut resp);
    let mut resp = match measured {
        Some(m) => m.end(&state, resp),
        None => resp,
    };
    line.end(&state, resp.status());
    request_id::stamp(&mut resp, id);
    resp
}

/// Inside CORS and the panic guard: the bounds on the request's lines and body.
pub async fn limits(State(ceiling): State<BodyLimit>, req: Request, next: Next) -> Response {
    if let Err(refused) = header_limit::check(&req) {
        return refused.into_response();
    }
    match body_limit::apply(ceiling, req) {
        Ok(req) => next.run(req).await,
        Err(refused) => refused.into_response(),
    }
}
