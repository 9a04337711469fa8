//! The headers the guide's nginx added to every response, now added by the server itself:
//! clickjacking, MIME sniffing, referrer leakage, and HSTS on HTTPS only (sending it over plain
//! HTTP is meaningless, and on the loopback listener it would be wrong).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use http::header::{self, HeaderName};

use crate::http::server::{ConnInfo, ListenerKind};
use crate::state::AppState;

pub async fn add(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let https = req
        .extensions()
        .get::<ConnInfo>()
        .is_some_and(|c| c.kind == ListenerKind::Https);
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    // The guide's value. Modern browsers ignore the header; old ones get the filter in block mode.
    h.insert(
        header::X_XSS_PROTECTION,
        HeaderValue::from_static("1; mode=block"),
    );
    h.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("geolocation=(), microphone=(), camera=()"),
    );
    if https && let Some(v) = state.hsts_header() {
        h.insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
    }
    resp
}
