//! The headers the guide's nginx added to every response, now added by the server itself:
//! clickjacking, MIME sniffing, referrer leakage, and HSTS on HTTPS only (sending it over plain
//! HTTP is meaningless, and on the loopback listener it would be wrong); and a
//! `Content-Security-Policy` the guide lacked.
//!
//! The CSP has two forms. API answers (and `/healthz`) are data, never a document: nothing may
//! load from them or frame them. The web root is the operators' web app, a Vite React build,
//! and its policy is what that build needs and no more (checked in headless Chromium against the
//! real build: no violation on the login page):
//! - scripts only from the server itself: no inline script, no `eval` — an injected `<script>`
//!   does not run;
//! - styles from the server plus inline ones (antd writes its CSS-in-JS into `<style>` elements
//!   and `style=` attributes);
//! - images from the server, `data:` (the captcha's puzzle pieces), `blob:` (previews of files
//!   being uploaded) and any `https:` host (product pictures come from Ozon's and the sellers'
//!   CDNs);
//! - connections to the server's own API and to `wss:` (the notifications websocket);
//! - frames from the server, `blob:` (printing labels) and the image-editing service the app
//!   embeds (xiangjifanyi.com); no plugins; `<base>` and form targets only the server; framed
//!   only by the same origin (as `X-Frame-Options: SAMEORIGIN`).

use axum::extract::Request;
use axum::response::Response;
use http::HeaderValue;
use http::header::{self, HeaderName};

use crate::http::server::{ConnInfo, ListenerKind};
use crate::state::AppState;

/// For answers that are data: nothing loads from them, nothing frames them.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// For the web app (see the module's documentation for why each source is there).
pub const WEB_CSP: &str = concat!(
    "default-src 'self'; ",
    "script-src 'self'; ",
    "style-src 'self' 'unsafe-inline'; ",
    "img-src 'self' data: blob: https:; ",
    "font-src 'self' data:; ",
    "connect-src 'self' wss:; ",
    "media-src 'self' blob:; ",
    "frame-src 'self' blob: https://www.xiangjifanyi.com; ",
    "worker-src 'self' blob:; ",
    "object-src 'none'; ",
    "base-uri 'self'; ",
    "form-action 'self'; ",
    "frame-ancestors 'self'"
);

/// API-looking paths (the API, and whatever else under `/api` answers its JSON 404) and the
/// liveness probe get the API's policy; everything else is the web root's or `/downloads`.
fn is_data(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/healthz"
}

/// The headers that are the same on every response.
const FIXED: [(HeaderName, &str); 5] = [
    (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
    // The guide's value. Modern browsers ignore the header; old ones get the filter in block mode.
    (header::X_XSS_PROTECTION, "1; mode=block"),
    (
        HeaderName::from_static("permissions-policy"),
        "geolocation=(), microphone=(), camera=()",
    ),
];

/// Which headers a response gets, decided from its request.
pub struct Policy {
    https: bool,
    csp: &'static str,
}

impl Policy {
    pub fn for_request(req: &Request) -> Policy {
        Policy {
            https: req
                .extensions()
                .get::<ConnInfo>()
                .is_some_and(|c| c.kind == ListenerKind::Https),
            csp: if is_data(req.uri().path()) {
                API_CSP
            } else {
                WEB_CSP
            },
        }
    }

    pub fn apply(&self, state: &AppState, resp: &mut Response) {
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(self.csp),
        );
        for (name, value) in FIXED {
            h.insert(name, HeaderValue::from_static(value));
        }
        if self.https
            && let Some(v) = state.hsts_header()
        {
            h.insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
        }
    }
}
